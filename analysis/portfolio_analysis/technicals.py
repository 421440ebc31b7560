"""Technical indicators over a whole panel of dates x tickers, and per-ticker summaries.

All indicators of all tickers come from one compiled pass (numba) over each ticker's rows,
and agree with TA-Lib to 1e-8 relative from TA-Lib's first output on (docs/indicators.md
lists the conventions, tests/analysis/test_technicals.py checks them):

* SMA 20/50/200 and Bollinger 20/2 (population standard deviation, as TA-Lib): running
  window sums, summed afresh every ``_RESUM_EVERY`` rows so their rounding stays small on
  long histories.
* EMA 12/26, MACD 12/26/9, RSI 14 and ATR 14 (Wilder): first-order recursions along the
  dates, seeded like TA-Lib with the mean of the first window.

Each ticker's indicators are computed on its own rows: a ticker that starts later, stops
earlier or misses some dates is computed on its consecutive rows and put back on the
panel's dates. A ticker with too short a history gets NaN for the indicators it cannot
support yet, never a number from a partial window.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping

import numba
import numpy as np
import pandas as pd

from portfolio_analysis.vocabulary import OHLCV_COLUMNS

Panel = dict[str, pd.DataFrame]

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


def _ohlcv_values(ticker: str, frame: pd.DataFrame) -> np.ndarray:
    """The frame's ``OHLCV_COLUMNS`` as a dates x fields float array (NaN for a missing field)."""
    try:
        if list(frame.columns) == list(OHLCV_COLUMNS):  # validated histories: one cheap conversion
            return frame.to_numpy(dtype=np.float64)
        values = np.full((len(frame), len(OHLCV_COLUMNS)), np.nan)
        for i, field in enumerate(OHLCV_COLUMNS):
            if field in frame.columns:
                values[:, i] = frame[field].to_numpy(dtype=np.float64)
        return values
    except (TypeError, ValueError) as exc:
        bad = [
            f
            for f in OHLCV_COLUMNS
            if f in frame.columns and not pd.api.types.is_numeric_dtype(frame[f])
        ]
        what = f"column {bad[0]!r}" if bad else "a price column"
        raise ValueError(f"{ticker}: {what} is not numeric ({exc})") from None


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
    blocks = np.full((len(OHLCV_COLUMNS), len(tickers), len(dates)), np.nan)  # tickers x dates
    for row, (ticker, frame) in enumerate(zip(tickers, frames, strict=True)):
        values = _ohlcv_values(ticker, frame)  # dates x fields
        if positions is None:
            blocks[:, row, :] = values.T
        else:
            blocks[:, row, positions[row]] = values.T
    return {
        field: pd.DataFrame(blocks[i].T, index=dates, columns=columns, copy=False)
        for i, field in enumerate(OHLCV_COLUMNS)
    }


# --- the indicator kernel: one pass over each ticker's rows, compiled ---------------------
#
# Every indicator here is a running sum or a first-order recursion along the dates. Run one
# at a time with numpy, each pays a pass over memory per operation and waits on its own
# recursion step by step; fused into one loop per ticker, the recursions overlap and each
# input and output value is touched once (benchmarks/bench_indicators.py measures it). numba
# compiles the loop to machine code on first use and caches it on disk (``cache=True``: in
# the package's __pycache__, or $NUMBA_CACHE_DIR), so later processes load it instead.

