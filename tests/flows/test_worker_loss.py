"""A worker process killed mid-run is survived: the result equals an undisturbed run's.

The scheduler re-runs the lost worker's tasks elsewhere and recomputes price batches that
lived only in its memory from their lineage; the pipeline holds the futures that make that
possible. Uses its own LocalCluster, since a worker of it gets killed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from portfolio_analysis import embedded, pipeline
from portfolio_analysis.config import AnalysisConfig

from tests.support.dask_cluster import local_cluster

pytestmark = pytest.mark.dask

TIME_DEPENDENT = {"recency_weighted_sentiment"}  # weights headlines by age: moves with the clock


@pytest.fixture(scope="module")
def killable_client() -> Iterator[object]:
    from distributed import Client

    with local_cluster(2) as cluster, Client(cluster) as client:
        yield client


def _stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIME_DEPENDENT} for row in rows]


def test_killing_a_worker_mid_run_gives_the_undisturbed_result(killable_client) -> None:
    client = killable_client
    tickers = embedded.universe_tickers("sp500")[:240]
    # Small batches: many tasks in flight, so the kill lands in the middle of the run.
    config = AnalysisConfig(embedded_datasets=("sp500",), batch_size=10)
    undisturbed = pipeline.run_combined_analysis(tickers, config=config, client=client)
    assert undisturbed["report"]["securities_analyzed"] >= 230

    pids = client.run(os.getpid)  # worker address -> process id
    killed: dict = {}

    def kill_a_busy_worker(stage: str, done: int, total: int) -> None:
        if killed or stage != "pricing" or done < total // 4:
            return
        processing = client.processing()
        held = client.has_what()
        busy = [address for address, keys in processing.items() if keys and address in pids]
        if not busy:
            return
        address = busy[0]
        killed.update(
            address=address,
            processing=len(processing[address]),
            held=len(held.get(address, ())),
            done=done,
            total=total,
        )
        os.kill(pids[address], signal.SIGKILL)

    disturbed = pipeline.run_combined_analysis(
        tickers, config=config, client=client, progress=kill_a_busy_worker
    )

    assert killed, "the run finished before a worker could be killed"
    assert killed["done"] < killed["total"]  # mid-run
    assert killed["processing"] > 0  # it was running tasks when it died
    assert killed["held"] > 0  # and held results (price batches) that had to be recomputed
    assert killed["address"] not in client.scheduler_info(n_workers=-1)["workers"]

    assert disturbed["status"] == undisturbed["status"]
    assert disturbed["failed"] == undisturbed["failed"]
    assert _stable(disturbed["combined_analysis"]) == _stable(undisturbed["combined_analysis"])
    report, reference = disturbed["report"], undisturbed["report"]
    assert report["securities_analyzed"] == reference["securities_analyzed"]
    assert report["portfolio"] == reference["portfolio"]
    assert report["summary"] == reference["summary"]
