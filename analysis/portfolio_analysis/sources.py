"""Price sources behind one small interface, tried in order until each ticker has a history.

``fetch_histories(tickers, config)`` asks the sources named in ``config.price_sources`` in
order; a later source is only asked for the tickers every earlier one failed. The result names
the source that served each ticker, and for each ticker no source could serve, the reason
from every source tried, e.g. ``"yfinance: no data (unknown or delisted ticker); stooq: no
data (unknown ticker or no rows in the date range); embedded: not in the embedded data"``.
docs/sources.md describes the order, the settings, the rate limit and the cache layout.

Sources:

* ``yfinance``: one batch ``yf.download(..., auto_adjust=True)`` through a curl_cffi session
  this module instruments. yfinance reports per-ticker failures only in its log, and offline
  it either raises a DNS error or returns an empty frame that it calls "possibly delisted";
  the log lines plus what the session saw (each chart request's HTTP status, or the transport
  error that stopped it) are turned into one clear reason per ticker, so "offline" is never
  reported as "unknown ticker".
* ``stooq``: Stooq's daily CSV over HTTP (``?s=aapl.us&i=d&d1=YYYYMMDD&d2=YYYYMMDD``, plus
  ``apikey=`` when ``config.stooq_api_key`` is set).
* ``local``: ``<TICKER>.csv`` or ``<TICKER>.parquet`` files in ``config.local_data_dir``.
* ``embedded``: the data sets shipped in the package (see embedded.py).
* ``synthetic``: generated data, for any ticker (benchmarks, demos).

Date range: ``config.start``/``config.end`` (inclusive); a missing start is ``lookback_days``
before the end. A missing end means "today" for network sources and "the newest date the data
has" for the local folder and embedded data (the synthetic source uses today).

Network sources share: a rate limit that holds across the Dask cluster (ratelimit.py), which
a 429 answer's ``Retry-After`` pauses for everyone; retries of transient errors (HTTP 429 and
5xx, timeouts, connection resets, malformed or truncated bodies) with exponential backoff and
jitter, at least ``Retry-After`` apart, up to ``config.max_retries`` (tenacity); no retry of
permanent errors (unknown ticker, HTTP 404) or of a source that can't be reached at all (DNS
failure, a web page instead of data); and an on-disk cache (cache.py).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import logging
import random
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import httpx
import pandas as pd
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_result,
    stop_after_attempt,
)

from portfolio_analysis import embedded
from portfolio_analysis.cache import PriceCache
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.ratelimit import (
    MAX_PAUSE_SECONDS,
    RateLimiter,
    limiter_for,
    pause_on_429,
)
from portfolio_analysis.validation import PriceDataError, validate_ohlcv
from portfolio_analysis.vocabulary import TICKER_RE

log = logging.getLogger(__name__)

# yfinance keeps process-wide state (one session for every call, a global "hide exceptions"
# switch it flips during download): two threads using it at once with different sessions
# would send each other's requests past the wrong rate limiter. Every yfinance call of this
# package (prices here, news in sentiment.py) holds this lock.
YFINANCE_LOCK = threading.RLock()


class TransientSourceError(Exception):
    """Worth retrying: rate limited (HTTP 429), server error (5xx), timeout, reset, garbled.

    ``retry_after`` is the server's Retry-After in seconds, if it sent one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self):  # picklable with its retry_after
        return (type(self), (str(self), self.retry_after))


class SourceUnavailableError(Exception):
    """The source can't be reached at all in this run (no network, daily quota used up)."""


@dataclass(frozen=True)
class PriceHistory:
    """One ticker's validated daily history and the source that served it."""

    ticker: str
    frame: pd.DataFrame  # the shared price-history shape (validation.validate_ohlcv)
    source: str
    # Why earlier sources in the order didn't serve it ("yfinance: ... (gave up after 5
    # attempts)"), so a fallback is visible, not silent.
    fallback_reasons: tuple[str, ...] = ()


class PriceSource(Protocol):
    name: str

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        """A frame or the exception explaining its absence, for every ticker asked."""


