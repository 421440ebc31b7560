"""Price sources behind one small interface, tried in order until each ticker has a history.

``fetch_histories(tickers, config)`` asks the sources named in ``config.price_sources`` in
order; a later source is only asked for the tickers every earlier one failed. The result names
the source that served each ticker, and for each ticker no source could serve, the reason
from every source tried, e.g. ``"yfinance: no data (unknown or delisted ticker); stooq: no
data (unknown ticker or no rows in the date range); embedded: not in the embedded data"``.

Sources:

* ``yfinance``: one batch ``yf.download(..., auto_adjust=True)``. yfinance reports per-ticker
  failures only in its log, and offline it returns an empty frame (``download``) or logs
  "possibly delisted" (``Ticker.history``); the log lines and the HTTP status of each
  ticker's chart request are turned into one clear reason per ticker.
* ``stooq``: Stooq's daily CSV over HTTP (``?s=aapl.us&i=d&d1=YYYYMMDD&d2=YYYYMMDD``).
* ``local``: ``<TICKER>.csv`` or ``<TICKER>.parquet`` files in ``config.local_data_dir``.
* ``embedded``: the data sets shipped in the package (see embedded.py).
* ``synthetic``: generated data, for any ticker (benchmarks, demos).

Date range: ``config.start``/``config.end`` (inclusive); a missing start is ``lookback_days``
before the end. A missing end means "today" for network sources and "the newest date the data
has" for the local folder and embedded data (the synthetic source uses today).

Network sources share: a rate limit that holds across the Dask cluster (ratelimit.py);
retries of transient errors (HTTP 429 and 5xx, timeouts, connection resets) with exponential
backoff and jitter, up to ``config.max_retries`` (tenacity); no retry of permanent errors
(unknown ticker, HTTP 404, malformed answers); and an on-disk cache (cache.py).
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import re
import threading
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
    wait_exponential_jitter,
)

from portfolio_analysis import embedded
from portfolio_analysis.cache import PriceCache
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.ratelimit import rate_limiter
from portfolio_analysis.validation import PriceDataError, validate_ohlcv

log = logging.getLogger(__name__)

# Letters, digits and the punctuation exchanges use: BRK.B, BF-B, ^GSPC, EURUSD=X.
TICKER_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9.\-=]{0,14}$|^\^[A-Z0-9.\-]{1,14}$")


class TransientSourceError(Exception):
    """Worth retrying: rate limited (HTTP 429), server error (5xx), timeout, reset."""


class SourceUnavailableError(Exception):
    """The source can't be reached at all in this run (no network, daily quota used up)."""


@dataclass(frozen=True)
class PriceHistory:
    """One ticker's validated daily history and the source that served it."""

    ticker: str
    frame: pd.DataFrame  # the shared price-history shape (validation.validate_ohlcv)
    source: str


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
    """HTTP status of the last chart request per ticker, recorded by the session wrapper."""

    _chart = re.compile(r"/v8/finance/chart/([^/?]+)")

    def __init__(self) -> None:
        self._status: dict[str, int] = {}
        self._lock = threading.Lock()

    def record(self, url: str, status: int) -> None:
        match = self._chart.search(urlsplit(url).path)
        if match:
            with self._lock:
                self._status[match.group(1).upper()] = status

    def status(self, ticker: str) -> int | None:
        with self._lock:
            return self._status.get(ticker)

    def forget(self, tickers: Sequence[str]) -> None:
        with self._lock:
            for ticker in tickers:
                self._status.pop(ticker, None)


def _instrument(session, limiter, responses: _YahooResponses):
    """Rate-limit every request of a curl_cffi session and note each chart request's status.

    Wraps the instance's ``request`` (``get``/``post`` call it), so it works for any session
    class, including the test suite's, which routes requests to a local server.
    """
    send = session.request

    def request(*args, **kwargs):
        limiter.acquire()
        response = send(*args, **kwargs)
        responses.record(
            str(kwargs.get("url", args[1] if len(args) > 1 else "")), response.status_code
        )
        return response

    session.request = request
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
                    self.errors[str(ticker).upper()] = match.group(2)


