"""Fixtures of the end-to-end tests: a real single-node cluster and the chart installed on it.

The cluster (hack/local-cluster/cluster.py) is started once per session and torn down at the
end, also when a test fails. E2E_REUSE_CLUSTER=1 keeps it running after the session and reuses
a running one whose product image is still current (for working on the tests).

Missing prerequisites (not root, binaries not built) fail the tests with what to do: they
never skip, so CI cannot pass without running them. Deselect with -m "not e2e".
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    OPERATOR_NAMESPACE,
    RELEASE,
    E2EError,
    Kube,
    LocalCluster,
    e2e_binaries,
    install_chart,
    prerequisite_problem,
)

REUSE = os.environ.get("E2E_REUSE_CLUSTER") == "1"
_timings: dict[str, float] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def e2e_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if problem := prerequisite_problem():
        pytest.fail(f"end-to-end prerequisites missing: {problem}", pytrace=False)
    cluster = LocalCluster.running() if REUSE else None
    if cluster is None:
        log = tmp_path_factory.mktemp("e2e") / "cluster-up.log"
        try:
            cluster = LocalCluster.up(log)
        except E2EError as error:
            pytest.fail(str(error), pytrace=False)
        _timings["cluster up (s)"] = round(cluster.up_seconds, 1)
        for step, seconds in (cluster.state.get("timings") or {}).items():
            _timings[f"  {step} (s)"] = seconds
    try:
        yield cluster
    finally:
        if not REUSE:
            LocalCluster.down()


@pytest.fixture(scope="session")
def kube(e2e_cluster: LocalCluster) -> Kube:
    return Kube(e2e_cluster.kubeconfig, e2e_binaries())


@pytest.fixture(scope="session")
def product_image(e2e_cluster: LocalCluster) -> str:
    return e2e_cluster.images["product"]


@pytest.fixture(scope="session")
def chart_release(kube: Kube, product_image: str) -> Iterator[str]:
    """`helm install` of the chart with the dask-kubernetes operator enabled; its namespace."""
    started = time.monotonic()
    installed = None
    if REUSE:
        installed = kube.helm("status", RELEASE, "-n", OPERATOR_NAMESPACE, check=False)
    upgrade = installed is not None and installed.returncode == 0
    try:
        install_chart(kube, product_image, upgrade=upgrade)
    except E2EError as error:
        pytest.fail(f"{error}\n{kube.describe(OPERATOR_NAMESPACE, kinds=['deploy'])}")
    _timings["helm install --wait (s)"] = round(time.monotonic() - started, 1)
    yield OPERATOR_NAMESPACE
    if not REUSE:
        kube.helm("uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--wait", check=False)


@pytest.fixture
def namespace(kube: Kube, chart_release: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (with everything in it)."""
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_terminal_summary(terminalreporter) -> None:
    if _timings:
        terminalreporter.write_sep("-", "e2e timings")
        for step, seconds in _timings.items():
            terminalreporter.write_line(f"{step}: {seconds}")
