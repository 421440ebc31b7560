"""A fix-up loaded into the dask-kubernetes controller: DaskClusters stuck in phase Pending.

dask-kubernetes 2026.3.0 (the newest release) has a race, dask/dask-kubernetes#968: the
handler that creates a cluster's components writes ``status.phase: Pending`` when it returns,
and that patch can land after the scheduler Service's handler wrote ``Running``. The cluster
then stays Pending for good, and this operator, which waits for Running before it connects,
never starts the analysis. The end-to-end run on a real cluster hit it about one cluster in
five. Upstream fixed it after that release (#977: the create handler sets Running itself once
all components exist); until a release has the fix, the chart starts the controller with this
module as well (``kopf run -m portfolio_operator.dask_phase_fix -m
dask_kubernetes.operator.controller``).

It does what the upstream fix does: when a DaskCluster's phase becomes Pending while its
scheduler Service exists (and is not a LoadBalancer still waiting for an address), the phase
is set to Running. Only kopf and kr8s (a dask-kubernetes dependency) are imported.
"""

from __future__ import annotations

from typing import Any

import kopf
import kr8s
from kr8s.asyncio.objects import Service


def service_is_up(service: Any) -> bool:
    """A scheduler Service is usable once it exists, unless it is a LoadBalancer that has no
    ingress address yet (the one case where upstream keeps the cluster Pending)."""
    if (service.get("spec") or {}).get("type") != "LoadBalancer":
        return True
    return bool(((service.get("status") or {}).get("loadBalancer") or {}).get("ingress"))


@kopf.on.field("daskcluster.kubernetes.dask.org", field="status.phase", new="Pending")
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
