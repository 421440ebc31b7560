"""The library's one network layer, shared by the price sources (sources/) and the news
sources (sentiment.py): one HTTP client, one notion of a transient error, one retry policy.

Sharing it means a price fetch and a news fetch treat the same failure the same way: an
HTTP 429 or 5xx, a timeout, a dropped connection or a garbled body is a
:class:`TransientSourceError`, retried by :func:`with_retries` with the same backoff, and
reported with the same "(gave up after N attempts)". The request-rate limit both obey is
ratelimit.py's.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable
from typing import TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.ratelimit import MAX_PAUSE_SECONDS

T = TypeVar("T")

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
