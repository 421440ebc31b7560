"""Route yfinance (1.7, curl_cffi) to a local server that speaks Yahoo's real formats.

yfinance hard-codes its Yahoo URLs (``https://query2.finance.yahoo.com/v8/finance/chart/…``,
``https://fc.yahoo.com`` for the cookie, ``…/v1/test/getcrumb`` for the crumb,
``https://finance.yahoo.com/xhr/ncp`` for news) but accepts ``session=``. A
:class:`LocalYahooSession` is a real ``curl_cffi.requests.Session`` that rewrites the scheme and
host of every request to a :class:`~tests.support.local_http.LocalHTTPServer`, keeping path
and query, and sends the host it meant in an ``X-Original-Host`` header. Typical use::

    with local_yahoo(tmp_path) as (server, session):
        server.route("/v8/finance/chart/", chart_route({"AAPL": frame}))
        yf.download(["AAPL"], start=..., end=..., session=session)

``local_yahoo`` also answers the cookie (``/``) and crumb (``/v1/test/getcrumb``) requests
yfinance makes first, and resets yfinance's process-wide state (its singleton session, its
in-memory response cache and its on-disk timezone/cookie caches, moved under ``tmp_path``) so
tests don't see each other's answers. To add another Yahoo endpoint, e.g. news for
``Ticker(...).news`` (a POST to ``/xhr/ncp?queryRef=…&serviceKey=ncp_fin`` whose JSON answer
has ``data.tickerStream.stream``), register it in your own test:
``server.route("/xhr/ncp", lambda request: Reply.json({...}))`` and pass ``session`` to
``yf.Ticker(ticker, session=session)``. ``Reply(429)``, ``Reply(500)``, ``Reply(delay=…)``,
``Reply(drop=True)`` and malformed bodies (``Reply.text("{not json")``) exercise error paths;
``server.count(r"^/v8/finance/chart/AAPL")`` and ``server.requests`` show what was asked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from curl_cffi import requests as curl_requests
from curl_cffi.const import CurlOpt

from tests.support.local_http import LocalHTTPServer, Reply, Request

CRUMB = "tEsTcRuMb.1"


class LocalYahooSession(curl_requests.Session):
    """A curl_cffi session that sends every request to ``base_url`` instead of its host."""

    def __init__(self, base_url: str, **kwargs: object) -> None:
        kwargs.setdefault("impersonate", "chrome")
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.base_url = base_url.rstrip("/")

    def request(self, method, url, **kwargs):  # type: ignore[override]
        parts = urlsplit(url)
        headers = dict(kwargs.pop("headers", None) or {})
        headers["X-Original-Host"] = parts.netloc
        local = f"{self.base_url}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
        return super().request(method=method, url=local, headers=headers, **kwargs)


def offline_session(server: LocalHTTPServer) -> curl_requests.Session:
    """A real curl_cffi session that fails name resolution like a machine with no network.

    curl resolves names through ``server``'s DNS-over-HTTPS route, which answers NXDOMAIN for
    everything (this curl build refuses a plain-http DoH URL outright, with the same error);
    either way curl raises its genuine ``DNSError`` (``curl: (6) Could not resolve host``)
    and not one packet leaves the machine.
    """
    server.route("/dns-query", Reply(200, NXDOMAIN, {"Content-Type": "application/dns-message"}))
    return curl_requests.Session(
        impersonate="chrome", curl_options={CurlOpt.DOH_URL: f"{server.url}/dns-query"}
    )


# A DNS answer (RFC 1035 header only): id 0, QR+RD+RA, RCODE 3 (NXDOMAIN), no records.
NXDOMAIN = bytes.fromhex("000081830000000000000000")


def chart_payload(ticker: str, frame: pd.DataFrame, adj_close: pd.Series | None = None) -> dict:
    """Yahoo's v8 chart JSON for a daily OHLCV frame (columns open/high/low/close/volume).

    Timestamps are 09:30 New York time, as Yahoo sends them for US equities; ``adj_close``
    (default: ``close``) fills ``indicators.adjclose``, which yfinance uses for auto_adjust.
    """
    index = pd.DatetimeIndex(frame.index)
    opens = index.tz_localize("America/New_York") + pd.Timedelta(hours=9, minutes=30)
    stamps = opens.tz_convert("UTC").as_unit("s").asi8.tolist()
    adj = frame["close"] if adj_close is None else adj_close

    def values(series: pd.Series) -> list:
        return [None if np.isnan(v) else float(v) for v in series.to_numpy(dtype=float)]

    last = stamps[-1] if stamps else 0
    period = {"timezone": "EST", "gmtoffset": -18000, "start": last, "end": last + 23400}
    meta = {
        "currency": "USD",
        "symbol": ticker,
        "exchangeName": "NMS",
        "fullExchangeName": "NasdaqGS",
        "instrumentType": "EQUITY",
        "firstTradeDate": stamps[0] if stamps else 0,
        "regularMarketTime": last,
        "hasPrePostMarketData": True,
        "gmtoffset": -18000,
        "timezone": "EST",
        "exchangeTimezoneName": "America/New_York",
        "regularMarketPrice": float(frame["close"].iloc[-1]) if len(frame) else None,
        "priceHint": 2,
        "currentTradingPeriod": {"pre": period, "regular": period, "post": period},
        "dataGranularity": "1d",
        "range": "",
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }
    quote = {
        "open": values(frame["open"]),
        "high": values(frame["high"]),
        "low": values(frame["low"]),
        "close": values(frame["close"]),
        "volume": [None if np.isnan(v) else int(v) for v in frame["volume"].to_numpy(float)],
    }
    result = {
        "meta": meta,
        "timestamp": stamps,
        "indicators": {"quote": [quote], "adjclose": [{"adjclose": values(adj)}]},
    }
    return {"chart": {"result": [result], "error": None}}


def not_found_payload() -> dict:
    """What Yahoo answers (HTTP 404) for a symbol it doesn't know."""
    return {
        "chart": {
            "result": None,
            "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
        }
    }


