"""Functions that run on Dask workers: the reference guide's one-ticker API and the batch
versions.

The reference guide's worker functions (``fetch_price_from_multiple_sources``,
``calculate_security_technicals``, ``fetch_news_for_ticker``) take one ticker, return the
guide's result dict or ``None`` on bad input, and never raise.

The pipeline maps the batch versions instead, one task per batch of tickers, so Dask's
per-task overhead is paid per batch: ``fetch_price_batch`` (its result stays on the worker),
``price_batch_summary`` and ``technicals_batch`` (run where that result is), ``news_batch``.
Batch functions turn per-ticker problems into error records; anything else raises, so
that Dask's ``retries`` apply, and the pipeline records the batch's tickers as failed if it
keeps failing. All are plain module-level functions, picklable by reference.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.vocabulary import OHLCV_COLUMNS

log = logging.getLogger(__name__)

# Indicator columns carried into the chart series of the HTML report.
SERIES_COLUMNS = [
    "close",
    "sma_20",
    "sma_50",
    "sma_200",
    "bollinger_upper",
    "bollinger_middle",
    "bollinger_lower",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
]


def _error(ticker: str, stage: str, reason: str) -> dict[str, str]:
    return {"ticker": ticker, "stage": stage, "reason": reason}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text or type(exc).__name__


# --- batch results -------------------------------------------------------------------------


@dataclass
class PriceBatch:
    """Validated price histories of one batch; stays on the worker that fetched it."""

    histories: dict[str, pd.DataFrame] = field(default_factory=dict)  # warm-up included
    sources: dict[str, str] = field(default_factory=dict)
    failed: list[dict] = field(default_factory=list)
    # Each history's lookback start (the rows before it are the indicators' warm-up).
    starts: dict[str, pd.Timestamp] = field(default_factory=dict)
    # Data notes per ticker: fallbacks, dropped rows, adjustments (docs/data.md).
    notes: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0  # spent fetching it (report.stage_durations)

    def window(self, ticker: str) -> pd.DataFrame:
        """A history's lookback rows, without the warm-up."""
        start = self.starts.get(ticker)
        frame = self.histories[ticker]
        return frame if start is None else frame.loc[start:]


@dataclass
class BatchResult:
    """What a batch task sends back to the client: results in the reference guide's shapes and error
    records."""

    results: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    close: pd.DataFrame | None = None  # dates x tickers (pricing)
    series: dict[str, pd.DataFrame] = field(default_factory=dict)  # chart data (technicals)
    # Worker seconds spent on this batch's stage (pricing: the fetch too), for the report's
    # stage durations: the stages run at the same time, so only the tasks can say this.
    seconds: float = 0.0


def _timed(task: Callable[..., Any]) -> Callable[..., Any]:
    """``task``, adding its own run time to the ``seconds`` of what it returns."""

    @functools.wraps(task)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        out = task(*args, **kwargs)
        out.seconds += time.perf_counter() - started
        return out

    return timed


# --- prices --------------------------------------------------------------------------------


@_timed
def fetch_price_batch(tickers: Sequence[str], config: AnalysisConfig | None = None) -> PriceBatch:
    """Price histories of ``tickers`` from the configured sources, tried in order."""
    from portfolio_analysis.sources import fetch_histories

    config = config or AnalysisConfig()
    histories, failures = fetch_histories(list(tickers), config)
    batch = PriceBatch()
    for ticker in tickers:
        # fetch_histories keys results by the normalised symbol ("aapl " -> "AAPL").
        key = ticker.strip().upper() if isinstance(ticker, str) else ticker
        history = histories.get(key)
        if history is not None:
            batch.histories[key] = history.frame
            batch.sources[key] = history.source
            if history.window_start is not None:
                batch.starts[key] = history.window_start
            batch.notes[key] = _data_notes(history)
        else:
            reason = failures.get(ticker) or failures.get(key) or "no source returned data"
            batch.failed.append(_error(ticker, "pricing", reason))
    return batch


