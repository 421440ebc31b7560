"""Re-measure the reference guide's scaling table: pricing, technical, news and combined analysis.

For each universe (the 5-stock sample portfolio, the embedded 524-stock S&P 500) this
measures, in one run on one machine:

* ``seq guide``: the reference guide's one-ticker worker functions called in a loop in this process
  (the guide's "before": no Dask, no batching);
* ``seq batch``: the pipeline's batch functions called once in this process (the same
  vectorised code as the Dask run, without Dask);
* ``dask N``: the plain-Dask pipeline on a LocalCluster with N single-threaded worker
  processes (started once per N and warmed up; start-up is reported separately);
* ``prefect N``: the same through the Prefect flows with the reference guide's names (reporting to a
  temporary local Prefect server whose start-up is reported separately);
* ``cold N``: what a user's single run costs: a new LocalCluster with N workers plus the
  combined analysis, as ``portfolio-analysis run`` does (combined only).

Each figure is the best of ``--repeat`` runs; speed-ups are against ``seq guide`` and
``seq batch`` of the same run. Prints a Markdown table for docs/benchmarks.md.

    uv run python benchmarks/bench_flows.py                # everything (~5-10 min on 2 cores)
    uv run python benchmarks/bench_flows.py --quick        # 5 tickers only, 1 repeat
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from measure import best  # benchmarks/measure.py, beside this script

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

WORKLOADS = ("pricing", "technical", "news", "combined")


@dataclass
class Universe:
    name: str
    tickers: list[str]
    config: object


def universes(names: Sequence[str]) -> list[Universe]:
    from portfolio_analysis import embedded
    from portfolio_analysis.config import AnalysisConfig

    out = []
    for name in names:
        if name == "sample":
            out.append(Universe("5 tickers", list(embedded.SAMPLE_PORTFOLIO), AnalysisConfig()))
        elif name == "sp500":
            tickers = embedded.universe_tickers("sp500")
            config = AnalysisConfig(embedded_datasets=("sp500", "sample"))
            out.append(Universe(f"{len(tickers)} tickers (S&P 500)", tickers, config))
        else:
            raise SystemExit(f"unknown universe {name!r}: choose sample or sp500")
    return out


# --- sequential baselines (this process) ---------------------------------------------------


def seq_seed(workload: str, universe: Universe) -> Callable[[], object]:
    """The reference guide's one-ticker worker functions, one ticker after the other."""
    import pandas as pd
    from portfolio_analysis import workers
    from portfolio_analysis.portfolio import portfolio_figures

    tickers, config = universe.tickers, universe.config

    def run() -> object:
        closes = {}
        for ticker in tickers:
            if workload in ("pricing", "technical", "combined"):
                priced = workers.fetch_price_from_multiple_sources(ticker, config)
                if priced is not None and workload in ("technical", "combined"):
                    workers.calculate_security_technicals(ticker, priced["price_data"])
                if priced is not None and workload == "combined":
                    ohlcv = priced["price_data"]["ohlcv"]
                    closes[ticker] = pd.Series(
                        [r["close"] for r in ohlcv],
                        index=pd.to_datetime([r["date"] for r in ohlcv]),
                    )
            if workload in ("news", "combined"):
                workers.fetch_news_for_ticker(ticker, config)
        if workload == "combined":
            from portfolio_analysis.portfolio import choose_members

            close = pd.DataFrame(closes).sort_index()
            chosen = choose_members(close, holdings=False)
            portfolio_figures(close.loc[chosen.start : chosen.end, chosen.members])
        return None

    return run


def seq_batch(workload: str, universe: Universe) -> Callable[[], object]:
    """The pipeline's batch functions on all tickers at once, in this process."""
    from portfolio_analysis import pipeline, workers

    tickers, config = universe.tickers, universe.config

    def run() -> object:
        if workload in ("pricing", "technical", "combined"):
            batch = workers.fetch_price_batch(tickers, config)
            summary = workers.price_batch_summary(batch)
            if workload in ("technical", "combined"):
                workers.technicals_batch(batch)
            if workload == "combined":
                pipeline.portfolio_section(summary.close, tickers, None, config)
        if workload in ("news", "combined"):
            workers.news_batch(tickers, config)
        return None

    return run


# --- Dask, with and without Prefect --------------------------------------------------------

STAGES = {"pricing": ["pricing"], "technical": ["technicals"], "news": ["news"]}


def plain_dask(workload: str, universe: Universe, client) -> Callable[[], object]:
    """What each flow does, as plain Dask calls (the CLI's and the operator's path)."""
    from portfolio_analysis import aggregate, pipeline

    tickers, config = universe.tickers, universe.config
    if workload == "combined":
        return lambda: pipeline.run_combined_analysis(tickers, config=config, client=client)
    build, combine = {
        "pricing": (aggregate.pricing_report, aggregate.aggregate_pricing_results),
        "technical": (aggregate.technical_report, aggregate.aggregate_technical_results),
        "news": (aggregate.news_report, aggregate.aggregate_news_results),
    }[workload]
    field = {"pricing": "pricing", "technical": "technicals", "news": "news"}[workload]

    def run() -> object:
        options = pipeline.RunOptions(analyses=STAGES[workload], config=config, client=client)
        gathered = pipeline.run_stages(tickers, options)
        return build(combine(getattr(gathered, field)), gathered.failed)

    return run


