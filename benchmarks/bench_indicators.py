"""Full indicator set on a 500-ticker x 10-year panel: ours against TA-Lib, in one run.

Usage: uv run python benchmarks/bench_indicators.py [--tickers 500] [--days 2520] [--repeat 15]

The indicator set is what ``technicals.compute_indicators`` returns: SMA 20/50/200, EMA 12/26,
MACD 12/26/9, RSI 14, Bollinger 20/2 and ATR 14. The baseline calls TA-Lib once per ticker
per indicator (SMA x3, EMA x2, MACD, RSI, BBANDS, ATR). Both sides get their inputs
ready-made and untimed: TA-Lib one float64 array per ticker and field, ours the dates x
tickers panel of ``technicals.build_panel`` (timed separately, like ``summarize``).

Both sides keep what they compute until their next run, as any caller must (TA-Lib: a list
of per-ticker result arrays; ours: the indicator frames): fresh memory is part of the cost.
TA-Lib with its results thrown away at once is printed too, as a lower bound for it, and a
plain pandas version (rolling/ewm on the wide frames, run afterwards) for scale. The first
three run in turn, ``--repeat`` times, so load on the machine hits them alike; best and
median of wall time and of process CPU time are printed, and the ratios baseline / ours
(> 1: ours is faster). Ours is a numba-compiled loop: what a new process pays before its first
call (load the cached machine code, or compile it when there is none) is printed apart, and
so is the worst relative difference to TA-Lib per indicator on the timed panel (same numbers),
and of both to an exact two-pass Bollinger band.
Single-threaded throughout (BLAS too). The data are SYNTHETIC
(``embedded.synthetic_histories``), the same series for every side.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

# Single-threaded, like TA-Lib: set before numpy loads its BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numba  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import talib  # noqa: E402
from portfolio_analysis import technicals  # noqa: E402
from portfolio_analysis.embedded import synthetic_histories  # noqa: E402

Arrays = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def talib_per_ticker(arrays: Arrays) -> list[tuple]:
    """The baseline: every indicator, one TA-Lib call per ticker per indicator."""
    results = []
    for high, low, close in arrays:
        results.append(
            (
                talib.SMA(close, 20),
                talib.SMA(close, 50),
                talib.SMA(close, 200),
                talib.EMA(close, 12),
                talib.EMA(close, 26),
                talib.MACD(close, 12, 26, 9),
                talib.RSI(close, 14),
                talib.BBANDS(close, 20, 2.0, 2.0, 0),
                talib.ATR(high, low, close, 14),
            )
        )
    return results


def talib_discarding(arrays: Arrays) -> None:
    """The same calls, each result dropped at once (no fresh memory: a lower bound)."""
    for high, low, close in arrays:
        talib.SMA(close, 20)
        talib.SMA(close, 50)
        talib.SMA(close, 200)
        talib.EMA(close, 12)
        talib.EMA(close, 26)
        talib.MACD(close, 12, 26, 9)
        talib.RSI(close, 14)
        talib.BBANDS(close, 20, 2.0, 2.0, 0)
        talib.ATR(high, low, close, 14)


def pandas_wide(panel: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """A straightforward pandas version on the same wide frames (rolling, ewm), for scale.

    Not TA-Lib's seeding (ewm starts at the first value), so its numbers differ in the
    warm-up; it is timed, not checked.
    """
    close, high, low = panel["close"], panel["high"], panel["low"]
    out = {f"sma_{n}": close.rolling(n).mean() for n in (20, 50, 200)}
    for n in (12, 26):
        out[f"ema_{n}"] = close.ewm(span=n, adjust=False).mean()
    out["macd"] = out["ema_12"] - out["ema_26"]
    out["macd_signal"] = out["macd"].ewm(span=9, adjust=False).mean()
    out["macd_hist"] = out["macd"] - out["macd_signal"]
    change = close.diff()
    gain = change.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-change).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    out["rsi_14"] = 100 * gain / (gain + loss)
    width = 2 * close.rolling(20).std(ddof=0)
    out["bollinger_upper"] = out["sma_20"] + width
    out["bollinger_middle"] = out["sma_20"]
    out["bollinger_lower"] = out["sma_20"] - width
    previous = close.shift()
    true_range = np.maximum(high, previous) - np.minimum(low, previous)
    out["atr_14"] = true_range.ewm(alpha=1 / 14, adjust=False).mean()
    return out


TALIB_ORDER = (  # what each of talib_per_ticker's results is, as technicals names them
    ("sma_20",),
    ("sma_50",),
    ("sma_200",),
    ("ema_12",),
    ("ema_26",),
    ("macd", "macd_signal", "macd_hist"),
    ("rsi_14",),
    ("bollinger_upper", "bollinger_middle", "bollinger_lower"),
    ("atr_14",),
)


def worst_differences(
    reference: list[tuple], indicators: dict[str, pd.DataFrame], arrays: Arrays
) -> dict[str, float]:
    """Largest relative difference to TA-Lib per indicator, where TA-Lib has a value (MACD
    lines relative to the close, as they cross zero)."""
    worst: dict[str, float] = {}
    for column, (results, (_, _, close)) in enumerate(zip(reference, arrays, strict=True)):
        for names, result in zip(TALIB_ORDER, results, strict=True):
            outputs = result if len(names) > 1 else (result,)
            for name, expected in zip(names, outputs, strict=True):
                ours = indicators[name].iloc[:, column].to_numpy()
                have = np.isfinite(expected)
                scale = close if name.startswith("macd") else np.abs(expected)
                error = np.max(np.abs(ours[have] - expected[have]) / scale[have], initial=0.0)
                worst[name] = max(worst.get(name, 0.0), float(error))
    return worst


def band_errors_to_exact(
    reference: list[tuple], indicators: dict[str, pd.DataFrame], arrays: Arrays
) -> tuple[float, float]:
    """Worst relative difference of ours and of TA-Lib's upper Bollinger band to an exact
    two-pass computation (mean, then mean squared deviation, of each 20-row window)."""
    ours_worst = talib_worst = 0.0
    for column, (results, (_, _, close)) in enumerate(zip(reference, arrays, strict=True)):
        windows = np.lib.stride_tricks.sliding_window_view(close, 20)
        mean = windows.mean(axis=1)
        exact = mean + 2 * np.sqrt(((windows - mean[:, None]) ** 2).mean(axis=1))
        ours = indicators["bollinger_upper"].iloc[19:, column].to_numpy()
        talib_upper = results[7][0][19:]
        ours_worst = max(ours_worst, float(np.max(np.abs(ours - exact) / exact)))
        talib_worst = max(talib_worst, float(np.max(np.abs(talib_upper - exact) / exact)))
    return ours_worst, talib_worst


class Timings:
    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def run(self, function: Callable[[], object], keep: dict, key: str) -> None:
        keep[key] = None  # release the previous run's results first
        wall, cpu = time.perf_counter(), time.process_time()
        keep[key] = function()
        self.cpu.append(time.process_time() - cpu)
        self.wall.append(time.perf_counter() - wall)

    def line(self, label: str) -> str:
        ms = [1e3 * f(t) for t in (self.wall, self.cpu) for f in (min, statistics.median)]
        return (
            f"{label:<40} wall best {ms[0]:7.1f} median {ms[1]:7.1f} ms | "
            f"cpu best {ms[2]:7.1f} median {ms[3]:7.1f} ms"
        )


def ratio(baseline: Timings, ours: Timings) -> str:
    parts = []
    for name in ("wall", "cpu"):
        base, mine = getattr(baseline, name), getattr(ours, name)
        parts.append(
            f"{name} best {min(base) / min(mine):.2f}x, "
            f"median {statistics.median(base) / statistics.median(mine):.2f}x"
        )
    return "; ".join(parts)


FIRST_CALL = """
import time
start = time.perf_counter()
from portfolio_analysis import technicals
technicals.compile_kernels()
print(time.perf_counter() - start)
"""


def first_call_seconds(cache_dir: str) -> float:
    """Import + first compute_indicators in a new process, numba's cache in ``cache_dir``."""
    env = os.environ | {"NUMBA_CACHE_DIR": cache_dir}
    result = subprocess.run(
        [sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True, check=True
    )
    return float(result.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--days", type=int, default=2520, help="business days (2520 = 10 years)")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    tickers = [f"SYN{i:04d}" for i in range(args.tickers)]
    dates = pd.bdate_range("2014-01-01", periods=args.days)
    histories = synthetic_histories(tickers, dates[0].date(), dates[-1].date())
    arrays: Arrays = [
        tuple(np.ascontiguousarray(f[c].to_numpy()) for c in ("high", "low", "close"))
        for f in histories.values()
    ]
    panel = technicals.build_panel(histories)
    rows, width = panel["close"].shape
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"panel: {width} tickers x {rows} days (synthetic); Python {platform.python_version()}, "
        f"numpy {np.__version__}, numba {numba.__version__}, pandas {pd.__version__}, "
        f"TA-Lib {talib.__version__} (C {talib.__ta_version__.decode().split()[0]}); "
        f"{os.cpu_count()} CPUs, single-threaded; load average {load:.1f} at start"
    )

    runs = {
        "talib": (lambda: talib_per_ticker(arrays), Timings()),
        "talib_discard": (lambda: talib_discarding(arrays), Timings()),
        "ours": (lambda: technicals.compute_indicators(panel), Timings()),
    }
    keep: dict = {}
    for function, _ in runs.values():  # warm-up: lazy imports, caches, allocator
        function()
    for _ in range(args.repeat):
        for key, (function, timings) in runs.items():
            timings.run(function, keep, key)
    keep.clear()
    # Run apart: its many large temporaries would change the others' memory behaviour.
    runs["pandas"] = (lambda: pandas_wide(panel), Timings())
    for _ in range(max(3, args.repeat // 3)):
        runs["pandas"][1].run(runs["pandas"][0], keep, "pandas")
    keep.clear()
    indicators = technicals.compute_indicators(panel)
    # Every 10th ticker listed later (up to 4 years): those are moved to their own rows.
    ragged = technicals.build_panel(
        {
            ticker: frame.iloc[(i * 37) % 1000 :] if i % 10 == 0 else frame
            for i, (ticker, frame) in enumerate(histories.items())
        }
    )
    extra = {
        "build_panel": Timings(),
        "summarize": Timings(),
        "ragged": Timings(),
        "reused": Timings(),
    }
    # The kernel alone, into an output block it has written before: no fresh pages.
    inputs = [technicals._read_only(panel[field]) for field in ("high", "low", "close")]
    reused = np.empty((len(technicals._COMPUTED), width, rows))
    for _ in range(max(3, args.repeat // 3)):
        extra["reused"].run(lambda: technicals._panel_indicators(*inputs, reused), keep, "k")
        extra["build_panel"].run(lambda: technicals.build_panel(histories), keep, "panel")
        extra["summarize"].run(lambda: technicals.summarize(panel, indicators), keep, "summary")
        extra["ragged"].run(lambda: technicals.compute_indicators(ragged), keep, "ragged")

    print(runs["talib"][1].line("TA-Lib per ticker, results kept"))
    print(runs["talib_discard"][1].line("TA-Lib per ticker, results dropped"))
    print(runs["ours"][1].line("ours: compute_indicators(panel)"))
    print(runs["pandas"][1].line("plain pandas rolling/ewm, wide frames"))
    print(extra["build_panel"].line("  build_panel (not in the ratios)"))
    print(extra["summarize"].line("  summarize (not in the ratios)"))
    print(extra["ragged"].line("  ours, 1 in 10 tickers listed later"))
    print(extra["reused"].line("  ours, kernel only, reused output"))
    print(f"ratio TA-Lib kept / ours:    {ratio(runs['talib'][1], runs['ours'][1])}")
    print(f"ratio TA-Lib dropped / ours: {ratio(runs['talib_discard'][1], runs['ours'][1])}")
    print(f"ratio plain pandas / ours:   {ratio(runs['pandas'][1], runs['ours'][1])}")
    reference = talib_per_ticker(arrays)
    worst = worst_differences(reference, indicators, arrays)
    print(
        "same numbers: worst relative difference to TA-Lib on this panel: "
        + ", ".join(f"{name} {error:.0e}" for name, error in worst.items())
    )
    ours_band, talib_band = band_errors_to_exact(reference, indicators, arrays)
    print(
        f"upper Bollinger band against an exact two-pass computation: ours {ours_band:.0e}, "
        f"TA-Lib {talib_band:.0e}"
    )
    with tempfile.TemporaryDirectory() as cache_dir:
        compiling = first_call_seconds(cache_dir)  # empty cache: compiles and saves
        loading = min(first_call_seconds(cache_dir) for _ in range(3))
    print(
        f"new process, import + first call: {loading:.2f} s loading the cached kernel, "
        f"{compiling:.2f} s compiling it (once per install and CPU; not in the ratios)"
    )
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
