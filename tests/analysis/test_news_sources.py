"""News sources against a local 127.0.0.1 server speaking Yahoo's news JSON and RSS 2.0."""

from __future__ import annotations

import json
import logging
import socket
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import httpx
import pytest
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.network import forget_unreachable
from portfolio_analysis.sentiment import (
    EmbeddedNewsSource,
    NewsSourceError,
    NewsUnavailableError,
    RssNewsSource,
    YahooNewsSession,
    YFinanceNewsSource,
    fetch_headlines,
)

from tests.support.local_http import LocalHTTPServer, Reply, Request
from tests.support.local_yahoo import LocalYahooSession, local_yahoo

pytestmark = pytest.mark.network_sim

# requests_per_second: the shared rate limit (tested in test_ratelimit.py) off the clock here.
FAST = {
    "backoff_base_seconds": 0.01,
    "max_retries": 2,
    "timeout_seconds": 5.0,
    "requests_per_second": 1000.0,
}


# --- RSS 2.0 -------------------------------------------------------------------------------


def rss_feed(ticker: str, items: list[dict]) -> str:
    """An RSS 2.0 document shaped like Yahoo Finance's per-ticker headline feed."""
    parts = []
    for item in items:
        source = (
            f'<source url="https://example.com">{escape(item["source"])}</source>'
            if "source" in item
            else ""
        )
        parts.append(
            "<item>"
            f"<description>{escape(item.get('description', ''))}</description>"
            f'<guid isPermaLink="false">{escape(item["title"][:20])}</guid>'
            f"<link>{escape(item['link'])}</link>"
            f"<pubDate>{format_datetime(item['published'])}</pubDate>"
            f"<title>{escape(item['title'])}</title>{source}"
            "</item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<rss version="2.0"><channel>'
        "<copyright>Copyright (c) 2024 Yahoo! Inc. All rights reserved.</copyright>"
        f"<description>Latest Financial News for {ticker}</description><language>en-US</language>"
        "<lastBuildDate>Thu, 01 Feb 2024 15:00:00 +0000</lastBuildDate>"
        f"<link>https://finance.yahoo.com/quote/{ticker}?p={ticker}</link>"
        f"<title>Yahoo! Finance: {ticker} News</title>" + "".join(parts) + "</channel></rss>"
    )


ITEMS = [
    {
        "title": "Apple shares surge after earnings beat",
        "link": "https://finance.yahoo.com/news/apple-surge.html?.tsrc=rss",
        "published": datetime(2024, 2, 1, 14, 30, tzinfo=UTC),
        "source": "Reuters",
    },
    {
        "title": "Apple & Google settle patent dispute",  # escaped as &amp; in the XML
        "link": "https://finance.yahoo.com/news/settle.html?.tsrc=rss",
        # Written with a -05:00 offset: 09:00 in New York is 14:00 UTC.
        "published": datetime.fromisoformat("2024-01-31T09:00:00-05:00"),
    },
    {
        "title": "Apple stock slides as iPhone sales slump in China",
        "link": "https://finance.yahoo.com/news/slides.html?.tsrc=rss",
        "published": datetime(2024, 1, 30, 11, 0, tzinfo=UTC),
    },
]

RSS = Reply.text(rss_feed("AAPL", ITEMS), content_type="application/rss+xml")


@pytest.fixture(scope="module")
def _rss_server():
    with LocalHTTPServer() as local:  # one per module: stopping one takes 0.5 s
        yield local


@pytest.fixture
def server(_rss_server):
    _rss_server.reset_log()
    return _rss_server


def rss_config(server: LocalHTTPServer, **changes) -> AnalysisConfig:
    template = f"{server.url}/rss/2.0/headline?s={{ticker}}&region=US&lang=en-US"
    return AnalysisConfig(news_sources=("rss",), rss_url_template=template, **{**FAST, **changes})


