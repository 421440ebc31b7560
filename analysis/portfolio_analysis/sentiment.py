"""News headlines for a ticker and their sentiment, scored by VADER with a finance lexicon.

Headlines come from sources tried in ``config.news_sources`` order (the first that returns
articles wins): ``yfinance`` (Yahoo's news stream, through yfinance), ``rss`` (a per-ticker
finance RSS 2.0 feed, fetched with httpx and parsed with feedparser) and ``embedded``
(invented sample headlines shipped in ``data/headlines.yaml``, for offline runs).

VADER (Hutto & Gilbert, 2014) was built for social-media text. On finance headlines its
general lexicon misses the words that carry the news ("surge", "plunge", "downgrade",
"bullish", ...) and misreads others ("demand" -0.5, "shares" +1.2, "strikes" -1.5 as in
"strikes a deal"). :data:`FINANCE_LEXICON` adds or overrides those entries on VADER's
-4..+4 valence scale; ``tests/analysis/test_sentiment.py`` measures the gain on a labelled
set of headlines.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Protocol

import numpy as np
import yaml
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from portfolio_analysis.config import AnalysisConfig

# VADER's own convention for calling a compound score positive or negative.
POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05

# Recency weighting: an article's weight halves every RECENCY_HALF_LIFE_DAYS of age. A news
# item moves a stock over days, not months: with a 7-day half-life last week's headline
# counts half as much as today's and a month-old one about 1/20.
RECENCY_HALF_LIFE_DAYS = 7.0


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


@functools.cache
def _analyzer() -> SentimentIntensityAnalyzer:
    """One analyzer per process (reading VADER's lexicon takes ~50 ms); never in results."""
    analyzer = SentimentIntensityAnalyzer()
    analyzer.lexicon.update(FINANCE_LEXICON)
    return analyzer


def score_headlines(headlines: Sequence[str]) -> list[float]:
    """VADER compound score in [-1, 1] of each headline, with the finance lexicon."""
    if isinstance(headlines, str):
        raise TypeError("score_headlines takes a list of headlines, not one string")
    analyzer = _analyzer()
    return [analyzer.polarity_scores(str(h))["compound"] for h in headlines]


def classify(score: float) -> str:
    """ "positive", "negative" or "neutral" by VADER's +-0.05 convention."""
    if score >= POSITIVE_THRESHOLD:
        return "positive"
    if score <= NEGATIVE_THRESHOLD:
        return "negative"
    return "neutral"


# --- articles ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Article:
    """One headline. ``published`` is a timezone-aware UTC datetime, or None if unknown."""

    title: str
    published: datetime | None
    source: str
    url: str | None = None
    publisher: str | None = None

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
    """Invented sample headlines from ``data/headlines.yaml`` (clearly marked as such).

    The sample tickers have hand-written headlines; any other ticker gets a few headlines
    from generic templates, picked and dated deterministically from a hash of the ticker so a
    run is repeatable.
    """

    name = "embedded"

    def fetch(self, ticker: str, config: AnalysisConfig) -> list[Article]:
        data = _embedded_headlines()
        publisher = data["publisher"]
        written = data["tickers"].get(ticker.upper())
        if written is not None:
            items = [(_parse_published(i["published"]), i["title"]) for i in written]
        else:
            items = self._from_templates(ticker.upper(), data["templates"])
        articles = [
            Article(title=title, published=published, source=self.name, publisher=publisher)
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
    once. With no articles the averages are None and the counts 0.
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
        "articles": [
            {
                "title": a.title,
                "published": a.published.isoformat() if a.published else None,
                "source": a.source,
                "publisher": a.publisher,
                "url": a.url,
                "sentiment": float(s),
            }
            for a, s in zip(unique, scores, strict=True)
        ],
    }


# --- trying sources in order ---------------------------------------------------------------


def default_news_sources() -> dict[str, NewsSource]:
    """The built-in sources by name (``config.news_sources`` picks and orders them)."""
    return {"embedded": EmbeddedNewsSource()}


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
