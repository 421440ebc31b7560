"""Client-side peak memory of ``run_combined_analysis`` for large synthetic universes.

The operator is the Dask *client*: per-ticker work runs on workers, so its memory should
grow with what it gathers (summaries and the dates x tickers close panel), not with whole
OHLCV or indicator histories. This script starts one 2-worker LocalCluster (processes, one
thread each) in this process, then runs each universe size in a fresh child process that
connects to it as a client, as the operator does, and reports that child's peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) before and after the run. The baseline in
the same run is the child's RSS once imports and the client connection are done, so
``run peak - baseline`` is what the analysis itself cost the client.

    uv run python benchmarks/bench_client_memory.py                  # 500, 1000, 2000 tickers
    uv run python benchmarks/bench_client_memory.py --sizes 200 --days 3650
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

END = date(2026, 11, 20)  # fixed, so every run prices the same business days


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def child(address: str, n_tickers: int, lookback_days: int) -> None:
    """One client run; prints a JSON line with its memory figures."""
    import pandas as pd  # noqa: F401  (imported before the baseline, as in the operator)
    from distributed import Client
    from portfolio_analysis.config import AnalysisConfig
    from portfolio_analysis.pipeline import run_combined_analysis

    tickers = [f"SYN{i:04d}" for i in range(n_tickers)]
    config = AnalysisConfig(
        price_sources=("synthetic",),
        lookback_days=lookback_days,
        end=END,
        use_cache=False,
        cache_dir=None,
    )
    client = Client(address, set_as_default=False)
    baseline = _max_rss_mib()
    started = time.perf_counter()
    result = run_combined_analysis(tickers, config=config, client=client)
    elapsed = time.perf_counter() - started
    peak = _max_rss_mib()
    client.close()
    print(
        json.dumps(
            {
                "tickers": n_tickers,
                "baseline_mib": baseline,
                "peak_mib": peak,
                "seconds": elapsed,
                "report_kib": len(json.dumps(result, default=str)) / 1024.0,
                "failed": len(result.get("failed") or []),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--days", type=int, default=3650, help="lookback in calendar days")
    parser.add_argument("--child", nargs=3, metavar=("ADDRESS", "TICKERS", "DAYS"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        print(f"2-worker LocalCluster at {cluster.scheduler_address}; lookback {args.days} days")
        print(
            "| tickers | client baseline MiB | client peak MiB | run cost MiB | MiB/ticker "
            "| run s | report KiB | failed tickers |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for n in args.sizes:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    cluster.scheduler_address,
                    str(n),
                    str(args.days),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if out.returncode != 0 or not lines:
                print(
                    f"| {n} | child failed (exit {out.returncode}): "
                    f"{out.stderr.strip().splitlines()[-1:]} |"
                )
                continue
            r = json.loads(lines[-1])
            cost = r["peak_mib"] - r["baseline_mib"]
            print(
                f"| {n} | {r['baseline_mib']:.0f} | {r['peak_mib']:.0f} | {cost:.0f} "
                f"| {cost / n:.3f} | {r['seconds']:.1f} | {r['report_kib']:.0f} | {r['failed']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
