"""What every benchmark here measures the same way: the best of several wall times, and the
machine's load while measuring (figures from a shared 2-core machine mean little without it)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def best(function: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls, in seconds: on a shared machine the minimum is the
    figure least disturbed by other processes."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
