"""Request rate limits that hold for a whole run, however many processes it uses.

A price service counts requests per client address, so a limit per process would let N Dask
workers send N times the rate and get the user banned. Every limiter here spaces request
*starts* at least ``1/rate`` seconds apart for everyone that shares it (a token bucket of
size one: in any window of ``T`` seconds at most ``T * rate + 1`` requests start), and can be
paused for everyone when a server answers 429 with ``Retry-After``.

``rate_limiter(name, rate, shared_dir)`` picks the widest scope it can reach:

* inside a Dask worker: a :class:`ClusterRateLimiter`, one lease of a ``distributed.Semaphore``
  named after the service, shared by every worker of the cluster, on however many machines
  (Kubernetes pods share no disk). A caller takes the lease, makes its request, and the lease
  is released ``1/rate`` seconds after it was granted (by a timer, so a slow request doesn't
  slow the others). No clocks are compared between machines, and a worker that dies while
  holding the lease loses it after the scheduler's lease timeout
  (``distributed.scheduler.locks.lease-timeout``, 30 s). Cost: one scheduler round trip to
  acquire and one to release per request, against the ``1/rate`` (typically 0.5 s) the
  request has to wait anyway. Threads of one worker queue on a local lock first, so each
  process has at most one request waiting at the scheduler.
* anywhere else: a :class:`FileRateLimiter`, a "next free slot" time stored in
  ``<shared_dir>/<name>.slot`` and updated under an exclusive ``flock``. Every process of the
  machine that uses the same folder shares it: the workers of a local multi-process Dask
  cluster started outside Dask's task context, ``multiprocessing`` pools, and two CLI runs of
  the same user at once (they share one IP address too).
* without ``flock`` (not POSIX) or a usable folder: a :class:`LocalRateLimiter`, the same
  clock in this process only.

Limiters are cached per process by (scope, name, rate), so every source object in a process
shares one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from portfolio_analysis.config import AnalysisConfig

log = logging.getLogger(__name__)

# The longest a server's Retry-After may hold everyone back; a longer ask is capped (a run
# should fall back to the next source rather than hang for an hour).
MAX_PAUSE_SECONDS = 60.0


class RateLimiter(Protocol):
    interval: float

    def acquire(self) -> None:
        """Block until the caller may start one request."""

    def pause(self, seconds: float) -> None:
        """Let nobody sharing this limiter start a request for ``seconds`` (Retry-After)."""


def _interval(rate: float) -> float:
    if not rate > 0:
        raise ValueError(f"requests per second must be positive, got {rate}")
    return 1.0 / rate


def _pause_length(seconds: float) -> float:
    return min(max(float(seconds), 0.0), MAX_PAUSE_SECONDS)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad.

    Capped at MAX_PAUSE_SECONDS like a pause, so every source (prices, news) reads a server's
    ask the same way.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return _pause_length(seconds)


def pause_on_429(limiter: RateLimiter, status: int, headers: Mapping[str, str]) -> float | None:
    """On HTTP 429, pause ``limiter`` for the server's Retry-After and return it (seconds).

    The one place every source (prices and news) reacts to a 429, so that the whole run backs
    off, not only the request that was refused. None when ``status`` is not 429 or the server
    gave no usable Retry-After (the caller's backoff then decides).
    """
    if status != 429:
        return None
    retry_after = retry_after_seconds(headers.get("Retry-After"))
    if retry_after:
        limiter.pause(retry_after)
    return retry_after


class LocalRateLimiter:
    """Spaces request starts in this process at least ``1/rate`` seconds apart."""

    def __init__(self, rate: float) -> None:
        self.interval = _interval(rate)
        self._lock = threading.Lock()
        self._next_slot = 0.0

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.interval
        if slot > now:
            time.sleep(slot - now)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._next_slot = max(self._next_slot, time.monotonic() + _pause_length(seconds))


class FileRateLimiter:
    """Spaces request starts of every process using ``path`` at least ``1/rate`` s apart.

    The file holds the wall-clock time (``time.time()``, the one clock all processes of a
    machine agree on) of the next free slot. ``acquire`` reserves a slot under an exclusive
    ``flock`` and sleeps until it outside the lock, so waiting processes don't hold the lock.
    A slot further ahead than any legitimate reservation (the clock was set back) is reset.
    """

    def __init__(self, path: Path, rate: float) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            raise OSError("file locks (fcntl.flock) are not available on this system")
        self.interval = _interval(rate)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, even if we crash
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def _read(fd: int) -> float:
        raw = os.pread(fd, 64, 0)
        try:
            return float(raw.decode().strip() or 0.0)
        except (UnicodeDecodeError, ValueError):
            return 0.0  # a damaged file only loses one reservation

    @staticmethod
    def _write(fd: int, value: float) -> None:
        data = f"{value:.6f}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    def _reserve(self, hold: float) -> tuple[float, float]:
        """Take the next free slot and keep the following ``hold`` seconds; (slot, now)."""
        with self._locked() as fd:
            now = time.time()
            next_slot = self._read(fd)
            if next_slot - now > MAX_PAUSE_SECONDS + 3600 * self.interval:
                next_slot = now  # the wall clock jumped back: forget the stale reservation
            slot = max(now, next_slot)
            self._write(fd, slot + hold)
        return slot, now

    def acquire(self) -> None:
        slot, now = self._reserve(self.interval)
        if slot > now:
            time.sleep(slot - now)

    def pause(self, seconds: float) -> None:
        with self._locked() as fd:
            until = time.time() + _pause_length(seconds)
            if self._read(fd) < until:
                self._write(fd, until)


class ClusterRateLimiter:
    """Spaces request starts across every worker of a Dask cluster (see module docstring)."""

    def __init__(self, name: str, rate: float) -> None:
        from distributed import Semaphore, get_worker

        self.interval = _interval(rate)
        worker = get_worker()
        self._worker = worker
        self.name = name
        # Bound to the worker now: threads started later (yfinance's download threads) don't
        # inherit the task's context, where Dask would otherwise look the worker up.
        self._semaphore = Semaphore(
            max_leases=1, name=name, scheduler_rpc=worker.scheduler, loop=worker.loop
        )
        self._local = threading.Lock()

    def _hold(self, seconds: float) -> None:
        with self._local:
            self._semaphore.acquire()
        release = threading.Timer(seconds, self._release)
        release.daemon = True
        release.start()

    def _release(self) -> None:
        # A worker shutting down drops its leases with its scheduler connection; releasing
        # then would only log a scary "Release failed" from distributed.
        if getattr(self._worker.status, "name", "running") not in ("running", "paused"):
            return
        try:
            self._semaphore.release()
        except Exception as error:  # the lease timeout frees it on the scheduler anyway
            log.debug("rate limit lease %s not released: %s", self.name, error)

    def acquire(self) -> None:
        self._hold(self.interval)

    def pause(self, seconds: float) -> None:
        # Holding the only lease for the pause keeps every worker's next request back.
        self._hold(max(_pause_length(seconds), self.interval))


_limiters: dict[tuple[str, str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def _current_scheduler() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().scheduler.address)
    except (ImportError, ValueError, AttributeError):
        return None


def default_shared_dir() -> Path:
    """Where processes of this user on this machine meet: the system temp folder."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"portfolio-operator-{uid}" / "ratelimit"


def shared_dir_for(config: AnalysisConfig) -> Path:
    """``<cache_dir>/ratelimit``, or a per-user temp folder when caching has no folder."""
    return Path(config.cache_dir) / "ratelimit" if config.cache_dir else default_shared_dir()


def rate_limiter(name: str, rate: float, shared_dir: Path | None = None) -> RateLimiter:
    """The limiter for service ``name`` at ``rate`` requests/second in this context."""
    _interval(rate)
    scheduler = _current_scheduler()
    folder = Path(shared_dir) if shared_dir is not None else default_shared_dir()
    scope = f"dask:{scheduler}" if scheduler else f"file:{folder}"
    key = (scope, name, float(rate))
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _make(name, rate, scheduler, folder)
            _limiters[key] = limiter
        return limiter


def _make(name: str, rate: float, scheduler: str | None, folder: Path) -> RateLimiter:
    if scheduler:
        return ClusterRateLimiter(f"portfolio-operator-rate-{name}", rate)
    try:
        return FileRateLimiter(folder / f"{name}.slot", rate)
    except OSError as error:
        log.warning(
            "request rate limit for %s holds for this process only: cannot use %s (%s)",
            name,
            folder,
            error,
        )
        return LocalRateLimiter(rate)


def limiter_for(config: AnalysisConfig, service: str) -> RateLimiter:
    """The shared limiter of ``service`` ("yahoo", "stooq", a feed's host) for this run."""
    return rate_limiter(service, config.requests_per_second, shared_dir_for(config))


def service_for_host(host: str) -> str:
    """Requests to one company share a limit: every ``*.yahoo.com`` host is "yahoo"."""
    host = host.lower().split(":")[0]
    if host == "yahoo.com" or host.endswith(".yahoo.com"):
        return "yahoo"
    if host == "stooq.com" or host.endswith(".stooq.com") or host.endswith(".stooq.pl"):
        return "stooq"
    return host or "unknown-host"
