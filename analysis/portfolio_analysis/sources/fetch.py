"""Fetching with fallback: the sources in ``config.price_sources`` order, each retried.

A later source is only asked for the tickers every earlier one failed; only the tickers that
failed transiently are asked again (network.with_retries, the policy news shares); network
sources' answers are kept in the disk cache (cache.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date

import numpy as np
import pandas as pd

from portfolio_analysis.cache import PriceCache
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.network import (
    SourceUnavailableError,
    TransientSourceError,
    gave_up,
    with_retries,
)
from portfolio_analysis.sources.base import (
    PriceHistory,
    PriceSource,
    fetch_start,
    lookback_start,
    network_window,
)
from portfolio_analysis.sources.builtin import EmbeddedSource, SyntheticSource
from portfolio_analysis.sources.local import LocalFolderSource
from portfolio_analysis.sources.stooq import StooqSource
from portfolio_analysis.sources.yahoo import YFinanceSource
from portfolio_analysis.validation import (
    PARTIAL_ROW_REASON,
    PriceDataError,
    validate_ohlcv_counting,
)
from portfolio_analysis.vocabulary import OHLCV_COLUMNS, PRICE_COLUMNS, TICKER_RE

log = logging.getLogger(__name__)

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


def fetch_with_retry(
    source: PriceSource,
    tickers: Sequence[str],
    start: date | None,
    end: date | None,
    config: AnalysisConfig,
) -> dict[str, pd.DataFrame | Exception]:
    """``source.fetch``, asking again only for tickers that failed transiently."""
    results: dict[str, pd.DataFrame | Exception] = {}

    def attempt() -> None:
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
        transient = [results[t] for t in pending if isinstance(results[t], TransientSourceError)]
        if transient:  # one retry for all of them, as long as the longest Retry-After asks
            raise TransientSourceError(
                f"{len(transient)} of {len(pending)} tickers failed transiently",
                max(e.retry_after or 0.0 for e in transient) or None,
            )

    # Out of attempts, each ticker keeps its last answer; _reason says it gave up.
    with contextlib.suppress(TransientSourceError):
        with_retries(config, attempt)
    return results


def _reason(error: Exception, config: AnalysisConfig) -> str:
    if isinstance(error, PriceDataError):
        return error.reason
    if isinstance(error, TransientSourceError):
        return gave_up(error, config)
    return str(error) or type(error).__name__


_DAY_US = 86_400 * 10**6  # a day in the microseconds of validated dates
_CANONICAL_COLUMNS = list(OHLCV_COLUMNS)
_N_PRICES = len(PRICE_COLUMNS)


def _canonical_dates(index: pd.Index) -> pd.DatetimeIndex | None:
    """``index`` as validated dates (tz-naive midnights in microseconds, sorted, unique,
    named ``date``) if it is such dates already in another unit or name, else None."""
    if (
        not isinstance(index, pd.DatetimeIndex)
        or index.tz is not None
        or not index.is_monotonic_increasing  # False with a NaT
        or not index.is_unique
        or index.hasnans
    ):
        return None
    if (index.as_unit("us").asi8 % _DAY_US).any():
        return None  # a time of day: validate_ohlcv normalises it
    # validate_ohlcv's own last step, so both give the same index (its inferred freq too);
    # the index itself when that changes nothing (no new frame needed).
    result = index.normalize().as_unit("us").rename("date")
    same = index.dtype == result.dtype and index.name == "date" and index.freq == result.freq
    return index if same else result


def _already_valid(
    frame: object, min_rows: int, dates: dict[int, pd.DatetimeIndex | None] | None = None
) -> pd.DataFrame | None:
    """``frame`` in the shared price-history shape if it is in it already, else None.

    A handful of numpy checks on the raw arrays (tens of microseconds) instead of
    ``validate_ohlcv``'s pandas steps (~5 ms a ticker, most of a 2,000-ticker run): the
    columns are exactly OHLCV in float64, the dates tz-naive midnights, sorted and unique,
    every price finite and positive, volume non-negative or missing. Anything else (or any
    doubt) returns None and goes through ``validate_ohlcv``, which says what is wrong, so
    both paths accept and refuse the same frames and give the same frame
    (tests/flows/test_workers.py compares them). ``dates`` memoises the date checks
    per index object: a batch's frames from one source usually share one index.
    """
    if not isinstance(frame, pd.DataFrame) or len(frame) < max(min_rows, 1):
        return None
    if list(frame.columns) != _CANONICAL_COLUMNS or not frame._is_homogeneous_type:
        return None
    values = frame.to_numpy()
    if values.dtype != np.float64:
        return None
    prices = values[:, :_N_PRICES]
    volume = values[:, _N_PRICES]
    if not (np.isfinite(prices).all() and (prices > 0).all()):
        return None
    if (volume < 0).any() or np.isinf(volume).any():
        return None
    key = id(frame.index)
    if dates is None or key not in dates:
        index = _canonical_dates(frame.index)
        if dates is not None:
            dates[key] = index
    index = dates[key] if dates is not None else index
    if index is None:
        return None
    return frame if index is frame.index else frame.set_axis(index, axis=0)


def _validated(
    ticker: str, answer: object, min_rows: int, dates: dict[int, pd.DatetimeIndex | None]
) -> tuple[pd.DataFrame, int]:
    fast = _already_valid(answer, min_rows, dates)
    if fast is not None:
        return fast, 0
    return validate_ohlcv_counting(ticker, answer, min_rows=min_rows)


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
        # Every source is asked for the warm-up too (base.fetch_start, history_days).
        start, end = (
            network_window(fetch_start(config), config.end, config)
            if cached
            else (fetch_start(config), config.end)
        )
        answers: dict[str, pd.DataFrame | Exception] = {}
        if cached:
            answers.update(cache.get_many(source.name, pending, start, end))
        to_fetch = [t for t in pending if t not in answers]
        if to_fetch:
            fetched = fetch_with_retry(source, to_fetch, start, end, config)
            answers.update(fetched)
        still_pending = []
        fetched_now = set(to_fetch)
        to_store: dict[str, pd.DataFrame] = {}  # cached as one file per batch, below
        # Answers stay referenced in ``answers`` meanwhile, so no index id is reused.
        dates: dict[int, pd.DatetimeIndex | None] = {}
        for ticker in pending:
            answer = answers[ticker]
            try:
                if isinstance(answer, Exception):
                    raise answer
                frame, dropped = _validated(ticker, answer, config.min_history_days, dates)
                window_start = lookback_start(frame, config)
                if frame.index[-1] < window_start:
                    raise PriceDataError(
                        ticker,
                        f"no rows from {window_start.date()} on (data ends "
                        f"{frame.index[-1].date()})",
                    )
            except Exception as error:  # every failure becomes a reason, none escapes
                reasons[ticker].append(f"{source.name}: {_reason(error, config)}")
                still_pending.append(ticker)
                continue
            if cached and ticker in fetched_now:
                to_store[ticker] = frame
            if reasons[ticker]:
                log.warning(
                    "%s served by %s after: %s", ticker, source.name, "; ".join(reasons[ticker])
                )
            dropped += getattr(source, "dropped_rows", {}).get(ticker, 0)
            adjustments = getattr(source, "adjustments", None)
            histories[ticker] = PriceHistory(
                ticker,
                frame,
                source.name,
                tuple(reasons[ticker]),
                window_start=window_start,
                dropped_rows=dropped,
                dropped_reason=PARTIAL_ROW_REASON if dropped else "",
                adjustments=tuple(adjustments(ticker, frame)) if adjustments else (),
            )
        if to_store:
            try:
                cache.put_many(source.name, to_store, start, end)
            except OSError as error:
                names = ", ".join(list(to_store)[:3]) + (", ..." if len(to_store) > 3 else "")
                log.warning("could not cache %s from %s: %s", names, source.name, error)
        pending = still_pending
    for ticker in pending:
        failures[ticker] = "; ".join(reasons[ticker]) or "no price source configured"
    return histories, failures
