"""One LocalCluster for the CLI tests that run an analysis in-process (``--scheduler``), so
that each test pays for a run, not for starting workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dask_cluster import local_cluster


@pytest.fixture(scope="session")
def scheduler_address() -> Iterator[str]:
    with local_cluster(2) as cluster:
        yield cluster.scheduler_address
