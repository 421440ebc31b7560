"""Yahoo Finance through yfinance's batch download, instrumented so every failure has a reason.

yfinance reports per-ticker failures only in its log, and offline it either raises a DNS
error or returns an empty frame that it calls "possibly delisted". This module gives yfinance
a curl_cffi session it instruments (rate limit, timeout cap, each chart request's HTTP status
or the transport error that stopped it) and captures yfinance's log lines; the two together
become one clear, classified reason per ticker, so "offline" is never reported as "unknown
ticker".
"""

from __future__ import annotations

import ast
import contextlib
import logging
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlsplit

import pandas as pd

from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.network import YFINANCE_LOCK, SourceUnavailableError, TransientSourceError
from portfolio_analysis.ratelimit import RateLimiter, limiter_for, pause_on_429
from portfolio_analysis.sources.base import network_window
from portfolio_analysis.sources.symbols import yahoo_symbol
from portfolio_analysis.validation import PriceDataError


class _YahooResponses:
    """What the instrumented session saw: per ticker, its last chart request's HTTP status or
    the transport error that stopped it; and the last transport error of any request."""

    _chart = re.compile(r"/v8/finance/chart/([^/?]+)")

    def __init__(self) -> None:
        self._status: dict[str, int] = {}
        self._errors: dict[str, BaseException] = {}
        self._retry_after: dict[str, float] = {}
        self._malformed: set[str] = set()
        self.transport_error: BaseException | None = None
        self._lock = threading.Lock()

    def _ticker(self, url: str) -> str | None:
        match = self._chart.search(urlsplit(url).path)
        return match.group(1).upper() if match else None

    def chart_ticker(self, url: str) -> str | None:
        return self._ticker(url)

    def record(
        self, url: str, status: int, retry_after: float | None, malformed: bool = False
    ) -> None:
        ticker = self._ticker(url)
        with self._lock:
            self.transport_error = None  # the service answered: it is reachable
            if ticker:
                self._status[ticker] = status
                self._errors.pop(ticker, None)
                if retry_after is not None:
                    self._retry_after[ticker] = retry_after
                if malformed:
                    self._malformed.add(ticker)
                else:
                    self._malformed.discard(ticker)

    def record_error(self, url: str, error: BaseException) -> None:
        ticker = self._ticker(url)
        with self._lock:
            self.transport_error = error
            if ticker:
                self._errors[ticker] = error
                self._status.pop(ticker, None)

    def status(self, ticker: str) -> int | None:
        with self._lock:
            return self._status.get(ticker)

    def error(self, ticker: str) -> BaseException | None:
        with self._lock:
            return self._errors.get(ticker)

    def retry_after(self, ticker: str) -> float | None:
        with self._lock:
            return self._retry_after.get(ticker)

    def malformed(self, ticker: str) -> bool:
        with self._lock:
            return ticker in self._malformed

    def forget(self, tickers: Sequence[str]) -> None:
        with self._lock:
            self.transport_error = None
            for ticker in tickers:
                self._status.pop(ticker, None)
                self._errors.pop(ticker, None)
                self._retry_after.pop(ticker, None)
                self._malformed.discard(ticker)


def _is_chart_json(response) -> bool:
    """Whether a 200 answer of the chart endpoint is Yahoo's chart JSON (not a garbled body,
    a proxy's page or Yahoo's "will be right back" page, which yfinance reports obscurely)."""
    try:
        payload = response.json()
    except Exception:
        return False
    chart = payload.get("chart") if isinstance(payload, dict) else None
    return isinstance(chart, dict) and ("result" in chart or "error" in chart)


@dataclass
class _SessionUse:
    """Who is using an instrumented session right now (set under YFINANCE_LOCK)."""

    limiter: RateLimiter
    responses: _YahooResponses
    timeout: float


def _instrument(session, limiter: RateLimiter, responses: _YahooResponses, timeout: float):
    """Rate-limit every request of a curl_cffi session and note what each one got.

    Wraps the instance's ``request`` (``get``/``post`` call it) once, so it works for any
    session class, including the test suite's, which routes requests to a local server; a
    later call only changes who the requests are counted for. A 429 with Retry-After pauses
    the shared limiter, so every worker waits, not just this one. Timeouts are capped at
    ``timeout``: yfinance hard-codes 10-30 s for its cookie, crumb and timezone requests.
    """
    use = getattr(session, "_portfolio_use", None)
    if use is not None:
        use.limiter, use.responses, use.timeout = limiter, responses, timeout
        return session
    use = _SessionUse(limiter, responses, timeout)
    send = session.request

    def request(*args, **kwargs):
        url = str(kwargs.get("url", args[1] if len(args) > 1 else ""))
        asked = kwargs.get("timeout")
        cap = use.timeout
        kwargs["timeout"] = min(asked, cap) if isinstance(asked, int | float) else cap
        limiter, responses = use.limiter, use.responses
        limiter.acquire()
        try:
            response = send(*args, **kwargs)
        except Exception as error:
            responses.record_error(url, error)
            raise
        retry_after = pause_on_429(limiter, response.status_code, response.headers)
        malformed = (
            response.status_code == 200
            and responses.chart_ticker(url) is not None
            and not _is_chart_json(response)
        )
        responses.record(url, response.status_code, retry_after, malformed)
        return response

    session.request = request
    session._portfolio_use = use
    return session


