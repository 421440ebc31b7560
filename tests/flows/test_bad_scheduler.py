"""A scheduler that is not there, is no Dask scheduler, goes away mid-run, or runs other
versions: each is one clear exception naming the address, within the connect timeout, and a
lost scheduler is never blamed on the tickers (issue 13)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from portfolio_analysis import embedded, pipeline
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.pipeline import (
    SchedulerLostError,
    SchedulerUnreachableError,
    VersionMismatchError,
    setup_dask_client,
    version_mismatches,
)

from tests.support.bad_schedulers import (
    HTTP_400,
    cluster_with_other_version,
    peer,
    scheduler_process,
    wait_for_tasks,
)
from tests.support.dask_cluster import local_cluster

TIMEOUT = 2.0


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (None, f"it accepted the connection but sent no Dask handshake within {TIMEOUT:g} s"),
        (HTTP_400, "it answered in another protocol (e.g. HTTP)"),
        (b"", "it closed the connection without a Dask handshake"),
    ],
    ids=["silent", "http-400", "closes"],
)
def test_a_peer_that_is_no_dask_scheduler_fails_within_the_timeout_in_one_line(
    answer: bytes | None, says: str
) -> None:
    import distributed  # noqa: F401  (imported before timing: the first import takes seconds)

    with peer(answer) as address:
        started = time.perf_counter()
        with pytest.raises(SchedulerUnreachableError) as error:
            setup_dask_client(address, timeout=TIMEOUT)
        elapsed = time.perf_counter() - started
    assert elapsed < TIMEOUT + 1.5, elapsed
    message = str(error.value)
    assert message.startswith(f"no Dask scheduler at {address}: {says}"), message
    assert "8786" in message  # says what a scheduler's port looks like
    assert "\n" not in message
    assert isinstance(error.value, ConnectionError)


def _analysis_in_thread(address: str) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = pipeline.run_combined_analysis(
                ["AAPL", "MSFT"], dask_scheduler=address
            )
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.dask
def test_sigterm_of_the_scheduler_mid_run_raises_scheduler_lost_not_ticker_failures() -> None:
    with scheduler_process() as (process, address):
        thread, outcome = _analysis_in_thread(address)
        assert wait_for_tasks(address) > 0  # connected and submitted: mid-run
        os.kill(process.pid, signal.SIGTERM)
        lost_at = time.perf_counter()
        thread.join(60)
        noticed = time.perf_counter() - lost_at
    assert not thread.is_alive(), "the run never noticed its scheduler was gone"
    assert "result" not in outcome, outcome.get("result", {}).get("failed")
    error = outcome["error"]
    assert isinstance(error, SchedulerLostError), repr(error)
    assert isinstance(error, ConnectionError)  # what retrying callers retry
    message = str(error)
    assert f"lost the connection to the Dask scheduler at {address} mid-run" in message
    assert "AAPL" not in message and "\n" not in message
    assert noticed < 30, noticed


@pytest.mark.dask
def test_closing_a_busy_cluster_mid_run_raises_scheduler_lost() -> None:
    tickers = embedded.universe_tickers("sp500")[:120]
    config = AnalysisConfig(embedded_datasets=("sp500",), batch_size=5)
    with local_cluster(2) as cluster:
        address = cluster.scheduler_address
        client = setup_dask_client(address)
        closed: list[int] = []

        def close_the_cluster(stage: str, done: int, total: int) -> None:
            if not closed and stage == "pricing" and done >= total // 4:
                closed.append(done)
                cluster.close()

        try:
            with pytest.raises(SchedulerLostError, match=f"scheduler at {address} mid-run"):
                pipeline.run_combined_analysis(
                    tickers, config=config, client=client, progress=close_the_cluster
                )
        finally:
            client.close()
    assert closed and closed[0] < len(tickers), "closed mid-run"


@pytest.mark.dask
def test_a_worker_with_another_version_of_this_package_is_refused_naming_both() -> None:
    from importlib.metadata import version

    from portfolio_analysis.pipeline import OWN_DISTRIBUTION

    with (
        cluster_with_other_version("0.0.1") as address,
        pytest.raises(VersionMismatchError) as error,
    ):
        setup_dask_client(address)
    message = str(error.value)
    assert f"the Dask cluster at {address} runs other versions" in message
    assert f"{OWN_DISTRIBUTION} {version(OWN_DISTRIBUTION)} here, 0.0.1 on worker tcp://" in message
    assert not isinstance(error.value, ConnectionError)  # retrying does not heal it


def test_version_mismatches_compare_python_by_minor_and_the_scheduler_by_dask_only() -> None:
    def side(python: str, dask: str, own: str | None) -> dict:
        packages = {"python": python, "dask": dask, "distributed": dask}
        if own:
            packages["portfolio-operator"] = own
        return {"packages": packages}

    same = side("3.11.7.final.0", "2026.8.0", "0.1.0")
    versions = {
        "client": same,
        "scheduler": side("3.11.2.final.0", "2026.8.0", None),  # runs none of our code
        "workers": {"tcp://w1:1": side("3.11.9.final.0", "2026.8.0", "0.1.0")},
    }
    assert version_mismatches(versions) == []
    versions["workers"]["tcp://w2:1"] = side("3.12.1.final.0", "2026.8.0", None)
    versions["workers"]["tcp://w3:1"] = side("3.12.1.final.0", "2026.8.0", None)
    versions["scheduler"] = side("3.11.2.final.0", "2025.1.0", None)
    assert version_mismatches(versions) == [
        "python 3.11 here, 3.12 on worker tcp://w2:1 (and 1 more)",
        "dask 2026.8.0 here, 2025.1.0 on the scheduler",
        "distributed 2026.8.0 here, 2025.1.0 on the scheduler",
        "portfolio-operator 0.1.0 here, missing on worker tcp://w2:1 (and 1 more)",
    ]
