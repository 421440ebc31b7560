"""Technical indicators over a whole panel of dates x tickers, and per-ticker summaries.

Every indicator is computed for all tickers at once with numpy/BLAS (no per-row or
per-ticker Python loop; tickers go in chunks of ``CHUNK`` so scratch buffers stay in
cache) and agrees with TA-Lib to 1e-8 relative from TA-Lib's first output on
(docs/indicators.md lists the conventions, tests/analysis/test_technicals.py checks them):

* SMA 20/50/200 and Bollinger 20/2 (population standard deviation, as TA-Lib): window
  sums as differences of running sums of close and of its centred square. The running
  sums restart every few hundred rows, so their rounding stays small on long histories.
* EMA 12/26, MACD 12/26/9, RSI 14 and ATR 14 (Wilder): first-order recursive filters
  along the date axis, seeded like TA-Lib with the mean of the first window, computed as
  blocked matrix products (``_Filter``) instead of a step-by-step loop.

Each ticker's indicators are computed on its own rows: tickers that start later, stop
earlier or miss some dates are moved so that their rows are consecutive, computed, and
put back on the panel's dates. A ticker with too short a history gets NaN for the
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


def _ohlcv_values(ticker: str, frame: pd.DataFrame) -> np.ndarray:
    """The frame's ``FIELDS`` as a dates x fields float array (NaN for a missing field)."""
    try:
        if list(frame.columns) == list(FIELDS):  # validated histories: one cheap conversion
            return frame.to_numpy(dtype=np.float64)
        values = np.full((len(frame), len(FIELDS)), np.nan)
        for i, field in enumerate(FIELDS):
            if field in frame.columns:
                values[:, i] = frame[field].to_numpy(dtype=np.float64)
        return values
    except (TypeError, ValueError) as exc:
        bad = [
            f for f in FIELDS if f in frame.columns and not pd.api.types.is_numeric_dtype(frame[f])
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
    blocks = np.full((len(FIELDS), len(tickers), len(dates)), np.nan)  # tickers x dates
    for row, (ticker, frame) in enumerate(zip(tickers, frames, strict=True)):
        values = _ohlcv_values(ticker, frame)  # dates x fields
        if positions is None:
            blocks[:, row, :] = values.T
        else:
            blocks[:, row, positions[row]] = values.T
    return {
        field: pd.DataFrame(blocks[i].T, index=dates, columns=columns, copy=False)
        for i, field in enumerate(FIELDS)
    }


# --- compaction: each ticker's own rows, consecutive -----------------------------------


class _Layout:
    """Maps a panel's (ticker, date) cells to each ticker's own consecutive rows.

    Arrays here are ticker-major (tickers x rows, C order: each ticker's series is
    contiguous, the layout pandas keeps a wide float frame in). In the compact layout every
    ticker's first row is row 0, so all tickers share the same warm-up rows and seeds; the
    rows past a ticker's history are filled with 0 (never NaN, which would spread through
    the blocked filters) and dropped again by ``expand``. Tickers with a row on every date
    are the same in both layouts; only the others are moved, one at a time.
    """

    def __init__(self, valid: np.ndarray | None, shape: tuple[int, int]) -> None:
        self.shape = shape  # tickers x dates
        self.identity = valid is None
        self.rows = shape[1]
        self.moved: list[tuple[int, slice | np.ndarray, int]] = []
        if self.identity:
            return
        counts = valid.sum(axis=1)
        self.rows = int(counts.max()) if counts.size else 0
        self.full = np.flatnonzero(counts == shape[1])
        for ticker in np.flatnonzero(counts < shape[1]):
            dates = np.flatnonzero(valid[ticker])
            if dates.size and dates[-1] - dates[0] + 1 == dates.size:  # one run of dates
                dates = slice(int(dates[0]), int(dates[-1]) + 1)
            self.moved.append((int(ticker), dates, int(counts[ticker])))

    def compact(self, values: np.ndarray) -> np.ndarray:
        if self.identity:
            return values
        out = np.zeros((self.shape[0], self.rows))
        if self.full.size:
            out[self.full] = values[self.full]  # rows == all dates then
        for ticker, dates, count in self.moved:
            out[ticker, :count] = values[ticker, dates]
        return out

    def expand(self, arena: np.ndarray) -> np.ndarray:
        """Outputs (outputs x tickers x compact rows) back onto the panel's dates."""
        if self.identity:
            return arena
        if self.rows == self.shape[1]:
            out = arena  # in place: only the moved tickers change
        else:
            out = np.empty((arena.shape[0], *self.shape))
            if self.full.size:
                out[:, self.full] = arena[:, self.full]
        for ticker, dates, count in self.moved:
            own = arena[:, ticker, :count].copy()
            out[:, ticker] = np.nan
            out[:, ticker, dates] = own
        return out


# --- first-order recursive filter, blocked (arrays: lanes x rows, C order) -----------------

# Rows per block of the blocked filter: small enough that the within-block matrix product
# costs little; the block-to-block carries are a recursion of their own, over 1/block of
# the data, run the same way. A block length that divides the number of rows avoids
# padding (benchmarks/bench_indicators.py measures the choice).
BLOCK_CHOICES = (12, 10, 14, 15, 9, 8, 16, 18, 20, 7, 6)
DEFAULT_BLOCK = 12
# Below this many blocks a lane's carries go to lfilter directly.
MIN_BLOCKED_CARRIES = 32
# Tickers computed together: their scratch buffers stay in the CPU caches and are reused.
CHUNK = 32


def _divisor(rows: int) -> int | None:
    return next((b for b in BLOCK_CHOICES if rows % b == 0), None)


def _block_for(rows: int) -> tuple[int, int]:
    """Block length and padded row count for ``rows`` rows."""
    block = _divisor(rows)
    if block is not None:
        return block, rows
    return DEFAULT_BLOCK, -(-rows // DEFAULT_BLOCK) * DEFAULT_BLOCK


class _Filter:
    """``y[t] = decay * y[t-1] + u[t]`` along rows, as matrix products over blocks of rows.

    A scalar recursion runs at the latency of one multiply-add per step; here it runs as
    matrix products instead: a block's local result is ``u_block @ M.T`` with
    ``M[i, j] = decay**(i-j)`` (lower triangle). The value each block carries into the
    next is the same kind of recursion over the blocks' last values (decay**block per
    block, 1/block of the data: blocked again, or lfilter in C when short), and it enters
    the next block through its first input, so one matrix product gives the final values.
    ``scale`` multiplies the inputs inside the matrix product (``y[t] = decay * y[t-1] +
    scale * u[t]``), which saves a pass over the data.
    """

    def __init__(
        self, decay: float, block: int, width: int, scale: float = 1.0, restart: int = 0
    ) -> None:
        steps = np.arange(block)
        gap = steps[:, None] - steps[None, :]
        matrix = np.where(gap >= 0, decay ** np.maximum(gap, 0).astype(np.float64), 0.0)
        matrix *= scale
        self.block = block
        self.decay = decay
        self.inject = decay / scale  # a carried output value, in input units
        self.matrix_t = np.ascontiguousarray(matrix.T)
        self.last_row = np.ascontiguousarray(matrix[-1])
        blocks = width // block
        sub_block = _divisor(blocks)
        self.carries: _Filter | None = None
        # With ``restart`` (blocks; sums only) the sum starts again from 0 every ``restart``
        # blocks, which keeps running sums, and so their rounding, small.
        self.restart = restart
        if restart and decay != 1.0:
            raise ValueError("restarting segments are for plain sums (decay 1) only")
        if not restart and blocks >= MIN_BLOCKED_CARRIES and sub_block is not None:
            self.carries = _Filter(decay**block, sub_block, blocks)
        self.lfilter_carry = ([1.0], [1.0, -(decay**block)])

    def __call__(self, u: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Filter ``u`` (modified: it is scratch) into ``out``; both lanes x width, C order."""
        lanes, width = u.shape
        blocks = width // self.block
        flat = u.reshape(lanes * blocks, self.block)
        ends = (flat @ self.last_row).reshape(lanes, blocks)  # block ends without carry-in
        if self.restart:
            segments = -(-blocks // self.restart)
            padded = np.zeros((lanes, segments * self.restart))
            padded[:, :blocks] = ends
            per_segment = padded.reshape(lanes, segments, self.restart)
            carried = np.cumsum(per_segment, axis=2).reshape(lanes, -1)[:, :blocks]
            carried_in = carried[:, :-1].copy()
            carried_in[:, self.restart - 1 :: self.restart] = 0.0  # a segment starts at 0
        elif self.carries is not None:
            carried_in = self.carries(ends, np.empty_like(ends))[:, :-1]  # block-end values
        else:
            carried_in = lfilter(*self.lfilter_carry, ends, axis=1)[:, :-1]
        u.reshape(lanes, blocks, self.block)[:, 1:, 0] += self.inject * carried_in
        np.matmul(flat, self.matrix_t, out=out.reshape(lanes * blocks, self.block))
        return out


def _seed(target: np.ndarray, start: int, seed: np.ndarray, rows: int) -> np.ndarray:
    """Make ``target`` a filter input whose output is 0 before ``start``, seeded there.

    Rows before ``start`` become 0 (their output is set to NaN afterwards), row ``start``
    the seed (in input units: the filter scales it), the padding after ``rows`` 0.
    """
    target[:, :start] = 0.0
    target[:, start] = seed
    target[:, rows:] = 0.0
    return target


def _mean_of_rows(values: np.ndarray, first: int, last: int) -> np.ndarray:
    """Mean of rows ``first..last`` (inclusive) per ticker."""
    return values[:, first : last + 1].mean(axis=1)


def _alpha(span: int) -> float:
    """EMA smoothing factor of a span, TA-Lib's (and everyone's) 2 / (n + 1)."""
    return 2.0 / (span + 1)


class _Chunk:
    """Scratch buffers and filters shared by all ticker chunks of one panel."""

    def __init__(self, lanes: int, rows: int) -> None:
        self.rows = rows
        self.block, self.width = _block_for(rows)
        self.inputs = np.empty((3 * lanes, self.width))
        self.results = np.empty((3 * lanes, self.width))
        self.spare = np.empty((lanes, self.width)) if self.width != rows else None
        block, width = self.block, self.width
        # Running sums restart every segment (a few times the longest window: windows that
        # reach back across a segment start are corrected, see _window_mean).
        self.segment = -(-max(SMA_WINDOWS) * 4 // block) * block
        self.sum = _Filter(1.0, block, width, restart=self.segment // block)
        self.ema = {s: _Filter(1 - _alpha(s), block, width, _alpha(s)) for s in EMA_SPANS}
        signal = _alpha(MACD_SIGNAL)
        self.signal = _Filter(1.0 - signal, block, width, signal)
        wilder = 1.0 / RSI_PERIOD
        self.wilder = _Filter(1.0 - wilder, block, width, wilder)

    def run(self, flt: _Filter, u: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Filter ``u`` into ``target`` (lanes x rows), directly when no padding is needed."""
        if self.spare is None:
            return flt(u, target)
        result = flt(u, self.spare[: u.shape[0]])
        target[:] = result[:, : self.rows]
        return target


def _window_mean(sums: np.ndarray, window: int, segment: int, out: np.ndarray) -> np.ndarray:
    """Means over the last ``window`` rows into ``out`` (NaN head), from running sums that
    restart every ``segment`` rows (``segment >= window``).

    ``sum(t-window+1 .. t) = R[t] - R[t-window]``, plus the previous segment's total
    ``R[b-1]`` when the window reaches back across a segment start ``b``.
    """
    rows = out.shape[1]
    out[:, : window - 1] = np.nan
    out[:, window - 1] = sums[:, window - 1]
    np.subtract(sums[:, window:rows], sums[:, : rows - window], out=out[:, window:])
    for start in range(segment, rows, segment):
        out[:, start : start + window] += sums[:, start - 1 : start]
    out[:, window - 1 :] *= 1.0 / window
    return out


def _chunk_indicators(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, out: dict, work: _Chunk
) -> None:
    """Every indicator for one chunk of tickers (lanes x rows) into ``out``'s arrays.

    Memory traffic, not arithmetic, sets the pace: filter inputs and intermediate sums
    live in ``work``'s reused buffers, filters write straight into the outputs and every
    other step works in place.
    """
    lanes, rows = close.shape
    inputs, results = work.inputs, work.results

    # SMA and Bollinger: window sums of close and of (close - first close) squared, from
    # one blocked cumulative sum of both. The squares are centred so that the variance
    # E[(x-c)^2] - E[x-c]^2 subtracts small numbers; for the means plain sums are precise
    # enough (their rounding grows with the running sum: ~1e-12 relative over 2520 rows
    # even where the price fell 100-fold).
    offset = close[:, :1].copy()
    np.copyto(inputs[:lanes, :rows], close)
    centred = np.subtract(close, offset, out=inputs[lanes : 2 * lanes, :rows])
    np.multiply(centred, centred, out=centred)
    inputs[: 2 * lanes, rows:] = 0.0
    sums = work.sum(inputs[: 2 * lanes], results[: 2 * lanes])
    for window in SMA_WINDOWS:
        mean = out[f"sma_{window}"]
        if rows < window:
            mean.fill(np.nan)
            continue
        _window_mean(sums[:lanes], window, work.segment, mean)
        if window == BOLLINGER_WINDOW:
            # population variance, as TA-Lib's STDDEV: E[(x-c)^2] - E[x-c]^2
            band = _window_mean(
                sums[lanes : 2 * lanes], window, work.segment, out["bollinger_lower"]
            )
            centred_mean = np.subtract(mean, offset, out=inputs[:lanes, :rows])
            band -= np.multiply(centred_mean, centred_mean, out=centred_mean)
            np.maximum(band, 0.0, out=band)
            np.sqrt(band, out=band)
            band *= BOLLINGER_WIDTH
    if rows >= BOLLINGER_WINDOW:
        middle = out[f"sma_{BOLLINGER_WINDOW}"]
        np.add(middle, band, out=out["bollinger_upper"])
        np.subtract(middle, band, out=band)
    else:
        out["bollinger_upper"].fill(np.nan)
        out["bollinger_lower"].fill(np.nan)

    # EMA 12/26, seeded like TA-Lib with the mean of the first n closes.
    one = inputs[:lanes]
    for span in EMA_SPANS:
        ema = out[f"ema_{span}"]
        if rows < span:
            ema.fill(np.nan)
            continue
        np.copyto(one[:, span:rows], close[:, span:])
        _seed(one, span - 1, _mean_of_rows(close, 0, span - 1) / _alpha(span), rows)
        work.run(work.ema[span], one, ema)
        ema[:, : span - 1] = np.nan

    # MACD 12/26/9.
    macd, signal, hist = out["macd"], out["macd_signal"], out["macd_hist"]
    macd_start = MACD_SLOW - 1
    signal_start = macd_start + MACD_SIGNAL - 1
    if rows > macd_start:
        np.subtract(out[f"ema_{MACD_FAST}"], out[f"ema_{MACD_SLOW}"], out=macd)
        # TA-Lib's MACD starts its fast EMA at row 25, seeded with the mean of rows 14..25,
        # not at row 11: the difference to ema_12 shrinks by (1 - alpha) a row, so it is
        # subtracted over the rows where it is still above float resolution.
        decay = 1.0 - 2.0 / (MACD_FAST + 1)
        reseed = _mean_of_rows(close, macd_start - MACD_FAST + 1, macd_start)
        gap = out[f"ema_{MACD_FAST}"][:, macd_start] - reseed
        span = min(rows - macd_start, int(np.ceil(np.log(1e-18) / np.log(decay))))
        macd[:, macd_start : macd_start + span] -= gap[:, None] * decay ** np.arange(span)
    else:
        macd.fill(np.nan)
    if rows > signal_start:
        np.copyto(one[:, signal_start + 1 : rows], macd[:, signal_start + 1 :])
        seed = _mean_of_rows(macd, macd_start, signal_start) / _alpha(MACD_SIGNAL)
        _seed(one, signal_start, seed, rows)
        work.run(work.signal, one, signal)
        signal[:, :signal_start] = np.nan
        np.subtract(macd, signal, out=hist)
    else:
        signal.fill(np.nan)
        hist.fill(np.nan)

    # RSI 14 and ATR 14: Wilder's smoothing of gains, losses and true range, one filter.
    period = RSI_PERIOD  # == ATR_PERIOD, so they share the filter
    rsi, atr = out["rsi_14"], out["atr_14"]
    if rows <= period:
        rsi.fill(np.nan)
        atr.fill(np.nan)
        return
    # Lanes: twice the gains, absolute changes (= gains + losses), true range. Seeds: the
    # mean of rows 1..period, which in input units (the filter scales by 1/period) is their
    # sum. 2 * max(change, 0) = change + |change| is exact and cheaper than a maximum.
    gains, moves = inputs[:lanes, :rows], inputs[lanes : 2 * lanes, :rows]
    true_range = inputs[2 * lanes : 3 * lanes, :rows]
    np.subtract(close[:, 1:], close[:, :-1], out=gains[:, 1:])
    np.abs(gains[:, 1:], out=moves[:, 1:])
    gains[:, 1:] += moves[:, 1:]
    previous = close[:, :-1]
    np.maximum(high[:, 1:], previous, out=true_range[:, 1:])  # true range =
    low_or_previous = np.minimum(low[:, 1:], previous, out=results[:lanes, : rows - 1])
    true_range[:, 1:] -= low_or_previous  # max(h, c[-1]) - min(l, c[-1])
    wilder = inputs[: 3 * lanes]
    _seed(wilder, period, wilder[:, 1 : period + 1].sum(axis=1), rows)
    smoothed = work.wilder(wilder, results[: 3 * lanes])  # all three lanes, one filter
    np.copyto(atr, smoothed[2 * lanes :, :rows])
    atr[:, :period] = np.nan
    twice_gain, total = smoothed[:lanes, :rows], smoothed[lanes : 2 * lanes, :rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(twice_gain, total, out=rsi)
    rsi *= 50.0  # 100 * gain / (gain + loss)
    if np.min(total[:, period:]) == 0.0:
        rsi[total == 0.0] = 50.0  # not a single move in the window: neither side
    rsi[:, :period] = np.nan


# Indicators with their own numbers (bollinger_middle is sma_20's).
_COMPUTED = tuple(name for name in INDICATORS if name != "bollinger_middle")


def _indicators_compact(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """All indicators on tickers x rows arrays whose row 0 is each ticker's first day.

    Returns one allocation, ``_COMPUTED`` x tickers x rows (fresh pages cost more than the
    arithmetic), filled a chunk of ``CHUNK`` tickers at a time.
    """
    tickers, rows = close.shape
    arena = np.empty((len(_COMPUTED), tickers, rows))
    if tickers and rows:
        work = _Chunk(min(CHUNK, tickers), rows)
        for first in range(0, tickers, CHUNK):
            part = slice(first, min(first + CHUNK, tickers))
            out = {name: arena[i, part] for i, name in enumerate(_COMPUTED)}
            _chunk_indicators(high[part], low[part], close[part], out, work)
    else:
        arena.fill(np.nan)
    return arena


def _all_finite(*arrays: np.ndarray) -> bool:
    # A sum is finite only if every term is: one cheap reduction instead of a mask.
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(sum(float(a.sum()) for a in arrays)))


def compute_indicators(panel: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every indicator in ``INDICATORS`` as a dates x tickers frame like ``panel["close"]``.

    A cell is NaN where the ticker has no row on that date or not enough rows before it.
    The frames share one block of memory (freed when the last of them is).
    """
    close_frame = panel["close"]
    # tickers x dates views of the frames' own storage (no copy for build_panel's panels)
    arrays = [
        np.ascontiguousarray(panel[field].to_numpy(dtype=np.float64).T)
        for field in ("high", "low", "close")
    ]
    if _all_finite(*arrays):
        layout = _Layout(None, arrays[2].shape)
    else:
        finite = np.isfinite(arrays[0]) & np.isfinite(arrays[1]) & np.isfinite(arrays[2])
        layout = _Layout(finite, arrays[2].shape)
    arena = layout.expand(_indicators_compact(*(layout.compact(a) for a in arrays)))
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