def test_rss_feed_becomes_articles(server):
    def by_ticker(request: Request) -> Reply:
        return Reply.text(rss_feed(request.query["s"], ITEMS), content_type="application/rss+xml")

    server.route("/rss/2.0/headline", by_ticker)
    articles = RssNewsSource().fetch("AAPL", rss_config(server))

    assert [a.title for a in articles] == [item["title"] for item in ITEMS]
    assert articles[0].published == datetime(2024, 2, 1, 14, 30, tzinfo=UTC)
    assert articles[1].published == datetime(2024, 1, 31, 14, 0, tzinfo=UTC)
    assert articles[0].url == ITEMS[0]["link"]
    assert articles[0].publisher == "Reuters" and articles[1].publisher is None
    assert {a.source for a in articles} == {"rss"}
    assert not any(a.illustrative for a in articles)  # real headlines, not sample data
    (request,) = server.requests
    assert request.query == {"s": "AAPL", "region": "US", "lang": "en-US"}
    assert "portfolio-operator" in request.headers["user-agent"]


def test_rss_caps_articles_at_max_articles(server):
    server.route("/rss/2.0/headline", RSS)
    assert len(RssNewsSource().fetch("AAPL", rss_config(server, max_articles=2))) == 2


def test_rss_retries_429_and_waits_as_long_as_retry_after_says(server):
    server.route("/rss/2.0/headline", [Reply(429, "slow down", {"Retry-After": "0.4"}), RSS])
    articles = RssNewsSource().fetch("AAPL", rss_config(server))
    assert len(articles) == 3
    first, second = server.requests
    assert second.time - first.time >= 0.35


def test_rss_429_holds_back_the_next_ticker_too(server, tmp_path):
    """Retry-After pauses the host's shared limit, so other tickers (other workers) wait too,
    as they do for the price sources; not only this ticker's own retry."""
    server.route("/rss/2.0/headline", [Reply(429, "slow down", {"Retry-After": "1"}), RSS])
    config = rss_config(server, cache_dir=tmp_path, max_retries=0)  # a limit of its own
    with pytest.raises(NewsSourceError, match="HTTP 429"):
        RssNewsSource().fetch("AAPL", config)
    assert len(RssNewsSource().fetch("MSFT", config)) == 3
    refused, next_one = server.requests
    assert next_one.query["s"] == "MSFT"
    assert next_one.time - refused.time >= 0.95


def test_rss_gives_up_after_max_retries_on_persistent_500(server):
    server.route("/rss/2.0/headline", Reply(500, "internal error"))
    with pytest.raises(NewsSourceError, match=r"HTTP 500.*after 3 attempts"):
        RssNewsSource().fetch("AAPL", rss_config(server, max_retries=2))
    assert server.count() == 3


def test_rss_404_is_not_retried(server):
    server.route("/rss/2.0/headline", Reply(404, "not found"))
    with pytest.raises(NewsSourceError, match="HTTP 404"):
        RssNewsSource().fetch("AAPL", rss_config(server))
    assert server.count() == 1


def test_rss_timeout_uses_the_configured_timeout_and_retries(server):
    # The server would answer after 10 s: two 0.2 s attempts (and a backoff) end far sooner,
    # even on a loaded machine; waiting for the server even once would not.
    server.route("/rss/2.0/headline", Reply.text("late", delay=10))
    started = time.monotonic()
    with pytest.raises(NewsSourceError, match="timed out after 0.2 s"):
        RssNewsSource().fetch("AAPL", rss_config(server, timeout_seconds=0.2, max_retries=1))
    assert time.monotonic() - started < 8
    assert server.count() == 2


def test_rss_dropped_connection_is_retried_then_reported(server):
    server.route("/rss/2.0/headline", [Reply(drop=True), RSS])
    assert len(RssNewsSource().fetch("AAPL", rss_config(server))) == 3
    server.route("/rss/2.0/headline", Reply(drop=True))
    with pytest.raises(NewsSourceError, match="connection failed"):
        RssNewsSource().fetch("AAPL", rss_config(server, max_retries=0))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('<rss version="2.0"><channel><title>x</title><item><title>Cut off', "malformed"),
        ("{not xml at all", "malformed"),
        ("<html><body>Please accept our cookies</body></html>", "not answer with an RSS"),
        ("", "not answer with an RSS"),
    ],
)
def test_rss_unreadable_bodies_are_errors_not_empty_news(server, body, message):
    server.route("/rss/2.0/headline", Reply.text(body, content_type="application/rss+xml"))
    with pytest.raises(NewsSourceError, match=message):
        RssNewsSource().fetch("AAPL", rss_config(server))


