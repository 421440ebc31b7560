"""The reconcile decision as a pure function: what the operator does from what it observes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from portfolio_operator import cluster as clusters
from portfolio_operator.config import OperatorConfig
from portfolio_operator.reconcile import (
    CancelRun,
    CreateCluster,
    Decision,
    DeleteCluster,
    DeleteResource,
    ForgetRun,
    PatchStatus,
    PostEvent,
    StartRun,
    WriteReport,
    decide,
    observe,
)
from portfolio_operator.runs import RunState, RunView
from portfolio_operator.status import format_time, get_condition

from tests.operator.conftest import make_pfa

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
CONFIG = OperatorConfig(worker_image="example/worker:1", poll_seconds=2.0, progress_seconds=5.0)
RESULT = {
    "status": "success",
    "report": {
        "securities_analyzed": 2,
        "summary": {
            "avg_rsi": 55.5,
            "avg_sma_20": 101.25,
            "avg_news_sentiment": 0.12,
            "securities_with_positive_sentiment": 2,
            "securities_with_negative_sentiment": 0,
        },
        "portfolio": {"total_return": 0.1, "sharpe_ratio": 1.3, "max_drawdown": 0.05},
    },
    "combined_analysis": [
        {"ticker": "AAPL", "close": 10.0, "rsi_14": 50.0, "avg_sentiment": 0.1},
        {"ticker": "MSFT", "close": 20.0, "rsi_14": 61.0, "avg_sentiment": 0.14},
    ],
    "failed": [],
}


def of(decision: Decision, kind: type) -> list[Any]:
    return [a for a in decision.actions if isinstance(a, kind)]


def patched(decision: Decision) -> dict[str, Any]:
    """The status fields the decision writes (all patches merged)."""
    merged: dict[str, Any] = {}
    for patch in of(decision, PatchStatus):
        merged.update(patch.fields)
    return merged


def apply(obj: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """What the API server stores after the decision's merge patches (None deletes)."""
    status = dict(obj.get("status") or {})
    for key, value in patched(decision).items():
        if value is None:
            status.pop(key, None)
        else:
            status[key] = value
    return {**obj, "status": status}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = get_condition(status.get("conditions"), type_)
    assert found is not None, f"no {type_} condition in {status.get('conditions')}"
    return found


def run_view(state: RunState, **extra: Any) -> RunView:
    return RunView(generation=1, state=state, address="tcp://10.0.0.1:8786", **extra)


def cluster_view(phase: str | None = "Running", **extra: Any) -> clusters.ClusterView:
    request_hash = clusters.spec_hash(
        clusters.desired_cluster(
            observe(make_pfa(), NOW, CONFIG).request.cluster,  # type: ignore[union-attr]
            CONFIG.worker_image,
        )
    )
    values = {
        "exists": True,
        "owned": True,
        "phase": phase,
        "spec_hash": request_hash,
        "autoscaler_exists": True,
        "autoscaler_owned": True,
    }
    values.update(extra)
    return clusters.ClusterView(**values)


