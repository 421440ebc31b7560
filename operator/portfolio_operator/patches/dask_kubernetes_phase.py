"""Loaded into the dask-kubernetes controller: DaskClusters stuck in phase Pending.

dask-kubernetes 2026.3.0 (the newest release) has a race, dask/dask-kubernetes#968: the
handler that creates a cluster's components (``daskcluster_create_components``) writes
``status.phase: Pending`` when it returns, and that patch can land after the scheduler Service's
handler wrote ``Running``. The cluster then stays Pending for good, and this operator, which waits
for Running before it connects, never starts the analysis. The end-to-end run on a real cluster
hit it about one cluster in five. Upstream fixed it after that release (#977: the create handler
sets Running itself once all components exist); until a release has the fix, the chart starts the
controller with this module as well (``kopf run -m portfolio_operator.patches.dask_kubernetes_phase
-m dask_kubernetes.operator.controller``).

It does what the upstream fix does: when a DaskCluster's phase becomes Pending while its
scheduler Service exists (and is not a LoadBalancer still waiting for an address), the phase
is set to Running. Only kopf and kr8s (a dask-kubernetes dependency) are imported.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import kopf
import kr8s
from kr8s.asyncio.objects import Service

logger = logging.getLogger(__name__)

# The racing line of dask-kubernetes' create handler, as released in 2026.3.0.
RACING_PATCH = 'patch.status["phase"] = "Pending"'


class UpstreamChanged(RuntimeError):
    """dask-kubernetes' controller no longer looks like the code this fix-up was written for."""


def create_handler_source() -> str:
    """The source of the installed dask-kubernetes handler that creates a cluster's parts."""
    from dask_kubernetes.operator.controller import controller

    handler = getattr(controller, "daskcluster_create_components", None)
    if handler is None:
        raise UpstreamChanged(
            "dask_kubernetes.operator.controller has no daskcluster_create_components: check "
            "whether dask-kubernetes#968 still applies, then update or remove "
            f"{__name__} and its -m line in the chart's dask-kubernetes-operator Deployment"
        )
    return inspect.getsource(handler)


def race_is_present(source: str) -> bool:
    """Whether the create handler still ends a cluster's creation by patching Pending without
    ever setting Running itself (the released code); False once upstream's fix is there."""
    return RACING_PATCH in source and '"Running"' not in source


def service_is_up(service: Any) -> bool:
    """A scheduler Service is usable once it exists, unless it is a LoadBalancer that has no
    ingress address yet (the one case where upstream keeps the cluster Pending)."""
    if (service.get("spec") or {}).get("type") != "LoadBalancer":
        return True
    return bool(((service.get("status") or {}).get("loadBalancer") or {}).get("ingress"))


async def running_once_scheduler_service_exists(
    name: str | None,
    namespace: str | None,
    patch: kopf.Patch,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    assert name and namespace
    try:
        service = await Service.get(f"{name}-scheduler", namespace=namespace)
    except kr8s.NotFoundError:
        return  # dask-kubernetes' Service handler sets Running once the Service appears
    if service_is_up(service.raw):
        patch.status["phase"] = "Running"
        logger.info("scheduler Service exists: phase Running (dask-kubernetes#968 fix-up)")


def register(
    source: Callable[[], str] = create_handler_source,
    registry: kopf.OperatorRegistry | None = None,
) -> bool:
    """Register the handler with kopf (its default registry unless given one) if the race is
    still there; whether it was registered."""
    if not race_is_present(source()):
        logger.warning(
            "the installed dask-kubernetes sets Running in its create handler (the #977 fix): "
            "%s retires itself; remove it from the chart's dask-kubernetes-operator Deployment",
            __name__,
        )
        return False
    kopf.on.field(
        "daskcluster.kubernetes.dask.org", field="status.phase", new="Pending", registry=registry
    )(running_once_scheduler_service_exists)
    return True


REGISTERED = register()
