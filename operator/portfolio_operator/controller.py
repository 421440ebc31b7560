"""The controller: kopf's start-up and per-resource daemon, observing and acting.

`AnalysisController` is the loop for one PortfolioAnalysis: observe (the resource, its
DaskCluster and DaskAutoscaler, the run), ask `reconcile.decide()`, perform the actions, sleep
until something changes. It runs as a kopf daemon per resource, so a slow analysis never holds
up another. An action that fails for good is not judged here: it is recorded and becomes part of
the next observation, so every decision about the resource's status stays in `decide()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from portfolio_operator import cluster as clusters
from portfolio_operator.config import OperatorConfig
from portfolio_operator.constants import (
    COMPONENT,
    DASKAUTOSCALERS,
    DASKCLUSTERS,
    FINALIZER,
    KOPF_ANNOTATIONS_PREFIX,
    PENDING,
    PROVISIONING,
    SUCCEEDED,
    TERMINAL_PHASES,
)
from portfolio_operator.kube import KubeApi, KubeError, NotOwnedError, load_api_client
from portfolio_operator.metrics import OperatorMetrics
from portfolio_operator.reconcile import (
    Action,
    CancelRun,
    CreateCluster,
    Decision,
    DeleteCluster,
    DeleteResource,
    ForgetRun,
    Observation,
    PatchStatus,
    PostEvent,
    StartRun,
    WriteReport,
    decide,
    observe,
)
from portfolio_operator.runs import RunRegistry, RunState
from portfolio_operator.spec import configmap_ref
from portfolio_operator.status import get_condition, parse_time, report_configmap, utcnow

logger = logging.getLogger("portfolio_operator")

# Consecutive failed passes (API server unreachable, conflicts) before a Warning Event says so.
RETRIES_BEFORE_EVENT = 5


class ResourceLog(logging.LoggerAdapter):
    """Log lines about one resource start with its namespace/name, whatever the log format."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"{self.extra['resource']}: {msg}", kwargs


@dataclass
class OperatorContext:
    """What every resource's controller shares: settings, API client, runs, metrics."""

    config: OperatorConfig
    api: KubeApi
    metrics: OperatorMetrics
    runs: RunRegistry


