"""The Dask cluster of one analysis: dask-kubernetes' DaskCluster and DaskAutoscaler.

The manifests come from dask-kubernetes' own `make_cluster_spec`, so they match the CRDs the
dask-kubernetes operator serves (kubernetes.dask.org/v1). That operator turns a DaskCluster into
a scheduler Deployment, a Service named ``<cluster>-scheduler`` (ports 8786 for Dask, 8787 for
the dashboard) and a worker group; it sets ``status.phase`` to Created, Pending and, once the
scheduler Service exists, Running. The DaskAutoscaler scales the default worker group between
``minimum`` and ``maximum`` from the scheduler's adaptive target.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Imported here, not on first use: the import takes seconds and would block kopf's event loop
# (every resource's reconcile) the first time a cluster is created.
from dask_kubernetes.operator import make_cluster_spec

from portfolio_operator.constants import DASK_API_VERSION, SPEC_HASH_ANNOTATION
from portfolio_operator.owners import child_metadata, controlled_by
from portfolio_operator.spec import AnalysisRequest, ClusterSpec

# dask-kubernetes names the scheduler Service "<cluster>-scheduler" and limits cluster names so
# that this stays a valid 63-character DNS label.
SCHEDULER_SUFFIX = "-scheduler"
MAX_CLUSTER_NAME = 63 - len(SCHEDULER_SUFFIX)
DEFAULT_ADDRESS_TEMPLATE = "tcp://{cluster}-scheduler.{namespace}.svc:8786"
DEFAULT_DASHBOARD_TEMPLATE = "http://{cluster}-scheduler.{namespace}.svc:8787/status"
DASK_RUNNING_PHASE = "Running"
# dask-kubernetes labels every pod of a cluster with its name and its role.
CLUSTER_NAME_LABEL = "dask.org/cluster-name"
COMPONENT_LABEL = "dask.org/component"

# Restricted Pod Security for the scheduler and worker pods. The uid is the image's own user
# (the Dockerfile's `USER 10001`), given explicitly so that runAsNonRoot can be verified for
# any image; the root filesystem is read-only, so /tmp (Dask's spill and work folders) and
# HOME (Prefect, numba caches) are emptyDirs.
POD_USER = 10001
HOME = "/home/portfolio"
POD_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": POD_USER,
    "runAsGroup": POD_USER,
    "fsGroup": POD_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
WRITABLE_FOLDERS = {"tmp": "/tmp", "home": HOME}


def cluster_name(resource_name: str, uid: str) -> str:
    """A DaskCluster name derived from the resource, stable across operator restarts.

    Short names are kept readable (``<name>-dask``). The scheduler Service's name must be a
    DNS-1035 label (letters, digits and -, starting with a letter, at most 63 characters), so a
    name with dots, one starting with a digit, or a long one is cut, prefixed with ``pfa-``
    where needed and made unique with a piece of the resource's uid.
    """
    readable = f"{resource_name}-dask"
    if len(readable) <= MAX_CLUSTER_NAME and resource_name[:1].isalpha() and "." not in readable:
        return readable
    tag = hashlib.sha256(uid.encode()).hexdigest()[:8]
    base = resource_name.replace(".", "-")
    if not base[:1].isalpha():
        base = f"pfa-{base}"
    base = base[: MAX_CLUSTER_NAME - len(tag) - 6].rstrip("-")
    return f"{base}-dask-{tag}"


def scheduler_address(name: str, namespace: str, template: str = DEFAULT_ADDRESS_TEMPLATE) -> str:
    return template.format(cluster=name, namespace=namespace)


def dashboard_url(name: str, namespace: str, template: str = DEFAULT_DASHBOARD_TEMPLATE) -> str:
    return template.format(cluster=name, namespace=namespace)


def _drop_none(value: Any) -> Any:
    """Remove null fields: the CRDs' structural schemas don't accept them."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def desired_cluster(spec: ClusterSpec, default_image: str) -> dict[str, Any]:
    """The parts of the spec that shape the cluster; a change means a new cluster.

    Optional parts appear only when set, so that the hash of a cluster made before they
    existed does not change (which would replace it).
    """
    desired: dict[str, Any] = {
        "image": spec.image or default_image,
        "imagePullPolicy": spec.image_pull_policy,
        "resources": {k: dict(v) for k, v in sorted(spec.resources.items())},
        "minWorkers": spec.min_workers,
        "maxWorkers": spec.max_workers,
    }
    optional = {
        "schedulerResources": spec.scheduler_resources,
        "workerResources": spec.worker_resources,
        "placement": dict(spec.placement),
        "podLabels": dict(spec.pod_labels),
        "podAnnotations": dict(spec.pod_annotations),
    }
    desired.update({k: v for k, v in optional.items() if v})
    return desired


