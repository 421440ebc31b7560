"""The pipeline against its compute floor (issue 19): 2000 synthetic tickers x 10 years.

Measured in one run, on one machine, each figure the best of ``--repeat``:

* ``floor``: ``build_panel`` + ``compute_indicators`` + ``summarize`` in this process on the
  histories the run prices (warm-up included), generated beforehand: the indicator work
  with nothing around it;
* ``dask N``: ``run_combined_analysis`` (analyses pricing, technicals, portfolio;
  ``price_sources=("synthetic",)``) on a warm LocalCluster of N single-threaded worker
  processes, the client in this process: what the CLI and the operator run;
* ``cache N``: the same with every price read from the disk cache (``price_sources=
  ("yfinance",)`` over a cache folder filled beforehand, so nothing is downloaded: the
  realistic daily path);
* ``S&P N``: the embedded 521-ticker S&P 500 universe, all four analyses (the combined
  figure of bench_flows.py);
* ``cache read``: ``fetch_histories`` of the 2000 tickers from that cache in this process
  (files read, histories validated) against reading the same rows as one Arrow file
  (``pyarrow.feather.read_table``) and as one Parquet file (``pyarrow.parquet``).

Ratios printed: each run against the floor, dask 1 / dask 2, cache read / one file.

    uv run python benchmarks/bench_pipeline.py                     # ~2-4 min on 2 cores
    uv run python benchmarks/bench_pipeline.py --tickers 500 --repeat 1
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

from measure import best, load  # noqa: E402  (benchmarks/measure.py, beside this script)

END = date(2026, 11, 20)  # fixed, so every run prices the same business days
ANALYSES = ("pricing", "technicals", "portfolio")


def breakdown(client, run: Callable[[], object]) -> str:
    """One more run under Dask's task stream: compute seconds summed per task kind (over
    all workers), and the wall time before the first task starts and after the last one
    ends (the client: submitting; gathering, the close panel, portfolio figures, report)."""
    from collections import defaultdict

    from distributed import get_task_stream

    with get_task_stream(client=client) as stream:
        started = time.time()
        run()
        ended = time.time()
    compute: dict[str, float] = defaultdict(float)
    first, last = ended, started
    for task in stream.data:
        kind = str(task["key"]).strip("('").split("-")[0]
        for span in task["startstops"]:
            if span["action"] == "compute":
                compute[kind] += span["stop"] - span["start"]
                first, last = min(first, span["start"]), max(last, span["stop"])
    kinds = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(compute.items(), key=lambda i: -i[1]))
    return (
        f"run {ended - started:.2f} s: before the first task {first - started:.2f} s, tasks "
        f"{last - first:.2f} s ({kinds}), after the last task {ended - last:.2f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=3650, help="lookback, calendar days")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--no-sp500", action="store_true")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()

    import logging

    import pandas as pd
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq
    from portfolio_analysis import embedded, pipeline, technicals
    from portfolio_analysis.cache import PriceCache
    from portfolio_analysis.config import AnalysisConfig
    from portfolio_analysis.sources import fetch_histories
    from portfolio_analysis.sources.base import fetch_start, network_window

    logging.getLogger("distributed").setLevel(logging.ERROR)
    print(
        f"# bench_pipeline: Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average {load()}, {args.tickers} tickers x {args.days} days, "
        f"best of {args.repeat}",
        flush=True,
    )
    tickers = [f"SYN{i:05d}" for i in range(args.tickers)]
    synthetic = AnalysisConfig(
        price_sources=("synthetic",),
        lookback_days=args.days,
        end=END,
        use_cache=False,
        cache_dir=None,
    )
    start, end = network_window(fetch_start(synthetic), synthetic.end, synthetic)
    histories = embedded.synthetic_histories(tickers, start, end, seed=synthetic.synthetic_seed)
    rows = len(next(iter(histories.values())))
    print(f"histories: {rows} business days {start} .. {end} (warm-up included)", flush=True)

    technicals.compile_kernels()

    def floor(histories: dict = histories) -> object:
        panel = technicals.build_panel(histories)
        return technicals.summarize(panel, technicals.compute_indicators(panel))

    floor()
    results: dict[str, float] = {"floor": best(floor, max(args.repeat, 3))}
    print(f"floor (in process)         {results['floor']:.3f} s", flush=True)

    folder = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    cached = synthetic.with_changes(
        price_sources=("yfinance",), use_cache=True, cache_dir=folder, cache_ttl_seconds=1e9
    )
    try:
        if not args.no_cache:
            cache = PriceCache(folder, cached.cache_ttl_seconds)
            c_start, c_end = network_window(fetch_start(cached), cached.end, cached)
            for batch in pipeline.plan_batches(tickers, 2):  # files as a 2-worker run writes them
                cache.put_many("yfinance", {t: histories[t] for t in batch}, c_start, c_end)
            long = pd.concat(histories, names=["ticker", "date"]).reset_index()
            table = pa.Table.from_pandas(long, preserve_index=False)
            feather.write_feather(table, folder / "one.arrow", compression="uncompressed")
            pq.write_table(table, folder / "one.parquet")
            del long, table
            fetch_histories(tickers, cached)  # warm: imports, page cache
            results["cache read"] = best(lambda: fetch_histories(tickers, cached), args.repeat)
            results["one Arrow file"] = best(
                lambda: feather.read_table(folder / "one.arrow", memory_map=False).to_pandas(),
                args.repeat,
            )
            results["one Parquet file"] = best(
                lambda: pq.read_table(folder / "one.parquet").to_pandas(), args.repeat
            )
            for key in ("cache read", "one Arrow file", "one Parquet file"):
                print(f"{key:<26} {results[key]:.3f} s", flush=True)
        del histories, floor

        sp500 = embedded.universe_tickers("sp500")
        sp500_config = AnalysisConfig(embedded_datasets=("sp500", "sample"))
        for n in [int(w) for w in args.workers.split(",")]:
            client = pipeline.setup_dask_client(None, n_workers=n)
            try:
                runs = {
                    f"dask {n}": lambda c=client: pipeline.run_combined_analysis(
                        tickers, analyses=ANALYSES, config=synthetic, client=c
                    )
                }
                if not args.no_cache:
                    runs[f"cache {n}"] = lambda c=client: pipeline.run_combined_analysis(
                        tickers, analyses=ANALYSES, config=cached, client=c
                    )
                if not args.no_sp500:
                    runs[f"S&P {n}"] = lambda c=client: pipeline.run_combined_analysis(
                        sp500, config=sp500_config, client=c
                    )
                for name, run in runs.items():
                    result = run()  # warm the workers (imports, kernel, data)
                    assert not result["failed"], result["failed"][:3]
                    results[name] = best(run, args.repeat)
                    print(f"{name:<26} {results[name]:.3f} s  (load {load()})", flush=True)
                    if not name.startswith("S&P"):
                        print(f"  where the time goes: {breakdown(client, run)}", flush=True)
            finally:
                client.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print()
    print("| what | time | ratio |")
    print("|---|---:|---|")
    print(
        f"| floor: build_panel + compute_indicators + summarize, in process | "
        f"{results['floor']:.3f} s | 1 |"
    )
    for name, value in results.items():
        if name.startswith(("dask", "cache ")) and name != "cache read":
            print(
                f"| {name} workers, {args.tickers} x {args.days} d | {value:.3f} s | "
                f"{value / results['floor']:.1f}x the floor |"
            )
    for kind in ("dask", "cache", "S&P"):
        if f"{kind} 1" in results and f"{kind} 2" in results:
            one, two = results[f"{kind} 1"], results[f"{kind} 2"]
            print(
                f"| {kind}: 2 workers against 1 | {two:.3f} s vs {one:.3f} s | "
                f"{one / two:.2f}x faster |"
            )
    if "cache read" in results:
        for other in ("one Arrow file", "one Parquet file"):
            print(
                f"| cache read vs {other} | {results['cache read']:.3f} s vs "
                f"{results[other]:.3f} s | {results['cache read'] / results[other]:.2f}x |"
            )
    print(f"\nload average at the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
