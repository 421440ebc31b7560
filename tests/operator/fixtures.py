"""Fixtures of the tests that run the operator on the real API server (pytest plugin).

Registered in tests/conftest.py: the operator's ServiceAccount kubeconfig with the
CRDs and RBAC installed, Dask LocalClusters to run analyses on, and `start_operator`, which starts
operator processes for one test's namespace and stops them (printing their logs) afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.operator.harness import Kube, OperatorProcess, install, operator_kubeconfig
from tests.support.control_plane import ControlPlane
from tests.support.dask_cluster import local_cluster


@pytest.fixture(scope="module")
def operator_config(control_plane: ControlPlane, tmp_path_factory) -> Path:
    """CRDs and RBAC installed; the kubeconfig of the operator's ServiceAccount."""
    install(control_plane)
    return operator_kubeconfig(control_plane, tmp_path_factory.mktemp("operator"))


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator:
    """A working Dask cluster the analyses connect to."""
    with local_cluster(2) as cluster:
        yield cluster


@pytest.fixture
def empty_dask_cluster() -> Iterator:
    """A scheduler without workers: a run there waits until workers come (or is cancelled)."""
    with local_cluster(0) as cluster:
        yield cluster


@pytest.fixture
def kube(control_plane: ControlPlane, kube_namespace: str) -> Kube:
    return Kube(control_plane, kube_namespace)


@pytest.fixture
def start_operator(
    control_plane: ControlPlane, operator_config: Path, kube_namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators for this test's namespace; all are stopped (and logs shown) after."""
    plane = control_plane
    started: list[OperatorProcess] = []

    def start(scheduler_address: str | None = None, **env: str) -> OperatorProcess:
        process = OperatorProcess(
            operator_config, [kube_namespace], tmp_path / f"operator-{len(started)}.log",
            scheduler_address=scheduler_address, extra_env=env,
        )  # fmt: skip
        started.append(process)
        process.wait_ready()
        return process

    yield start
    if any(process.process.poll() is None for process in started):
        # While an operator runs (with leader election, the one left after a test killed the
        # other), so that kopf's finalizers come off and the namespace can go.
        plane.kubectl("delete", "pfa", "--all", "-n", kube_namespace, "--timeout=60s",
                      check=False, timeout=90)  # fmt: skip
    for process in started:
        if process.process.poll() is None:
            process.stop()
        print(f"--- {process.log_path.name} ---\n{process.log(40)}")