async def start_operator(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Startup: kopf settings for least privilege and quiet storage, then shared state."""
    settings.peering.standalone = True  # no peering objects: nothing to grant for them
    settings.scanning.disabled = True  # no CRD/namespace list-watch: nothing to grant either
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=KOPF_ANNOTATIONS_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_ANNOTATIONS_PREFIX, key="last-handled-configuration"
    )
    settings.posting.reporting_component = COMPONENT
    # Events are posted explicitly (kopf.event); kopf's own log lines stay in the log.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    settings.background.cancellation_polling = 5
    config = memo.get("config") if hasattr(memo, "get") else None
    if config is None:
        config = OperatorConfig.from_env()
    metrics = memo.get("metrics") if hasattr(memo, "get") else None
    metrics = metrics or OperatorMetrics()
    api = KubeApi(load_api_client(config.kubeconfig))
    runs = RunRegistry(config.max_concurrent_analyses, metrics)
    memo["context"] = OperatorContext(config=config, api=api, metrics=metrics, runs=runs)
    logger.info(
        "portfolio-operator ready: at most %d concurrent analyses, worker image %s",
        config.max_concurrent_analyses,
        config.worker_image,
    )


async def stop_operator(memo: Any, **_: Any) -> None:
    """Cleanup: cancel runs (a restarted operator re-runs them) and close the client."""
    context: OperatorContext | None = memo.get("context")
    if context is not None:
        await context.runs.shutdown()
        context.api.close()


async def run_analysis_daemon(
    memo: Any,
    name: str,
    namespace: str,
    uid: str,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    **_: Any,
) -> None:
    """The per-resource daemon: reconcile until the resource is gone or the operator stops."""
    context: OperatorContext = memo["context"]
    controller = AnalysisController(context, namespace, name, uid, body, stopped)
    await controller.run()


class AnalysisController:
    """Observe -> decide -> act -> sleep, for one PortfolioAnalysis."""

    def __init__(
        self,
        context: OperatorContext,
        namespace: str,
        name: str,
        uid: str,
        body: kopf.Body,
        stopped: kopf.DaemonStopped,
    ) -> None:
        self.ctx = context
        self.namespace, self.name, self.uid = namespace, name, uid
        self.body = body  # kopf keeps this view current: a spec change shows up here
        self.stopped = stopped
        self.wake = asyncio.Event()
        self.gone = False
        # (generation, reason, message) of an action that failed for good: the next
        # observation carries it, and decide() fails the resource with it.
        self.failure: tuple[int, str, str] | None = None
        # The generation whose Failed status the API server refused: left alone until the
        # spec changes (a new generation).
        self.refused_generation: int | None = None
        # (generation, data) of the ConfigMap spec.tickersFrom/holdingsFrom names, once read:
        # a run and its retries use the securities read when it started.
        self.inputs: tuple[int, dict[str, str]] | None = None
        self.log = ResourceLog(logger, {"resource": f"{namespace}/{name}"})

    def _wake_threadsafe(self) -> None:
        loop = self._loop
        if loop.is_closed():
            return
        loop.call_soon_threadsafe(self.wake.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        failures = 0
        try:
            while not self.stopped and not self.gone:
                try:
                    decision = await self.reconcile_once()
                    failures = 0
                    delay = decision.requeue
                except Exception as exc:
                    failures += 1
                    delay = min(60.0, 2.0**failures)
                    self.ctx.metrics.reconcile_errors.inc()
                    temporary = getattr(exc, "temporary", True)
                    log = self.log.warning if temporary else self.log.error
                    log("reconcile failed (retrying in %.0fs): %s", delay, exc,
                        exc_info=not isinstance(exc, KubeError))  # fmt: skip
                    if failures == RETRIES_BEFORE_EVENT:  # not silently: once per streak
                        kopf.event(self.body, type="Warning", reason="ReconcileRetrying",
                                   message=f"{failures} passes failed in a row, still retrying "
                                   f"every {delay:.0f}s or less: {exc}"[:1024])  # fmt: skip
                if self.gone:
                    break
                await self._sleep(delay)
        finally:
            # Deleted or operator exiting: stop the analysis either way. A new operator
            # process re-runs an interrupted analysis; a deleted one needs nothing more.
            self.ctx.runs.forget(self.uid)
            self.ctx.metrics.set_phase(self.uid, None)

    async def _sleep(self, delay: float | None) -> None:
        """Sleep until the delay passes, the run changes, the spec changes or we stop."""
        generation = _generation(self.body)
        deadline = time.monotonic() + (delay if delay is not None else float("inf"))
        while not self.stopped:
            if self.wake.is_set():
                self.wake.clear()
                return
            if _generation(self.body) != generation:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=min(remaining, 0.5))

    async def reconcile_once(self) -> Decision:
        api = self.ctx.api
        obj = await api.get_analysis(self.namespace, self.name)
        if obj is None or obj["metadata"].get("uid") != self.uid:
            self.gone = True
            return Decision()
        if obj["metadata"].get("deletionTimestamp"):
            return Decision(requeue=1.0)  # kopf stops this daemon, then GC removes children
        status = obj.get("status") or {}
        dask = status.get("daskCluster") or {}
        view = None
        if dask.get("owned") and dask.get("name"):
            cluster = await api.get_dask(DASKCLUSTERS, self.namespace, dask["name"])
            autoscaler = await api.get_dask(DASKAUTOSCALERS, self.namespace, dask["name"])
            pods = None
            if cluster is not None and status.get("phase") == PROVISIONING:
                # Why its pods do not start, while waiting for them (pods: list only).
                selector = f"{clusters.CLUSTER_NAME_LABEL}={dask['name']}"
                try:
                    pods = await api.list_pods(self.namespace, selector)
                except KubeError as exc:  # a diagnosis only: never a reason to stop
                    self.log.warning("cannot list the cluster's pods: %s", exc)
            view = clusters.observe_cluster(cluster, autoscaler, self.uid, pods)
        generation = obj["metadata"].get("generation") or 1
        if self.refused_generation == generation:
            return Decision()
        inputs = await self._inputs(obj, generation)
        failure = None
        if self.failure is not None and self.failure[0] == generation:
            failure = self.failure[1:]
        run = self.ctx.runs.view(self.uid)
        if run is not None and run.state == RunState.FAILED:
            self.log.warning("the analysis run failed: %s", run.error)
        obs = observe(obj, utcnow(), self.ctx.config, view, run, failure, inputs)
        if status.get("phase"):  # resources finished before a restart count in the gauge too
            self.ctx.metrics.set_phase(self.uid, status["phase"])
        decision = decide(obs)
        await self.execute(obs, decision)
        return decision

    async def _inputs(self, obj: Mapping[str, Any], generation: int) -> dict[str, str] | None:
        """The data of the ConfigMap that spec.tickersFrom/holdingsFrom names (None: missing).

        Read from this resource's namespace only, until the key is found for this generation;
        not read at all once the generation has finished.
        """
        ref = configmap_ref(obj.get("spec") or {})
        if ref is None:
            return None
        if self.inputs is not None and self.inputs[0] == generation:
            return self.inputs[1]
        status = obj.get("status") or {}
        if status.get("observedGeneration") == generation and status.get("phase") in (
            TERMINAL_PHASES
        ):
            return None
        try:
            found = await self.ctx.api.get_configmap(self.namespace, ref.name)
        except KubeError as exc:
            if exc.temporary:
                raise
            # e.g. RBAC: the operator may not read ConfigMaps here. decide() fails it.
            self.failure = (generation, "ConfigMapUnreadable", f"{ref.describe()}: {exc}")
            return None
        if found is None:
            return None
        data = dict(found.get("data") or {})
        if ref.key in data:
            self.inputs = (generation, {ref.key: data[ref.key]})
            return self.inputs[1]
        return data  # the key is missing: the message lists the keys there are

    async def execute(self, obs: Observation, decision: Decision) -> None:
        """Perform the actions in order. A temporary API error propagates (the pass is retried
        with backoff); one that retrying cannot heal is recorded for the next observation, and
        the rest of the pass, which assumed it succeeded, is skipped."""
        for action in decision.actions:
            try:
                await self._perform(obs, action)
            except KubeError as exc:
                if exc.temporary:
                    raise
                if exc.status == 404 and isinstance(action, PatchStatus | DeleteResource):
                    self.log.info("deleted meanwhile: nothing more to do")
                    self.gone = True
                    return
                self._record_failure(obs, action, exc)
                return

    async def _perform(self, obs: Observation, action: Action) -> None:
        obj = obs.obj
        view = obs.cluster
        match action:
            case PatchStatus(fields=fields):
                await self._patch_status(obs, fields)
            case PostEvent(type=kind, reason=reason, message=message):
                kopf.event(dict(obj), type=kind, reason=reason, message=message[:1024])
            case CreateCluster(name=name):
                await self._create_cluster(obs, name)
            case DeleteCluster(name=name):
                # Only what was observed to be ours, by uid.
                if view is not None and view.autoscaler_owned and view.autoscaler_uid:
                    await self.ctx.api.delete_dask(
                        DASKAUTOSCALERS, self.namespace, name, view.autoscaler_uid
                    )
                if view is not None and view.owned and view.uid:
                    await self.ctx.api.delete_dask(DASKCLUSTERS, self.namespace, name, view.uid)
            case StartRun(address=address):
                assert obs.request is not None
                self.ctx.runs.start(
                    self.uid, obs.generation, address, obs.request.run_kwargs(),
                    self._wake_threadsafe,
                )  # fmt: skip
            case CancelRun():
                self.ctx.runs.cancel(self.uid)
            case ForgetRun():
                self.ctx.runs.forget(self.uid)
            case WriteReport():
                assert obs.run is not None and obs.run.result is not None
                manifest = await asyncio.to_thread(
                    report_configmap, obj, obs.run.result, self.ctx.config.report_max_bytes,
                    obs.run.document,
                )  # fmt: skip
                await self.ctx.api.put_configmap(manifest, self.uid)
            case DeleteResource():
                self.log.info("ttlSecondsAfterFinished passed: deleting")
                await self.ctx.api.delete_analysis(self.namespace, self.name, self.uid)
                self.gone = True

    def _record_failure(self, obs: Observation, action: Action, exc: KubeError) -> None:
        """Keep a permanent failure of `action` for decide() to report on the next pass."""
        if obs.failure is not None:
            # Even writing the failure was refused: say so once and wait for a spec change
            # rather than retrying a refused write for ever.
            self.log.error("the API server refused the Failed status: %s", exc)
            kopf.event(dict(obs.obj), type="Warning", reason="StatusRefused",
                       message=f"could not record {obs.failure[0]}: {exc}"[:1024])  # fmt: skip
            self.refused_generation = obs.generation
            return
        match action:
            case CreateCluster():
                hint = " (is the dask-kubernetes operator with its CRDs installed?)"
                reason, message = (
                    "ClusterCreationFailed",
                    f"{exc}{hint if exc.status == 404 else ''}",
                )
            case WriteReport() if isinstance(exc, NotOwnedError):
                reason, message = "ReportNameConflict", str(exc)
            case WriteReport():
                reason, message = "ReportWriteFailed", str(exc)
            case DeleteCluster():
                reason, message = "ClusterDeletionFailed", str(exc)
            case _:
                reason, message = "APIRequestRefused", str(exc)
        self.log.warning("%s: %s", reason, message)
        self.failure = (obs.generation, reason, message)
        self.wake.set()  # decide() reports it on the next pass

    async def _patch_status(self, obs: Observation, fields: Mapping[str, Any]) -> None:
        await self.ctx.api.patch_analysis_status(self.namespace, self.name, fields)
        old, new = obs.status.get("phase"), fields.get("phase", obs.status.get("phase"))
        self.ctx.metrics.set_phase(self.uid, new)
        if new != old:
            self.log.info("phase %s -> %s", old or "-", new)
            if new in TERMINAL_PHASES:
                kind = "Complete" if new == SUCCEEDED else "Failed"
                condition = get_condition(fields.get("conditions"), kind) or {}
                self.ctx.metrics.record_finish(
                    new, condition.get("reason", "Unknown"), fields.get("durationSeconds")
                )
        if fields.get("attempts") and obs.status.get("phase") in (PENDING, PROVISIONING):
            started = parse_time(obs.status.get("startTime"))
            if started is not None:
                self.ctx.metrics.cluster_wait.observe((obs.now - started).total_seconds())

    async def _create_cluster(self, obs: Observation, name: str) -> None:
        """Create the DaskCluster and its DaskAutoscaler (one that exists already is kept)."""
        assert obs.request is not None
        config = self.ctx.config
        manifest = clusters.dask_cluster_manifest(
            obs.obj, name, obs.request, config.worker_image, config.worker_env
        )
        await self.ctx.api.create_dask(DASKCLUSTERS, manifest)
        autoscaler = clusters.autoscaler_manifest(obs.obj, name, obs.request)
        await self.ctx.api.create_dask(DASKAUTOSCALERS, autoscaler)


def _generation(body: Mapping[str, Any]) -> Any:
    return (body.get("metadata") or {}).get("generation")
