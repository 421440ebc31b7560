"""pytest plugin: a real Kubernetes control plane for tests marked `kube`.

Fixtures:
- `control_plane` (session): a started `ControlPlane` (etcd, kube-apiserver,
  kube-controller-manager); `.kubeconfig`, `.server`, `.env`, `.kubectl(...)`, `.helm(...)`,
  `.admin_token`, `.ca_cert`, `.write_kubeconfig(...)`.
- `kube_namespace` (function): a fresh namespace name for one test, deleted afterwards.

When the binaries can't be found the fixture fails the test (never skips), saying how to get
them. Tests using these fixtures get the `kube` marker automatically, so `-m "not kube"`
deselects them; mark them explicitly too, for readers.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator

import pytest

from hack.kubelocal.binaries import BinariesNotFoundError
from tests.support.control_plane import ControlPlane, ControlPlaneError, KubeBinaries

KUBE_FIXTURES = ("control_plane", "kube_namespace")
_started: list[ControlPlane] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tag every test that uses the control plane with the `kube` marker."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in KUBE_FIXTURES):
            item.add_marker(pytest.mark.kube)


def find_binaries() -> KubeBinaries:
    """The control-plane binaries, or a test failure (never a skip) saying how to get them."""
    try:
        return KubeBinaries.find()
    except BinariesNotFoundError as error:
        pytest.fail(str(error), pytrace=False)


@contextlib.contextmanager
def running_control_plane(binaries: KubeBinaries) -> Iterator[ControlPlane]:
    """A started ControlPlane, stopped on exit; a start that fails fails the test."""
    plane = ControlPlane(binaries=binaries)
    try:
        plane.start()
    except ControlPlaneError as error:
        pytest.fail(f"the Kubernetes control plane did not start: {error}", pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


@contextlib.contextmanager
def fresh_namespace(plane: ControlPlane, test_name: str) -> Iterator[str]:
    """A namespace created for one test and deleted (without waiting) after it."""
    name = namespace_name_for(test_name)
    plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        plane.kubectl(
            "delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False
        )


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A real API server (with etcd and kube-controller-manager) for the whole session."""
    with running_control_plane(find_binaries()) as plane:
        _started.append(plane)
        yield plane


@pytest.fixture
def kube_namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """Name of a namespace created for this test and deleted (without waiting) after it."""
    with fresh_namespace(control_plane, request.node.name) as name:
        yield name


def namespace_name_for(test_name: str) -> str:
    """A valid, unique namespace name (RFC 1123 label, <= 63 chars) derived from a test name."""
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")
    stem = re.sub(r"-{2,}", "-", stem)[:48].strip("-") or "test"
    return f"{stem}-{secrets.token_hex(4)}"


def pytest_terminal_summary(terminalreporter) -> None:
    """Report how long the control plane took to come up (a figure, not an assertion)."""
    for plane in _started:
        parts = ", ".join(
            f"{name} {seconds:.1f} s" for name, seconds in plane.startup_breakdown.items()
        )
        terminalreporter.write_line(
            f"kube control plane at {plane.server} started in {plane.startup_seconds:.1f} s "
            f"({parts})"
        )
