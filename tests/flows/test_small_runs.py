"""Small runs on an embedded cluster run in this process (pipeline.IN_PROCESS_MAX_TICKERS):
worker processes would cost more to start and stop than the work (docs/benchmarks.md)."""

from __future__ import annotations

import os

import pytest
from portfolio_analysis import embedded, pipeline
from portfolio_analysis.pipeline import IN_PROCESS_MAX_TICKERS, RunOptions, dask_session

pytestmark = pytest.mark.dask


def _worker_pids(options: RunOptions, n_tickers: int) -> set[int]:
    with dask_session(options, n_tickers) as client:
        cluster = client.cluster
        pids = set(client.run(os.getpid).values())
    assert cluster.status.name == "closed"  # an own cluster is closed either way
    return pids


def test_a_small_run_runs_in_this_process_with_a_thread_per_core() -> None:
    with dask_session(RunOptions(), len(embedded.SAMPLE_TICKERS)) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        assert [w["nthreads"] for w in workers.values()] == [os.cpu_count() or 1]
        assert set(client.run(os.getpid).values()) == {os.getpid()}


def test_larger_runs_and_an_asked_worker_count_get_worker_processes() -> None:
    assert os.getpid() not in _worker_pids(RunOptions(), IN_PROCESS_MAX_TICKERS + 1)
    # --workers 1 asks for a worker process, even for a small run.
    assert os.getpid() not in _worker_pids(RunOptions(n_workers=1), 5)
    # Without a ticker count (a caller of dask_session that does not say), processes as before.
    assert os.getpid() not in _worker_pids(RunOptions(), None)


def _rounded(value: object) -> object:
    """Floats to 9 significant digits: recency-weighted sentiment moves with the clock."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _comparable(result: dict) -> object:
    report = result["report"]
    return _rounded(
        {
            "status": result["status"],
            "failed": result["failed"],
            "combined": result["combined_analysis"],
            "portfolio": {k: v for k, v in report["portfolio"].items() if k != "timings"},
            "summary": report["summary"],
            "warnings": report["warnings"],
        }
    )


def test_the_sample_portfolio_gives_the_same_report_in_this_process_and_in_workers() -> None:
    holdings = embedded.SAMPLE_PORTFOLIO
    here = pipeline.run_combined_analysis(holdings=holdings)
    assert here["report"]["workers"] == 1  # the in-process worker
    there = pipeline.run_combined_analysis(holdings=holdings, n_workers=2)
    assert there["report"]["workers"] == 2
    assert here["status"] == "success", here["failed"]
    assert _comparable(here) == _comparable(there)
