"""News headlines for a ticker and their sentiment, scored by VADER with a finance lexicon.

Headlines come from sources tried in ``config.news_sources`` order (the first that returns
articles wins): ``yfinance`` (Yahoo's news stream, through yfinance), ``rss`` (a per-ticker
finance RSS 2.0 feed, fetched with httpx and parsed with feedparser) and ``embedded``
(invented sample headlines shipped in ``data/headlines.yaml``, for offline runs; every such
article is marked ``illustrative`` so reports can say it is not news).

VADER (Hutto & Gilbert, 2014) was built for social-media text. On finance headlines its
general lexicon misses the words that carry the news ("surge", "plunge", "downgrade",
"bullish", ...) and misreads others ("demand" -0.5, "shares" +1.2, "strikes" -1.5 as in
"strikes a deal"). :data:`FINANCE_LEXICON` adds or overrides those entries on VADER's
-4..+4 valence scale, and :data:`CONTEXT_RULES` read words by their neighbours ("cuts ...
price target", "rising costs", "growth slows"). ``tests/analysis/test_sentiment.py``
measures the gain on a labelled set of headlines with a held-out part (docs/sentiment.md).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Protocol, TypeVar
from urllib.parse import quote

import feedparser
import httpx
import numpy as np
import yaml
from curl_cffi import requests as curl_requests
from curl_cffi.requests import exceptions as curl_exceptions
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.network import (
    YFINANCE_LOCK,
    SourceUnavailableError,
    TransientSourceError,
    gave_up,
    http_client,
    is_name_resolution_error,
    mark_unreachable,
    unreachable,
    with_retries,
)
from portfolio_analysis.ratelimit import (
    limiter_for,
    pause_on_429,
    retry_after_seconds,
    service_for_host,
)
from portfolio_analysis.vocabulary import NEGATIVE_SENTIMENT, POSITIVE_SENTIMENT

# Recency weighting: an article's weight halves every RECENCY_HALF_LIFE_DAYS of age. A news
# item moves a stock over days, not months: with a 7-day half-life last week's headline
# counts half as much as today's and a month-old one about 1/20.
RECENCY_HALF_LIFE_DAYS = 7.0

T = TypeVar("T")


def _inflect(valence: float, *words: str) -> dict[str, float]:
    return dict.fromkeys(words, valence)


# Finance wording, on VADER's valence scale (-4 .. +4; VADER's "good" is 1.9, "bad" -2.5).
# Magnitudes follow VADER's neighbours: strong moves ("soar", "plunge") near "great"/"awful"
# territory's lower end, mild moves ("rise", "dip") near 1. Inflections are listed because
# VADER matches whole tokens only.
FINANCE_LEXICON: Mapping[str, float] = {
    # Price moves, up.
    **_inflect(2.3, "soar", "soars", "soared", "soaring"),
    **_inflect(2.0, "surge", "surges", "surged", "surging"),
    **_inflect(1.8, "rally", "rallies", "rallied", "rallying"),
    **_inflect(1.5, "jump", "jumps", "jumped", "jumping"),
    **_inflect(1.5, "rebound", "rebounds", "rebounded", "rebounding"),
    **_inflect(1.2, "climb", "climbs", "climbed", "climbing"),
    **_inflect(1.3, "recover", "recovers", "recovered", "recovery"),
    **_inflect(1.0, "rise", "rises", "rose", "risen", "rising", "higher"),
    **_inflect(1.0, "lift", "lifts", "lifted"),
    # Price moves, down.
    **_inflect(-2.3, "plunge", "plunges", "plunged", "plunging"),
    **_inflect(-2.0, "tumble", "tumbles", "tumbled", "tumbling"),
    **_inflect(-1.8, "slump", "slumps", "slumped", "slumping"),
    **_inflect(-1.8, "selloff", "sell-off"),
    **_inflect(-1.7, "crashes", "crashed"),
    **_inflect(-1.5, "sink", "sinks", "sank", "sinking"),
    **_inflect(-1.2, "fall", "falls", "fell", "falling"),
    **_inflect(-1.2, "drops", "dropped", "dropping"),
    **_inflect(-1.2, "slide", "slides", "slid", "sliding"),
    **_inflect(-1.2, "decline", "declines", "declined", "declining"),
    **_inflect(-1.0, "slip", "slips", "slipped", "slipping"),
    **_inflect(-0.8, "dip", "dips", "dipped"),
    # Results against expectations, analysts' calls, market mood.
    **_inflect(1.8, "beat", "beats", "beating"),
    **_inflect(1.5, "exceed", "exceeds", "exceeded"),
    **_inflect(1.8, "outperform", "outperforms", "outperformed"),
    **_inflect(2.0, "upgrade", "upgrades", "upgraded"),
    **_inflect(2.0, "bullish"),
    **_inflect(1.8, "upbeat"),
    **_inflect(1.2, "tailwind", "tailwinds"),
    **_inflect(1.2, "buyback", "buybacks"),
    **_inflect(1.2, "raise", "raises", "raised"),
    **_inflect(-1.5, "miss", "misses", "missed"),
    **_inflect(-1.8, "underperform", "underperforms", "underperformed"),
    **_inflect(-2.0, "downgrade", "downgrades", "downgraded"),
    **_inflect(-2.0, "bearish"),
    **_inflect(-1.2, "warns", "warned"),
    **_inflect(-1.2, "headwind", "headwinds"),
    **_inflect(-1.5, "shortfall"),
    **_inflect(-1.3, "slowdown"),
    # Corporate and legal events.
    **_inflect(-1.8, "layoff", "layoffs"),
    **_inflect(-1.2, "recall", "recalls", "recalled"),
    **_inflect(-1.2, "probe", "probes", "subpoena"),
    **_inflect(-1.5, "sues", "sued", "fined"),
    **_inflect(-1.3, "outage", "outages"),
    **_inflect(-1.2, "halt", "halts", "halted"),
    **_inflect(-2.5, "bankruptcy", "bankrupt"),
    # Neutral in finance, mis-scored by the general lexicon.
    **_inflect(0.0, "demand", "share", "shares", "strike", "strikes"),
}


# --- context rules -------------------------------------------------------------------------
# A word list cannot read "cuts ... price target" (VADER: "cuts" -1.2, but "growth" later in
# the headline outweighs it), "rising costs" ("rising" is good news for a price, bad news for
# costs) or "growth slows" ("growth" +1.6, "slows" nothing). A context rule gives a word the
# valence it has next to certain other words in the same clause; the rewritten headline is
# then scored by VADER as usual (negation, boosters and "but" still apply). The rules were
# tuned on the "tune" part of tests/analysis/data/labelled_headlines.csv only; docs/sentiment.md
# has the accuracy before and after on both parts.


def _words(*groups: str) -> frozenset[str]:
    return frozenset(" ".join(groups).split())


# What analysts and companies cut or raise.
_TARGETS = _words(
    "target targets guidance forecast forecasts outlook outlooks estimate estimates view",
    "projection projections rating ratings dividend dividends payout expectations goal goals",
)
_CUT = _words(
    "cut cuts cutting lower lowers lowered lowering slash slashes slashed slashing trim trims",
    "trimmed trimming reduce reduces reduced reducing pare pares pared withdraw withdraws",
    "withdrew suspend suspends suspended scrap scraps scrapped",
)
_RAISE = _words(
    "raise raises raised raising boost boosts boosted boosting lift lifts lifted lifting",
    "up ups upped hike hikes hiked increase increases increased",
)
# What a company pays or loses: rising is bad news, falling good news.
_COSTS = _words(
    "cost costs expense expenses charges charge writedowns write-downs loss",
    "losses debt delinquencies defaults inflation rates borrowing",
)
_RISE = _words(
    "rise rises rose risen rising climb climbs climbed climbing higher jump jumps jumped",
    "jumping surge surges surged surging soar soars soared soaring mount mounts mounted",
    "mounting increase increases increased increasing grow grows grew growing swell swells",
    "widen widens widened widening deepen deepens deepened balloon balloons ballooned",
)
_FALL = _words(
    "fall falls fell falling drop drops dropped decline declines declined ease eases eased",
    "easing lower lowered shrink shrinks shrank narrow narrows narrowed narrowing dip dips",
    "dipped cut cuts cutting savings reduction reductions",
)
# What a company earns or sells: slowing or squeezed is bad news.
_GOOD = _words(
    "growth sales demand revenue revenues profit profits earnings margin margins traffic",
    "volume volumes orders bookings income deliveries subscriptions",
)
_SLOW = _words(
    "slow slows slowed slowing slower weak weaker weakening soft softer softening shrink",
    "shrinks shrinking shrank squeeze squeezes squeezed squeezing weigh weighs weighed",
    "weighing erode erodes eroded eroding dent dents dented pressure pressures pressured",
)
# Words that end a clause: a rule looks for its context within the clause only.
_CLAUSE_BREAKS = _words(
    "as after amid but while despite though although citing because following and even ahead"
)
_PUNCTUATION = ".,;:!?'\"()[]{}"


@dataclass(frozen=True)
class ContextRule:
    """``words`` read with another valence when one of ``context`` is within ``window`` words
    on ``side`` ("after", "before" or "either") in the same clause.

    ``valence`` is the new valence; ``sign`` instead keeps the word's own strength (at least
    ``strength``) with that sign; neither means the word becomes neutral.
    """

    name: str
    words: frozenset[str]
    context: frozenset[str]
    window: int
    side: str = "either"
    valence: float | None = None
    sign: int | None = None
    strength: float = 1.0

    def applies(self, words: Sequence[str], clause: Sequence[int], i: int) -> bool:
        after = range(i + 1, min(i + 1 + self.window, len(words)))
        before = range(max(i - self.window, 0), i)
        near = {"after": after, "before": before, "either": [*before, *after]}[self.side]
        return any(clause[j] == clause[i] and words[j] in self.context for j in near)

    def token(self, word: str) -> str:
        """The made-up word the rewritten headline carries instead of ``word``."""
        return f"{word}_{self.name}"


CONTEXT_RULES: tuple[ContextRule, ...] = (
    ContextRule("cut_target", _CUT, _TARGETS, window=4, side="after", valence=-1.8),
    ContextRule("target_cut", _CUT, _TARGETS, window=2, side="before", valence=-1.8),
    ContextRule("raise_target", _RAISE, _TARGETS, window=4, side="after", valence=1.8),
    ContextRule("target_raised", _RAISE, _TARGETS, window=2, side="before", valence=1.8),
    ContextRule("costs_up", _RISE, _COSTS, window=3, sign=-1),
    ContextRule("costs_down", _FALL, _COSTS, window=3, sign=1),
    ContextRule("cost_falling", _COSTS, _FALL, window=3),  # "losses narrow": not a loss
    ContextRule("slowing", _SLOW, _GOOD, window=5, sign=-1, strength=1.5),
    ContextRule("slowed", _GOOD, _SLOW, window=5),  # "growth slows" is no growth
    ContextRule("lay_off", _words("lay lays laid laying"), _words("off"), 1, "after", -1.8),
    ContextRule(
        "commodity",  # crude oil is not crude
        _words("crude"),
        _words("oil prices price futures output production inventories stockpiles exports"),
        window=1,
        side="after",
    ),
    ContextRule(
        "interest_item",  # net interest income is not "interest"
        _words("interest"),
        _words("income rate rates expense expenses cost costs payments margin"),
        window=1,
        side="after",
    ),
)


def _context_lexicon(lexicon: Mapping[str, float]) -> dict[str, float]:
    """The made-up words of the context rules and their valences (neutral ones stay out)."""
    entries = {}
    for rule in CONTEXT_RULES:
        for word in rule.words:
            if rule.valence is not None:
                entries[rule.token(word)] = rule.valence
            elif rule.sign is not None:
                strength = max(abs(lexicon.get(word, 0.0)), rule.strength)
                entries[rule.token(word)] = rule.sign * strength
    return entries


def apply_context_rules(headline: str) -> str:
    """``headline`` with each word a context rule applies to replaced by the rule's word.

    Words are VADER's (split on whitespace, outer punctuation ignored); the first rule that
    applies to a word wins. A clause ends at , ; : and at words like "as", "after", "and".
    """
    raw = headline.split()
    words = [t.strip(_PUNCTUATION).lower() for t in raw]
    clause, current = [], 0
    for token, word in zip(raw, words, strict=True):
        if word in _CLAUSE_BREAKS:
            current += 1
        clause.append(current)
        if token.rstrip("'\"").endswith((",", ";", ":")) or word in _CLAUSE_BREAKS:
            current += 1
    out = list(raw)
    for i, word in enumerate(words):
        rule = next(
            (r for r in CONTEXT_RULES if word in r.words and r.applies(words, clause, i)), None
        )
        if rule is not None:
            start = raw[i].lower().index(word)
            out[i] = raw[i][:start] + rule.token(word) + raw[i][start + len(word) :]
    return " ".join(out)


@functools.cache
def _analyzer() -> SentimentIntensityAnalyzer:
    """One analyzer per process (reading VADER's lexicon takes ~50 ms); never in results."""
    analyzer = SentimentIntensityAnalyzer()
    analyzer.lexicon.update(FINANCE_LEXICON)
    analyzer.lexicon.update(_context_lexicon(analyzer.lexicon))
    return analyzer


def score_headlines(headlines: Sequence[str]) -> list[float]:
    """VADER compound score in [-1, 1] of each headline, with the finance lexicon and the
    context rules."""
    if isinstance(headlines, str):
        raise TypeError("score_headlines takes a list of headlines, not one string")
    analyzer = _analyzer()
    return [analyzer.polarity_scores(apply_context_rules(str(h)))["compound"] for h in headlines]


def classify(score: float) -> str:
    """ "positive", "negative" or "neutral" by VADER's +-0.05 convention."""
    if score >= POSITIVE_SENTIMENT:
        return "positive"
    if score <= NEGATIVE_SENTIMENT:
        return "negative"
    return "neutral"


# --- articles ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Article:
    """One headline. ``published`` is a timezone-aware UTC datetime, or None if unknown.

    ``illustrative`` marks an invented sample headline (the embedded source), so every report
    can say its sentiment is a demonstration, not news.
    """

    title: str
    published: datetime | None
    source: str
    url: str | None = None
    publisher: str | None = None
    illustrative: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title.strip():
            raise ValueError("an article needs a non-empty title")
        if self.published is not None:
            if self.published.tzinfo is None or self.published.utcoffset() is None:
                raise ValueError(
                    f"article published time {self.published} has no timezone: pass an "
                    "aware datetime (UTC) so ages compare correctly"
                )
            object.__setattr__(self, "published", self.published.astimezone(UTC))


class NewsSourceError(RuntimeError):
    """A news source could not answer (network, HTTP status, unreadable body)."""


class NewsUnavailableError(RuntimeError):
    """Every configured news source failed; ``reasons`` maps source name -> why."""

    def __init__(self, ticker: str, reasons: Mapping[str, str]) -> None:
        self.ticker = ticker
        self.reasons = dict(reasons)
        detail = "; ".join(f"{name}: {why}" for name, why in self.reasons.items())
        super().__init__(f"no news source answered for {ticker}: {detail}")


class NewsSource(Protocol):
    """Headlines for one ticker; raises NewsSourceError when the source can't answer."""

    name: str

    def fetch(self, ticker: str, config: AnalysisConfig) -> list[Article]: ...


# --- embedded sample headlines -------------------------------------------------------------


@functools.cache
def _embedded_headlines() -> dict:
    text = resources.files("portfolio_analysis").joinpath("data/headlines.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def _parse_published(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class EmbeddedNewsSource:
    """Invented sample headlines from ``data/headlines.yaml``, each marked ``illustrative``.

    The sample tickers have hand-written headlines; any other ticker gets a few headlines
    from generic templates, picked and dated deterministically from a hash of the ticker so a
    run is repeatable. The publisher says which of the two a headline is.
    """

    name = "embedded"

    def fetch(self, ticker: str, config: AnalysisConfig) -> list[Article]:
        data = _embedded_headlines()
        written = data["tickers"].get(ticker.upper())
        if written is not None:
            publisher = data["publisher"]
            items = [(_parse_published(i["published"]), i["title"]) for i in written]
        else:
            publisher = data["templates"]["publisher"]
            items = self._from_templates(ticker.upper(), data["templates"])
        articles = [
            Article(
                title=title,
                published=published,
                source=self.name,
                publisher=publisher,
                illustrative=True,
            )
            for published, title in sorted(items, key=lambda item: item[0], reverse=True)
        ]
        return articles[: config.max_articles]

    @staticmethod
    def _from_templates(ticker: str, templates: Mapping) -> list[tuple[datetime, str]]:
        headlines: list[str] = templates["headlines"]
        count = min(int(templates["per_ticker"]), len(headlines))
        anchor = _parse_published(templates["anchor_date"])
        max_age = int(templates["max_age_days"])

        def stable_int(*parts: object) -> int:  # Python's hash() is salted per process
            digest = hashlib.sha256(":".join(map(str, (ticker, *parts))).encode()).digest()
            return int.from_bytes(digest[:8], "big")

        order = sorted(range(len(headlines)), key=lambda i: stable_int("pick", i))[:count]
        return [
            (
                anchor - timedelta(days=stable_int("age", i) % max_age, hours=i),
                headlines[i].format(ticker=ticker),
            )
            for i in order
        ]


# --- summary -------------------------------------------------------------------------------

_NOT_WORD = re.compile(r"[^\w\s]+")


def normalize_headline(title: str) -> str:
    """The form two headlines must share to count as duplicates: case, spaces, punctuation."""
    return " ".join(_NOT_WORD.sub(" ", title.casefold()).split())


def deduplicate(articles: Iterable[Article]) -> list[Article]:
    """Articles with duplicate headlines (normalised) removed, keeping the first seen."""
    seen: set[str] = set()
    unique = []
    for article in articles:
        key = normalize_headline(article.title)
        if key not in seen:
            seen.add(key)
            unique.append(article)
    return unique


def _recency_weighted(scores: np.ndarray, published: list[datetime | None], now: datetime) -> float:
    """Mean score weighted by 0.5 ** (age / half-life).

    Undated articles are left out of the weighting (their age is unknown); with no dated
    article at all this is the plain mean. Weights are taken relative to the newest article,
    which leaves the weighted mean unchanged and keeps years-old sample headlines from
    underflowing to zero weight. Articles dated after ``now`` count as age zero.
    """
    dated = np.array([p is not None for p in published])
    if not dated.any():
        return float(scores.mean())
    ages = np.array(
        [max((now - p).total_seconds(), 0.0) / 86400.0 for p in published if p is not None]
    )
    weights = 0.5 ** ((ages - ages.min()) / RECENCY_HALF_LIFE_DAYS)
    return float(np.average(scores[dated], weights=weights))


def summarize_sentiment(
    ticker: str, articles: Sequence[Article], now: datetime | None = None
) -> dict:
    """Per-ticker sentiment in the seed's shape plus class counts and a recency-weighted score.

    Duplicate headlines (same text after normalising case, whitespace and punctuation) count
    once. With no articles the averages are None and the counts 0. ``illustrative`` is true
    when any headline counted is invented sample data; each article says whether it is.
    """
    now = datetime.now(UTC) if now is None else now
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    unique = deduplicate(articles)
    scores = np.array(score_headlines([a.title for a in unique]), dtype=float)
    classes = [classify(s) for s in scores]
    return {
        "ticker": ticker,
        "article_count": len(unique),
        "avg_sentiment": float(scores.mean()) if len(unique) else None,
        "recency_weighted_sentiment": (
            _recency_weighted(scores, [a.published for a in unique], now) if len(unique) else None
        ),
        "positive_count": classes.count("positive"),
        "negative_count": classes.count("negative"),
        "neutral_count": classes.count("neutral"),
        "duplicates_removed": len(articles) - len(unique),
        "illustrative": any(a.illustrative for a in unique),
        "articles": [
            {
                "title": a.title,
                "published": a.published.isoformat() if a.published else None,
                "source": a.source,
                "publisher": a.publisher,
                "url": a.url,
                "sentiment": float(s),
                "illustrative": a.illustrative,
            }
            for a, s in zip(unique, scores, strict=True)
        ],
    }


# --- network sources -----------------------------------------------------------------------
# The library's network layer (network.py) is shared with the price sources: one HTTP client,
# one TransientSourceError, one retry policy (exponential backoff with jitter, Retry-After
# honoured). Every request passes the shared request-rate limit (ratelimit.py), grouped by
# company: Yahoo's news, Yahoo's RSS feeds and yfinance prices count against one "yahoo" limit.


# Said when a host name does not resolve: no retry helps within a run.
DNS_FAILED = "DNS lookup of {host} failed (no network, or a proxy is needed)"


def _unreachable_key(source: str, host: str) -> str:
    """What :func:`network.mark_unreachable` remembers (and logs) for a source's host."""
    return f"news source {source} ({host})"


def _skip_if_unreachable(key: str, what: str) -> None:
    """Raise at once, without a request, when ``key`` already failed its DNS lookup."""
    reason = unreachable(key)
    if reason is not None:
        raise NewsSourceError(f"{what}: not asked, {reason} earlier in this run")


def _with_retries(config: AnalysisConfig, what: str, key: str, attempt: Callable[[], T]) -> T:
    """``network.with_retries``; the last transient failure becomes a NewsSourceError that
    says what was tried, so the next news source is asked. A SourceUnavailableError (a name
    that does not resolve) is not retried: ``key`` is marked unreachable for the rest of the
    run, so later tickers skip the source instead of failing the same way again."""
    try:
        return with_retries(config, attempt)
    except TransientSourceError as error:
        raise NewsSourceError(f"{what}: {gave_up(error, config)}") from error
    except SourceUnavailableError as error:
        mark_unreachable(key, str(error))
        raise NewsSourceError(f"{what}: {error}") from error


class RssNewsSource:
    """A per-ticker finance RSS 2.0 feed (``config.rss_url_template``), parsed by feedparser."""

    name = "rss"

    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client

    def fetch(self, ticker: str, config: AnalysisConfig) -> list[Article]:
        url = config.rss_url_template.format(ticker=quote(ticker, safe=""))
        host = httpx.URL(url).host
        what = f"RSS feed {url}"
        key = _unreachable_key(self.name, host)
        _skip_if_unreachable(key, what)
        client = self._client or http_client()
        limiter = limiter_for(config, service_for_host(host))

        def attempt() -> httpx.Response:
            limiter.acquire()
            try:
                response = client.get(url, timeout=config.timeout_seconds)
            except httpx.TimeoutException as error:
                raise TransientSourceError(
                    f"timed out after {config.timeout_seconds:g} s"
                ) from error
            except httpx.TransportError as error:
                if is_name_resolution_error(error):
                    raise SourceUnavailableError(DNS_FAILED.format(host=host)) from error
                raise TransientSourceError(f"connection failed ({error})") from error
            status = response.status_code
            if status == 429 or status >= 500:
                # A 429 pauses everyone sharing the host's limit (as the price sources do);
                # a 5xx's Retry-After only spaces this request's retries.
                retry_after = pause_on_429(limiter, status, response.headers)
                if retry_after is None:
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                raise TransientSourceError(f"HTTP {status}", retry_after)
            return response

        response = _with_retries(config, what, key, attempt)
        if response.status_code >= 400:
            raise NewsSourceError(f"RSS feed {url}: HTTP {response.status_code}")
        return self._parse(response, url, config)

    def _parse(self, response: httpx.Response, url: str, config: AnalysisConfig) -> list[Article]:
        feed = feedparser.parse(
            response.content,
            response_headers={k.lower(): v for k, v in response.headers.items()},
        )
        entries = [e for e in feed.entries if (e.get("title") or "").strip()]
        if not entries:
            # feedparser recovers what it can from broken XML; with nothing usable left, say
            # why instead of reporting "no news".
            if feed.bozo:
                raise NewsSourceError(f"RSS feed {url} is malformed: {feed.get('bozo_exception')}")
            if not feed.get("version"):
                raise NewsSourceError(f"{url} did not answer with an RSS or Atom feed")
            return []
        articles = []
        for entry in entries[: config.max_articles]:
            stamp = entry.get("published_parsed") or entry.get("updated_parsed")
            articles.append(
                Article(
                    title=entry["title"].strip(),
                    published=datetime(*stamp[:6], tzinfo=UTC) if stamp else None,
                    source=self.name,
                    url=entry.get("link"),
                    publisher=(entry.get("source") or {}).get("title"),
                )
            )
        return articles


class YahooNewsSession(curl_requests.Session):
    """The curl_cffi session yfinance's news call runs on.

    yfinance 1.7 posts to Yahoo with a fixed 30 s timeout and hides the HTTP status and
    unreadable bodies (it returns no news instead). This session caps every request's timeout
    at ``timeout_cap`` and keeps the last response per thread, so the source can retry 5xx
    and tell "no news" from "broken answer". A 429 pauses the shared limiter for its
    Retry-After, like the price sources' sessions, so every worker backs off.
    """

    def __init__(self, *args: object, timeout_cap: float = 15.0, **kwargs: object) -> None:
        kwargs.setdefault("impersonate", "chrome")
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.timeout_cap = timeout_cap
        self.limiter = None  # the shared rate limit, set by the source for each run
        self._news_state = threading.local()

    def request(self, method, url, **kwargs):  # type: ignore[override]
        timeout = kwargs.get("timeout")
        capped = isinstance(timeout, int | float) and timeout < self.timeout_cap
        kwargs["timeout"] = timeout if capped else self.timeout_cap
        self._news_state.response = None
        self._news_state.retry_after = None
        limiter = self.limiter
        if limiter is not None:
            limiter.acquire()
        response = super().request(method, url, **kwargs)
        self._news_state.response = response
        if limiter is not None:
            self._news_state.retry_after = pause_on_429(
                limiter, response.status_code, response.headers
            )
        return response

    @property
    def last_response(self):  # noqa: ANN201 - curl_cffi's Response
        """The last response this thread received, or None."""
        return getattr(self._news_state, "response", None)

    @property
    def last_retry_after(self) -> float | None:
        """The Retry-After (seconds) of this thread's last response if it was a 429."""
        return getattr(self._news_state, "retry_after", None)


# The host yfinance posts news requests to (its cookie comes from fc.yahoo.com).
YAHOO_NEWS_HOST = "finance.yahoo.com"


class _YFinanceCookieNoise(logging.Filter):
    """Drops yfinance's "Cookie/crumb fetch failed (DNSError), continuing without crumb"."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith(("Cookie/crumb fetch failed", "Cookie fetch from fc.yahoo.com"))
            or message.startswith("Crumb fetch rate-limited")
        )


_COOKIE_NOISE = _YFinanceCookieNoise()


@contextlib.contextmanager
def _quiet_yfinance_cookie_log() -> Iterator[None]:
    """yfinance's cookie/crumb warnings silenced for one call (hold YFINANCE_LOCK)."""
    logger = logging.getLogger("yfinance")
    logger.addFilter(_COOKIE_NOISE)
    try:
        yield
    finally:
        logger.removeFilter(_COOKIE_NOISE)


@functools.cache
def _default_yahoo_session() -> YahooNewsSession:
    return YahooNewsSession()


def _parse_yahoo_time(value: object) -> datetime | None:
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str) and value:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    return None


def _yahoo_article(item: object, source: str) -> Article | None:
    """One item of Yahoo's news stream: the ``{"content": {...}}`` form or the old flat one."""
    if not isinstance(item, dict):
        return None
    content = item.get("content")
    if isinstance(content, dict):
        title = content.get("title")
        published = _parse_yahoo_time(content.get("pubDate") or content.get("displayTime"))
        url = ((content.get("canonicalUrl") or {}).get("url")) or (
            (content.get("clickThroughUrl") or {}).get("url")
        )
        publisher = (content.get("provider") or {}).get("displayName")
    else:
        title = item.get("title")
        published = _parse_yahoo_time(item.get("providerPublishTime"))
        url, publisher = item.get("link"), item.get("publisher")
    if not isinstance(title, str) or not title.strip():
        return None
    return Article(title.strip(), published, source, url, publisher)


class YFinanceNewsSource:
    """Yahoo Finance's news stream for a ticker, through ``yfinance.Ticker.get_news``.

    yfinance keeps one session per process (a singleton): passing ours makes every later
    yfinance call in the process use it too.
    """

    name = "yfinance"

    def __init__(self, session: YahooNewsSession | None = None) -> None:
        self._session = session

    def fetch(self, ticker: str, config: AnalysisConfig) -> list[Article]:
        import yfinance  # slow import (~0.5 s): only when this source is used
        from yfinance.exceptions import YFException, YFRateLimitError

        what = f"Yahoo news for {ticker}"
        key = _unreachable_key(self.name, YAHOO_NEWS_HOST)
        _skip_if_unreachable(key, what)
        session = self._session or _default_yahoo_session()
        session.timeout_cap = config.timeout_seconds
        session.limiter = limiter_for(config, "yahoo")

        def attempt() -> list:
            try:
                # yfinance's one session per process (see network.py); its log lines about
                # the cookie and crumb it does without are noise, the news request says what
                # went wrong.
                with YFINANCE_LOCK, _quiet_yfinance_cookie_log():
                    stream = yfinance.Ticker(ticker, session=session).get_news(
                        count=config.max_articles
                    )
            except YFRateLimitError as error:
                raise TransientSourceError(
                    "HTTP 429 (rate limited)", session.last_retry_after
                ) from error
            except curl_exceptions.Timeout as error:
                raise TransientSourceError(
                    f"timed out after {config.timeout_seconds:g} s"
                ) from error
            except curl_exceptions.RequestException as error:
                if is_name_resolution_error(error):
                    raise SourceUnavailableError(DNS_FAILED.format(host=YAHOO_NEWS_HOST)) from error
                raise TransientSourceError(f"connection failed ({error})") from error
            except YFException as error:
                raise NewsSourceError(f"{what}: {error}") from error
            except Exception as error:  # yfinance trips over answers it doesn't expect
                raise NewsSourceError(
                    f"{what}: unreadable answer ({type(error).__name__}: {error})"
                ) from error
            response = session.last_response
            status = response.status_code if response is not None else 200
            if status == 429 or status >= 500:
                raise TransientSourceError(f"HTTP {status}", session.last_retry_after)
            if status >= 400:
                raise NewsSourceError(f"{what}: HTTP {status}")
            if not stream and response is not None:
                _check_yahoo_news_body(response, what)
            return stream

        stream = _with_retries(config, what, key, attempt)
        if not isinstance(stream, list):
            raise NewsSourceError(
                f"{what}: expected a list of stories, got {type(stream).__name__}"
            )
        articles = [a for a in (_yahoo_article(item, self.name) for item in stream) if a]
        if stream and not articles:
            raise NewsSourceError(f"{what}: {len(stream)} stories but none had a title")
        return articles[: config.max_articles]


def _check_yahoo_news_body(response: object, what: str) -> None:
    """Raise unless an empty stream really came from Yahoo's news JSON (yfinance hides errors)."""
    try:
        payload = response.json()  # type: ignore[attr-defined]
    except ValueError as error:
        raise NewsSourceError(f"{what}: the answer is not JSON") from error
    stream = None
    if isinstance(payload, dict) and isinstance(payload.get("data"), dict):
        ticker_stream = payload["data"].get("tickerStream")
        stream = ticker_stream.get("stream") if isinstance(ticker_stream, dict) else None
    if not isinstance(stream, list):
        raise NewsSourceError(f"{what}: the answer has no data.tickerStream.stream list")


# --- trying sources in order ---------------------------------------------------------------


def default_news_sources() -> dict[str, NewsSource]:
    """The built-in sources by name (``config.news_sources`` picks and orders them)."""
    return {
        "yfinance": YFinanceNewsSource(),
        "rss": RssNewsSource(),
        "embedded": EmbeddedNewsSource(),
    }


def fetch_headlines(
    ticker: str,
    config: AnalysisConfig | None = None,
    *,
    sources: Mapping[str, NewsSource] | None = None,
) -> list[Article]:
    """Headlines for ``ticker`` from the first source in ``config.news_sources`` that has any.

    A source that fails (NewsSourceError) or has no articles hands over to the next. Returns
    ``[]`` when some source answered but none had articles; raises NewsUnavailableError, with
    each source's reason, when every source failed. ``sources`` replaces the built-in sources
    (tests, or a caller with its own session).
    """
    config = AnalysisConfig() if config is None else config
    available = default_news_sources() if sources is None else sources
    if not ticker or not isinstance(ticker, str):
        raise ValueError(f"ticker must be a non-empty string, got {ticker!r}")
    failures: dict[str, str] = {}
    for name in config.news_sources:
        source = available.get(name)
        if source is None:
            failures[name] = "source not available"
            continue
        try:
            articles = source.fetch(ticker, config)
        except NewsSourceError as error:
            failures[name] = str(error)
            continue
        if articles:
            return articles[: config.max_articles]
    if failures and len(failures) == len(config.news_sources):
        raise NewsUnavailableError(ticker, failures)
    return []
