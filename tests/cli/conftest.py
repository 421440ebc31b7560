"""One LocalCluster for the CLI tests that run an analysis in-process (``--scheduler``), so
that each test pays for a run, not for starting workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dask_cluster import local_cluster


@pytest.fixture(scope="session")
def scheduler_address() -> Iterator[str]:
    with local_cluster(2) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(autouse=True)
def _in_a_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own folder: a run without --output claims ./portfolio-report
    (its lock file beside it) before it fails, and never in the checkout."""
    monkeypatch.chdir(tmp_path)
