"""Technical indicators over a whole panel of dates x tickers, and per-ticker summaries.

Every indicator is computed for all tickers at once with numpy/scipy (no per-row or
per-ticker Python loops), and agrees with TA-Lib to 1e-8 relative from TA-Lib's first
output on (docs/indicators.md lists the conventions, tests/analysis/test_technicals.py
checks them):

* SMA 20/50/200 and the Bollinger middle band: windowed sums from one cumulative sum per
  field, taken after subtracting each ticker's first price so the running sums stay small
  (float error grows with the size of the running sum, not with the window).
* EMA 12/26, MACD 12/26/9, RSI 14 (Wilder) and ATR 14 (Wilder): first-order recursive
  filters run along the date axis in C, seeded like TA-Lib with the simple mean of the
  first window.
* Bollinger 20/2 uses the population standard deviation, as TA-Lib does.

Each ticker's indicators are computed on its own rows: tickers that start later, stop
earlier or miss some dates are "compacted" so that their rows are consecutive, computed,
and put back on the panel's dates. A ticker with too short a history gets NaN for the
indicators it cannot support yet, never a number from a partial window.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.signal import lfilter

Panel = dict[str, pd.DataFrame]

FIELDS = ("open", "high", "low", "close", "volume")
REQUIRED_FIELDS = ("high", "low", "close")

SMA_WINDOWS = (20, 50, 200)
EMA_SPANS = (12, 26)
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
RSI_PERIOD = 14
BOLLINGER_WINDOW, BOLLINGER_WIDTH = 20, 2.0
ATR_PERIOD = 14

RSI_OVERBOUGHT, RSI_OVERSOLD = 70.0, 30.0

TEXT_COLUMNS = (
    "as_of",
    "rsi_signal",
    "bollinger_signal",
    "macd_trend",
    "ma_trend",
    "ma_cross",
    "ma_cross_date",
)

INDICATORS = (
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "macd",
    "macd_signal",
    "macd_hist",
    "rsi_14",
    "bollinger_upper",
    "bollinger_middle",
    "bollinger_lower",
    "atr_14",
)


# --- panel ---------------------------------------------------------------------------------


def _check_history(ticker: str, frame: pd.DataFrame) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{ticker}: price history must be a DataFrame, got {type(frame).__name__}")
    missing = [f for f in REQUIRED_FIELDS if f not in frame.columns]
    if missing:
        raise ValueError(
            f"{ticker}: price history lacks column(s) {', '.join(missing)}; "
            "pass it through validation.validate_ohlcv first"
        )
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"{ticker}: price history must be indexed by date (a DatetimeIndex)")
    if not (index.is_monotonic_increasing and index.is_unique):
        raise ValueError(
            f"{ticker}: dates must be sorted and unique; pass it through "
            "validation.validate_ohlcv first"
        )


def _field_values(ticker: str, frame: pd.DataFrame, field: str) -> np.ndarray:
    if field not in frame.columns:
        return np.full(len(frame), np.nan)
    try:
        return frame[field].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{ticker}: column {field!r} is not numeric ({exc})") from None


def build_panel(histories: Mapping[str, pd.DataFrame]) -> Panel:
    """One dates x tickers frame per OHLCV field from per-ticker price histories.

    The dates are the union of all tickers' dates; a ticker has NaN on dates it has no row
    for. Columns keep the order of ``histories``. Each frame is stored date-major per ticker
    (Fortran order), the layout the indicator filters run along without copying.
    """
    if not histories:
        raise ValueError("no price histories given: need at least one ticker")
    tickers = [str(t) for t in histories]
    frames = list(histories.values())
    for ticker, frame in zip(tickers, frames, strict=True):
        _check_history(ticker, frame)
    first = frames[0].index
    same_dates = all(f.index.equals(first) for f in frames[1:])
    if same_dates:
        dates = pd.DatetimeIndex(first, name="date")
        positions = None
    else:
        dates = pd.DatetimeIndex(
            np.unique(np.concatenate([f.index.to_numpy() for f in frames])), name="date"
        )
        positions = [dates.get_indexer(f.index) for f in frames]
    columns = pd.Index(tickers, name="ticker")
    panel: Panel = {}
    for field in FIELDS:
        block = np.full((len(tickers), len(dates)), np.nan)  # tickers x dates, C order
        for row, (ticker, frame) in enumerate(zip(tickers, frames, strict=True)):
            values = _field_values(ticker, frame, field)
            if positions is None:
                block[row] = values
            else:
                block[row, positions[row]] = values
        panel[field] = pd.DataFrame(block.T, index=dates, columns=columns, copy=False)
    return panel


# --- compaction: each ticker's own rows, consecutive -----------------------------------


class _Layout:
    """Maps a panel's (date, ticker) cells to each ticker's own consecutive rows.

    In the compact layout every ticker's first row is row 0, so all tickers share the
    same warm-up rows and seeds; trailing rows past a ticker's history are NaN.
    """

    def __init__(self, valid: np.ndarray) -> None:
        self.shape = valid.shape
        self.counts = valid.sum(axis=0)
        self.identity = bool(valid.all())
        if self.identity:
            self.rows = valid.shape[0]
            return
        self.rows = int(self.counts.max()) if self.counts.size else 0
        # cells in ticker-major order: (ticker, date) pairs sorted by ticker then date
        ticker_idx, date_idx = np.nonzero(valid.T)
        starts = np.concatenate(([0], np.cumsum(self.counts)[:-1]))
        rank = np.arange(ticker_idx.size) - starts[ticker_idx]
        self.cells = (date_idx, ticker_idx)
        self.compact_cells = (rank, ticker_idx)

    def compact(self, values: np.ndarray) -> np.ndarray:
        if self.identity:
            return values
        out = np.full((self.shape[1], self.rows), np.nan).T  # rows x tickers, F order
        out[self.compact_cells] = values[self.cells]
        return out

    def expand(self, values: np.ndarray) -> np.ndarray:
        if self.identity:
            return values
        out = np.full((self.shape[1], self.shape[0]), np.nan).T
        out[self.cells] = values[self.compact_cells]
        return out


# --- building blocks (compact layout: rows x tickers, row 0 = each ticker's first day) ---


def _nan_head(values: np.ndarray, rows: int) -> np.ndarray:
    values[: min(rows, values.shape[0])] = np.nan
    return values


def _rolling_sum(cumsum: np.ndarray, window: int) -> np.ndarray:
    """Sum over the last ``window`` rows from a cumulative sum; NaN for the first window-1."""
    out = np.empty_like(cumsum, order="F")
    _nan_head(out, window - 1)
    if cumsum.shape[0] >= window:
        out[window - 1] = cumsum[window - 1]
        np.subtract(cumsum[window:], cumsum[:-window], out=out[window:])
    return out


def _smooth(values: np.ndarray, alpha: float, start: int, seed: np.ndarray) -> np.ndarray:
    """``y[start] = seed``, then ``y[t] = y[t-1] + alpha * (x[t] - y[t-1])``; NaN before.

    EMA uses ``alpha = 2 / (n + 1)``, Wilder's smoothing ``alpha = 1 / n``.
    """
    rows, tickers = values.shape
    out = np.empty((tickers, rows)).T
    _nan_head(out, start)
    if rows <= start:
        return out
    out[start] = seed
    if rows > start + 1:
        zi = ((1.0 - alpha) * seed)[np.newaxis, :]
        filtered, _ = lfilter([alpha], [1.0, alpha - 1.0], values[start + 1 :], axis=0, zi=zi)
        out[start + 1 :] = filtered
    return out


def _window_mean(values: np.ndarray, first: int, last: int) -> np.ndarray:
    """Mean of rows ``first..last`` (inclusive) per ticker; NaN if the rows don't exist."""
    if values.shape[0] <= last:
        return np.full(values.shape[1], np.nan)
    return values[first : last + 1].mean(axis=0)


