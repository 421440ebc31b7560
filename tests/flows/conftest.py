"""Fixtures for the pipeline and flow tests: one Dask cluster and one Prefect harness per
session (starting either is the slow part of these tests)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def dask_client() -> Iterator[object]:
    """A LocalCluster with two single-threaded worker processes, shared by the session."""
    from distributed import Client

    client = Client(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prefect's test harness (a temporary server on a throw-away database), entered once.

    The package's quiet settings are applied first, with PREFECT_HOME in a temporary folder
    so the tests never touch the user's Prefect home.
    """
    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    import portfolio_analysis.flows  # noqa: F401  (applies the package's Prefect settings)
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def thread_client() -> Iterator[object]:
    """Two single-threaded workers inside this process: tests can monkeypatch what they run
    (worker functions are looked up at submit time) and count calls."""
    from distributed import Client

    client = Client(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )
    try:
        yield client
    finally:
        client.close()
