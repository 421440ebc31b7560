"""Request rate limits that hold for a whole run, however many processes it uses.

A price service counts requests per client address, so a limit per process would let N Dask
workers send N times the rate and get the user banned. ``rate_limiter(name, rate)`` therefore
returns:

* inside a Dask worker: a :class:`ClusterRateLimiter`, one lease of a ``distributed.Semaphore``
  named after the service, shared by every worker of the cluster. A caller takes the lease,
  makes its request, and the lease is released ``1/rate`` seconds after it was granted (by a
  timer, so a slow request doesn't slow the others). The next lease can only be granted after
  that release, so request starts across the cluster are at least ``1/rate`` apart. No clocks
  are compared between machines, and a worker that dies while holding the lease loses it
  after the scheduler's lease timeout (``distributed.scheduler.locks.lease-timeout``, 30 s).
  Cost: one scheduler round trip to acquire and one to release per request, against the
  ``1/rate`` (typically 0.5 s) the request has to wait anyway. Threads of one worker queue
  on a local lock first, so each process has at most one request waiting at the scheduler.
* anywhere else: a :class:`LocalRateLimiter`, a thread-safe "next free slot" clock.

Limiters are cached per process by (name, rate), so every source object in a process shares
one.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class RateLimiter(Protocol):
    interval: float

    def acquire(self) -> None:
        """Block until the caller may start one request."""


class LocalRateLimiter:
    """Spaces request starts in this process at least ``1/rate`` seconds apart."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"requests per second must be positive, got {rate}")
        self.interval = 1.0 / rate
        self._lock = threading.Lock()
        self._next_slot = 0.0

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class ClusterRateLimiter:
    """Spaces request starts across every worker of a Dask cluster (see module docstring)."""

    def __init__(self, name: str, rate: float) -> None:
        from distributed import Semaphore, get_worker

        if rate <= 0:
            raise ValueError(f"requests per second must be positive, got {rate}")
        worker = get_worker()
        self.interval = 1.0 / rate
        self.name = name
        # Bound to the worker now: threads started later (yfinance's download threads) don't
        # inherit the task's context, where Dask would otherwise look the worker up.
        self._semaphore = Semaphore(
            max_leases=1, name=name, scheduler_rpc=worker.scheduler, loop=worker.loop
        )
        self._local = threading.Lock()

    def acquire(self) -> None:
        with self._local:
            self._semaphore.acquire()
        release = threading.Timer(self.interval, self._semaphore.release)
        release.daemon = True
        release.start()


_limiters: dict[tuple[str, str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def _current_scheduler() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().scheduler.address)
    except (ImportError, ValueError):
        return None


def rate_limiter(name: str, rate: float) -> RateLimiter:
    """The limiter for service ``name`` at ``rate`` requests/second in this context."""
    scheduler = _current_scheduler()
    key = (scheduler or "", f"portfolio-operator-rate-{name}", float(rate))
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = ClusterRateLimiter(key[1], rate) if scheduler else LocalRateLimiter(rate)
            _limiters[key] = limiter
        return limiter