def accepted(spec: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    """A resource the operator has accepted (generation 1), plus extra status fields."""
    obj = make_pfa(spec)
    obj = apply(obj, decide(observe(obj, NOW, CONFIG)))
    obj["status"].update(status)
    return obj


def test_a_new_resource_is_accepted_pending_with_start_time_and_conditions() -> None:
    decision = decide(observe(make_pfa(), NOW, CONFIG))
    fields = patched(decision)
    assert fields["phase"] == "Pending"
    assert fields["observedGeneration"] == 1
    assert fields["startTime"] == format_time(NOW)
    assert fields["tickerCount"] == 2
    assert fields["workers"] == "1-4"
    for type_ in ("Running", "Complete", "Failed"):
        assert condition(fields, type_)["status"] == "False"
    assert [e.reason for e in of(decision, PostEvent)] == ["Accepted"]
    assert decision.requeue == 0


def test_cluster_name_is_written_into_status_before_the_cluster_is_created() -> None:
    first = decide(observe(make_pfa(), NOW, CONFIG))
    assert not of(first, CreateCluster), "must not create before the name is in status"
    dask = patched(first)["daskCluster"]
    assert dask["name"] == "demo-dask" and dask["owned"] is True
    assert dask["schedulerAddress"] == "tcp://demo-dask-scheduler.team-a.svc:8786"

    obj = apply(make_pfa(), first)
    second = decide(observe(obj, NOW, CONFIG, cluster=clusters.ClusterView(exists=False)))
    assert of(second, CreateCluster) == [CreateCluster("demo-dask")]
    assert patched(second)["phase"] == "Provisioning"
    assert "ClusterCreated" in [e.reason for e in of(second, PostEvent)]
    assert condition(patched(second), "ClusterReady")["reason"] == "WaitingForScheduler"


def test_a_name_lost_from_status_is_written_again_before_creating() -> None:
    obj = accepted()
    obj["status"].pop("daskCluster")
    decision = decide(observe(obj, NOW, CONFIG))
    assert not of(decision, CreateCluster)
    assert patched(decision)["daskCluster"]["name"] == "demo-dask"


def test_waiting_for_the_scheduler_says_so_and_is_quiet_when_repeated() -> None:
    obj = apply(accepted(), decide(observe(accepted(), NOW, CONFIG)))
    view = cluster_view(phase="Pending")
    first = decide(observe(obj, NOW, CONFIG, cluster=view))
    assert not of(first, StartRun) and not of(first, CreateCluster)
    ready = condition(patched(first), "ClusterReady")
    assert ready["status"] == "False" and "waiting for DaskCluster demo-dask" in ready["message"]
    assert first.requeue == CONFIG.poll_seconds
    again = decide(observe(apply(obj, first), NOW, CONFIG, cluster=view))
    assert of(again, PatchStatus) == [], "an unchanged observation must not write status again"


def test_pods_that_do_not_start_are_named_then_fail_the_startup_deadline() -> None:
    obj = apply(accepted(), decide(observe(accepted(), NOW, CONFIG)))
    problem = "scheduler pod demo-dask-scheduler-x: ImagePullBackOff: Back-off pulling image"
    view = cluster_view(phase="Pending", pod_problems=(problem,))
    waiting = decide(observe(obj, NOW, CONFIG, cluster=view))
    assert problem in condition(patched(waiting), "ClusterReady")["message"]
    assert patched(waiting).get("phase", "Provisioning") == "Provisioning"

    late = NOW + timedelta(seconds=601)
    decision = decide(observe(apply(obj, waiting), late, CONFIG, cluster=view))
    failed = condition(patched(decision), "Failed")
    assert (patched(decision)["phase"], failed["reason"]) == ("Failed", "StartupDeadlineExceeded")
    assert "startupDeadlineSeconds=600" in failed["message"] and problem in failed["message"]
    assert not of(decision, StartRun)


def test_a_running_cluster_starts_the_run_on_its_scheduler() -> None:
    obj = apply(accepted(), decide(observe(accepted(), NOW, CONFIG)))
    decision = decide(observe(obj, NOW, CONFIG, cluster=cluster_view()))
    assert of(decision, StartRun) == [StartRun("tcp://demo-dask-scheduler.team-a.svc:8786")]
    fields = patched(decision)
    assert fields["attempts"] == 1
    assert condition(fields, "ClusterReady")["status"] == "True"


def test_a_name_clash_with_a_foreign_cluster_fails_instead_of_adopting_it() -> None:
    obj = apply(accepted(), decide(observe(accepted(), NOW, CONFIG)))
    decision = decide(observe(obj, NOW, CONFIG, cluster=cluster_view(owned=False)))
    assert patched(decision)["phase"] == "Failed"
    assert condition(patched(decision), "Failed")["reason"] == "ClusterNameConflict"
    assert not of(decision, StartRun) and not of(decision, DeleteCluster)


def test_a_changed_cluster_spec_replaces_the_cluster() -> None:
    obj = apply(accepted(), decide(observe(accepted(), NOW, CONFIG)))
    decision = decide(observe(obj, NOW, CONFIG, cluster=cluster_view(spec_hash="old")))
    assert of(decision, DeleteCluster) == [DeleteCluster("demo-dask")]
    assert not of(decision, StartRun)


def test_an_external_scheduler_is_used_without_creating_a_cluster() -> None:
    spec = {"tickers": ["AAPL"], "cluster": {"schedulerAddress": "tcp://dask.shared:8786"}}
    decision = decide(observe(accepted(spec), NOW, CONFIG))
    assert of(decision, StartRun) == [StartRun("tcp://dask.shared:8786")]
    assert not of(decision, CreateCluster)
    fields = patched(decision)
    assert fields["workers"] == "external"
    assert fields["daskCluster"]["owned"] is False
    assert condition(fields, "ClusterReady")["reason"] == "ExternalScheduler"


def test_objects_of_our_names_that_are_not_ours_are_never_deleted_or_used() -> None:
    # A DaskAutoscaler someone else made with the name our cluster would use: refuse, untouched.
    obj = apply(accepted(), decide(observe(accepted(), NOW, CONFIG)))
    decision = decide(observe(obj, NOW, CONFIG, cluster=cluster_view(autoscaler_owned=False)))
    assert condition(patched(decision), "Failed")["reason"] == "ClusterNameConflict"
    assert "DaskAutoscaler" in condition(patched(decision), "Failed")["message"]
    assert not of(decision, CreateCluster) and not of(decision, DeleteCluster)
    # The spec moves to an external scheduler while a foreign DaskCluster holds our name.
    moved = apply(obj, decision)
    moved["status"]["phase"], moved["metadata"]["generation"] = "Pending", 1
    moved["spec"] = {**moved["spec"], "cluster": {"schedulerAddress": "tcp://dask.shared:8786"}}
    decision = decide(observe(moved, NOW, CONFIG, cluster=cluster_view(owned=False)))
    assert not of(decision, DeleteCluster)


def test_a_run_still_connecting_is_not_reported_as_started() -> None:
    obj = accepted(attempts=1, phase="Provisioning")
    decision = decide(observe(obj, NOW, CONFIG, run=run_view(RunState.CONNECTING)))
    fields = patched(decision)
    assert fields.get("phase", "Provisioning") == "Provisioning"
    assert condition(fields, "Running")["reason"] == "Connecting"
    assert "tcp://10.0.0.1:8786" in condition(fields, "Running")["message"]
    assert not [e for e in of(decision, PostEvent) if e.reason == "Started"]


def test_a_running_analysis_reports_phase_progress_and_one_started_event() -> None:
    obj = accepted(attempts=1)
    run = run_view(RunState.RUNNING, progress=("technicals", 3, 8))
    first = decide(observe(obj, NOW, CONFIG, run=run))
    fields = patched(first)
    assert fields["phase"] == "Running"
    assert fields["progress"] == {"stage": "technicals", "done": 3, "total": 8}
    assert condition(fields, "Running")["status"] == "True"
    assert [e.reason for e in of(first, PostEvent)] == ["Started"]
    second = decide(observe(apply(obj, first), NOW, CONFIG, run=run))
    assert of(second, PostEvent) == []
    assert second.requeue == CONFIG.progress_seconds


def test_a_successful_run_writes_report_figures_and_complete_condition() -> None:
    obj = accepted(phase="Running", attempts=1)
    later = NOW + timedelta(seconds=42)
    decision = decide(observe(obj, later, CONFIG, run=run_view(RunState.SUCCEEDED, result=RESULT)))
    assert of(decision, WriteReport) and of(decision, ForgetRun)
    fields = patched(decision)
    assert fields["phase"] == "Succeeded"
    assert fields["durationSeconds"] == 42
    assert fields["completionTime"] == format_time(later)
    assert fields["summary"]["avgRsi"] == 55.5
    assert fields["summary"]["avgSentiment"] == 0.12
    assert fields["portfolio"]["sharpeRatio"] == 1.3
    assert [r["ticker"] for r in fields["results"]] == ["AAPL", "MSFT"]
    assert fields["reportConfigMap"] == "demo-report"
    assert condition(fields, "Complete")["status"] == "True"
    assert condition(fields, "Failed")["status"] == "False"
    assert condition(fields, "Running")["status"] == "False"


def test_a_run_where_every_security_failed_ends_failed_with_the_reasons() -> None:
    result = {
        "status": "failed",
        "report": {"securities_analyzed": 0, "summary": {}, "portfolio": {}},
        "combined_analysis": [],
        "failed": [{"ticker": "ZZZZ", "stage": "pricing", "reason": "no source has ZZZZ"}],
    }
    obj = accepted(phase="Running", attempts=1)
    decision = decide(observe(obj, NOW, CONFIG, run=run_view(RunState.SUCCEEDED, result=result)))
    fields = patched(decision)
    assert fields["phase"] == "Failed"
    failed = condition(fields, "Failed")
    assert failed["status"] == "True" and "ZZZZ: no source has ZZZZ" in failed["message"]
    assert fields["failures"] == [
        {"ticker": "ZZZZ", "stage": "pricing", "reason": "no source has ZZZZ"}
    ]


def test_a_lost_scheduler_is_retried_with_backoff_then_fails() -> None:
    lost = run_view(RunState.FAILED, error="ConnectionError: gone", temporary=True)
    retry = decide(observe(accepted(phase="Running", attempts=1), NOW, CONFIG, run=lost))
    assert of(retry, ForgetRun) and patched(retry).get("phase") is None
    assert retry.requeue == CONFIG.retry_backoff_seconds
    assert "RunRetrying" in [e.reason for e in of(retry, PostEvent)]
    # Woken early (the status patch, a restart), it still waits out the backoff, then starts.
    waiting = apply(accepted(phase="Running", attempts=1), retry)
    early = decide(observe(waiting, NOW + timedelta(seconds=1), CONFIG, cluster=cluster_view()))
    assert not of(early, StartRun) and early.requeue == CONFIG.retry_backoff_seconds - 1
    later = NOW + timedelta(seconds=CONFIG.retry_backoff_seconds)
    due = decide(observe(waiting, later, CONFIG, cluster=cluster_view()))
    assert of(due, StartRun) and patched(due)["nextAttemptTime"] is None
    last = CONFIG.max_attempts
    final = decide(observe(accepted(phase="Running", attempts=last), NOW, CONFIG, run=lost))
    assert patched(final)["phase"] == "Failed"
    assert condition(patched(final), "Failed")["reason"] == "SchedulerUnreachable"


def test_a_bug_in_the_run_fails_at_once() -> None:
    broken = run_view(RunState.FAILED, error="KeyError: 'close'", temporary=False)
    decision = decide(observe(accepted(phase="Running", attempts=1), NOW, CONFIG, run=broken))
    assert patched(decision)["phase"] == "Failed"
    assert condition(patched(decision), "Failed")["reason"] == "AnalysisError"


def test_the_deadline_counts_from_status_start_time_and_cancels_the_run() -> None:
    spec = {"tickers": ["AAPL"], "activeDeadlineSeconds": 60}
    obj = accepted(spec, phase="Running", attempts=1)
    obj["status"]["startTime"] = format_time(NOW - timedelta(seconds=61))
    decision = decide(observe(obj, NOW, CONFIG, run=run_view(RunState.RUNNING)))
    assert of(decision, CancelRun), "the deadline must stop the analysis, not only mark it"
    fields = patched(decision)
    assert fields["phase"] == "Failed"
    assert condition(fields, "Failed")["reason"] == "DeadlineExceeded"
    assert fields["durationSeconds"] == 61


def test_the_next_pass_is_no_later_than_the_deadline() -> None:
    spec = {"tickers": ["AAPL"], "activeDeadlineSeconds": 60}
    obj = accepted(spec, phase="Running", attempts=1)
    obj["status"]["startTime"] = format_time(NOW - timedelta(seconds=58))
    decision = decide(observe(obj, NOW, CONFIG, run=run_view(RunState.RUNNING)))
    assert decision.requeue == pytest.approx(2.0)


def test_after_an_operator_restart_the_run_starts_again_on_the_same_cluster() -> None:
    obj = apply(accepted(), decide(observe(accepted(), NOW, CONFIG)))  # name in status
    obj["status"].update(phase="Running", attempts=1)
    decision = decide(observe(obj, NOW, CONFIG, cluster=cluster_view(), run=None))
    assert not of(decision, CreateCluster), "a restarted operator must not create a 2nd cluster"
    assert of(decision, StartRun)
    assert patched(decision)["attempts"] == 2
    assert "RunRestarted" in [e.reason for e in of(decision, PostEvent)]


def test_too_many_interrupted_attempts_fail_the_resource() -> None:
    spec = {"tickers": ["AAPL"], "cluster": {"schedulerAddress": "tcp://dask.shared:8786"}}
    obj = accepted(spec, phase="Running", attempts=CONFIG.max_attempts)
    decision = decide(observe(obj, NOW, CONFIG))
    assert not of(decision, StartRun)
    assert condition(patched(decision), "Failed")["reason"] == "TooManyAttempts"


def test_finished_deletes_the_cluster_unless_kept() -> None:
    obj = apply(accepted(), decide(observe(accepted(), NOW, CONFIG)))
    obj["status"].update(phase="Succeeded", completionTime=format_time(NOW))
    delete = decide(observe(obj, NOW, CONFIG, cluster=cluster_view()))
    assert of(delete, DeleteCluster) == [DeleteCluster("demo-dask")]
    assert delete.requeue is None

    kept_spec = {"tickers": ["AAPL", "MSFT"], "cluster": {"onCompletion": "Keep"}}
    kept = make_pfa(kept_spec)
    kept["status"] = dict(obj["status"])
    assert of(decide(observe(kept, NOW, CONFIG, cluster=cluster_view())), DeleteCluster) == []


def test_the_ttl_counts_from_completion_then_deletes_the_resource() -> None:
    obj = accepted({"tickers": ["AAPL"], "ttlSecondsAfterFinished": 30})
    obj["status"].update(phase="Succeeded", completionTime=format_time(NOW))
    waiting = decide(observe(obj, NOW + timedelta(seconds=10), CONFIG))
    assert not of(waiting, DeleteResource) and waiting.requeue == pytest.approx(20)
    expired = decide(observe(obj, NOW + timedelta(seconds=30), CONFIG))
    assert of(expired, DeleteResource)


def test_a_spec_change_restarts_from_pending_and_cancels_the_old_run() -> None:
    obj = accepted(phase="Succeeded", attempts=1, completionTime=format_time(NOW))
    obj["metadata"]["generation"] = 2
    decision = decide(observe(obj, NOW, CONFIG, run=run_view(RunState.RUNNING)))
    assert of(decision, CancelRun)
    fields = patched(decision)
    assert fields["phase"] == "Pending" and fields["observedGeneration"] == 2
    assert fields["completionTime"] is None and fields["summary"] is None


def test_an_invalid_stored_spec_fails_with_what_to_fix() -> None:
    # The API server refuses this; an object stored under an older schema can still have it.
    obj = accepted({"tickers": ["AAPL", "aapl"]})
    decision = decide(observe(obj, NOW, CONFIG))
    failed = condition(patched(decision), "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert "spec.tickers[1]" in failed["message"] and "upper-case" in failed["message"]
    assert [e.type for e in of(decision, PostEvent)] == ["Warning"]


def test_an_action_that_failed_for_good_is_observed_and_fails_the_resource() -> None:
    # The controller does not judge a refused DaskCluster itself: the next observation carries
    # the failure, and decide() fails the resource with its reason, once.
    obj = apply(accepted(), decide(observe(accepted(), NOW, CONFIG)))
    refused = ("ClusterCreationFailed", "the server could not find the requested resource")
    decision = decide(observe(obj, NOW, CONFIG, cluster=clusters.ClusterView(exists=False),
                              failure=refused))  # fmt: skip
    fields = patched(decision)
    assert fields["phase"] == "Failed"
    assert condition(fields, "Failed")["reason"] == "ClusterCreationFailed"
    assert refused[1] in condition(fields, "Failed")["message"]
    assert not of(decision, CreateCluster) and not of(decision, StartRun)
    after = decide(observe(apply(obj, decision), NOW, CONFIG, failure=refused))
    assert not of(after, PostEvent) and not of(after, PatchStatus), "reported once"


def test_walk_from_new_resource_to_succeeded_and_cluster_cleanup() -> None:
    """Repeat decide() over a simulated world until it settles: the whole happy path."""
    obj = make_pfa()
    cluster = clusters.ClusterView(exists=False)
    run: RunView | None = None
    events: list[str] = []
    for _ in range(20):
        decision = decide(observe(obj, NOW, CONFIG, cluster=cluster, run=run))
        events += [e.reason for e in of(decision, PostEvent)]
        obj = apply(obj, decision)
        if of(decision, CreateCluster):
            cluster = cluster_view()
        if of(decision, StartRun):
            run = run_view(RunState.SUCCEEDED, result=RESULT)
        if of(decision, ForgetRun):
            run = None
        if of(decision, DeleteCluster):
            cluster = clusters.ClusterView(exists=False)
        if decision.requeue is None and not decision.actions:
            break
    assert obj["status"]["phase"] == "Succeeded"
    assert events == ["Accepted", "ClusterCreated", "Completed", "ClusterDeleted"]
    assert cluster.exists is False


def test_an_image_outside_the_policy_fails_before_any_cluster_exists() -> None:
    spec = {"tickers": ["AAPL"], "cluster": {"image": "evil.example/miner:1"}}
    decision = decide(observe(accepted(spec), NOW, CONFIG))
    failed = condition(patched(decision), "Failed")
    assert (patched(decision)["phase"], failed["reason"]) == ("Failed", "ImageNotAllowed")
    assert "evil.example/miner:1" in failed["message"]
    assert not of(decision, CreateCluster) and not of(decision, StartRun)


@pytest.mark.parametrize(
    ("allowed", "image", "ok"),
    [
        ((), "example/worker:2", True),  # the worker image's repository, another tag
        ((), "example/worker@sha256:" + "a" * 64, True),
        ((), "example/worker-evil:1", False),
        ((), "registry:5000/example/worker:1", False),
        (("registry.example/team/*",), "registry.example/team/pfa:3", True),
        (("registry.example/team/*",), "example/worker:1", False),
        (("*",), "anything/at:all", True),
    ],
)
def test_the_image_policy(allowed: tuple[str, ...], image: str, ok: bool) -> None:
    assert CONFIG.with_changes(allowed_images=allowed).image_allowed(image) is ok


# --- securities from a ConfigMap ----------------------------------------------------------------

FROM_CONFIGMAP = {
    "tickersFrom": {"configMapKeyRef": {"name": "desk", "key": "tickers"}},
    "cluster": {"schedulerAddress": "tcp://10.0.0.1:8786"},
}


def test_a_missing_configmap_is_waited_for_then_fails_saying_what_to_create() -> None:
    from portfolio_operator.spec import INPUT_RETRY_MAX_SECONDS, INPUT_WAIT_SECONDS

    obj = make_pfa(FROM_CONFIGMAP)
    first = decide(observe(obj, NOW, CONFIG))
    assert "ConfigMap that is not there yet" in of(first, PostEvent)[0].message
    obj = apply(obj, first)
    assert obj["status"]["phase"] == "Pending" and "tickerCount" not in obj["status"]
    pauses = []
    for seconds in (1, 10, 40):
        later = NOW + timedelta(seconds=seconds)
        decision = decide(observe(obj, later, CONFIG))
        assert not of(decision, StartRun)
        obj = apply(obj, decision)
        running = condition(obj["status"], "Running")
        assert running["reason"] == "WaitingForConfigMap"
        assert "ConfigMap desk (key tickers)" in running["message"]
        pauses.append(decision.requeue)
    assert pauses == sorted(pauses) and pauses[-1] == INPUT_RETRY_MAX_SECONDS, pauses
    late = NOW + timedelta(seconds=INPUT_WAIT_SECONDS)
    failed = apply(obj, decide(observe(obj, late, CONFIG)))
    assert failed["status"]["phase"] == "Failed"
    reason = condition(failed["status"], "Failed")
    assert reason["reason"] == "ConfigMapNotFound"
    assert "does not exist in this namespace: create it" in reason["message"]


def test_a_configmap_that_appears_starts_the_run_with_its_tickers() -> None:
    obj = apply(make_pfa(FROM_CONFIGMAP), decide(observe(make_pfa(FROM_CONFIGMAP), NOW, CONFIG)))
    obj = apply(obj, decide(observe(obj, NOW, CONFIG)))  # waiting
    later = NOW + timedelta(seconds=5)
    decision = decide(observe(obj, later, CONFIG, configmap_data={"tickers": "AAPL,IBM"}))
    assert of(decision, StartRun)
    assert patched(decision)["tickerCount"] == 2


def test_a_finished_analysis_keeps_its_ttl_when_its_configmap_is_gone() -> None:
    spec = {**FROM_CONFIGMAP, "ttlSecondsAfterFinished": 10}
    obj = make_pfa(spec, {"phase": "Succeeded", "observedGeneration": 1,
                          "completionTime": format_time(NOW - timedelta(seconds=11))})  # fmt: skip
    assert of(decide(observe(obj, NOW, CONFIG)), DeleteResource)


def test_a_finished_run_gives_the_report_url() -> None:
    obj = accepted()
    run = run_view(RunState.SUCCEEDED, result=RESULT)
    fields = patched(decide(observe(obj, NOW, CONFIG, run=run)))
    assert fields["reportURL"] == "/reports/team-a/demo"
    assert fields["reportConfigMap"] == "demo-report"
