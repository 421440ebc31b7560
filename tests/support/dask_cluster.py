"""A Dask LocalCluster for tests that need a real scheduler address on 127.0.0.1.

One definition for the operator lifecycle tests, the chart install tests and
benchmarks/bench_operator.py, so they start workers the same way (processes, one thread each,
random ports, quiet logs). Use it as a context manager: ``with local_cluster(2) as cluster``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import LocalCluster


def local_cluster(workers: int, **options: Any) -> LocalCluster:
    """A LocalCluster on 127.0.0.1 of ``workers`` single-threaded worker processes.

    ``options`` override LocalCluster's arguments (e.g. ``dashboard_address=None``).
    """
    from distributed import LocalCluster

    arguments: dict[str, Any] = {
        "n_workers": workers,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "scheduler_port": 0,
        "dashboard_address": ":0",
        "silence_logs": logging.ERROR,
    }
    return LocalCluster(**{**arguments, **options})