def lookback_start(end: date, config: AnalysisConfig) -> date:
    return config.start or end - timedelta(days=config.lookback_days)


def network_window(
    start: date | None, end: date | None, config: AnalysisConfig
) -> tuple[date, date]:
    """The concrete range a network source asks for: ``end`` defaults to today."""
    end = end or date.today()
    return start or end - timedelta(days=config.lookback_days), end


def slice_window(
    ticker: str, frame: pd.DataFrame, start: date | None, end: date | None, config: AnalysisConfig
) -> pd.DataFrame:
    """Rows of an offline data set in range; with no end, the range ends at its newest row."""
    last = pd.Timestamp(end) if end else frame.index[-1]
    first = pd.Timestamp(start) if start else last - pd.Timedelta(days=config.lookback_days)
    window = frame.loc[first:last]
    if window.empty:
        raise PriceDataError(
            ticker,
            f"no rows between {first.date()} and {last.date()} (data covers "
            f"{frame.index[0].date()} to {frame.index[-1].date()})",
        )
    return window


def _is_transient(outcome: Mapping[str, pd.DataFrame | Exception]) -> bool:
    return any(isinstance(v, TransientSourceError) for v in outcome.values())


# ---------------------------------------------------------------------------------------------
# yfinance


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
        with YFINANCE_LOCK:
            return self._fetch_locked(list(tickers), start, end)

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


# ---------------------------------------------------------------------------------------------
# Stooq

# Yahoo's names of the big US indices and Stooq's.
STOOQ_INDICES = {"^GSPC": "^spx", "^DJI": "^dji", "^IXIC": "^ndq", "^NDX": "^ndx"}


def stooq_symbol(ticker: str) -> str:
    """Stooq's name for a US ticker: lower case, ``.us`` suffix, ``-`` for share classes.

    Indices keep their caret and get no suffix (``^GSPC`` is Stooq's ``^spx``).
    """
    if ticker.startswith("^"):
        return STOOQ_INDICES.get(ticker.upper(), ticker.lower())
    return f"{ticker.lower().replace('.', '-')}.us"


@functools.cache
def _stooq_client() -> httpx.Client:
    """One pooled client per process; timeouts are set per request."""
    return httpx.Client(
        follow_redirects=True,
        headers={"User-Agent": "portfolio-operator (daily prices; +docs/sources.md)"},
    )