# What the kernel computes, in the order of its output rows (bollinger_middle is sma_20).
_COMPUTED = tuple(name for name in INDICATORS if name != "bollinger_middle")
# Plain ints, so numba compiles them in as constants.
_N_FAST, _N_MID, _N_SLOW = SMA_WINDOWS
_SPAN_FAST, _SPAN_SLOW = EMA_SPANS
assert (_SPAN_FAST, _SPAN_SLOW) == (MACD_FAST, MACD_SLOW), "MACD reuses the EMA spans"
assert BOLLINGER_WINDOW == _N_FAST, "the middle band is sma_20"
_SMA_FAST, _SMA_MID, _SMA_SLOW = (_COMPUTED.index(f"sma_{n}") for n in SMA_WINDOWS)
_EMA_FAST, _EMA_SLOW = (_COMPUTED.index(f"ema_{n}") for n in EMA_SPANS)
_MACD, _MACD_SIGNAL, _MACD_HIST, _RSI, _BAND_UPPER, _BAND_LOWER, _ATR = map(
    _COMPUTED.index,
    (
        "macd",
        "macd_signal",
        "macd_hist",
        "rsi_14",
        "bollinger_upper",
        "bollinger_lower",
        "atr_14",
    ),
)
# Each output's first row (TA-Lib's lookback); NaN before it.
_FIRST_ROW = tuple(
    {
        "sma_20": _N_FAST - 1,
        "sma_50": _N_MID - 1,
        "sma_200": _N_SLOW - 1,
        "ema_12": _SPAN_FAST - 1,
        "ema_26": _SPAN_SLOW - 1,
        "macd": MACD_SLOW - 1,
        "macd_signal": MACD_SLOW + MACD_SIGNAL - 2,
        "macd_hist": MACD_SLOW + MACD_SIGNAL - 2,
        "rsi_14": RSI_PERIOD,
        "bollinger_upper": BOLLINGER_WINDOW - 1,
        "bollinger_lower": BOLLINGER_WINDOW - 1,
        "atr_14": ATR_PERIOD,
    }[name]
    for name in _COMPUTED
)
# Sessions of history the slowest indicator needs before its first value (SMA 200): what a
# run fetches before its lookback (AnalysisConfig.warmup), so no indicator starts late.
WARMUP_SESSIONS = max(_FIRST_ROW) + 1
# Running window sums are summed afresh every this many rows, so their rounding stays that
# of one window however long the history (and the Bollinger sums are re-centred on a recent
# close, so the variance never subtracts two large numbers).
_RESUM_EVERY = 128


def _compiled(**options: object) -> Callable[[Callable], Callable]:
    """``numba.njit`` with its on-disk cache, or without one where no cache directory can be
    written (numba refuses to decorate then): the kernel is compiled in every process instead."""

    def decorate(function: Callable) -> Callable:
        settings = {"nogil": True, "error_model": "numpy", **options}
        try:
            return numba.njit(cache=True, **settings)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            _warn_compiling_in_every_process(function.__code__.co_filename)
            return numba.njit(cache=False, **settings)(function)

    return decorate


@functools.cache
def _warn_compiling_in_every_process(source: str) -> None:
    warnings.warn(
        f"numba finds no writable cache directory for {source}, so every process compiles the "
        "indicator kernel (~1.5 s); set NUMBA_CACHE_DIR to a writable directory",
        RuntimeWarning,
        stacklevel=4,
    )


@_compiled(inline="always")
def _window_sums(close: np.ndarray, last: int, window: int, centre: float) -> tuple:
    """Sum of ``close - centre`` and of its square over the ``window`` rows ending at
    ``last`` (fewer at the start: what a running sum holds there)."""
    total = 0.0
    squares = 0.0
    for row in range(max(last - window + 1, 0), last + 1):
        value = close[row] - centre
        total += value
        squares += value * value
    return total, squares


@_compiled(inline="always")
def _smoothed(average: float, value: float, seeding: bool, count: int, alpha: float) -> float:
    """One step of an EMA or Wilder average seeded like TA-Lib: while ``seeding``, the mean
    of the first ``count`` values builds up; after it, ``average += alpha * (value - average)``."""
    if seeding:
        return average + value / count
    return average + alpha * (value - average)


