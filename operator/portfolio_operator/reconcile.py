"""What to do for one PortfolioAnalysis, as a pure function of what is observed.

The reconcile observes the resource (spec, generation, status), its DaskCluster and
DaskAutoscaler, the in-memory run, the clock and the failure of an action of the previous pass,
and `decide()` returns the actions to take and when to look again. Nothing here talks to the API
server (controller.py performs the actions), so every transition is tested as a plain function.
A restarted operator simply observes again: the cluster name is in status before the cluster is
created, deadlines and TTLs count from status timestamps, and a run lost with the old process is
started again (counted in status.attempts) on the same cluster. docs/operator.md has the table
of states and transitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from portfolio_operator import cluster as clusters
from portfolio_operator.config import OperatorConfig
from portfolio_operator.constants import (
    FAILED,
    PENDING,
    PROVISIONING,
    RUNNING,
    SUCCEEDED,
    TERMINAL_PHASES,
)
from portfolio_operator.runs import RunState, RunView
from portfolio_operator.spec import (
    INPUT_RETRY_MAX_SECONDS,
    INPUT_WAIT_SECONDS,
    AnalysisRequest,
    InputMissing,
    SpecError,
    parse_spec,
)
from portfolio_operator.status import (
    format_time,
    get_condition,
    outcome,
    parse_time,
    report_configmap_name,
    report_url,
    result_fields,
    set_conditions,
)

# --------------------------------------------------------------------------------------------
# Actions decide() can ask for.


@dataclass(frozen=True)
class PatchStatus:
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class PostEvent:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class CreateCluster:
    name: str


@dataclass(frozen=True)
class DeleteCluster:
    name: str


@dataclass(frozen=True)
class StartRun:
    address: str


@dataclass(frozen=True)
class CancelRun:
    pass


@dataclass(frozen=True)
class ForgetRun:
    pass


@dataclass(frozen=True)
class WriteReport:
    pass


@dataclass(frozen=True)
class DeleteResource:
    pass


Action = (
    PatchStatus
    | PostEvent
    | CreateCluster
    | DeleteCluster
    | StartRun
    | CancelRun
    | ForgetRun
    | WriteReport
    | DeleteResource
)


@dataclass(frozen=True)
class Decision:
    actions: Sequence[Action] = ()
    requeue: float | None = None  # seconds until the next pass; None: wait for a change


@dataclass(frozen=True)
class Observation:
    """Everything the reconcile looks at, gathered at one moment."""

    obj: Mapping[str, Any]
    now: datetime
    config: OperatorConfig
    request: AnalysisRequest | None = None
    spec_error: str | None = None
    cluster: clusters.ClusterView | None = None
    run: RunView | None = None
    # An action of an earlier pass that failed for good, as (reason, message): for example
    # the API server refusing the DaskCluster. Reported by failing the resource.
    failure: tuple[str, str] | None = None
    # Why the securities are not known yet: the ConfigMap (or key) that spec.tickersFrom or
    # spec.holdingsFrom names is missing. `request` then holds the rest of the spec.
    input_missing: str | None = None

    @property
    def meta(self) -> Mapping[str, Any]:
        return self.obj.get("metadata") or {}

    @property
    def status(self) -> Mapping[str, Any]:
        return self.obj.get("status") or {}

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation") or 1)

    @property
    def dask(self) -> Mapping[str, Any]:
        return self.status.get("daskCluster") or {}


def observe(
    obj: Mapping[str, Any],
    now: datetime,
    config: OperatorConfig,
    cluster: clusters.ClusterView | None = None,
    run: RunView | None = None,
    failure: tuple[str, str] | None = None,
    configmap_data: Mapping[str, str] | None = None,
) -> Observation:
    """An Observation with the spec parsed (a bad spec becomes spec_error); `configmap_data`
    is the data of the ConfigMap spec.tickersFrom/holdingsFrom names (None: not found)."""
    missing = None
    try:
        request, error = parse_spec(obj.get("spec") or {}, configmap_data), None
    except InputMissing as exc:
        request, error, missing = exc.request, None, str(exc)
    except SpecError as exc:
        request, error = None, str(exc)
    return Observation(obj, now, config, request, error, cluster, run, failure, missing)


# --------------------------------------------------------------------------------------------
# The decision: a pure function of the observation.


def decide(obs: Observation) -> Decision:
    """What to do next for one resource, given what is observed now. Safe to repeat."""
    status = obs.status
    current = status.get("observedGeneration") == obs.generation
    if current and status.get("phase") in TERMINAL_PHASES:
        return _after_finish(obs)
    if not current:
        return _accept(obs)
    if obs.spec_error is not None:
        return _fail(obs, "InvalidSpec", obs.spec_error)
    if obs.failure is not None:
        return _fail(obs, *obs.failure)
    assert obs.request is not None
    image = obs.request.cluster.image if not obs.request.cluster.scheduler_address else None
    if image and not obs.config.image_allowed(image):
        return _fail(
            obs,
            "ImageNotAllowed",
            f"spec.cluster.image {image} is not allowed by the operator's image policy "
            f"({', '.join(obs.config.allowed_images) or 'the worker image repository only'}); "
            "leave image unset for the default, or ask the operator's administrators to allow it",
        )
    until_deadline = _seconds_to_deadline(obs)
    if until_deadline is not None and until_deadline <= 0:
        return _fail(
            obs,
            "DeadlineExceeded",
            f"the analysis did not finish within activeDeadlineSeconds="
            f"{obs.request.active_deadline_seconds}; it was cancelled",
        )
    run = obs.run if obs.run is not None and obs.run.generation == obs.generation else None
    if obs.input_missing is not None and run is None:
        return _wait_for_input(obs, until_deadline)
    if run is not None and not run.active:
        return _after_run(obs, run)
    if run is not None:
        return _while_running(obs, run, until_deadline)
    if obs.request.cluster.scheduler_address:
        return _start_external(obs)
    return _provision(obs, until_deadline)


def _wait_for_input(obs: Observation, until_deadline: float | None) -> Decision:
    """The securities' ConfigMap is missing: look again with a growing pause (at most
    INPUT_RETRY_MAX_SECONDS) for INPUT_WAIT_SECONDS from the start, then fail saying what to
    create. It may just not be applied yet (`kubectl apply -f dir/` goes in name order)."""
    assert obs.input_missing is not None
    started = parse_time(obs.status.get("startTime")) or obs.now
    waited = (obs.now - started).total_seconds()
    if waited >= INPUT_WAIT_SECONDS:
        return _fail(
            obs, "ConfigMapNotFound", f"{obs.input_missing} (waited {INPUT_WAIT_SECONDS}s)"
        )
    message = f"waiting for the securities: {obs.input_missing}"
    pause = min(INPUT_RETRY_MAX_SECONDS, max(obs.config.poll_seconds, waited / 2))
    return Decision(
        _patch(obs, {}, Running=(False, "WaitingForConfigMap", message)),
        requeue=_soonest(pause, INPUT_WAIT_SECONDS - waited, until_deadline),
    )


def _seconds_to_deadline(obs: Observation) -> float | None:
    assert obs.request is not None
    limit = obs.request.active_deadline_seconds
    if limit is None:
        return None
    started = parse_time(obs.status.get("startTime")) or obs.now
    return (started + timedelta(seconds=limit) - obs.now).total_seconds()


def _changed(status: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    return any(status.get(k) != v for k, v in fields.items())


def _patch(obs: Observation, fields: Mapping[str, Any], **conditions: tuple) -> list[Action]:
    """A status patch with conditions merged in, or nothing when it would change nothing."""
    merged = dict(fields)
    if conditions:
        old = list(obs.status.get("conditions") or [])
        new = set_conditions(old, conditions, obs.generation, obs.now)
        if new != old:
            merged["conditions"] = new
    return [PatchStatus(merged)] if merged and _changed(obs.status, merged) else []


def _workers_label(request: AnalysisRequest | None) -> str | None:
    if request is None:
        return None
    if request.cluster.scheduler_address:
        return "external"
    return f"{request.cluster.min_workers}-{request.cluster.max_workers}"


def _accept(obs: Observation) -> Decision:
    """A new generation: start over (a run of an older generation is cancelled)."""
    request = obs.request
    fields = {
        "phase": PENDING,
        "observedGeneration": obs.generation,
        "startTime": format_time(obs.now),
        "completionTime": None,
        "durationSeconds": None,
        "attempts": 0,
        "nextAttemptTime": None,
        "progress": None,
        "tickerCount": len(request.tickers) if request and request.tickers else None,
        "workers": _workers_label(request),
        "securitiesAnalyzed": None,
        "securitiesFailed": None,
        "failures": None,
        "summary": None,
        "portfolio": None,
        "results": None,
        "resultsTruncated": None,
        "reportConfigMap": None,
        "reportURL": None,
    }
    owned_name = obs.dask.get("name") if obs.dask.get("owned") else None
    if request and not request.cluster.scheduler_address and not owned_name:
        fields["daskCluster"] = _new_cluster_status(obs)  # saves a pass before creating it
    conditions = {
        "Running": (False, "Pending", "the analysis has not started yet"),
        "Complete": (False, "Pending", "the analysis has not finished yet"),
        "Failed": (False, "Pending", "the analysis has not failed"),
    }
    actions: list[Action] = []
    if obs.run is not None:
        actions += [CancelRun(), ForgetRun()]
    actions += _patch(obs, fields, **conditions)
    if obs.input_missing is not None:
        what = "the securities of a ConfigMap that is not there yet"
    else:
        what = f"{len(request.tickers)} securities" if request else "an invalid spec"
    actions.append(
        PostEvent("Normal", "Accepted", f"generation {obs.generation}: analysing {what}")
    )
    return Decision(actions, requeue=0)


def _fail(obs: Observation, reason: str, message: str) -> Decision:
    started = parse_time(obs.status.get("startTime")) or obs.now
    fields = {
        "phase": FAILED,
        "completionTime": format_time(obs.now),
        "durationSeconds": round((obs.now - started).total_seconds(), 3),
        "progress": None,
    }
    actions: list[Action] = []
    if obs.run is not None:
        actions += [CancelRun(), ForgetRun()]
    actions += _patch(
        obs,
        fields,
        Running=(False, reason, message),
        Complete=(False, reason, message),
        Failed=(True, reason, message),
    )
    actions.append(PostEvent("Warning", reason, message))
    return Decision(actions, requeue=0)


def _after_run(obs: Observation, run: RunView) -> Decision:
    """The run of this generation has ended."""
    assert obs.request is not None
    if run.state == RunState.SUCCEEDED and run.result is not None:
        phase, reason, message = outcome(run.result)
        started = parse_time(obs.status.get("startTime")) or obs.now
        fields = {
            **result_fields(run.result),
            "phase": phase,
            "completionTime": format_time(obs.now),
            "durationSeconds": round((obs.now - started).total_seconds(), 3),
            "progress": None,
            "reportConfigMap": report_configmap_name(obs.meta["name"]),
            "reportURL": report_url(obs.meta["namespace"], obs.meta["name"]),
        }
        ok = phase == SUCCEEDED
        actions: list[Action] = [WriteReport()]
        actions += _patch(
            obs,
            fields,
            Running=(False, "Finished", message),
            Complete=(ok, reason, message),
            Failed=(not ok, reason if not ok else "Completed", message),
        )
        actions += [PostEvent("Normal" if ok else "Warning", reason, message), ForgetRun()]
        return Decision(actions, requeue=0)
    if run.state == RunState.FAILED:
        attempts = int(obs.status.get("attempts") or 0)
        if run.temporary and attempts < obs.config.max_attempts:
            delay = obs.config.retry_backoff_seconds * 2 ** max(attempts - 1, 0)
            message = f"attempt {attempts} failed ({run.error}); retrying in {delay:.0f}s"
            # The time is in status, so the wait survives wake-ups and operator restarts.
            retry_at = {"nextAttemptTime": format_time(obs.now + timedelta(seconds=delay))}
            actions = [ForgetRun()]
            actions += _patch(obs, retry_at, Running=(False, "Retrying", message))
            actions.append(PostEvent("Warning", "RunRetrying", message))
            return Decision(actions, requeue=delay)
        reason = run.reason or ("SchedulerUnreachable" if run.temporary else "AnalysisError")
        return _fail(obs, reason, f"{run.error} (attempt {attempts})")
    # Cancelled by us for a reason handled elsewhere (spec change, stop): look again.
    return Decision([ForgetRun()], requeue=0)


def _while_running(obs: Observation, run: RunView, until_deadline: float | None) -> Decision:
    actions: list[Action] = []
    poll = obs.config.progress_seconds
    if run.state == RunState.QUEUED:
        message = "waiting for a free analysis slot (--max-concurrent-analyses)"
        actions += _patch(obs, {}, Running=(False, "Queued", message))
    elif run.state == RunState.CONNECTING:
        message = f"connecting to the Dask scheduler at {run.address}"
        actions += _patch(obs, {}, Running=(False, "Connecting", message))
    else:
        fields: dict[str, Any] = {"phase": RUNNING}
        if run.progress is not None:
            stage, done, total = run.progress
            fields["progress"] = {"stage": stage, "done": done, "total": total}
        message = f"analysing on {run.address}"
        patch = _patch(obs, fields, Running=(True, "AnalysisRunning", message))
        actions += patch
        if obs.status.get("phase") != RUNNING:
            actions.append(PostEvent("Normal", "Started", message))
    return Decision(actions, requeue=_soonest(poll, until_deadline))


def _soonest(*delays: float | None) -> float | None:
    known = [d for d in delays if d is not None]
    return max(min(known), 0) if known else None


def _start(obs: Observation, address: str, extra: Mapping[str, Any], **conds: tuple) -> Decision:
    """Start (or, after an operator restart, start again) the run of this generation."""
    attempts = int(obs.status.get("attempts") or 0)
    if attempts >= obs.config.max_attempts:
        return _fail(
            obs,
            "TooManyAttempts",
            f"the run was started {attempts} times without finishing (operator restarts or "
            "lost scheduler connections); giving up",
        )
    retry_at = parse_time(obs.status.get("nextAttemptTime"))
    if retry_at is not None and obs.now < retry_at:  # the backoff after a failed attempt
        return Decision([], requeue=(retry_at - obs.now).total_seconds())
    actions: list[Action] = []
    retrying = (get_condition(obs.status.get("conditions"), "Running") or {}).get("reason")
    if obs.status.get("phase") == RUNNING and retrying != "Retrying":
        actions.append(
            PostEvent(
                "Warning",
                "RunRestarted",
                f"the previous run was interrupted (operator restart); starting attempt "
                f"{attempts + 1}",
            )
        )
    assert obs.request is not None
    started = {
        **extra,
        "attempts": attempts + 1,
        "nextAttemptTime": None,
        "tickerCount": len(obs.request.tickers),  # known only now when read from a ConfigMap
    }
    actions += _patch(obs, started, **conds)
    actions.append(StartRun(address))
    return Decision(actions, requeue=0)


def _start_external(obs: Observation) -> Decision:
    assert obs.request is not None
    address = obs.request.cluster.scheduler_address
    assert address is not None
    owned = obs.dask.get("owned") and obs.dask.get("name")
    view = obs.cluster
    if owned and view is not None and view.exists and view.owned and not view.deleting:
        # The spec moved from a created cluster to an existing scheduler: drop ours.
        name = obs.dask["name"]
        return Decision(
            [
                DeleteCluster(name),
                PostEvent("Normal", "ClusterDeleted", f"deleted DaskCluster {name}: not needed"),
            ],
            requeue=0,
        )
    dask = {"name": None, "owned": False, "phase": None, "schedulerAddress": address,
            "dashboardURL": None, "image": None}  # fmt: skip
    return _start(
        obs,
        address,
        {"daskCluster": dask, "workers": "external"},
        ClusterReady=(True, "ExternalScheduler", f"using the existing scheduler {address}"),
    )


def _new_cluster_status(obs: Observation) -> dict[str, Any]:
    """status.daskCluster for the cluster about to be created: written before creating it."""
    assert obs.request is not None
    meta, config = obs.meta, obs.config
    name = clusters.cluster_name(meta["name"], meta["uid"])
    namespace = meta["namespace"]
    return {
        "name": name,
        "owned": True,
        "phase": None,
        "schedulerAddress": clusters.scheduler_address(
            name, namespace, config.scheduler_address_template
        ),
        "dashboardURL": clusters.dashboard_url(name, namespace, config.dashboard_url_template),
        "image": obs.request.cluster.image or config.worker_image,
    }


def _provision(obs: Observation, until_deadline: float | None) -> Decision:
    """Create the cluster (name in status first), wait for its scheduler, then start."""
    request, config = obs.request, obs.config
    assert request is not None
    meta = obs.meta
    name = obs.dask.get("name") if obs.dask.get("owned") else None
    poll = _soonest(config.poll_seconds, until_deadline)
    if not name:
        dask = _new_cluster_status(obs)
        name = dask["name"]
        return Decision(
            _patch(
                obs,
                {"phase": PROVISIONING, "daskCluster": dask, "workers": _workers_label(request)},
                ClusterReady=(False, "Creating", f"creating DaskCluster {name}"),
            ),
            requeue=0,
        )
    view = obs.cluster or clusters.ClusterView(exists=False)
    desired = clusters.spec_hash(clusters.desired_cluster(request.cluster, config.worker_image))
    if not view.exists:
        message = (
            f"created DaskCluster {name} and DaskAutoscaler {name} "
            f"({request.cluster.min_workers}-{request.cluster.max_workers} workers)"
        )
        actions: list[Action] = [CreateCluster(name)]
        actions += _patch(
            obs,
            {"phase": PROVISIONING},
            ClusterReady=(False, "WaitingForScheduler", f"waiting for DaskCluster {name}"),
        )
        actions.append(PostEvent("Normal", "ClusterCreated", message))
        return Decision(actions, requeue=poll)
    if not view.owned:
        return _fail(
            obs,
            "ClusterNameConflict",
            f"a DaskCluster named {name} exists and is not owned by this PortfolioAnalysis; "
            "it was left untouched: delete it or rename this resource",
        )
    if view.deleting:
        message = f"waiting for the previous DaskCluster {name} to be deleted"
        return Decision(
            _patch(obs, {"phase": PROVISIONING}, ClusterReady=(False, "Deleting", message)),
            requeue=poll,
        )
    if view.spec_hash != desired:
        message = f"spec.cluster changed: replacing DaskCluster {name}"
        return Decision(
            [DeleteCluster(name), PostEvent("Normal", "ClusterReplaced", message)],
            requeue=poll,
        )
    if view.autoscaler_exists and not view.autoscaler_owned:
        return _fail(
            obs,
            "ClusterNameConflict",
            f"a DaskAutoscaler named {name} exists and is not owned by this PortfolioAnalysis; "
            "it was left untouched: delete it or rename this resource",
        )
    if not view.autoscaler_exists:
        return Decision([CreateCluster(name)], requeue=0)
    dask = {**obs.dask, "phase": view.phase}
    if not view.running:
        state = view.phase or "not reported yet"
        if view.scheduler_ready is False:
            state += ", its scheduler pod not ready"
        message = f"waiting for DaskCluster {name} to run its scheduler (phase: {state})"
        if view.pod_problems:
            message += ": " + "; ".join(view.pod_problems)
        started = parse_time(obs.status.get("startTime")) or obs.now
        limit = request.cluster.startup_deadline_seconds
        if (obs.now - started).total_seconds() > limit:
            last = view.pod_problems[0] if view.pod_problems else "no pod problem was reported"
            return _fail(
                obs,
                "StartupDeadlineExceeded",
                f"DaskCluster {name} did not run its scheduler within "
                f"startupDeadlineSeconds={limit}; last pod problem: {last}",
            )
        poll = _soonest(poll, limit - (obs.now - started).total_seconds())
        return Decision(
            _patch(
                obs,
                {"phase": PROVISIONING, "daskCluster": dask},
                ClusterReady=(False, "WaitingForScheduler", message),
            ),
            requeue=poll,
        )
    return _start(
        obs,
        obs.dask.get("schedulerAddress")
        or clusters.scheduler_address(name, meta["namespace"], config.scheduler_address_template),
        {"daskCluster": dask},
        ClusterReady=(True, "SchedulerReady", f"DaskCluster {name} is running"),
    )


def _after_finish(obs: Observation) -> Decision:
    """Terminal for this generation: tidy the cluster per spec, then honour the TTL."""
    actions: list[Action] = []
    if obs.run is not None:
        actions += [CancelRun(), ForgetRun()]
    name = obs.dask.get("name") if obs.dask.get("owned") else None
    keep = obs.request is not None and obs.request.cluster.on_completion == "Keep"
    view = obs.cluster
    if name and not keep and view is not None and view.exists and view.owned and not view.deleting:
        actions += [
            DeleteCluster(name),
            PostEvent("Normal", "ClusterDeleted", f"deleted DaskCluster {name} (onCompletion)"),
        ]
    ttl = obs.request.ttl_seconds_after_finished if obs.request else None
    if ttl is None:
        return Decision(actions, requeue=None)
    finished = parse_time(obs.status.get("completionTime")) or obs.now
    remaining = (finished + timedelta(seconds=ttl) - obs.now).total_seconds()
    if remaining <= 0:
        actions.append(DeleteResource())
        return Decision(actions, requeue=None)
    return Decision(actions, requeue=remaining)