class StooqSource:
    """Stooq's free daily CSV download, one HTTP request per ticker."""

    name = "stooq"
    service = "stooq"

    def __init__(self, config: AnalysisConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self._client = client

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        start, end = network_window(start, end, self.config)
        limiter = limiter_for(self.config, self.service)
        result: dict[str, pd.DataFrame | Exception] = {}
        unavailable: SourceUnavailableError | None = None
        for ticker in tickers:
            if unavailable is not None:  # no point asking again in this run
                result[ticker] = unavailable
                continue
            limiter.acquire()
            try:
                result[ticker] = self._fetch_one(ticker, start, end, limiter)
            except SourceUnavailableError as error:
                unavailable = error
                result[ticker] = error
            except (TransientSourceError, PriceDataError) as error:
                result[ticker] = error
        return result

    def _fetch_one(self, ticker: str, start: date, end: date, limiter: RateLimiter) -> pd.DataFrame:
        timeout = self.config.timeout_seconds
        params = {
            "s": stooq_symbol(ticker),
            "i": "d",
            "d1": start.strftime("%Y%m%d"),
            "d2": end.strftime("%Y%m%d"),
        }
        if self.config.stooq_api_key:
            params["apikey"] = self.config.stooq_api_key
        client = self._client or _stooq_client()
        try:
            response = client.get(self.config.stooq_url, params=params, timeout=timeout)
        except httpx.TimeoutException:
            raise TransientSourceError(f"Stooq did not answer within {timeout:g} s") from None
        except httpx.ConnectError as error:
            text = str(error).lower()
            if "name or service not known" in text or "nodename" in text or "resolve" in text:
                raise SourceUnavailableError(
                    "cannot reach Stooq: DNS lookup failed (no network, or a proxy is needed)"
                ) from None
            if "refused" in text:
                raise SourceUnavailableError(
                    "cannot connect to Stooq (connection refused)"
                ) from None
            raise TransientSourceError(f"cannot connect to Stooq ({error})") from None
        except httpx.TransportError as error:  # reset, incomplete body, protocol error
            raise TransientSourceError(
                f"Stooq closed the connection ({type(error).__name__}: {error})"
            ) from None
        status = response.status_code
        if status == 429:
            retry_after = pause_on_429(limiter, status, response.headers)
            raise TransientSourceError("rate limited by Stooq (HTTP 429)", retry_after)
        if status >= 500:
            raise TransientSourceError(f"Stooq server error (HTTP {status})")
        if status == 404:
            raise PriceDataError(ticker, "no data (unknown ticker)")
        if status >= 400:
            raise PriceDataError(ticker, f"Stooq refused the request (HTTP {status})")
        return self._parse(ticker, response.text)

    @staticmethod
    def _parse(ticker: str, text: str) -> pd.DataFrame:
        body = text.strip()
        lowered = body.lower()
        if lowered.startswith("no data") or body == "Brak danych":
            raise PriceDataError(ticker, "no data (unknown ticker or no rows in the date range)")
        if "exceeded the daily hits limit" in lowered:
            raise SourceUnavailableError(
                "Stooq's daily request limit is used up; try tomorrow or use another source"
            )
        if "apikey" in lowered and "," not in body.splitlines()[0]:
            raise SourceUnavailableError(
                "Stooq asks for an API key: set stooq_api_key, or drop stooq from the sources"
            )
        if lowered.startswith(("<!doctype", "<html")):
            # Stooq now answers programs without a key with a browser check page (HTTP 200).
            raise SourceUnavailableError(
                "Stooq answered with a web page instead of CSV (it asks programs for an API "
                "key or a browser check): set stooq_api_key, or drop stooq from the sources"
            )
        first_line = body.splitlines()[0] if body else ""
        header = [h.strip().lower() for h in first_line.split(",")]
        if "date" not in header or "close" not in header:
            raise TransientSourceError(
                "malformed answer from Stooq: expected a CSV with header "
                f"Date,Open,High,Low,Close,Volume, got {first_line[:60]!r}"
            )
        try:
            frame = pd.read_csv(io.StringIO(body))
        except (pd.errors.ParserError, ValueError) as error:
            raise TransientSourceError(f"malformed CSV from Stooq ({error})") from None
        if len(frame.columns) != len(header):
            raise TransientSourceError("malformed CSV from Stooq (rows don't match the header)")
        return frame


# ---------------------------------------------------------------------------------------------
# Offline sources


class LocalFolderSource:
    """The user's own files: ``<TICKER>.csv`` or ``<TICKER>.parquet`` in a folder."""

    name = "local"

    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config

    def _file(self, folder: Path, ticker: str) -> Path | None:
        for stem in dict.fromkeys((ticker, ticker.upper(), ticker.lower())):
            for suffix in (".parquet", ".csv"):
                path = folder / f"{stem}{suffix}"
                if path.is_file():
                    return path
        return None

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        folder = self.config.local_data_dir
        if folder is None:
            reason = "no folder configured (set local_data_dir)"
            return {t: PriceDataError(t, reason) for t in tickers}
        folder = Path(folder)
        if not folder.is_dir():
            reason = f"folder {folder} does not exist"
            return {t: PriceDataError(t, reason) for t in tickers}
        result: dict[str, pd.DataFrame | Exception] = {}
        for ticker in tickers:
            path = self._file(folder, ticker)
            if path is None:
                result[ticker] = PriceDataError(
                    ticker, f"no file {ticker}.csv or {ticker}.parquet in {folder}"
                )
                continue
            try:
                raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
                frame = validate_ohlcv(ticker, raw)
                result[ticker] = slice_window(ticker, frame, start, end, self.config)
            except PriceDataError as error:
                result[ticker] = PriceDataError(ticker, f"{path.name}: {error.reason}")
            except Exception as error:  # unreadable file: say which and why
                result[ticker] = PriceDataError(ticker, f"cannot read {path}: {error}")
        return result


class EmbeddedSource:
    """The data sets shipped in the package, in ``config.embedded_datasets`` order."""

    name = "embedded"

    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        datasets = [embedded.dataset_histories(name) for name in self.config.embedded_datasets]
        result: dict[str, pd.DataFrame | Exception] = {}
        for ticker in tickers:
            frame = next((d[ticker] for d in datasets if ticker in d), None)
            if frame is None:
                result[ticker] = PriceDataError(
                    ticker,
                    "not in the embedded data (the sample portfolio and the 2009-2010 S&P 500)",
                )
                continue
            try:
                result[ticker] = slice_window(ticker, frame, start, end, self.config)
            except PriceDataError as error:
                result[ticker] = error
        return result


class SyntheticSource:
    """Generated, clearly synthetic data for any ticker (see embedded.synthetic_histories)."""

    name = "synthetic"

    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        start, end = network_window(start, end, self.config)
        return dict(
            embedded.synthetic_histories(tickers, start, end, seed=self.config.synthetic_seed)
        )


SOURCE_TYPES: Mapping[str, Callable[[AnalysisConfig], PriceSource]] = {
    "yfinance": YFinanceSource,
    "stooq": StooqSource,
    "local": LocalFolderSource,
    "embedded": EmbeddedSource,
    "synthetic": SyntheticSource,
}

# Sources whose answers are worth keeping on disk (the rest are local already).
CACHED_SOURCES = frozenset({"yfinance", "stooq"})


def make_sources(config: AnalysisConfig) -> list[PriceSource]:
    return [SOURCE_TYPES[name](config) for name in config.price_sources]


# ---------------------------------------------------------------------------------------------
# Fetching with fallback


def normalise_tickers(tickers: Sequence[str] | str) -> tuple[list[str], dict[str, str]]:
    """Upper-cased unique tickers in order, and the invalid ones with a reason."""
    if isinstance(tickers, str):
        tickers = [tickers]
    valid: dict[str, None] = {}
    invalid: dict[str, str] = {}
    for raw in tickers:
        ticker = str(raw).strip().upper()
        if TICKER_RE.match(ticker):
            valid[ticker] = None
        else:
            invalid[str(raw)] = (
                "not a valid ticker symbol (use letters, digits and . - = ^, e.g. AAPL, BRK.B)"
            )
    return list(valid), invalid


def _retry_wait(config: AnalysisConfig) -> Callable[[RetryCallState], float]:
    """Exponential backoff with jitter, but never sooner than a server's Retry-After.

    Before retry n (1, 2, ...): ``base * 2**(n-1)`` plus up to ``base`` of uniform jitter,
    capped at ``base * 2**max_retries`` (tenacity's ``wait_exponential_jitter`` formula,
    written out because its argument names changed between tenacity 8 and 9).
    """
    base = config.backoff_base_seconds
    cap = max(base * 2**config.max_retries, 0.0)

    def wait(state: RetryCallState) -> float:
        backoff = min(base * 2 ** (state.attempt_number - 1) + random.uniform(0, base), cap)
        answers = state.outcome.result() if state.outcome and not state.outcome.failed else {}
        asked = max(
            (e.retry_after or 0.0 for e in answers.values() if isinstance(e, TransientSourceError)),
            default=0.0,
        )
        return max(backoff, min(asked, MAX_PAUSE_SECONDS))

    return wait


def _retrying(config: AnalysisConfig) -> Retrying:
    def give_up(state: RetryCallState):
        return state.outcome.result() if state.outcome else {}

    return Retrying(
        stop=stop_after_attempt(config.max_retries + 1),
        wait=_retry_wait(config),
        retry=retry_if_result(_is_transient),
        retry_error_callback=give_up,  # out of attempts: keep the last answers
        reraise=True,
    )


def fetch_with_retry(
    source: PriceSource,
    tickers: Sequence[str],
    start: date | None,
    end: date | None,
    config: AnalysisConfig,
) -> dict[str, pd.DataFrame | Exception]:
    """``source.fetch``, asking again only for tickers that failed transiently."""
    results: dict[str, pd.DataFrame | Exception] = {}

    def attempt() -> dict[str, pd.DataFrame | Exception]:
        pending = [
            t for t in tickers if t not in results or isinstance(results[t], TransientSourceError)
        ]
        try:
            answers = source.fetch(pending, start, end)
        except (TransientSourceError, SourceUnavailableError, PriceDataError) as error:
            answers = dict.fromkeys(pending, error)
        except Exception as error:  # a bug or an unforeseen library error: say so, go on
            log.warning("price source %s failed", source.name, exc_info=True)
            failure = SourceUnavailableError(
                f"failed unexpectedly ({type(error).__name__}: {str(error)[:200]})"
            )
            answers = dict.fromkeys(pending, failure)
        results.update({t: answers.get(t, PriceDataError(t, "no answer")) for t in pending})
        return {t: results[t] for t in pending}

    _retrying(config)(attempt)
    return results


def _reason(error: Exception, config: AnalysisConfig) -> str:
    if isinstance(error, PriceDataError):
        return error.reason
    if isinstance(error, TransientSourceError):
        return f"{error} (gave up after {config.max_retries + 1} attempts)"
    return str(error) or type(error).__name__


def fetch_histories(
    tickers: Sequence[str] | str,
    config: AnalysisConfig | None = None,
    sources: Sequence[PriceSource] | None = None,
) -> tuple[dict[str, PriceHistory], dict[str, str]]:
    """Successes (ticker -> PriceHistory) and failures (ticker -> reasons from every source).

    ``sources`` replaces the ones ``config.price_sources`` names (tests inject sessions so).
    Never raises for a bad ticker or a failing source.
    """
    config = config or AnalysisConfig()
    pending, failures = normalise_tickers(tickers)
    reasons: dict[str, list[str]] = {t: [] for t in pending}
    histories: dict[str, PriceHistory] = {}
    cache = (
        PriceCache(config.cache_dir, config.cache_ttl_seconds)
        if config.use_cache and config.cache_dir is not None
        else None
    )
    for source in sources if sources is not None else make_sources(config):
        if not pending:
            break
        cached = cache is not None and source.name in CACHED_SOURCES
        start, end = (
            network_window(config.start, config.end, config)
            if cached
            else (
                config.start,
                config.end,
            )
        )
        answers: dict[str, pd.DataFrame | Exception] = {}
        if cached:
            for ticker in pending:
                hit = cache.get(source.name, ticker, start, end)
                if hit is not None:
                    answers[ticker] = hit
        to_fetch = [t for t in pending if t not in answers]
        if to_fetch:
            fetched = fetch_with_retry(source, to_fetch, start, end, config)
            answers.update(fetched)
        still_pending = []
        for ticker in pending:
            answer = answers[ticker]
            try:
                if isinstance(answer, Exception):
                    raise answer
                frame = validate_ohlcv(ticker, answer, min_rows=config.min_history_days)
            except Exception as error:  # every failure becomes a reason, none escapes
                reasons[ticker].append(f"{source.name}: {_reason(error, config)}")
                still_pending.append(ticker)
                continue
            if cached and ticker in to_fetch:
                try:
                    cache.put(source.name, ticker, start, end, frame)
                except OSError as error:
                    log.warning("could not cache %s from %s: %s", ticker, source.name, error)
            if reasons[ticker]:
                log.warning(
                    "%s served by %s after: %s", ticker, source.name, "; ".join(reasons[ticker])
                )
            histories[ticker] = PriceHistory(ticker, frame, source.name, tuple(reasons[ticker]))
        pending = still_pending
    for ticker in pending:
        failures[ticker] = "; ".join(reasons[ticker]) or "no price source configured"
    return histories, failures