class _YahooLog(logging.Handler):
    """Collects yfinance's per-ticker failure lines (``['AAPL', 'MSFT']: DNSError(...)``)."""

    _line = re.compile(r"^(\[[^\]]*\]): (.+)$", re.S)

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.errors: dict[str, str] = {}
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().strip()
        self.messages.append(message)
        match = self._line.match(message)
        if match:
            with contextlib.suppress(ValueError, SyntaxError):
                for ticker in ast.literal_eval(match.group(1)):
                    self.errors.setdefault(str(ticker).upper(), match.group(2))


@contextlib.contextmanager
def _capture_yfinance_log() -> Iterator[_YahooLog]:
    """yfinance's log lines go to us, not the console, where they'd mislead the user."""
    logger = logging.getLogger("yfinance")
    handler = _YahooLog()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _transport_failure(error: BaseException, timeout: float) -> Exception:
    """A transport-level error (no HTTP answer) as a classified source error."""
    text = f"{type(error).__name__}: {error}".lower()
    if "could not resolve host" in text or "dnserror" in text or "curl: (6)" in text:
        return SourceUnavailableError(
            "cannot reach Yahoo Finance: DNS lookup failed (no network, or a proxy is needed)"
        )
    if "curl: (28)" in text or "timed out" in text or "timeout" in text:
        return TransientSourceError(f"Yahoo did not answer within {timeout:g} s")
    if "curl: (7)" in text or "connection refused" in text or "couldn't connect" in text:
        return SourceUnavailableError("cannot connect to Yahoo Finance (connection refused)")
    if "proxy" in text:
        return SourceUnavailableError(
            f"cannot reach Yahoo Finance through the proxy ({_curl_message(error)})"
        )
    return TransientSourceError(
        f"Yahoo closed the connection without an answer ({_curl_message(error)})"
    )


def _curl_message(error: BaseException) -> str:
    """``curl: (52) Empty reply from server`` out of curl_cffi's long message."""
    match = re.search(r"curl: \(\d+\) [^.]+", str(error))
    return match.group(0) if match else f"{type(error).__name__}: {error}"[:200]


def describe_yahoo_failure(
    status: int | None,
    message: str | None,
    timeout: float,
    transport_error: BaseException | None = None,
    retry_after: float | None = None,
    malformed: bool = False,
) -> Exception:
    """One clear, classified error for a ticker yfinance returned no rows for.

    ``status`` is the HTTP status of the ticker's last chart request (None if none was
    answered), ``message`` what yfinance logged or raised for it, ``transport_error`` what
    stopped the request when no answer came (DNS, timeout, reset). yfinance's "possibly
    delisted" only means "unknown ticker" when Yahoo actually answered for it.
    """
    text = message or ""
    lowered = text.lower()
    if status == 429 or "ratelimit" in lowered or "too many requests" in lowered:
        return TransientSourceError("rate limited by Yahoo (HTTP 429)", retry_after)
    if status is not None and status >= 500:
        return TransientSourceError(f"Yahoo server error (HTTP {status})")
    if "currently down" in lowered or "will be right back" in lowered:
        return TransientSourceError("Yahoo Finance says it is down for maintenance")
    if status is None and transport_error is not None:
        return _transport_failure(transport_error, timeout)
    if malformed:
        return TransientSourceError(f"malformed answer from Yahoo (HTTP {status}), not chart data")
    if any(
        s in lowered
        for s in ("could not resolve host", "dnserror", "curl: (", "timed out", "timeout")
    ) or any(s in lowered for s in ("connection refused", "empty reply", "connection reset")):
        return _transport_failure(Exception(text), timeout)
    if status == 404 or (
        status is not None
        and any(
            s in lowered
            for s in ("delisted", "no data found", "no timezone", "pricesmissing", "tzmissing")
        )
    ):
        return PriceDataError("", "no data (unknown or delisted ticker)")
    if any(s in lowered for s in ("jsondecodeerror", "expecting value", "keyerror", "typeerror")):
        return TransientSourceError(f"malformed answer from Yahoo (HTTP {status}), not chart data")
    if status is not None and status >= 400:
        return PriceDataError("", f"Yahoo refused the request (HTTP {status})")
    if status is None:
        # yfinance said "possibly delisted" (or nothing) but no chart answer ever came.
        return TransientSourceError("Yahoo gave no answer for this ticker")
    if text:
        return PriceDataError("", f"yfinance failed: {text[:200]}")
    return PriceDataError("", "no rows in the requested date range")


