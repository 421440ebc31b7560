"""Leader election on the real API server: the protocol, then two operator processes.

The first tests drive `LeaderElector` in this process with short timings against a real
kube-apiserver (optimistic concurrency, expiry and 409s are the server's own). The others start
two ``python -m portfolio_operator`` processes with election on, authenticated with the
ServiceAccount of manifests/rbac.yaml and granted manifests/rbac.yaml's leader-election Role in
the test's namespace (where their Lease lives), and check that only one of them ever acts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import yaml
from kubernetes import client as k8s
from portfolio_operator.config import DEFAULT_LEASE_NAME
from portfolio_operator.leader import LOST_LEASE_EXIT_CODE, Attempt, LeaderElector

from tests.operator.harness import MANIFESTS, Kube, OperatorProcess, api_client, phase_is
from tests.support.control_plane import ControlPlane, free_loopback_port
from tests.support.polling import wait_until

pytestmark = [pytest.mark.kube]

TICKERS = ["AAPL", "MSFT", "IBM"]
# The in-process tests' timings: client-go's ratios, scaled down.
FAST = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.5}
# The operators run with the defaults (15 s, 10 s, 2 s): a standby may take a dead leader's
# Lease once it saw it unrenewed for 15 s, so it takes over within 15 s + one retry (2.4 s with
# jitter) of the last renewal, which was at most one retry period before the kill.
TAKEOVER_BOUND = 15 + 2.4 + 2 + 3  # + margin for a busy machine


# -- the protocol, in process --------------------------------------------------------------------


@pytest.fixture
def leases(control_plane: ControlPlane) -> Iterator[k8s.CoordinationV1Api]:
    api = api_client(control_plane)
    yield k8s.CoordinationV1Api(api)
    api.close()


def elector(
    api: k8s.CoordinationV1Api, namespace: str, identity: str, **timing: float
) -> LeaderElector:
    return LeaderElector(api, namespace, DEFAULT_LEASE_NAME, identity, **(FAST | timing))


def holder(api: k8s.CoordinationV1Api, namespace: str) -> str | None:
    """Who holds the Lease; None before the first candidate has created it."""
    try:
        lease = api.read_namespaced_lease(DEFAULT_LEASE_NAME, namespace)
    except k8s.ApiException as error:
        if error.status == 404:
            return None
        raise
    return lease.spec.holder_identity


def test_a_candidate_waits_for_the_leaders_lease_to_expire_unrenewed(
    leases: k8s.CoordinationV1Api, kube_namespace: str
) -> None:
    a, b = elector(leases, kube_namespace, "a"), elector(leases, kube_namespace, "b")
    assert a.try_acquire_or_renew() is Attempt.HELD  # no Lease yet: created
    assert b.try_acquire_or_renew() is Attempt.TAKEN
    lease = f"{kube_namespace}/{DEFAULT_LEASE_NAME}"
    assert b.standby_reason() == f"standby: waiting for Lease {lease} (held by a)"
    lost: list[str] = []
    a.keep_renewing(on_lost=lost.append)
    try:
        # While a renews, b never gets it, however long past a lease duration it tries.
        until = time.monotonic() + 2 * FAST["lease_duration"]
        while time.monotonic() < until:
            assert b.try_acquire_or_renew() is Attempt.TAKEN
            time.sleep(FAST["retry_period"])
    finally:
        a.stop_renewing()  # a "dies": it stops renewing without releasing
    died = time.monotonic()
    wait_until(lambda: b.try_acquire_or_renew() is Attempt.HELD, 10, "b takes the expired Lease",
               interval=FAST["retry_period"])  # fmt: skip
    waited = time.monotonic() - died
    # b measures expiry from its last sight of a renewal: at most a retry period before a died.
    assert FAST["lease_duration"] - 2 * FAST["retry_period"] <= waited <= FAST["lease_duration"] + 2
    assert not lost
    spec = leases.read_namespaced_lease(DEFAULT_LEASE_NAME, kube_namespace).spec
    assert (spec.holder_identity, spec.lease_transitions) == ("b", 1)
    assert spec.lease_duration_seconds == 3
    assert spec.renew_time >= spec.acquire_time


def test_of_candidates_racing_for_a_free_lease_exactly_one_wins(
    leases: k8s.CoordinationV1Api, kube_namespace: str
) -> None:
    first = elector(leases, kube_namespace, "first")
    assert first.try_acquire_or_renew() is Attempt.HELD
    assert first.release() and holder(leases, kube_namespace) is None
    candidates = [elector(leases, kube_namespace, f"c{i}") for i in range(8)]
    start = threading.Barrier(len(candidates))
    outcomes: dict[str, Attempt] = {}

    def attempt(candidate: LeaderElector) -> None:
        start.wait()
        outcomes[candidate.identity] = candidate.try_acquire_or_renew()

    threads = [threading.Thread(target=attempt, args=(c,)) for c in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [name for name, outcome in outcomes.items() if outcome is Attempt.HELD]
    assert len(outcomes) == 8 and len(winners) == 1, outcomes  # the others: 409 or TAKEN
    assert holder(leases, kube_namespace) == winners[0]


def test_a_released_lease_is_taken_at_once(
    leases: k8s.CoordinationV1Api, kube_namespace: str
) -> None:
    a, b = elector(leases, kube_namespace, "a"), elector(leases, kube_namespace, "b")
    assert a.try_acquire_or_renew() is Attempt.HELD
    assert b.try_acquire_or_renew() is Attempt.TAKEN
    a.keep_renewing(on_lost=pytest.fail)
    assert a.release() and not a.is_leader
    assert holder(leases, kube_namespace) is None
    assert b.try_acquire_or_renew() is Attempt.HELD  # no waiting for expiry
    assert not a.release(), "a no longer holds it: nothing to release"
    assert holder(leases, kube_namespace) == "b"


def test_a_leader_that_sees_another_holder_gives_up_at_once(
    leases: k8s.CoordinationV1Api, kube_namespace: str
) -> None:
    a = elector(leases, kube_namespace, "a")
    assert a.try_acquire_or_renew() is Attempt.HELD
    lost: list[str] = []
    a.keep_renewing(on_lost=lost.append)
    try:
        lease = leases.read_namespaced_lease(DEFAULT_LEASE_NAME, kube_namespace)
        lease.spec.holder_identity = "intruder"  # e.g. a leader paused longer than its Lease
        leases.replace_namespaced_lease(DEFAULT_LEASE_NAME, kube_namespace, lease)
        wait_until(lambda: lost, 2 * FAST["retry_period"] + 1, "a gives up")
    finally:
        a.stop_renewing()
    assert lost == ["the Lease is held by intruder now"]


def test_a_leader_that_cannot_renew_gives_up_within_the_renew_deadline(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    api = api_client(control_plane)
    a = elector(k8s.CoordinationV1Api(api), kube_namespace, "a")
    renewed = time.monotonic()
    assert a.try_acquire_or_renew() is Attempt.HELD
    lost: list[str] = []
    a.keep_renewing(on_lost=lost.append)
    # The API server becomes unreachable for this leader (nothing listens on that port; the
    # kubeconfig loader's hook would set the server's address again before each request).
    api.configuration.refresh_api_key_hook = None
    api.configuration.host = f"https://127.0.0.1:{free_loopback_port()}"
    try:
        wait_until(lambda: lost, FAST["renew_deadline"] + 2, "a gives up")
    finally:
        a.stop_renewing()
        api.close()
    gave_up = time.monotonic() - renewed
    assert lost == ["not renewed within the renew deadline of 2 s"]
    # Before any standby could take the Lease over (a lease duration after the last renewal).
    assert FAST["renew_deadline"] <= gave_up < FAST["lease_duration"], gave_up


# -- two operator processes ------------------------------------------------------------------


@pytest.fixture
def start_candidate(
    control_plane: ControlPlane, kube_namespace: str, start_operator
) -> Callable[..., OperatorProcess]:
    """Operators with election on, their Lease in the test's namespace, as in a pod."""
    role = [d for d in yaml.safe_load_all((MANIFESTS / "rbac.yaml").read_text())
            if d and d["kind"] in ("Role", "RoleBinding")]  # fmt: skip
    assert role, "manifests/rbac.yaml grants no leader-election Role"
    for document in role:
        document["metadata"]["namespace"] = kube_namespace
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(role))

    def start(identity: str, scheduler_address: str | None = None) -> OperatorProcess:
        return start_operator(
            scheduler_address, PORTFOLIO_OPERATOR_LEADER_ELECTION="true",
            POD_NAMESPACE=kube_namespace, POD_NAME=identity,
        )  # fmt: skip

    return start