def _indicators_compact(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> dict:
    rows = close.shape[0]
    out: dict[str, np.ndarray] = {}

    # SMA and Bollinger: windowed sums of (close - first close) from cumulative sums.
    offset = np.nan_to_num(close[0]) if rows else np.zeros(close.shape[1])
    shifted = close - offset
    csum = np.cumsum(shifted, axis=0)
    for window in SMA_WINDOWS:
        mean = _rolling_sum(csum, window)
        mean /= window
        if window == BOLLINGER_WINDOW:
            centred_mean = mean.copy()
        mean += offset
        out[f"sma_{window}"] = mean
    csum_sq = np.cumsum(shifted * shifted, axis=0)
    variance = _rolling_sum(csum_sq, BOLLINGER_WINDOW)
    variance /= BOLLINGER_WINDOW
    variance -= centred_mean * centred_mean
    np.maximum(variance, 0.0, out=variance)
    width = np.sqrt(variance)
    width *= BOLLINGER_WIDTH
    middle = out[f"sma_{BOLLINGER_WINDOW}"]
    out["bollinger_upper"] = middle + width
    out["bollinger_middle"] = middle.copy()
    out["bollinger_lower"] = middle - width

    # EMA and MACD, seeded like TA-Lib: the mean of the first n closes.
    for span in EMA_SPANS:
        seed = _window_mean(close, 0, span - 1)
        out[f"ema_{span}"] = _smooth(close, 2.0 / (span + 1), span - 1, seed)
    # TA-Lib's MACD starts its fast EMA at the slow EMA's first row, seeded with the mean of
    # the fast window ending there (so it differs from ema_12 until the seed has decayed).
    macd_start = MACD_SLOW - 1
    fast = _smooth(
        close,
        2.0 / (MACD_FAST + 1),
        macd_start,
        _window_mean(close, macd_start - MACD_FAST + 1, macd_start),
    )
    macd = fast - out[f"ema_{MACD_SLOW}"]
    signal_start = macd_start + MACD_SIGNAL - 1
    signal = _smooth(
        macd,
        2.0 / (MACD_SIGNAL + 1),
        signal_start,
        _window_mean(macd, macd_start, signal_start),
    )
    out["macd"] = macd
    out["macd_signal"] = signal
    out["macd_hist"] = macd - signal

    # RSI (Wilder): smoothed gains and losses of close-to-close changes.
    change = np.empty_like(close)
    change[0] = np.nan
    np.subtract(close[1:], close[:-1], out=change[1:])
    gains = np.maximum(change, 0.0)
    losses = np.maximum(-change, 0.0)
    gains[0] = losses[0] = np.nan
    alpha = 1.0 / RSI_PERIOD
    avg_gain = _smooth(gains, alpha, RSI_PERIOD, _window_mean(gains, 1, RSI_PERIOD))
    avg_loss = _smooth(losses, alpha, RSI_PERIOD, _window_mean(losses, 1, RSI_PERIOD))
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = 100.0 * avg_gain / total
    rsi[total == 0.0] = 50.0  # no move at all for the whole window: neither side
    out["rsi_14"] = rsi

    # ATR (Wilder): smoothed true range.
    true_range = high - low
    previous = close[:-1]
    np.maximum(true_range[1:], np.abs(high[1:] - previous), out=true_range[1:])
    np.maximum(true_range[1:], np.abs(low[1:] - previous), out=true_range[1:])
    true_range[0] = np.nan
    out["atr_14"] = _smooth(
        true_range, 1.0 / ATR_PERIOD, ATR_PERIOD, _window_mean(true_range, 1, ATR_PERIOD)
    )
    return out


def compute_indicators(panel: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every indicator in ``INDICATORS`` as a dates x tickers frame like ``panel["close"]``.

    A cell is NaN where the ticker has no row on that date or not enough rows before it.
    """
    close_frame = panel["close"]
    close = close_frame.to_numpy(dtype=np.float64)
    high = panel["high"].to_numpy(dtype=np.float64)
    low = panel["low"].to_numpy(dtype=np.float64)
    valid = np.isfinite(close) & np.isfinite(high) & np.isfinite(low)
    layout = _Layout(valid)
    values = _indicators_compact(layout.compact(high), layout.compact(low), layout.compact(close))
    return {
        name: pd.DataFrame(
            layout.expand(values[name]),
            index=close_frame.index,
            columns=close_frame.columns,
            copy=False,
        )
        for name in INDICATORS
    }


# --- summaries and signals -----------------------------------------------------------------


def _last_rows(close: np.ndarray) -> np.ndarray:
    """Row of each ticker's last close (-1 if it has none)."""
    present = np.isfinite(close)
    last = close.shape[0] - 1 - np.argmax(present[::-1], axis=0)
    return np.where(present.any(axis=0), last, -1)


def _at(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.full(rows.shape, np.nan)
    have = rows >= 0
    out[have] = values[rows[have], np.flatnonzero(have)]
    return out


def _label(condition_sets: list[tuple[np.ndarray, str]], defined: np.ndarray) -> list:
    labels: list = [None] * defined.size
    for i in np.flatnonzero(defined):
        for condition, name in condition_sets:
            if condition[i]:
                labels[i] = name
                break
    return labels


def _last_crosses(fast: pd.DataFrame, slow: pd.DataFrame) -> tuple[list, list]:
    """Kind and date of each ticker's most recent fast/slow moving-average cross."""
    fast_values, slow_values = fast.to_numpy(), slow.to_numpy()
    defined = np.isfinite(fast_values) & np.isfinite(slow_values)
    state = np.where(defined & (fast_values != slow_values), fast_values > slow_values, np.nan)
    state = pd.DataFrame(state).ffill().to_numpy()  # a gap or a tie is not a cross
    changed = np.zeros(state.shape, dtype=bool)
    changed[1:] = np.isfinite(state[:-1]) & (state[1:] != state[:-1]) & np.isfinite(state[1:])
    rows = _last_rows(np.where(changed, 1.0, np.nan))
    kinds: list = [None] * rows.size
    dates: list = [None] * rows.size
    for i in np.flatnonzero(rows >= 0):
        kinds[i] = "golden_cross" if state[rows[i], i] == 1.0 else "death_cross"
        dates[i] = fast.index[rows[i]].date().isoformat()
    return kinds, dates


def summarize(
    panel: Mapping[str, pd.DataFrame], indicators: Mapping[str, pd.DataFrame]
) -> pd.DataFrame:
    """One row per ticker: each indicator on the ticker's last date, plus simple signals.

    Numbers are NaN where the ticker's history is too short for that indicator; a signal is
    None where its inputs are NaN. Signals: ``rsi_signal`` (overbought at RSI >= 70,
    oversold at <= 30, else neutral), ``bollinger_signal`` (close above the upper band,
    below the lower band, or inside), ``bollinger_pct_b`` (where close sits in the bands,
    0 = lower, 1 = upper), ``macd_trend`` (MACD above/below its signal line), ``ma_trend``
    (SMA 50 above/below SMA 200) and the most recent 50/200 cross (``ma_cross``:
    ``golden_cross`` or ``death_cross``, with ``ma_cross_date``).
    """
    close_frame = panel["close"]
    close = close_frame.to_numpy(dtype=np.float64)
    last = _last_rows(close)
    summary = pd.DataFrame(index=pd.Index(close_frame.columns, name="ticker"))
    summary["as_of"] = [close_frame.index[r].date().isoformat() if r >= 0 else None for r in last]
    summary["close"] = _at(close, last)
    values = {
        name: _at(frame.to_numpy(dtype=np.float64), last) for name, frame in indicators.items()
    }
    for name in INDICATORS:
        if name in values:
            summary[name] = values[name]

    price = summary["close"].to_numpy()
    rsi = values["rsi_14"]
    summary["rsi_signal"] = _label(
        [
            (rsi >= RSI_OVERBOUGHT, "overbought"),
            (rsi <= RSI_OVERSOLD, "oversold"),
            (rsi == rsi, "neutral"),
        ],
        np.isfinite(rsi),
    )
    upper, lower = values["bollinger_upper"], values["bollinger_lower"]
    bands = np.isfinite(upper) & np.isfinite(lower) & np.isfinite(price)
    summary["bollinger_signal"] = _label(
        [(price > upper, "above_upper"), (price < lower, "below_lower"), (bands, "inside")],
        bands,
    )
    span = upper - lower
    with np.errstate(invalid="ignore", divide="ignore"):
        summary["bollinger_pct_b"] = np.where(span > 0, (price - lower) / span, np.nan)
    macd, signal = values["macd"], values["macd_signal"]
    summary["macd_trend"] = _label(
        [(macd > signal, "bullish"), (macd < signal, "bearish"), (macd == signal, "neutral")],
        np.isfinite(macd) & np.isfinite(signal),
    )
    sma_50, sma_200 = values["sma_50"], values["sma_200"]
    summary["ma_trend"] = _label(
        [
            (sma_50 > sma_200, "bullish"),
            (sma_50 < sma_200, "bearish"),
            (sma_50 == sma_200, "neutral"),
        ],
        np.isfinite(sma_50) & np.isfinite(sma_200),
    )
    kinds, dates = _last_crosses(indicators["sma_50"], indicators["sma_200"])
    summary["ma_cross"] = kinds
    summary["ma_cross_date"] = dates
    for column in TEXT_COLUMNS:  # None, not NaN, where a label is missing
        summary[column] = pd.Series(list(summary[column]), index=summary.index, dtype=object)
        summary[column] = summary[column].where(summary[column].notna(), None)
    return summary


def indicator_history(
    panel: Mapping[str, pd.DataFrame], indicators: Mapping[str, pd.DataFrame], ticker: str
) -> pd.DataFrame:
    """One ticker's close and indicators by date (its own dates only), for charts and exports."""
    if ticker not in panel["close"].columns:
        raise KeyError(f"{ticker} is not in the panel")
    columns = {"close": panel["close"][ticker]}
    columns.update({name: frame[ticker] for name, frame in indicators.items()})
    return pd.DataFrame(columns).dropna(subset=["close"])
