"""The library's one network layer, shared by the price sources (sources/) and the news
sources (sentiment.py): one HTTP client, one notion of a transient error, one retry policy.

Sharing it means a price fetch and a news fetch treat the same failure the same way: an
HTTP 429 or 5xx, a timeout, a dropped connection or a garbled body is a
:class:`TransientSourceError`, retried by :func:`with_retries` with the same backoff, and
reported with the same "(gave up after N attempts)". The request-rate limit both obey is
ratelimit.py's.

A failed DNS lookup is not transient: a machine that cannot resolve a host name will not
resolve it a second later, so it is a :class:`SourceUnavailableError`, never retried, and
:func:`mark_unreachable` lets a source skip the host for the rest of the run (with one log
line, not one per ticker).
"""

from __future__ import annotations

import functools
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.ratelimit import MAX_PAUSE_SECONDS

T = TypeVar("T")

log = logging.getLogger(__name__)

# How long a host whose name did not resolve is skipped, per process. Longer than any run's
# news stage (so each source reports once per run), short enough that a long-lived Dask worker
# (the operator's clusters) tries again in a later run once the network is back.
UNREACHABLE_MEMORY_SECONDS = 600.0

USER_AGENT = "portfolio-operator (+https://github.com/portfolio-operator; prices and news)"

# yfinance keeps process-wide state (one session for every call, a global "hide exceptions"
# switch it flips during download): two threads using it at once with different sessions
# would send each other's requests past the wrong rate limiter. Every yfinance call of this
# package (prices in sources/yahoo.py, news in sentiment.py) holds this lock.
YFINANCE_LOCK = threading.RLock()


class TransientSourceError(Exception):
    """Worth retrying: rate limited (HTTP 429), server error (5xx), timeout, reset, garbled.

    ``retry_after`` is the server's Retry-After in seconds, if it sent one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self):  # picklable with its retry_after
        return (type(self), (str(self), self.retry_after))


class SourceUnavailableError(Exception):
    """The source can't be reached at all in this run (no network, daily quota used up)."""


@functools.cache
def http_client() -> httpx.Client:
    """One pooled client per process (TLS set-up is the slow part); timeouts per request.

    A forked child must ``http_client.cache_clear()`` before use: pooled connections are not
    to be shared between processes.
    """
    return httpx.Client(follow_redirects=True, headers={"User-Agent": USER_AGENT})


def retry_wait(config: AnalysisConfig) -> Callable[[RetryCallState], float]:
    """Exponential backoff with jitter, but never sooner than a server's Retry-After.

    Before retry n (1, 2, ...): ``base * 2**(n-1)`` plus up to ``base`` of uniform jitter,
    capped at ``base * 2**max_retries`` (tenacity's ``wait_exponential_jitter`` formula,
    written out because its argument names changed between tenacity 8 and 9).
    """
    base = config.backoff_base_seconds
    cap = max(base * 2**config.max_retries, 0.0)

    def wait(state: RetryCallState) -> float:
        backoff = min(base * 2 ** (state.attempt_number - 1) + random.uniform(0, base), cap)
        error = state.outcome.exception() if state.outcome else None
        asked = getattr(error, "retry_after", None) or 0.0
        return max(backoff, min(asked, MAX_PAUSE_SECONDS))

    return wait


def with_retries(config: AnalysisConfig, attempt: Callable[[], T]) -> T:
    """``attempt()``, run again after each TransientSourceError it raises.

    At most ``config.max_retries`` retries, spaced by :func:`retry_wait`; the last transient
    error propagates (:func:`gave_up` words it). Any other exception propagates at once.
    """
    retrying = Retrying(
        stop=stop_after_attempt(config.max_retries + 1),
        wait=retry_wait(config),
        retry=retry_if_exception_type(TransientSourceError),
        reraise=True,
    )
    return retrying(attempt)


def gave_up(error: TransientSourceError, config: AnalysisConfig) -> str:
    """The reason a transient failure that outlasted every retry is reported with."""
    return f"{error} (gave up after {config.max_retries + 1} attempts)"


# --- hosts that did not resolve ------------------------------------------------------------

# What curl (curl_cffi, yfinance's transport) says when a name does not resolve.
_CURL_DNS_MARKERS = ("could not resolve host", "curl: (6)")


def is_name_resolution_error(error: BaseException) -> bool:
    """Whether ``error`` is, or was caused by, a failed DNS lookup.

    httpx raises ``ConnectError`` whose cause (through httpcore) is ``socket.gaierror``; curl
    raises curl_cffi's ``DNSError`` (``curl: (6) Could not resolve host``). The whole
    ``__cause__``/``__context__`` chain is looked at, since each library wraps the other's.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror) or type(current).__name__ == "DNSError":
            return True
        if any(marker in str(current).lower() for marker in _CURL_DNS_MARKERS):
            return True
        current = current.__cause__ or current.__context__
    return False


_unreachable: dict[str, tuple[str, float]] = {}
_unreachable_lock = threading.Lock()


def mark_unreachable(key: str, reason: str) -> None:
    """Remember that ``key`` (a source and host) cannot be reached, and log it once.

    Every later :func:`unreachable` check for ``key`` in this process answers ``reason`` for
    :data:`UNREACHABLE_MEMORY_SECONDS`, so a source reports a dead network once per run,
    not once per ticker and attempt.
    """
    now = time.monotonic()
    with _unreachable_lock:
        known = _unreachable.get(key)
        fresh = known is None or now - known[1] >= UNREACHABLE_MEMORY_SECONDS
        if fresh:
            _unreachable[key] = (reason, now)
    if fresh:
        log.warning("%s: %s; not asked again in this run", key, reason)


def unreachable(key: str) -> str | None:
    """The reason ``key`` was marked unreachable in this process, if that is still recent."""
    with _unreachable_lock:
        known = _unreachable.get(key)
    if known is None or time.monotonic() - known[1] >= UNREACHABLE_MEMORY_SECONDS:
        return None
    return known[0]


def forget_unreachable() -> None:
    """Forget every host marked unreachable (a new network; tests)."""
    with _unreachable_lock:
        _unreachable.clear()
