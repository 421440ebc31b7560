"""The dask-kubernetes#968 fix-up: still needed, does what upstream's fix does, retires itself."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import kopf
import kr8s
import pytest
from portfolio_operator.patches import dask_kubernetes_phase as fix

# The end of upstream's create handler after dask/dask-kubernetes#977 (the phase is set once
# every component exists), enough for the check that decides whether the fix-up is needed.
FIXED_UPSTREAM = """
    if service_type == "LoadBalancer" and not ingress:
        patch.status["phase"] = "Pending"
    else:
        patch.status["phase"] = "Running"
"""


def phase_handlers(registry: kopf.OperatorRegistry) -> list[Any]:
    return list(registry._changing.get_all_handlers())


def test_the_installed_dask_kubernetes_still_has_the_race() -> None:
    # When this fails, the installed release has upstream's fix: remove the fix-up and its
    # `-m portfolio_operator.patches.dask_kubernetes_phase` line in the chart.
    assert fix.race_is_present(fix.create_handler_source())
    assert fix.REGISTERED


def test_it_registers_while_the_race_is_there_and_retires_once_upstream_is_fixed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    racing = kopf.OperatorRegistry()
    assert fix.register(fix.create_handler_source, racing)
    assert len(phase_handlers(racing)) == 1

    fixed = kopf.OperatorRegistry()
    with caplog.at_level(logging.WARNING):
        assert not fix.register(lambda: FIXED_UPSTREAM, fixed)
    assert phase_handlers(fixed) == []
    assert "retires itself" in caplog.text


def test_an_unrecognisable_upstream_stops_with_what_to_check(monkeypatch) -> None:
    from dask_kubernetes.operator.controller import controller

    monkeypatch.delattr(controller, "daskcluster_create_components")
    with pytest.raises(fix.UpstreamChanged, match="dask-kubernetes#968"):
        fix.create_handler_source()


@pytest.mark.parametrize(
    ("service", "up"),
    [
        ({"spec": {"type": "ClusterIP"}}, True),
        ({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {}}}, False),
        ({"spec": {"type": "LoadBalancer"},
          "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}, True),
    ],
)  # fmt: skip
def test_a_scheduler_service_counts_once_it_can_be_reached(service: dict, up: bool) -> None:
    assert fix.service_is_up(service) is up


@pytest.mark.parametrize("exists", [True, False])
def test_pending_becomes_running_only_when_the_scheduler_service_exists(
    monkeypatch, exists: bool
) -> None:
    async def get(name: str, namespace: str) -> Any:
        assert (name, namespace) == ("c1-scheduler", "team-a")
        if not exists:
            raise kr8s.NotFoundError(name)
        return SimpleNamespace(raw={"spec": {"type": "ClusterIP"}})

    monkeypatch.setattr(fix.Service, "get", get)
    patch = kopf.Patch()
    asyncio.run(
        fix.running_once_scheduler_service_exists(
            name="c1", namespace="team-a", patch=patch, logger=logging.getLogger("test")
        )
    )
    assert patch.get("status", {}).get("phase") == ("Running" if exists else None)