def test_rss_failure_or_empty_feed_falls_back_to_embedded(server):
    config = rss_config(server).with_changes(news_sources=("rss", "embedded"))
    embedded = EmbeddedNewsSource().fetch("AAPL", config)
    server.route("/rss/2.0/headline", Reply(503))
    assert fetch_headlines("AAPL", config) == embedded
    server.route("/rss/2.0/headline", Reply.text(rss_feed("AAPL", []), content_type="text/xml"))
    assert fetch_headlines("AAPL", config) == embedded
    server.route("/rss/2.0/headline", RSS)
    assert {a.source for a in fetch_headlines("AAPL", config)} == {"rss"}


# --- Yahoo news through yfinance -----------------------------------------------------------


class LocalYahooNewsSession(LocalYahooSession, YahooNewsSession):
    """The test routing (LocalYahooSession) on top of the news session the source needs."""


def story(title: str, published: str, provider: str = "Reuters", url: str | None = None) -> dict:
    """One item of Yahoo's news stream in its current (2025) form."""
    uid = f"{abs(hash(title)) % 10**8:08d}-0000-3000-8000-000000000000"
    return {
        "id": uid,
        "content": {
            "id": uid,
            "contentType": "STORY",
            "title": title,
            "description": "",
            "summary": f"{title}. More in the story.",
            "pubDate": published,
            "displayTime": published,
            "isHosted": True,
            "bypassModal": False,
            "previewUrl": None,
            "thumbnail": None,
            "provider": {"displayName": provider, "url": "http://www.reuters.com/"},
            "canonicalUrl": {
                "url": url or f"https://finance.yahoo.com/news/{uid}.html",
                "site": "finance",
                "region": "US",
                "lang": "en-US",
            },
            "clickThroughUrl": None,
            "metadata": {"editorsPick": False},
            "finance": {"premiumFinance": {"isPremiumNews": False, "isPremiumFreeNews": False}},
            "storyline": None,
        },
    }


def news_payload(stream: list[dict]) -> dict:
    return {
        "data": {
            "tickerStream": {
                "stream": stream,
                "nextPage": False,
                "pagination": {"uuids": "pagination-token"},
            }
        },
        "status": "OK",
    }


STORIES = [
    story("Microsoft beats estimates as cloud revenue jumps", "2024-01-31T21:05:00Z"),
    {"id": "ad-1", "ad": [{"title": "Open an account today"}], "content": {"title": "Sponsored"}},
    story("Microsoft shares slip in late trading", "2024-01-31T22:40:00Z", provider="Bloomberg"),
]


@pytest.fixture
def yahoo(tmp_path):
    with local_yahoo(tmp_path) as (local, _routed_session):
        session = LocalYahooNewsSession(local.url)
        try:
            yield local, session
        finally:
            session.close()


def test_yahoo_news_stream_becomes_articles(yahoo):
    server, session = yahoo
    server.route("/xhr/ncp", Reply.json(news_payload(STORIES)))
    articles = YFinanceNewsSource(session).fetch("MSFT", AnalysisConfig(max_articles=7, **FAST))

    assert [a.title for a in articles] == [  # the ad is dropped
        "Microsoft beats estimates as cloud revenue jumps",
        "Microsoft shares slip in late trading",
    ]
    assert articles[0].published == datetime(2024, 1, 31, 21, 5, tzinfo=UTC)
    assert articles[1].publisher == "Bloomberg"
    assert articles[0].url.startswith("https://finance.yahoo.com/news/")
    (request,) = server.requests_to("^/xhr/ncp$")
    assert request.method == "POST"
    assert request.query["queryRef"] == "latestNews" and request.query["serviceKey"] == "ncp_fin"
    assert json.loads(request.body) == {"serviceConfig": {"snippetCount": 7, "s": ["MSFT"]}}
    assert request.original_host == "finance.yahoo.com"