def _data_notes(history: Any) -> dict:
    """What the report's data notes say about one history (pipeline.data_notes)."""
    # Rows before the lookback: the dates are sorted (validate_ohlcv).
    warmup = history.frame.index.searchsorted(history.window_start) if history.window_start else 0
    return {
        "fallbacks": list(history.fallback_reasons),
        "dropped_rows": history.dropped_rows,
        "dropped_reason": history.dropped_reason,
        "adjustments": list(history.adjustments),
        "warmup_sessions": int(warmup),
    }


def _price_summary(ticker: str, frame: pd.DataFrame, source: str) -> dict:
    return {
        "ticker": ticker,
        "price_data": {
            "close": float(frame["close"].iloc[-1]),
            "start": frame.index[0].date().isoformat(),
            "end": frame.index[-1].date().isoformat(),
            "days": len(frame),
        },
        "source": source,
    }


@_timed
def price_batch_summary(batch: PriceBatch) -> BatchResult:
    """Last close, date range and source per ticker, plus the batch's close panel.

    Built from each history's numpy arrays at once (the panel like ``build_panel``: one
    block, the union of the lookback dates, NaN where a ticker has no row), not a pandas
    alignment of one Series per ticker.
    """
    tickers = list(batch.histories)
    if not tickers:
        return BatchResult(failed=list(batch.failed), seconds=batch.seconds)
    frames = [batch.histories[t] for t in tickers]
    stamps = [f.index.to_numpy(dtype="datetime64[us]") for f in frames]
    cuts = [
        0
        if batch.starts.get(t) is None
        else int(s.searchsorted(np.datetime64(batch.starts[t], "us")))
        for t, s in zip(tickers, stamps, strict=True)
    ]
    closes = [f["close"].to_numpy(dtype=np.float64) for f in frames]
    firsts = np.array([s[c] for s, c in zip(stamps, cuts, strict=True)])
    lasts = np.array([s[-1] for s in stamps])
    first_text = np.datetime_as_string(firsts, unit="D")
    last_text = np.datetime_as_string(lasts, unit="D")
    results = []
    for i, ticker in enumerate(tickers):
        result = {
            "ticker": ticker,
            "price_data": {
                "close": float(closes[i][-1]),
                "start": str(first_text[i]),
                "end": str(last_text[i]),
                "days": len(closes[i]) - cuts[i],
            },
            "source": batch.sources[ticker],
        }
        if ticker in batch.notes:
            result["data_notes"] = batch.notes[ticker]
        results.append(result)
    first = stamps[0][cuts[0] :]
    same = all(
        len(s) - c == len(first) and np.array_equal(s[c:], first)
        for s, c in zip(stamps[1:], cuts[1:], strict=True)
    )
    dates = (
        first
        if same
        else np.unique(np.concatenate([s[c:] for s, c in zip(stamps, cuts, strict=True)]))
    )
    block = np.full((len(tickers), len(dates)), np.nan)  # tickers x dates: the frame's layout
    for row, (s, c, values) in enumerate(zip(stamps, cuts, closes, strict=True)):
        if same:
            block[row] = values[c:]
        else:
            block[row, dates.searchsorted(s[c:])] = values[c:]
    close = pd.DataFrame(
        block.T, index=pd.DatetimeIndex(dates, name="date"), columns=pd.Index(tickers), copy=False
    )
    return BatchResult(
        results=results, failed=list(batch.failed), close=close, seconds=batch.seconds
    )


def _ohlcv_records(frame: pd.DataFrame) -> list[dict]:
    records = frame[list(OHLCV_COLUMNS)].reset_index()
    records["date"] = records.iloc[:, 0].dt.strftime("%Y-%m-%d")
    return records[["date", *OHLCV_COLUMNS]].to_dict(orient="records")