def lease_holder(kube: Kube) -> str | None:
    return holder(k8s.CoordinationV1Api(kube.api), kube.namespace)


def leader_of(kube: Kube, operators: dict[str, OperatorProcess]) -> str:
    """The identity holding the Lease once its operator reports ready (kopf watching)."""

    def elected() -> str | None:
        name = lease_holder(kube)
        if name not in operators:
            return None
        try:
            return name if operators[name].get("/readyz") == (200, "ready\n") else None
        except OSError:  # busy starting kopf (its event loop answers late)
            return None

    return wait_until(elected, 60, "one operator leads", lambda: logs(operators))


def logs(operators: dict[str, OperatorProcess]) -> str:
    return "\n".join(f"--- {name}\n{p.log(30)}" for name, p in operators.items())


def started_kopf(process: OperatorProcess) -> bool:
    return "portfolio-operator ready:" in process.log_path.read_text(errors="replace")


@pytest.mark.dask
def test_two_operators_one_leader_every_analysis_runs_once(
    kube: Kube, dask_cluster, start_candidate
) -> None:
    operators = {name: start_candidate(name) for name in ("operator-a", "operator-b")}
    leader = leader_of(kube, operators)
    (standby,) = set(operators) - {leader}
    lease = f"{kube.namespace}/{DEFAULT_LEASE_NAME}"
    waiting = f"standby: waiting for Lease {lease} (held by {leader})\n"
    assert operators[standby].get("/readyz") == (200, waiting)
    assert operators[standby].get("/healthz")[0] == 200

    names = [f"once-{i}" for i in range(4)]
    for i, name in enumerate(names):
        cluster = {"schedulerAddress": dask_cluster.scheduler_address}
        kube.apply_pfa(name, {"tickers": TICKERS[: 1 + i % 3], "cluster": cluster})
    wait_until(lambda: all(phase_is(kube, n, "Succeeded", "Failed")() for n in names), 180,
               "every analysis ends", lambda: logs(operators))  # fmt: skip
    for name in names:
        kube.wait_for_reasons(name, "Accepted", "Completed", detail=lambda: logs(operators))
        time.sleep(0.5)  # would a second operator's Events follow?
        reasons = kube.reasons(name)
        assert reasons.count("Accepted") == 1 and reasons.count("Completed") == 1, reasons
        assert "RunRestarted" not in reasons, reasons
        status = kube.status(name)
        assert status["phase"] == "Succeeded" and status["attempts"] == 1, status
    assert lease_holder(kube) == leader
    assert not started_kopf(operators[standby]), "the standby must never start kopf"