@_compiled()
def _series_indicators(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, out: np.ndarray
) -> None:
    """Every indicator of one ticker whose rows are consecutive (no gaps) into ``out``.

    ``out`` is ``_COMPUTED`` x rows. One loop over the rows keeps each indicator's running
    state in a local: window sums (SMA, Bollinger), EMAs seeded with the mean of their first
    window (TA-Lib's convention), MACD with TA-Lib's own re-seeded fast EMA, and Wilder's
    smoothing of gains, losses and true range, seeded with the mean of rows 1..period.
    """
    rows = close.shape[0]
    for output in range(len(_FIRST_ROW)):
        for row in range(min(_FIRST_ROW[output], rows)):
            out[output, row] = np.nan
    if rows == 0:
        return
    ema_fast_alpha = 2.0 / (_SPAN_FAST + 1)
    ema_slow_alpha = 2.0 / (_SPAN_SLOW + 1)
    signal_alpha = 2.0 / (MACD_SIGNAL + 1)
    rsi_alpha = 1.0 / RSI_PERIOD
    atr_alpha = 1.0 / ATR_PERIOD
    macd_first = MACD_SLOW - 1
    signal_first = macd_first + MACD_SIGNAL - 1
    # TA-Lib's MACD starts its fast EMA at the slow EMA's first row, seeded with the mean
    # of the MACD_FAST closes ending there (not at row MACD_FAST - 1 like ema_12).
    macd_fast_from = MACD_SLOW - MACD_FAST

    sum_fast = sum_mid = sum_slow = 0.0
    centre = close[0]  # Bollinger sums are of close - centre
    band_sum = band_squares = 0.0
    ema_fast = ema_slow = macd_fast = signal = 0.0
    gain = loss = true_range = 0.0
    for row in range(rows):
        price = close[row]

        # SMA 20/50/200 and Bollinger 20/2: window sums, added in and dropped out.
        sum_fast += price
        sum_mid += price
        sum_slow += price
        centred = price - centre
        band_sum += centred
        band_squares += centred * centred
        if row >= _N_FAST:
            dropped = close[row - _N_FAST]
            sum_fast -= dropped
            centred = dropped - centre
            band_sum -= centred
            band_squares -= centred * centred
        if row >= _N_MID:
            sum_mid -= close[row - _N_MID]
        if row >= _N_SLOW:
            sum_slow -= close[row - _N_SLOW]
        if row >= _N_FAST - 1:
            middle = sum_fast * (1.0 / _N_FAST)  # a multiply: divisions would set the pace
            out[_SMA_FAST, row] = middle
            mean = band_sum * (1.0 / BOLLINGER_WINDOW)  # population variance, as TA-Lib's
            variance = band_squares * (1.0 / BOLLINGER_WINDOW) - mean * mean
            width = BOLLINGER_WIDTH * np.sqrt(max(variance, 0.0))
            out[_BAND_UPPER, row] = middle + width
            out[_BAND_LOWER, row] = middle - width
        if row >= _N_MID - 1:
            out[_SMA_MID, row] = sum_mid * (1.0 / _N_MID)
        if row >= _N_SLOW - 1:
            out[_SMA_SLOW, row] = sum_slow * (1.0 / _N_SLOW)
        if row % _RESUM_EVERY == _RESUM_EVERY - 1:
            sum_fast = _window_sums(close, row, _N_FAST, 0.0)[0]
            sum_mid = _window_sums(close, row, _N_MID, 0.0)[0]
            sum_slow = _window_sums(close, row, _N_SLOW, 0.0)[0]
            centre = price
            band_sum, band_squares = _window_sums(close, row, BOLLINGER_WINDOW, centre)

        # EMA 12/26: the mean of the first span closes, then y += alpha * (x - y).
        ema_fast = _smoothed(ema_fast, price, row < _SPAN_FAST, _SPAN_FAST, ema_fast_alpha)
        if row >= _SPAN_FAST - 1:
            out[_EMA_FAST, row] = ema_fast
        ema_slow = _smoothed(ema_slow, price, row < _SPAN_SLOW, _SPAN_SLOW, ema_slow_alpha)
        if row >= _SPAN_SLOW - 1:
            out[_EMA_SLOW, row] = ema_slow

        # MACD 12/26/9, its signal seeded with the mean of its first MACD_SIGNAL values.
        if row >= macd_fast_from:
            seeding = row <= macd_first
            macd_fast = _smoothed(macd_fast, price, seeding, MACD_FAST, ema_fast_alpha)
        if row >= macd_first:
            macd = macd_fast - ema_slow
            out[_MACD, row] = macd
            seeding = row <= signal_first
            signal = _smoothed(signal, macd, seeding, MACD_SIGNAL, signal_alpha)
            if row >= signal_first:
                out[_MACD_SIGNAL, row] = signal
                out[_MACD_HIST, row] = macd - signal

        # RSI 14 and ATR 14: Wilder's smoothing of the day's gain, loss and true range.
        if row >= 1:
            previous = close[row - 1]
            change = price - previous
            day_range = max(high[row], previous) - min(low[row], previous)
            seeding = row <= RSI_PERIOD  # rows 1..period: changes start at row 1
            gain = _smoothed(gain, max(change, 0.0), seeding, RSI_PERIOD, rsi_alpha)
            loss = _smoothed(loss, max(-change, 0.0), seeding, RSI_PERIOD, rsi_alpha)
            if row >= RSI_PERIOD:
                moves = gain + loss  # not a single move in the window: neither side, 50
                out[_RSI, row] = 100.0 * gain / moves if moves != 0.0 else 50.0
            seeding = row <= ATR_PERIOD
            true_range = _smoothed(true_range, day_range, seeding, ATR_PERIOD, atr_alpha)
            if row >= ATR_PERIOD:
                out[_ATR, row] = true_range


