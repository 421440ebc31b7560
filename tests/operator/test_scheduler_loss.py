"""A scheduler that goes away mid-run, a peer that is no Dask scheduler, and a cluster running
another version, on the real API server with the operator as a subprocess (issue 13).

Lost or unreachable schedulers are retried (``RunRetrying``) and end in
``Failed/SchedulerUnreachable`` with a message about the scheduler, never per-ticker failures;
a version mismatch fails at once with ``Failed/VersionMismatch``.
"""

from __future__ import annotations

import time

import pytest

from tests.operator.harness import Kube, phase_is
from tests.support.bad_schedulers import HTTP_400, cluster_with_other_version, peer
from tests.support.polling import wait_until

pytestmark = [pytest.mark.kube, pytest.mark.dask]

TICKERS = ["AAPL", "MSFT", "IBM"]
ATTEMPTS = 2
CONNECT_TIMEOUT = 5  # pipeline.DEFAULT_CONNECT_TIMEOUT, the operator's
BACKOFF = 1  # PORTFOLIO_OPERATOR_RETRY_BACKOFF_SECONDS of the test harness


def _messages(kube: Kube, name: str, reason: str) -> list[str]:
    return [e.message for e in kube.events(name) if e.reason == reason]


def test_a_scheduler_gone_mid_run_is_retried_then_fails_as_unreachable(
    kube: Kube, empty_dask_cluster, start_operator
) -> None:
    operator = start_operator(PORTFOLIO_OPERATOR_MAX_ATTEMPTS=str(ATTEMPTS))
    address = empty_dask_cluster.scheduler_address
    kube.apply_pfa("lost", {"tickers": TICKERS, "cluster": {"schedulerAddress": address}})
    # Connected, its tasks waiting on the scheduler (which has no workers): mid-run.
    wait_until(phase_is(kube, "lost", "Running"), 90, "the run starts", operator.log)
    wait_until(lambda: empty_dask_cluster.scheduler.tasks, 30, "the run submits its tasks")
    empty_dask_cluster.close()
    closed = time.monotonic()

    wait_until(phase_is(kube, "lost", "Failed"), 90, "it fails", operator.log)
    print(f"Failed/SchedulerUnreachable {time.monotonic() - closed:.1f} s after the close")
    failed = kube.condition("lost", "Failed")
    assert failed["reason"] == "SchedulerUnreachable", failed
    assert f"Dask scheduler at {address}" in failed["message"]
    assert "batch task failed" not in failed["message"]
    status = kube.status("lost")
    assert status["attempts"] == ATTEMPTS
    assert not status.get("failures"), "no ticker is blamed for the scheduler"

    def retried_saying_so() -> list[str]:
        return _messages(kube, "lost", "RunRetrying")

    retrying = wait_until(retried_saying_so, 30, "a RunRetrying Event", operator.log)
    assert len(retrying) == 1, retrying
    assert f"lost the connection to the Dask scheduler at {address} mid-run" in retrying[0]
    assert "AAPL" not in retrying[0]


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (None, "it accepted the connection but sent no Dask handshake"),
        (HTTP_400, "it answered in another protocol (e.g. HTTP)"),
    ],
    ids=["silent", "http-400"],
)
def test_a_peer_that_is_no_dask_scheduler_fails_as_unreachable_within_the_timeouts(
    kube: Kube, start_operator, answer: bytes | None, says: str
) -> None:
    operator = start_operator(PORTFOLIO_OPERATOR_MAX_ATTEMPTS=str(ATTEMPTS))
    with peer(answer) as address:
        started = time.monotonic()
        spec = {"tickers": TICKERS, "cluster": {"schedulerAddress": address}}
        kube.apply_pfa("no-dask", spec)
        wait_until(phase_is(kube, "no-dask", "Failed"), 120, "it fails", operator.log)
        elapsed = time.monotonic() - started
    print(f"Failed after {ATTEMPTS} attempts, {elapsed:.1f} s after the resource was created")
    failed = kube.condition("no-dask", "Failed")
    assert failed["reason"] == "SchedulerUnreachable", failed
    assert f"no Dask scheduler at {address}: {says}" in failed["message"]
    assert "MemoryError" not in failed["message"]
    assert kube.status("no-dask")["attempts"] == ATTEMPTS
    # Every attempt gives up within the connect timeout; the rest is the operator's
    # reaction time (Events, status patches, a 0.5 s poll), never minutes.
    assert elapsed < ATTEMPTS * CONNECT_TIMEOUT + BACKOFF + 20, elapsed
    reasons = kube.wait_for_reasons("no-dask", "RunRetrying", detail=operator.log)
    assert reasons.count("RunRetrying") == ATTEMPTS - 1, reasons


def test_a_cluster_with_another_version_fails_at_once_naming_both_versions(
    kube: Kube, start_operator
) -> None:
    operator = start_operator(PORTFOLIO_OPERATOR_MAX_ATTEMPTS=str(ATTEMPTS))
    with cluster_with_other_version("0.0.1") as address:
        kube.apply_pfa("versions", {"tickers": TICKERS, "cluster": {"schedulerAddress": address}})
        wait_until(phase_is(kube, "versions", "Failed"), 90, "it fails", operator.log)
    failed = kube.condition("versions", "Failed")
    assert failed["reason"] == "VersionMismatch", failed
    assert f"the Dask cluster at {address} runs other versions" in failed["message"]
    assert "here, 0.0.1 on worker tcp://" in failed["message"]
    assert kube.status("versions")["attempts"] == 1  # permanent: not retried
    reasons = kube.wait_for_reasons("versions", "VersionMismatch", detail=operator.log)
    assert "RunRetrying" not in reasons, reasons