def prefect_flow(workload: str, universe: Universe, address: str) -> Callable[[], object]:
    """The Prefect flow with the reference guide's name, connecting to the benchmark's
    cluster over tcp://."""
    from portfolio_analysis import flows

    flow = {
        "pricing": flows.dask_multi_source_pricing_flow,
        "technical": flows.dask_portfolio_technical_analysis_flow,
        "news": flows.dask_news_analysis_flow,
        "combined": flows.dask_combined_analysis_flow,
    }[workload]
    return lambda: flow(tickers=universe.tickers, dask_scheduler=address, config=universe.config)


def cold_run(universe: Universe, n_workers: int) -> Callable[[], object]:
    from portfolio_analysis import pipeline

    return lambda: pipeline.run_combined_analysis(
        universe.tickers, config=universe.config, n_workers=n_workers
    )


# --- the run -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--universes", default="sample,sp500", help="sample,sp500")
    parser.add_argument("--workers", default="1,2", help="worker counts, e.g. 1,2")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--no-prefect", action="store_true", help="skip the Prefect flows")
    parser.add_argument("--quick", action="store_true", help="5 tickers, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.universes, args.repeat = "sample", 1
    worker_counts = [int(n) for n in args.workers.split(",")]
    chosen = universes(args.universes.split(","))

    import logging

    from portfolio_analysis.pipeline import setup_dask_client

    logging.getLogger("distributed").setLevel(logging.ERROR)
    print(
        f"# bench_flows: {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}, dask {version('distributed')}, "
        f"prefect {version('prefect')}, best of {args.repeat}",
        flush=True,
    )
    results: dict[tuple[str, str, str], float] = {}
    extras: list[str] = []

    for universe in chosen:
        for workload in WORKLOADS:
            seq_batch(workload, universe)()  # warm: imports, embedded data parsed once
            results[(universe.name, workload, "seq guide")] = best(
                seq_seed(workload, universe), args.repeat
            )
            results[(universe.name, workload, "seq batch")] = best(
                seq_batch(workload, universe), args.repeat
            )
            print(
                f"{universe.name:>24} {workload:<9} seq guide "
                f"{results[(universe.name, workload, 'seq guide')]:.3f} s, seq batch "
                f"{results[(universe.name, workload, 'seq batch')]:.3f} s",
                flush=True,
            )

    prefect_started = None
    for n in worker_counts:
        started = time.perf_counter()
        client = setup_dask_client(None, n_workers=n)
        extras.append(
            f"LocalCluster with {n} worker(s) started in {time.perf_counter() - started:.2f} s"
        )
        try:
            address = client.scheduler.address
            for universe in chosen:
                for workload in WORKLOADS:
                    run = plain_dask(workload, universe, client)
                    run()  # warm the workers (imports, embedded data)
                    results[(universe.name, workload, f"dask {n}")] = best(run, args.repeat)
                    if not args.no_prefect:
                        flow = prefect_flow(workload, universe, address)
                        if prefect_started is None:
                            started = time.perf_counter()
                            flow()  # the first flow starts the temporary Prefect server
                            prefect_started = time.perf_counter() - started
                            extras.append(
                                f"first Prefect flow in this process (temporary server "
                                f"start-up included): {prefect_started:.2f} s"
                            )
                        results[(universe.name, workload, f"prefect {n}")] = best(flow, args.repeat)
                    line = ", ".join(
                        f"{kind} {results[(universe.name, workload, kind)]:.3f} s"
                        for kind in (f"dask {n}", f"prefect {n}")
                        if (universe.name, workload, kind) in results
                    )
                    print(f"{universe.name:>24} {workload:<9} {line}", flush=True)
        finally:
            client.close()
        for universe in chosen:
            results[(universe.name, "combined", f"cold {n}")] = best(
                cold_run(universe, n), args.repeat
            )
            print(
                f"{universe.name:>24} combined  cold {n} "
                f"{results[(universe.name, 'combined', f'cold {n}')]:.3f} s",
                flush=True,
            )

    kinds = ["seq guide", "seq batch"]
    for n in worker_counts:
        kinds.append(f"dask {n}")
        if not args.no_prefect:
            kinds.append(f"prefect {n}")
    for n in worker_counts:
        kinds.append(f"cold {n}")
    print()
    print(
        "| universe | workload | "
        + " | ".join(kinds)
        + " | best speed-up vs seq guide / seq batch | per ticker (best) |"
    )
    print("|---|---|" + "---:|" * (len(kinds) + 2))
    for universe in chosen:
        for workload in WORKLOADS:
            row = [results.get((universe.name, workload, kind)) for kind in kinds]
            parallel = [
                results[(universe.name, workload, kind)]
                for kind in kinds
                if kind.startswith(("dask", "prefect"))
                and (universe.name, workload, kind) in results
            ]
            fastest = min(parallel) if parallel else None
            guide = results[(universe.name, workload, "seq guide")]
            batch = results[(universe.name, workload, "seq batch")]
            cells = [f"{t:.3f} s" if t is not None else "" for t in row]
            speedup = f"{guide / fastest:.2f}x / {batch / fastest:.2f}x" if fastest else ""
            per = f"{fastest / len(universe.tickers) * 1000:.1f} ms" if fastest else ""
            print(
                f"| {universe.name} | {workload} | " + " | ".join(cells) + f" | {speedup} | {per} |"
            )
    print()
    for line in extras:
        print(f"- {line}")
    print(f"- load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