def test_yahoo_news_in_the_older_flat_format(yahoo):
    server, session = yahoo
    flat = {
        "uuid": "ddd026e3",
        "title": "IBM raises dividend",
        "publisher": "Investor's Business Daily",
        "link": "https://finance.yahoo.com/m/ddd026e3/ibm.html",
        "providerPublishTime": 1706745600,  # 2024-02-01T00:00:00Z
        "type": "STORY",
    }
    server.route("/xhr/ncp", Reply.json(news_payload([flat])))
    (article,) = YFinanceNewsSource(session).fetch("IBM", AnalysisConfig(**FAST))
    assert article.published == datetime(2024, 2, 1, tzinfo=UTC)
    assert article.publisher == "Investor's Business Daily"


def test_yahoo_5xx_is_retried_until_it_answers(yahoo):
    server, session = yahoo
    # yfinance itself retries once (with its other cookie strategy); the third POST is ours.
    server.route("/xhr/ncp", [Reply(500), Reply(502), Reply.json(news_payload(STORIES))])
    articles = YFinanceNewsSource(session).fetch("MSFT", AnalysisConfig(**FAST))
    assert len(articles) == 2
    assert server.count("^/xhr/ncp$") == 3


def test_yahoo_persistent_429_gives_up_with_the_reason(yahoo):
    server, session = yahoo
    server.route("/xhr/ncp", Reply(429, "Too Many Requests"))
    with pytest.raises(NewsSourceError, match=r"429.*after 2 attempts"):
        YFinanceNewsSource(session).fetch("MSFT", AnalysisConfig(**{**FAST, "max_retries": 1}))
    assert server.count("^/xhr/ncp$") >= 2


def test_yahoo_429_holds_back_every_later_yahoo_request(yahoo, tmp_path):
    """A 429's Retry-After pauses the shared "yahoo" limit (news and prices alike), so even
    yfinance's own immediate retry (with its other cookie strategy) waits it out."""
    server, session = yahoo
    limited = Reply(429, "Too Many Requests", {"Retry-After": "1"})
    server.route("/xhr/ncp", [limited, Reply.json(news_payload(STORIES))])
    config = AnalysisConfig(**{**FAST, "cache_dir": tmp_path / "limits"})  # a limit of its own
    assert len(YFinanceNewsSource(session).fetch("MSFT", config)) == 2
    refused = server.requests_to("^/xhr/ncp$")[0]
    later = [r for r in server.requests if r.time > refused.time]
    assert later, "no request after the 429"
    assert min(r.time for r in later) - refused.time >= 0.95


def test_yahoo_timeout_comes_from_config_not_yfinance_30s(yahoo):
    server, session = yahoo
    server.route("/xhr/ncp", Reply.json(news_payload(STORIES), delay=3.0))
    config = AnalysisConfig(**{**FAST, "timeout_seconds": 0.3, "max_retries": 0})
    started = time.monotonic()
    with pytest.raises(NewsSourceError, match="timed out after 0.3 s"):
        YFinanceNewsSource(session).fetch("MSFT", config)
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply.text("{not json", content_type="application/json"), "not JSON"),
        (Reply.text("<html>Will be right back...</html>", content_type="text/html"), "DOWN"),
        (Reply.json({"error": {"code": "bad request"}}), "no data.tickerStream"),
        (Reply.json({"data": {"tickerStream": {"stream": "oops"}}}), "MSFT"),
        (Reply.json(news_payload([{"content": {"summary": "no title"}}])), "none had a title"),
    ],
)
def test_yahoo_malformed_answers_are_errors_not_empty_news(yahoo, reply, message):
    server, session = yahoo
    server.route("/xhr/ncp", reply)
    with pytest.raises(NewsSourceError, match=message):
        YFinanceNewsSource(session).fetch("MSFT", AnalysisConfig(**FAST))


def test_yahoo_failure_or_no_news_falls_back_to_the_next_source(yahoo):
    server, session = yahoo
    config = AnalysisConfig(news_sources=("yfinance", "embedded"), **FAST)
    sources = {"yfinance": YFinanceNewsSource(session), "embedded": EmbeddedNewsSource()}
    embedded = EmbeddedNewsSource().fetch("MSFT", config)
    server.route("/xhr/ncp", Reply.text("{not json"))
    assert fetch_headlines("MSFT", config, sources=sources) == embedded
    server.route("/xhr/ncp", Reply.json(news_payload([])))
    assert fetch_headlines("MSFT", config, sources=sources) == embedded
    server.route("/xhr/ncp", Reply.json(news_payload(STORIES)))
    assert {a.source for a in fetch_headlines("MSFT", config, sources=sources)} == {"yfinance"}