def chart_route(histories: Mapping[str, pd.DataFrame], adj_close: Mapping[str, pd.Series] = {}):  # noqa: B006
    """A route answering ``/v8/finance/chart/<TICKER>`` like Yahoo, filtered by period1/period2.

    Unknown tickers get Yahoo's 404 body. Rows are filtered to ``period1 <= t < period2``
    (Unix seconds), as Yahoo does; a ``range=`` request (yfinance's timezone probe) gets the
    last row.
    """

    def answer(request: Request) -> Reply:
        ticker = request.path.rsplit("/", 1)[-1]
        frame = histories.get(ticker)
        if frame is None:
            return Reply.json(not_found_payload(), status=404)
        adj = adj_close.get(ticker, frame["close"])
        stamps = pd.DatetimeIndex(frame.index).tz_localize("America/New_York")
        seconds = stamps.tz_convert("UTC").as_unit("s").asi8
        if "period1" in request.query:
            low = int(request.query["period1"])
            high = int(request.query.get("period2", 2**62))
            keep = (seconds + 34200 >= low) & (seconds < high)  # 09:30 bar inside the range
        else:
            keep = np.zeros(len(frame), dtype=bool)
            keep[-1:] = True
        return Reply.json(chart_payload(ticker, frame[keep], adj[keep]))

    return answer


def install_cookie_and_crumb(server: LocalHTTPServer) -> None:
    """Answer yfinance's cookie request (fc.yahoo.com -> ``/``) and crumb request like Yahoo."""
    server.route(
        "/",
        Reply(404, "", {"Set-Cookie": "A3=d=AQABBtest&S=AQAAAtest; Max-Age=31557600; Path=/"}),
    )
    server.route("/v1/test/getcrumb", Reply.text(CRUMB))


def reset_yfinance_state(cache_dir: Path) -> None:
    """Forget everything yfinance keeps per process, and move its disk caches to ``cache_dir``.

    yfinance keeps one session, cookie and crumb (a singleton), caches responses for past date
    ranges in memory, and caches ticker timezones and cookies in SQLite files; without this, a
    test would see answers from an earlier test's server.
    """
    from yfinance import cache as yf_cache
    from yfinance import data as yf_data

    cache_dir.mkdir(parents=True, exist_ok=True)
    yf_cache.set_cache_location(str(cache_dir))
    yf_cache._TzCacheManager._tz_cache = None
    yf_cache._CookieCacheManager._Cookie_cache = None
    yf_cache._ISINCacheManager._isin_cache = None
    yf_data.SingletonMeta._instances.pop(yf_data.YfData, None)
    yf_data.YfData.cache_get.cache_clear()


@contextlib.contextmanager
def local_yahoo(tmp_path: Path) -> Iterator[tuple[LocalHTTPServer, LocalYahooSession]]:
    """A running server with cookie and crumb routes, and a session routed to it."""
    reset_yfinance_state(tmp_path / "yfinance-cache")
    with LocalHTTPServer() as server:
        install_cookie_and_crumb(server)
        session = LocalYahooSession(server.url)
        try:
            yield server, session
        finally:
            session.close()
            reset_yfinance_state(tmp_path / "yfinance-cache-after")