@contextlib.contextmanager
def _capture_yfinance_log() -> Iterator[_YahooLog]:
    logger = logging.getLogger("yfinance")
    handler = _YahooLog()
    logger.addHandler(handler)  # also keeps yfinance's misleading lines off the console
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def describe_yahoo_failure(status: int | None, message: str | None, timeout: float) -> Exception:
    """One clear, classified error for a ticker yfinance returned no rows for.

    ``status`` is the HTTP status of the ticker's last chart request (None if none was
    answered), ``message`` what yfinance logged or raised for it.
    """
    text = message or ""
    lowered = text.lower()
    if status == 429 or "ratelimit" in lowered or "too many requests" in lowered:
        return TransientSourceError("rate limited by Yahoo (HTTP 429)")
    if status is not None and status >= 500:
        return TransientSourceError(f"Yahoo server error (HTTP {status})")
    if "could not resolve host" in lowered or "dnserror" in lowered:
        return SourceUnavailableError(
            "cannot reach Yahoo Finance: DNS lookup failed (no network, or a proxy is needed)"
        )
    if "curl: (28)" in lowered or "timed out" in lowered or "timeout" in lowered:
        return TransientSourceError(f"Yahoo did not answer within {timeout:g} s")
    if "curl: (7)" in lowered or "connection refused" in lowered:
        return SourceUnavailableError("cannot connect to Yahoo Finance (connection refused)")
    if any(s in lowered for s in ("curl: (52)", "curl: (56)", "empty reply", "connection reset")):
        return TransientSourceError("Yahoo closed the connection without an answer")
    if "currently down" in lowered:
        return TransientSourceError("Yahoo Finance says it is down for maintenance")
    if status == 404 or any(
        s in lowered
        for s in ("delisted", "no data found", "no timezone", "pricesmissing", "tzmissing")
    ):
        return PriceDataError("", "no data (unknown or delisted ticker)")
    if "jsondecodeerror" in lowered or "expecting value" in lowered or "keyerror" in lowered:
        return PriceDataError("", f"malformed answer from Yahoo (HTTP {status}), not chart data")
    if status is not None and status >= 400:
        return PriceDataError("", f"Yahoo refused the request (HTTP {status})")
    if text:
        return PriceDataError("", f"yfinance failed: {text[:200]}")
    return PriceDataError("", "no rows in the requested date range")


def _with_ticker(ticker: str, error: Exception) -> Exception:
    if isinstance(error, PriceDataError) and not error.ticker:
        return PriceDataError(ticker, error.reason)
    return error


class YFinanceSource:
    """Yahoo Finance through yfinance's batch download (adjusted for splits and dividends)."""

    name = "yfinance"

    def __init__(
        self, config: AnalysisConfig, session_factory: Callable[[], object] | None = None
    ) -> None:
        self.config = config
        self._session_factory = session_factory
        self._session = None
        self._responses = _YahooResponses()

    def _get_session(self):
        if self._session is None:
            if self._session_factory is not None:
                session = self._session_factory()
            else:
                from curl_cffi import requests as curl_requests

                session = curl_requests.Session(impersonate="chrome")
            limiter = rate_limiter(self.name, self.config.requests_per_second)
            self._session = _instrument(session, limiter, self._responses)
        return self._session

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        import yfinance as yf
        from yfinance.data import YfData

        start, end = network_window(start, end, self.config)
        session = self._get_session()
        self._responses.forget(tickers)
        # yfinance memoises responses for past ranges per process, failed ones included:
        # a retry must reach the server again.
        YfData.cache_get.cache_clear()
        with _capture_yfinance_log() as yahoo_log:
            try:
                data = yf.download(
                    list(tickers),
                    start=start.isoformat(),
                    end=(end + timedelta(days=1)).isoformat(),  # yfinance's end is exclusive
                    auto_adjust=True,
                    actions=False,
                    progress=False,
                    group_by="ticker",
                    threads=True,
                    timeout=self.config.timeout_seconds,
                    session=session,
                )
            except Exception as error:  # a failure of the whole batch, e.g. bad session
                failure = describe_yahoo_failure(None, repr(error), self.config.timeout_seconds)
                return {t: _with_ticker(t, failure) for t in tickers}
        result: dict[str, pd.DataFrame | Exception] = {}
        present = set(data.columns.get_level_values(0)) if data is not None else set()
        for ticker in tickers:
            frame = data[ticker].dropna(how="all") if ticker in present else pd.DataFrame()
            if not frame.empty:
                result[ticker] = frame
                continue
            failure = describe_yahoo_failure(
                self._responses.status(ticker),
                yahoo_log.errors.get(ticker),
                self.config.timeout_seconds,
            )
            result[ticker] = _with_ticker(ticker, failure)
        return result


# ---------------------------------------------------------------------------------------------
# Stooq