def _with_ticker(ticker: str, error: Exception) -> Exception:
    if isinstance(error, PriceDataError) and not error.ticker:
        return PriceDataError(ticker, error.reason)
    return error


def _default_yahoo_session():
    from curl_cffi import requests as curl_requests

    return curl_requests.Session(impersonate="chrome")


_sessions: dict[Callable[[], object], object] = {}


def _process_session(factory: Callable[[], object]):
    with YFINANCE_LOCK:
        if factory not in _sessions:
            _sessions[factory] = factory()
        return _sessions[factory]


class YFinanceSource:
    """Yahoo Finance through yfinance's batch download (adjusted for splits and dividends).

    ``session_factory`` makes the curl_cffi session yfinance uses (tests route it to a local
    server); ``YFinanceSource.default_session_factory`` is the one used when none is given.
    """

    name = "yfinance"
    service = "yahoo"  # the rate-limit group: news from Yahoo counts against the same limit
    default_session_factory: Callable[[], object] = staticmethod(_default_yahoo_session)

    def __init__(
        self, config: AnalysisConfig, session_factory: Callable[[], object] | None = None
    ) -> None:
        self.config = config
        self._session_factory = session_factory
        self._session = None
        self._responses = _YahooResponses()

    def _get_session(self):
        """The session for this fetch, counted against this run's limit and recorder.

        The default session is made once per process and reused, like yfinance's own: its
        cookie and crumb stay valid across batches (a new session per batch would pay for
        a cookie, a crumb and a rejected first request each time).
        """
        if self._session is None:
            if self._session_factory is not None:
                self._session = self._session_factory()
            else:
                self._session = _process_session(type(self).default_session_factory)
        limiter = limiter_for(self.config, self.service)
        return _instrument(self._session, limiter, self._responses, self.config.timeout_seconds)

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        start, end = network_window(start, end, self.config)
        # Yahoo spells share classes with a dash (BRK-B); answers go back under the
        # spelling asked for.
        asked = {ticker: yahoo_symbol(ticker) for ticker in tickers}
        with YFINANCE_LOCK:
            answers = self._fetch_locked(list(dict.fromkeys(asked.values())), start, end)
        return {
            ticker: answers[symbol]
            if symbol == ticker or not isinstance(answers[symbol], PriceDataError)
            else PriceDataError(ticker, answers[symbol].reason)
            for ticker, symbol in asked.items()
        }

    def _fetch_locked(
        self, tickers: list[str], start: date, end: date
    ) -> dict[str, pd.DataFrame | Exception]:
        import yfinance as yf
        from yfinance.data import YfData

        timeout = self.config.timeout_seconds
        session = self._get_session()
        self._responses.forget(tickers)
        # yfinance memoises responses for past ranges per process, failed ones included:
        # a retry must reach the server again.
        YfData.cache_get.cache_clear()
        with _capture_yfinance_log() as yahoo_log, warnings.catch_warnings():
            # yfinance 1.7 uses pandas APIs that pandas 3.1 deprecates: not the user's concern.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"yfinance")
            try:
                data = yf.download(
                    tickers,
                    start=start.isoformat(),
                    end=(end + timedelta(days=1)).isoformat(),  # yfinance's end is exclusive
                    auto_adjust=True,
                    actions=False,
                    progress=False,
                    group_by="ticker",
                    threads=True,
                    timeout=timeout,
                    session=session,
                )
            except Exception as error:  # a failure of the whole batch, e.g. bad session
                failure = describe_yahoo_failure(
                    None, repr(error), timeout, self._responses.transport_error
                )
                return {t: _with_ticker(t, failure) for t in tickers}
        result: dict[str, pd.DataFrame | Exception] = {}
        present = (
            set(data.columns.get_level_values(0))
            if isinstance(data, pd.DataFrame) and isinstance(data.columns, pd.MultiIndex)
            else set()
        )
        for ticker in tickers:
            frame = data[ticker].dropna(how="all") if ticker in present else pd.DataFrame()
            if not frame.empty:
                result[ticker] = frame
                continue
            failure = describe_yahoo_failure(
                self._responses.status(ticker),
                yahoo_log.errors.get(ticker),
                timeout,
                self._responses.error(ticker) or self._responses.transport_error,
                self._responses.retry_after(ticker),
                self._responses.malformed(ticker),
            )
            result[ticker] = _with_ticker(ticker, failure)
        return result