@_compiled()
def _panel_indicators(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, out: np.ndarray
) -> None:
    """Every indicator of every ticker (tickers x dates inputs) into ``out``.

    A ticker with a row on every date is computed in place. The others (listed later,
    delisted earlier, dates missing; a non-finite high, low or close counts as missing)
    have their own rows gathered, computed, and put back, NaN on the dates between.
    """
    tickers, dates = close.shape
    # Element by element rather than numpy calls on arrays: those take seconds to compile.
    own = np.empty(dates, dtype=np.int64)  # a ticker's own rows: their dates
    for ticker in range(tickers):
        high_row, low_row, close_row = high[ticker], low[ticker], close[ticker]
        rows = 0
        for date in range(dates):
            if (
                np.isfinite(high_row[date])
                and np.isfinite(low_row[date])
                and np.isfinite(close_row[date])
            ):
                own[rows] = date
                rows += 1
        moved = rows < dates
        if moved:  # gather its own rows; outputs x 1 x rows: the same type as out's slice
            inputs = np.empty((3, rows))
            for row in range(rows):
                inputs[0, row] = high_row[own[row]]
                inputs[1, row] = low_row[own[row]]
                inputs[2, row] = close_row[own[row]]
            high_row, low_row, close_row = inputs[0], inputs[1], inputs[2]
            target = np.empty((out.shape[0], 1, rows))[:, 0, :]
        else:
            target = out[:, ticker, :]
        _series_indicators(high_row, low_row, close_row, target)  # one call: compiled once
        if moved:
            for output in range(out.shape[0]):
                for date in range(dates):
                    out[output, ticker, date] = np.nan
                for row in range(rows):
                    out[output, ticker, own[row]] = target[output, row]


def _read_only(frame: pd.DataFrame) -> np.ndarray:
    values = np.ascontiguousarray(frame.to_numpy(dtype=np.float64).T).view()
    values.flags.writeable = False
    return values


def compile_kernels() -> None:
    """Compile the indicator kernel now (or load it from numba's cache) instead of at the
    first analysis; the image build runs this so its pods start with the machine code."""
    dates = pd.bdate_range("2024-01-01", periods=3)
    history = pd.DataFrame({field: [1.0, 2.0, 3.0] for field in OHLCV_COLUMNS}, index=dates)
    compute_indicators(build_panel({"FULL": history, "GAPS": history.iloc[[0, 2]]}))


def blank_before(block: np.ndarray, first_rows: np.ndarray) -> None:
    """Set ``block[..., ticker, :first_rows[ticker]]`` to NaN (``block``: ... x tickers x dates).

    One slice assignment per distinct first row (a batch's tickers mostly share one), not
    a dates x tickers mask per frame: how a run hides the indicators' warm-up rows.
    """
    first_rows = np.asarray(first_rows, dtype=np.int64)
    for first in np.unique(first_rows):
        if first > 0:
            block[..., first_rows == first, :first] = np.nan


def compute_indicators(
    panel: Mapping[str, pd.DataFrame], first_rows: np.ndarray | None = None
) -> dict[str, pd.DataFrame]:
    """Every indicator in ``INDICATORS`` as a dates x tickers frame like ``panel["close"]``.

    A cell is NaN where the ticker has no row on that date or not enough rows before it,
    and, with ``first_rows`` (one row number per ticker), on the rows before the ticker's
    first row: indicators use those rows (a warm-up) but show nothing there.
    The frames share one block of memory (freed when the last of them is).
    """
    close_frame = panel["close"]
    # tickers x dates views of the frames' own storage (no copy for build_panel's panels),
    # all read-only as pandas' views are: one array type, so one compiled kernel
    high, low, close = (_read_only(panel[field]) for field in ("high", "low", "close"))
    arena = np.empty((len(_COMPUTED), *close.shape))
    _panel_indicators(high, low, close, arena)
    if first_rows is not None:
        blank_before(arena, first_rows)
    frames = {
        name: pd.DataFrame(
            arena[i].T, index=close_frame.index, columns=close_frame.columns, copy=False
        )
        for i, name in enumerate(_COMPUTED)
    }
    # the same numbers as sma_20: shared (copy-on-write keeps the two frames apart)
    frames["bollinger_middle"] = frames[f"sma_{BOLLINGER_WINDOW}"].copy(deep=False)
    return {name: frames[name] for name in INDICATORS}


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