def fetch_price_from_multiple_sources(
    ticker: str, config: AnalysisConfig | None = None
) -> dict | None:
    """Reference guide API: ``{"ticker", "price_data": {"close", "ohlcv": [...], ...}, "source"}``.

    Returns None when no configured source has valid data for ``ticker`` (or it is not a
    ticker at all); never raises.
    """
    if not isinstance(ticker, str) or not ticker.strip():
        return None
    ticker = ticker.strip().upper()
    try:
        batch = fetch_price_batch([ticker], config)
        frame = batch.histories.get(ticker)
        if frame is None:
            log.info("no price data for %s: %s", ticker, batch.failed)
            return None
        result = _price_summary(ticker, batch.window(ticker), batch.sources[ticker])
        # The indicators' warm-up rows too, so calculate_security_technicals on this
        # price_data gives the pipeline's numbers; lookback_start says where figures start.
        result["price_data"]["ohlcv"] = _ohlcv_records(frame)
        if ticker in batch.starts:
            result["price_data"]["lookback_start"] = batch.starts[ticker].date().isoformat()
        return result
    except Exception:
        log.warning("pricing %s failed", ticker, exc_info=True)
        return None


# --- technicals ----------------------------------------------------------------------------


def _first_rows(dates: pd.DatetimeIndex, tickers: Sequence[str], starts: Mapping) -> np.ndarray:
    """Per ticker, the first row of ``dates`` on or after its lookback start (0 without one)."""
    first = np.array([np.datetime64(starts.get(t, pd.NaT), "us") for t in tickers])
    rows = dates.to_numpy(dtype="datetime64[us]").searchsorted(first, side="left")
    return np.where(np.isnat(first), 0, rows)