@pytest.mark.dask
def test_the_standby_takes_over_a_killed_leaders_run_within_the_lease_duration(
    kube: Kube, empty_dask_cluster, start_candidate
) -> None:
    address = empty_dask_cluster.scheduler_address
    operators = {name: start_candidate(name, address) for name in ("operator-a", "operator-b")}
    leader = leader_of(kube, operators)
    kube.apply_pfa("takeover", {"tickers": TICKERS, "cluster": {"onCompletion": "Keep"}})
    wait_until(lambda: kube.dask("daskclusters", "takeover-dask"), 60, "the cluster exists",
               lambda: logs(operators))  # fmt: skip
    kube.mark_cluster_running("takeover-dask")
    wait_until(phase_is(kube, "takeover", "Running"), 60, "the run started",
               lambda: logs(operators))  # fmt: skip

    operators.pop(leader).kill9()
    killed = time.monotonic()
    new_leader = leader_of(kube, operators)
    takeover = time.monotonic() - killed
    print(f"standby took over {takeover:.1f} s after kill -9 of the leader")
    assert takeover <= TAKEOVER_BOUND, takeover

    kube.wait_for_reasons("takeover", "RunRestarted", timeout=60,
                          detail=operators[new_leader].log)  # fmt: skip
    empty_dask_cluster.scale(2)  # workers arrive: the run can finish now
    wait_until(phase_is(kube, "takeover", "Succeeded", "Failed"), 180, "the analysis ends",
               operators[new_leader].log)  # fmt: skip
    time.sleep(2)  # would a second terminal transition follow?
    status = kube.status("takeover")
    assert status["phase"] == "Succeeded", status
    reasons = kube.wait_for_reasons("takeover", "Completed", detail=operators[new_leader].log)
    assert reasons.count("Completed") == 1 and reasons.count("ClusterCreated") == 1, reasons
    assert [c["metadata"]["name"] for c in kube.dask("daskclusters")] == ["takeover-dask"]


def test_sigterm_releases_the_lease_so_the_standby_takes_over_at_once(
    kube: Kube, start_candidate
) -> None:
    operators = {name: start_candidate(name) for name in ("operator-a", "operator-b")}
    leader = leader_of(kube, operators)
    stopping = operators.pop(leader)
    began = time.monotonic()
    assert stopping.stop() == 0
    assert "released Lease" in stopping.log()
    new_leader = leader_of(kube, operators)
    takeover = time.monotonic() - began
    print(f"standby took over {takeover:.1f} s after SIGTERM to the leader")
    # One retry period (2 s, jittered) plus kopf's start, not a lease duration (15 s).
    assert takeover < 10, takeover
    assert new_leader != leader


def test_a_leader_that_loses_its_lease_exits_at_once(kube: Kube, start_candidate) -> None:
    operators = {"operator-a": start_candidate("operator-a")}
    leader_of(kube, operators)
    leases = k8s.CoordinationV1Api(kube.api)
    lease = leases.read_namespaced_lease(DEFAULT_LEASE_NAME, kube.namespace)
    lease.spec.holder_identity = "intruder"
    leases.replace_namespaced_lease(DEFAULT_LEASE_NAME, kube.namespace, lease)
    operator = operators["operator-a"]
    wait_until(lambda: operator.process.poll() is not None, 10, "the operator exits", operator.log)
    assert operator.process.returncode == LOST_LEASE_EXIT_CODE
    assert "lost the leader Lease (the Lease is held by intruder now)" in operator.log()