# --- no network: a host name that does not resolve -----------------------------------------
# "name.invalid" (RFC 2606) resolves nowhere, with or without a network: the lookup fails the
# way it does on an offline machine, and no packet leaves for a real service.

OFFLINE_TICKERS = ("AAPL", "MSFT", "IBM", "GOOG", "FB")
# The retries an offline run used to spend on every ticker: 4 (AnalysisConfig's default).
OFFLINE = {**FAST, "max_retries": 4}


@pytest.fixture(autouse=True)
def _fresh_network_memory():
    """Each test starts with no host remembered as unreachable, and leaves none behind."""
    forget_unreachable()
    yield
    forget_unreachable()


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _news_failures(config: AnalysisConfig, sources: dict) -> dict[str, str]:
    failures = {}
    for ticker in OFFLINE_TICKERS:
        with pytest.raises(NewsUnavailableError) as info:
            fetch_headlines(ticker, config, sources=sources)
        failures[ticker] = str(info.value)
    return failures


def test_rss_host_that_does_not_resolve_is_asked_once_per_run_and_logged_once(caplog):
    sent: list[httpx.Request] = []
    client = httpx.Client(event_hooks={"request": [sent.append]})
    config = AnalysisConfig(
        news_sources=("rss",), rss_url_template="http://name.invalid/rss?s={ticker}", **OFFLINE
    )
    with client, caplog.at_level(logging.WARNING):
        failures = _news_failures(config, {"rss": RssNewsSource(client)})

    # One request for the whole run: no retries, and the later tickers skip the host.
    assert len(sent) == 1
    assert all("DNS lookup of name.invalid failed" in why for why in failures.values())
    assert "gave up" not in " ".join(failures.values())
    assert _warnings(caplog) == [
        "news source rss (name.invalid): DNS lookup of name.invalid failed (no network, or a "
        "proxy is needed); not asked again in this run"
    ]


class NameInvalidYahooSession(LocalYahooSession, YahooNewsSession):
    """yfinance's real requests (cookie, crumb, news), each sent to the host name.invalid."""

    def __init__(self) -> None:
        super().__init__("https://name.invalid")
        self.paths: list[str] = []

    def request(self, method, url, **kwargs):  # type: ignore[override]
        self.paths.append(urlsplit(url).path)
        return super().request(method, url, **kwargs)


def test_yahoo_news_offline_is_one_attempt_one_log_line_and_no_cookie_noise(tmp_path, caplog):
    config = AnalysisConfig(news_sources=("yfinance",), **OFFLINE)
    with local_yahoo(tmp_path):  # yfinance's process-wide caches reset, moved to tmp_path
        session = NameInvalidYahooSession()
        with session, caplog.at_level(logging.WARNING):
            failures = _news_failures(config, {"yfinance": YFinanceNewsSource(session)})

    # One news request for the run (yfinance's cookie and crumb requests come before it).
    assert session.paths.count("/xhr/ncp") == 1
    assert all("DNS lookup of finance.yahoo.com failed" in why for why in failures.values())
    assert "gave up" not in " ".join(failures.values())
    assert _warnings(caplog) == [
        "news source yfinance (finance.yahoo.com): DNS lookup of finance.yahoo.com failed (no "
        "network, or a proxy is needed); not asked again in this run"
    ]


def test_a_refused_connection_is_still_retried_as_transient(server):
    """Only a name that does not resolve is final: a refused port may be a restarting server."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sent: list[httpx.Request] = []
    client = httpx.Client(event_hooks={"request": [sent.append]})
    config = AnalysisConfig(rss_url_template=f"http://127.0.0.1:{port}/rss?s={{ticker}}", **FAST)
    with client, pytest.raises(NewsSourceError, match="gave up after 3 attempts"):
        RssNewsSource(client).fetch("AAPL", config)
    assert len(sent) == 3