def _summaries(
    histories: Mapping[str, pd.DataFrame],
    starts: Mapping[str, pd.Timestamp] | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Per-ticker summary rows and the indicator panel for ``histories``.

    Indicators are computed on the whole histories (warm-up included); the summary, its
    crosses and the returned panel cover each ticker's lookback from ``starts`` on (the
    rows before it are NaN).
    """
    from portfolio_analysis import technicals

    panel = technicals.build_panel(histories)
    close = panel["close"]
    first_rows = None
    if starts:
        first_rows = _first_rows(close.index, close.columns, starts)
        # The close panel is stored tickers x dates (build_panel): blank it the same way.
        block = np.array(close.to_numpy().T, order="C")
        technicals.blank_before(block, first_rows)
        close = pd.DataFrame(block.T, index=close.index, columns=close.columns, copy=False)
    indicators = {"close": close, **technicals.compute_indicators(panel, first_rows)}
    summary = technicals.summarize({"close": close}, indicators)
    return summary, indicators


def _summary_records(summary: pd.DataFrame) -> list[dict]:
    frame = summary.copy()
    if "ticker" not in frame.columns:
        frame.index.name = "ticker"
        frame = frame.reset_index()
    records = []
    for row in frame.to_dict(orient="records"):
        ticker = str(row.pop("ticker"))
        clean = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        records.append({"ticker": ticker, "summary": clean})
    return records


def _series(ticker: str, indicators: Mapping[str, pd.DataFrame], days: int) -> pd.DataFrame:
    columns = {
        name: indicators[name][ticker]
        for name in SERIES_COLUMNS
        if name in indicators and ticker in indicators[name].columns
    }
    return pd.DataFrame(columns).dropna(subset=["close"]).tail(days)


@_timed
def technicals_batch(
    batch: PriceBatch, series_tickers: Sequence[str] = (), series_days: int = 260
) -> BatchResult:
    """Indicator summaries of every ticker in a price batch, computed on one panel.

    If the batch's panel fails as a whole, each ticker is retried alone so one bad series
    can't take the others down. ``series_tickers`` also get their last ``series_days`` rows
    of indicators back, for charts.
    """
    out = BatchResult()
    if not batch.histories:
        return out
    try:
        summary, indicators = _summaries(batch.histories, batch.starts)
        groups = [(summary, indicators)]
    except Exception as exc:
        if len(batch.histories) == 1:
            ticker = next(iter(batch.histories))
            out.failed.append(_error(ticker, "technicals", _reason(exc)))
            return out
        groups = []
        for ticker, frame in batch.histories.items():
            try:
                groups.append(_summaries({ticker: frame}, batch.starts))
            except Exception as single:
                out.failed.append(_error(ticker, "technicals", _reason(single)))
    for summary, indicators in groups:
        out.results.extend(_summary_records(summary))
        for ticker in series_tickers:
            if ticker in indicators["close"].columns:
                out.series[ticker] = _series(ticker, indicators, series_days)
    return out


def _frame_from_price_data(price_data: Any) -> pd.DataFrame:
    if isinstance(price_data, pd.DataFrame):
        frame = price_data.copy()
    elif isinstance(price_data, Mapping) and isinstance(price_data.get("ohlcv"), list):
        frame = pd.DataFrame(price_data["ohlcv"])
        if "date" not in frame.columns:
            raise ValueError("price_data['ohlcv'] records need a 'date'")
        frame = frame.set_index(pd.to_datetime(frame.pop("date")))
    else:
        raise ValueError("price_data must be an OHLCV DataFrame or a dict with an 'ohlcv' list")
    frame.columns = [str(c).lower() for c in frame.columns]
    frame.index.name = "date"
    return frame


def calculate_security_technicals(ticker: str, price_data: Any) -> dict | None:
    """Reference guide API: ``{"ticker", "technical_indicators": [...], "summary": {...}}``.

    ``price_data`` is the pricing worker's ``price_data`` dict (with its ``ohlcv`` list) or
    an OHLCV DataFrame indexed by date. Indicators use every row; with a ``lookback_start``
    in ``price_data`` (the rows before it are warm-up) the summary and the indicator rows
    cover the lookback only. Returns None on unusable data; never raises.
    """
    if not isinstance(ticker, str) or not ticker.strip():
        return None
    try:
        from portfolio_analysis.validation import validate_ohlcv

        frame = validate_ohlcv(ticker, _frame_from_price_data(price_data))
        start = price_data.get("lookback_start") if isinstance(price_data, Mapping) else None
        starts = {ticker: pd.Timestamp(start)} if start else None
        summary, indicators = _summaries({ticker: frame}, starts)
        history = pd.DataFrame({name: panel[ticker] for name, panel in indicators.items()})
        history = history.dropna(subset=["close"])
        history.index = history.index.strftime("%Y-%m-%d")
        history = history.astype("float64").replace([np.inf, -np.inf], np.nan)
        records = history.reset_index(names="date").to_dict(orient="records")
        records = [
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in records
        ]
        return {
            "ticker": ticker,
            "technical_indicators": records,
            "summary": _summary_records(summary)[0]["summary"],
        }
    except Exception as exc:
        log.info("technicals for %s failed: %s", ticker, _reason(exc))
        return None


# --- news ----------------------------------------------------------------------------------


def _news_one(ticker: str, config: AnalysisConfig) -> dict:
    from portfolio_analysis import sentiment

    articles = sentiment.fetch_headlines(ticker, config)
    return sentiment.summarize_sentiment(ticker, articles)


@_timed
def news_batch(tickers: Sequence[str], config: AnalysisConfig | None = None) -> BatchResult:
    """Headline sentiment of each ticker (the reference guide's news shape), errors as records."""
    config = config or AnalysisConfig()
    out = BatchResult()
    for ticker in tickers:  # one request per ticker: news APIs are per ticker
        try:
            out.results.append(_news_one(ticker, config))
        except Exception as exc:
            out.failed.append(_error(ticker, "news", _reason(exc)))
    return out


def fetch_news_for_ticker(ticker: str, config: AnalysisConfig | None = None) -> dict | None:
    """Reference guide API: ``{"ticker", "article_count", "avg_sentiment", "articles": [...],
    ...}``.

    A ticker with no headlines gets ``article_count`` 0 and ``avg_sentiment`` None; None
    when no news source could answer or the ticker is not a string; never raises.
    """
    if not isinstance(ticker, str) or not ticker.strip():
        return None
    try:
        return _news_one(ticker.strip().upper(), config or AnalysisConfig())
    except Exception as exc:
        log.info("news for %s failed: %s", ticker, _reason(exc))
        return None