def spec_hash(desired: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(desired, sort_keys=True).encode()).hexdigest()[:16]


def dask_cluster_manifest(
    owner: Mapping[str, Any],
    name: str,
    request: AnalysisRequest,
    default_image: str,
    worker_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A DaskCluster owned by the PortfolioAnalysis, starting at minWorkers workers."""
    desired = desired_cluster(request.cluster, default_image)
    manifest = make_cluster_spec(
        name=name,
        image=desired["image"],
        n_workers=desired["minWorkers"],
        resources=desired["resources"] or None,
        env=dict(worker_env or {}) or None,
    )
    for part in ("worker", "scheduler"):
        role = manifest["spec"][part]
        _harden_and_place(role["spec"], desired)
        own = desired.get(f"{part}Resources")
        for container in role["spec"]["containers"]:
            container["imagePullPolicy"] = desired["imagePullPolicy"]
            if own:
                container["resources"] = own
        pod_metadata = {
            "labels": desired.get("podLabels"),
            "annotations": desired.get("podAnnotations"),
        }
        if any(pod_metadata.values()):
            role["metadata"] = pod_metadata
    manifest["metadata"] = child_metadata(owner, name)
    manifest["metadata"]["annotations"] = {SPEC_HASH_ANNOTATION: spec_hash(desired)}
    return _drop_none(manifest)


def _harden_and_place(pod: dict[str, Any], desired: Mapping[str, Any]) -> None:
    """Restricted Pod Security (writable emptyDirs where needed) and the spec's placement."""
    pod["securityContext"] = dict(POD_SECURITY_CONTEXT)
    pod["volumes"] = [
        *(pod.get("volumes") or []),
        *({"name": n, "emptyDir": {}} for n in WRITABLE_FOLDERS),
    ]
    for container in pod["containers"]:
        container["securityContext"] = dict(CONTAINER_SECURITY_CONTEXT)
        container["volumeMounts"] = [
            *(container.get("volumeMounts") or []),
            *({"name": n, "mountPath": path} for n, path in WRITABLE_FOLDERS.items()),
        ]
        container["env"] = [*(container.get("env") or []), {"name": "HOME", "value": HOME}]
    pod.update(desired.get("placement") or {})


def autoscaler_manifest(
    owner: Mapping[str, Any], name: str, request: AnalysisRequest
) -> dict[str, Any]:
    """A DaskAutoscaler keeping the cluster between minWorkers and maxWorkers."""
    return {
        "apiVersion": DASK_API_VERSION,
        "kind": "DaskAutoscaler",
        "metadata": child_metadata(owner, name),
        "spec": {
            "cluster": name,
            "minimum": request.cluster.min_workers,
            "maximum": request.cluster.max_workers,
        },
    }


@dataclass(frozen=True)
class ClusterView:
    """What the operator observes of its DaskCluster and DaskAutoscaler."""

    exists: bool
    owned: bool = False
    deleting: bool = False
    phase: str | None = None
    spec_hash: str | None = None
    autoscaler_exists: bool = False
    autoscaler_owned: bool = False
    # The uids observed: deletions name them, so they never remove a namesake created since.
    uid: str | None = None
    autoscaler_uid: str | None = None
    # Why its pods do not run, one line each ("scheduler pod c-scheduler-x: ImagePullBackOff: ...").
    pod_problems: tuple[str, ...] = ()
    # Whether a scheduler pod is Ready; None when no scheduler pod was seen (pods not listed).
    scheduler_ready: bool | None = None

    @property
    def running(self) -> bool:
        """Its scheduler can be used: dask-kubernetes says Running, which only means that the
        scheduler's Service exists, and its scheduler pod, when one was seen, is Ready."""
        up = self.exists and not self.deleting and self.phase == DASK_RUNNING_PHASE
        return up and self.scheduler_ready is not False


# Container states that mean a pod will not start (or keeps dying) without a change.
STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
MAX_PROBLEM_LENGTH = 300


def pod_problems(pods: list[Mapping[str, Any]]) -> tuple[str, ...]:
    """Why a cluster's pods do not run: Unschedulable (with the scheduler's message), image
    pulls, crash loops, OOM kills. One line per role and reason, the scheduler's first."""
    found: dict[tuple[str, str], str] = {}
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        role = (meta.get("labels") or {}).get(COMPONENT_LABEL, "dask")
        where = f"{role} pod {meta.get('name', '?')}"
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("reason") == "Unschedulable"
            ):
                found.setdefault(
                    (role, "Unschedulable"),
                    f"{where}: Unschedulable: {condition.get('message', '')}",
                )
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_REASONS:
                reason = waiting["reason"]
                found.setdefault((role, reason), f"{where}: {reason}: {waiting.get('message', '')}")
            last = ((container.get("lastState") or {}).get("terminated") or {}).get("reason")
            if last == "OOMKilled":
                found.setdefault((role, last), f"{where}: OOMKilled (raise its memory limit)")
    ordered = sorted(found.items(), key=lambda item: item[0][0] != "scheduler")
    return tuple(text.strip().rstrip(":")[:MAX_PROBLEM_LENGTH] for _, text in ordered)


