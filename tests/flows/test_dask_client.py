"""Connecting to Dask: a clear, quick error for an unreachable scheduler; batching plans."""

from __future__ import annotations

import os
import socket
import time

import pytest
from portfolio_analysis.pipeline import (
    MAX_BATCH_SIZE,
    RunOptions,
    SchedulerUnreachableError,
    dask_session,
    local_worker_count,
    plan_batches,
    setup_dask_client,
    worker_count,
)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_scheduler_names_the_address_and_gives_up_quickly() -> None:
    address = f"tcp://127.0.0.1:{_closed_port()}"
    started = time.perf_counter()
    with pytest.raises(SchedulerUnreachableError) as error:
        setup_dask_client(address, timeout=1)
    assert time.perf_counter() - started < 15
    message = str(error.value)
    assert address in message
    assert "scheduler is running" in message
    assert isinstance(error.value, ConnectionError)


def test_an_address_that_is_no_address_is_refused_with_the_expected_form() -> None:
    with pytest.raises(SchedulerUnreachableError, match="tcp://HOST:PORT"):
        setup_dask_client("localhost")


@pytest.mark.parametrize(
    ("n_tickers", "n_workers"), [(1, 2), (5, 1), (5, 2), (40, 2), (524, 2), (524, 4), (2000, 2)]
)
def test_batches_cover_every_ticker_once_in_order_and_stay_few(
    n_tickers: int, n_workers: int
) -> None:
    tickers = [f"T{i}" for i in range(n_tickers)]
    batches = plan_batches(tickers, n_workers)
    assert [t for batch in batches for t in batch] == tickers
    sizes = [len(b) for b in batches]
    assert max(sizes) - min(sizes) <= 1  # balanced
    assert max(sizes) <= MAX_BATCH_SIZE
    # Few tasks: a handful per worker, never one per ticker once there are many tickers.
    assert len(batches) <= max(2 * n_workers, -(-n_tickers // MAX_BATCH_SIZE) + n_workers)
    if n_tickers >= 4 * n_workers:
        assert len(batches) < n_tickers / 2


def test_explicit_batch_size_is_honoured() -> None:
    assert plan_batches(list("ABCDEFG"), 2, batch_size=3) == [
        ["A", "B", "C"],
        ["D", "E", "F"],
        ["G"],
    ]
    with pytest.raises(ValueError, match="at least 1"):
        plan_batches(["A"], 2, batch_size=0)


@pytest.mark.dask
def test_a_tcp_address_connects_to_that_scheduler(dask_client) -> None:
    address = dask_client.scheduler.address
    assert address.startswith("tcp://")
    client = setup_dask_client(address)
    try:
        assert client.scheduler.address == address
        assert worker_count(client) == 2
        assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
    finally:
        client.close()
    # Our client closing leaves the scheduler it connected to running.
    assert dask_client.submit(len, "abc").result(timeout=30) == 3


@pytest.mark.dask
def test_no_address_starts_an_embedded_cluster_sized_to_the_machine_and_closes_it() -> None:
    cores = os.cpu_count() or 1
    with dask_session(RunOptions(n_workers=cores + 3)) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == cores  # never more processes than cores
        assert {w["nthreads"] for w in workers.values()} == {1}
        cluster = client.cluster
        pids = set(client.run(os.getpid).values())
        assert os.getpid() not in pids  # worker processes, not threads in this process
    assert cluster.status.name == "closed"
    assert local_worker_count(1) == 1
    with pytest.raises(ValueError, match="at least 1"):
        local_worker_count(0)
