"""Fixtures for the pipeline and flow tests: one Dask cluster and one Prefect harness per
session (starting either is the slow part of these tests)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.dask_cluster import local_cluster


@pytest.fixture(scope="session")
def dask_client() -> Iterator[object]:
    """A LocalCluster with two single-threaded worker processes, shared by the session."""
    yield from _client(processes=True)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prefect's test harness (a temporary server on a throw-away database), entered once.

    PREFECT_HOME is a temporary folder, set before Prefect is first imported, so the tests
    never touch the user's Prefect home (the flows' quiet settings leave a user's choice be).
    """
    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def thread_client() -> Iterator[object]:
    """Two single-threaded workers inside this process: tests can monkeypatch what they run
    (worker functions are looked up at submit time) and count calls."""
    yield from _client(processes=False)


def _client(processes: bool) -> Iterator[object]:
    from distributed import Client

    # In-process workers talk over inproc://, which takes no host or port.
    options = {} if processes else {"processes": False, "host": None, "scheduler_port": None}
    with local_cluster(2, **options) as cluster, Client(cluster) as client:
        yield client