def _label(choices: list[tuple[np.ndarray, str]], defined: np.ndarray) -> np.ndarray:
    """The first matching choice's label per ticker; None where ``defined`` is False."""
    labels = np.select([c for c, _ in choices], [n for _, n in choices], default=None)
    labels = labels.astype(object)
    labels[~defined] = None
    return labels


def _iso_dates(index: pd.DatetimeIndex, rows: np.ndarray) -> np.ndarray:
    dates = np.full(rows.shape, None, dtype=object)
    have = rows >= 0
    dates[have] = np.asarray(index[rows[have]].strftime("%Y-%m-%d"), dtype=object)
    return dates


def _last_crosses(fast: pd.DataFrame, slow: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Kind and date of each ticker's most recent fast/slow moving-average cross.

    The state (fast above: 1, below: -1) is carried forward over dates where either is NaN
    or they are equal, so a gap or a tie is not a cross.
    """
    diff = fast.to_numpy(dtype=np.float64) - slow.to_numpy(dtype=np.float64)
    state = np.sign(diff, where=np.isfinite(diff), out=np.zeros_like(diff)).astype(np.int8)
    rows, tickers = state.shape
    seen = np.where(state != 0, np.arange(rows)[:, None], -1)
    np.maximum.accumulate(seen, axis=0, out=seen)
    filled = np.take_along_axis(state, np.maximum(seen, 0), axis=0)
    filled[seen < 0] = 0
    changed = (filled[1:] != filled[:-1]) & (filled[:-1] != 0)  # and so filled[1:] != 0
    have = changed.any(axis=0)
    # changed[j] is a cross on row j + 1
    after = np.argmax(changed[::-1], axis=0) if rows > 1 else np.zeros(tickers, dtype=int)
    last = np.where(have, rows - 1 - after, -1)
    kinds = np.full(tickers, None, dtype=object)
    up = filled[np.maximum(last, 0), np.arange(tickers)] == 1
    kinds[have & up] = "golden_cross"
    kinds[have & ~up] = "death_cross"
    return kinds, _iso_dates(fast.index, last)


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
    price = _at(close, last)
    values = {
        name: _at(frame.to_numpy(dtype=np.float64), last) for name, frame in indicators.items()
    }
    columns: dict[str, np.ndarray] = {
        "as_of": _iso_dates(close_frame.index, last),
        "close": price,
    }
    columns.update({name: values[name] for name in INDICATORS if name in values})

    rsi = values["rsi_14"]
    columns["rsi_signal"] = _label(
        [(rsi >= RSI_OVERBOUGHT, "overbought"), (rsi <= RSI_OVERSOLD, "oversold")]
        + [(np.isfinite(rsi), "neutral")],
        np.isfinite(rsi),
    )
    upper, lower = values["bollinger_upper"], values["bollinger_lower"]
    bands = np.isfinite(upper) & np.isfinite(lower) & np.isfinite(price)
    columns["bollinger_signal"] = _label(
        [(price > upper, "above_upper"), (price < lower, "below_lower"), (bands, "inside")],
        bands,
    )
    span = upper - lower
    with np.errstate(invalid="ignore", divide="ignore"):
        columns["bollinger_pct_b"] = np.where(span > 0, (price - lower) / span, np.nan)
    macd, signal = values["macd"], values["macd_signal"]
    columns["macd_trend"] = _label(
        [(macd > signal, "bullish"), (macd < signal, "bearish"), (macd == signal, "neutral")],
        np.isfinite(macd) & np.isfinite(signal),
    )
    sma_50, sma_200 = values["sma_50"], values["sma_200"]
    columns["ma_trend"] = _label(
        [(sma_50 > sma_200, "bullish"), (sma_50 < sma_200, "bearish")]
        + [(sma_50 == sma_200, "neutral")],
        np.isfinite(sma_50) & np.isfinite(sma_200),
    )
    columns["ma_cross"], columns["ma_cross_date"] = _last_crosses(
        indicators["sma_50"], indicators["sma_200"]
    )
    index = pd.Index(close_frame.columns, name="ticker")
    summary = pd.DataFrame(
        {
            name: pd.Series(data, index=index, dtype=object if name in TEXT_COLUMNS else None)
            for name, data in columns.items()
        }
    )
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