def stooq_symbol(ticker: str) -> str:
    """Stooq's name for a US ticker: lower case, ``.us`` suffix, ``-`` for share classes."""
    return f"{ticker.lower().replace('.', '-')}.us"


class StooqSource:
    """Stooq's free daily CSV download, one HTTP request per ticker."""

    name = "stooq"

    def __init__(self, config: AnalysisConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self._client = client or httpx.Client(
            timeout=config.timeout_seconds,
            follow_redirects=True,
            headers={"User-Agent": "portfolio-operator (+https://github.com/)"},
        )

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        start, end = network_window(start, end, self.config)
        limiter = rate_limiter(self.name, self.config.requests_per_second)
        result: dict[str, pd.DataFrame | Exception] = {}
        unavailable: SourceUnavailableError | None = None
        for ticker in tickers:
            if unavailable is not None:  # no point asking again in this run
                result[ticker] = unavailable
                continue
            limiter.acquire()
            try:
                result[ticker] = self._fetch_one(ticker, start, end)
            except SourceUnavailableError as error:
                unavailable = error
                result[ticker] = error
            except (TransientSourceError, PriceDataError) as error:
                result[ticker] = error
        return result

    def _fetch_one(self, ticker: str, start: date, end: date) -> pd.DataFrame:
        params = {
            "s": stooq_symbol(ticker),
            "i": "d",
            "d1": start.strftime("%Y%m%d"),
            "d2": end.strftime("%Y%m%d"),
        }
        try:
            response = self._client.get(self.config.stooq_url, params=params)
        except httpx.TimeoutException:
            raise TransientSourceError(
                f"Stooq did not answer within {self.config.timeout_seconds:g} s"
            ) from None
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
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as error:
            raise TransientSourceError(f"Stooq closed the connection ({error})") from None
        status = response.status_code
        if status == 429:
            raise TransientSourceError("rate limited by Stooq (HTTP 429)")
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
        if body.lower().startswith("no data") or body == "Brak danych":
            raise PriceDataError(ticker, "no data (unknown ticker or no rows in the date range)")
        if "exceeded the daily hits limit" in body.lower():
            raise SourceUnavailableError(
                "Stooq's daily request limit is used up; try tomorrow or use another source"
            )
        first_line = body.splitlines()[0] if body else ""
        header = [h.strip().lower() for h in first_line.split(",")]
        if "date" not in header or "close" not in header:
            raise PriceDataError(
                ticker,
                "malformed answer from Stooq: expected a CSV with header "
                f"Date,Open,High,Low,Close,Volume, got {first_line[:60]!r}",
            )
        try:
            return pd.read_csv(io.StringIO(body))
        except (pd.errors.ParserError, ValueError) as error:
            raise PriceDataError(ticker, f"malformed CSV from Stooq ({error})") from None


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
        if TICKER_PATTERN.match(ticker):
            valid[ticker] = None
        else:
            invalid[str(raw)] = (
                "not a valid ticker symbol (use letters, digits and . - = ^, e.g. AAPL, BRK.B)"
            )
    return list(valid), invalid


def _retrying(config: AnalysisConfig) -> Retrying:
    def give_up(state: RetryCallState):
        return state.outcome.result() if state.outcome else {}

    return Retrying(
        stop=stop_after_attempt(config.max_retries + 1),
        wait=wait_exponential_jitter(
            initial=config.backoff_base_seconds,
            max=max(config.backoff_base_seconds * 2**config.max_retries, 0.0),
            jitter=config.backoff_base_seconds,
        ),
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
        results.update({t: answers.get(t, PriceDataError(t, "no answer")) for t in pending})
        return {t: results[t] for t in pending}

    _retrying(config)(attempt)
    return results


def _reason(error: Exception) -> str:
    if isinstance(error, PriceDataError):
        return error.reason
    if isinstance(error, TransientSourceError):
        return f"{error} (gave up after retries)"
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
                reasons[ticker].append(f"{source.name}: {_reason(error)}")
                still_pending.append(ticker)
                continue
            if cached and ticker in to_fetch:
                try:
                    cache.put(source.name, ticker, start, end, frame)
                except OSError as error:
                    log.warning("could not cache %s from %s: %s", ticker, source.name, error)
            histories[ticker] = PriceHistory(ticker, frame, source.name)
        pending = still_pending
    for ticker in pending:
        failures[ticker] = "; ".join(reasons[ticker]) or "no price source configured"
    return histories, failures