def scheduler_ready(pods: list[Mapping[str, Any]]) -> bool | None:
    """Whether one of the cluster's scheduler pods is Ready (None: no scheduler pod seen)."""
    schedulers = [
        pod for pod in pods
        if ((pod.get("metadata") or {}).get("labels") or {}).get(COMPONENT_LABEL) == "scheduler"
    ]  # fmt: skip
    if not schedulers:
        return None
    return any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for pod in schedulers
        for condition in (pod.get("status") or {}).get("conditions") or []
    )


def observe_cluster(
    cluster: Mapping[str, Any] | None,
    autoscaler: Mapping[str, Any] | None,
    owner_uid: str,
    pods: list[Mapping[str, Any]] | None = None,
) -> ClusterView:
    """Summarise the DaskCluster (and DaskAutoscaler) objects read from the API server."""
    # dask-kubernetes' controller re-parents a DaskAutoscaler to its DaskCluster (cascading
    # deletion), so one controlled by the cluster we control is ours too.
    cluster_uid = ((cluster or {}).get("metadata") or {}).get("uid")
    ours = controlled_by(cluster, owner_uid)
    scaler = {
        "autoscaler_exists": autoscaler is not None,
        "autoscaler_owned": controlled_by(autoscaler, owner_uid)
        or bool(ours and cluster_uid and controlled_by(autoscaler, cluster_uid)),
        "autoscaler_uid": ((autoscaler or {}).get("metadata") or {}).get("uid"),
    }
    if cluster is None:
        return ClusterView(exists=False, **scaler)
    meta = cluster.get("metadata") or {}
    return ClusterView(
        exists=True,
        owned=controlled_by(cluster, owner_uid),
        deleting=bool(meta.get("deletionTimestamp")),
        phase=(cluster.get("status") or {}).get("phase"),
        spec_hash=(meta.get("annotations") or {}).get(SPEC_HASH_ANNOTATION),
        uid=meta.get("uid"),
        pod_problems=pod_problems(pods or []),
        scheduler_ready=scheduler_ready(pods or []),
        **scaler,
    )
