"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

kopf runs standalone (no peering), so two operator processes would both run every analysis.
With election on, a process starts kopf only once it holds the Lease, and:

- *acquires* when the Lease is missing, free (empty ``holderIdentity``, as a released Lease
  is) or expired: unchanged, as this process observed it, for the holder's
  ``leaseDurationSeconds``. Expiry is measured on the candidate's own monotonic clock from
  when it saw the record change (client-go's ``observedTime``), never from the timestamps
  in the record, so clock skew between nodes does not matter;
- writes with optimistic concurrency (the ``resourceVersion`` it read), so of two
  candidates racing for a free Lease exactly one wins (the other gets 409 Conflict);
- *renews* every ``retry_period`` in a thread of its own, not on the event loop that runs
  kopf and the analyses, so a busy loop does not cost the lease;
- *exits the process* (:data:`LOST_LEASE_EXIT_CODE`, after a log line) as soon as it sees
  another holder or could not renew within ``renew_deadline``. A standby waits a whole
  ``lease_duration`` (longer than the renew deadline) after the last renewal it saw, so the old
  leader has stopped before the new one starts: two leaders never act at once;
- *releases* on a graceful stop (after kopf has stopped): clears ``holderIdentity``, so a
  standby takes over at its next try instead of waiting for expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from portfolio_operator.config import OperatorConfig

logger = logging.getLogger("portfolio_operator.leader")

# Non-zero, so the kubelet restarts the container, which then comes back as a standby.
LOST_LEASE_EXIT_CODE = 3


class Attempt(enum.Enum):
    """What one try to acquire or renew the Lease came to."""

    HELD = "held"  # this process holds the Lease now
    TAKEN = "taken"  # another holder's Lease, not expired
    FAILED = "failed"  # the API server did not answer, or a concurrent write won


def default_identity() -> str:
    """hostname_pid: unique among processes sharing a host (tests) or a pod name."""
    return f"{socket.gethostname()}_{os.getpid()}"


def _micro_time(moment: datetime) -> str:
    """A MicroTime as the API server writes it (RFC 3339, microseconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate for one Lease; see the module docstring for the protocol."""

    def __init__(
        self,
        api: client.CoordinationV1Api,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.holder = ""  # the holderIdentity last read
        self._observed: tuple[str | None, float] = (None, 0.0)  # resourceVersion, when seen
        self._renewed_at = 0.0  # clock() before the last successful write
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: OperatorConfig, api_client: client.ApiClient) -> LeaderElector:
        assert config.leader_election_namespace, "OperatorConfig requires it with election on"
        return cls(
            client.CoordinationV1Api(api_client),
            config.leader_election_namespace,
            config.leader_election_lease,
            config.leader_election_identity or default_identity(),
            lease_duration=config.lease_duration_seconds,
            renew_deadline=config.renew_deadline_seconds,
            retry_period=config.retry_period_seconds,
        )

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def is_leader(self) -> bool:
        return self.holder == self.identity

    def standby_reason(self) -> str | None:
        """Why this process is not acting (for /readyz), or None once it is the leader."""
        if self.is_leader:
            return None
        held = f"held by {self.holder}" if self.holder else "not held"
        return f"standby: waiting for Lease {self.lease} ({held})"

    # -- one try (client-go's tryAcquireOrRenew) -----------------------------------------------

    def try_acquire_or_renew(self, timeout: float | None = None) -> Attempt:
        """Read the Lease and write ourselves in as holder if it is ours, free or expired."""
        started = self.clock()
        request_timeout = timeout if timeout is not None else self.renew_deadline
        try:
            return self._try(started, request_timeout)
        except ApiException as exc:
            if exc.status == 409:  # someone else wrote first: read again next time
                logger.debug("Lease %s changed under us (409): retrying", self.lease)
            else:
                logger.warning("Lease %s: API error %s %s", self.lease, exc.status, exc.reason)
        except Exception as exc:  # noqa: BLE001  (network errors: urllib3, socket, ssl)
            logger.warning("Lease %s: %s: %s", self.lease, type(exc).__name__, exc)
        return Attempt.FAILED

    def _try(self, started: float, request_timeout: float) -> Attempt:
        now = datetime.now(UTC)
        try:
            lease = self._call(self.api.read_namespaced_lease, self.name, self.namespace,
                               timeout=request_timeout)  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, acquired=now, transitions=0),
            }
            created = self._call(self.api.create_namespaced_lease, self.namespace, body,
                                 timeout=request_timeout)  # fmt: skip
            self._written(created, started)
            logger.info("acquired Lease %s (created it) as %s", self.lease, self.identity)
            return Attempt.HELD

        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        version = lease["metadata"].get("resourceVersion")
        if version != self._observed[0]:
            self._observed = (version, self.clock())
        self.holder = holder
        duration = spec.get("leaseDurationSeconds") or self.lease_duration
        if holder and holder != self.identity and self.clock() < self._observed[1] + duration:
            return Attempt.TAKEN

        renewing = holder == self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if renewing else 1)
        acquired = spec.get("acquireTime") if renewing else None
        lease["spec"] = self._spec(now, acquired=acquired or now, transitions=transitions)
        # PUT with the resourceVersion read: a concurrent writer makes this a 409 Conflict.
        written = self._call(self.api.replace_namespaced_lease, self.name, self.namespace, lease,
                             timeout=request_timeout)  # fmt: skip
        self._written(written, started)
        if not renewing:
            previous = f"from {holder}, expired" if holder else "free"
            logger.info("acquired Lease %s (%s) as %s", self.lease, previous, self.identity)
        return Attempt.HELD

    def _spec(self, now: datetime, acquired: datetime | str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquired if isinstance(acquired, str) else _micro_time(acquired),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
        }

    def _call(self, method: Callable[..., Any], *args: Any, timeout: float) -> dict[str, Any]:
        """The raw JSON of a call (the MicroTimes stay exactly as the server wrote them)."""
        response = method(*args, _preload_content=False, _request_timeout=timeout)
        return json.loads(response.data)

    def _written(self, lease: dict[str, Any], started: float) -> None:
        self.holder = self.identity
        self._observed = (lease["metadata"].get("resourceVersion"), self.clock())
        self._renewed_at = started

    # -- acquiring, renewing, releasing -----------------------------------------------------

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Try every retry period (jittered) until the Lease is ours; False if `stop` is set."""
        logger.info("waiting for Lease %s as %s", self.lease, self.identity)
        while not stop.is_set():
            if await asyncio.to_thread(self.try_acquire_or_renew) is Attempt.HELD:
                logger.info("leading as %s: starting the operator", self.identity)
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry_period * random.uniform(1, 1.2))
        return False

    def keep_renewing(self, on_lost: Callable[[str], None]) -> None:
        """Renew in a daemon thread; call `on_lost(why)` once the Lease is lost (then stop)."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._renew_loop, args=(on_lost,), name="lease-renewal", daemon=True
        )
        self._thread.start()

    def _renew_loop(self, on_lost: Callable[[str], None]) -> None:
        try:
            while not self._stop.wait(self.retry_period):
                why = self._renew()
                if why is not None:
                    if not self._stop.is_set():
                        on_lost(why)
                    return
        except BaseException as exc:  # noqa: BLE001  (a dead renewer must not leave a leader)
            on_lost(f"the renewal thread failed: {exc!r}")

    def _renew(self) -> str | None:
        """Renew before the deadline; None when renewed, else why the Lease is lost."""
        while not self._stop.is_set():
            remaining = self._renewed_at + self.renew_deadline - self.clock()
            if remaining <= 0:
                return f"not renewed within the renew deadline of {self.renew_deadline:g} s"
            attempt = self.try_acquire_or_renew(timeout=remaining)
            if attempt is Attempt.HELD:
                return None
            if attempt is Attempt.TAKEN:
                return f"the Lease is held by {self.holder} now"
            self._stop.wait(min(self.retry_period / 2, max(remaining, 0.0)))
        return None

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.renew_deadline + 5)
            self._thread = None

    def release(self) -> bool:
        """Stop renewing and clear holderIdentity, if this process still holds the Lease."""
        self.stop_renewing()
        if not self.is_leader:
            return False
        try:
            lease = self._call(self.api.read_namespaced_lease, self.name, self.namespace,
                               timeout=5.0)  # fmt: skip
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return False
            now = _micro_time(datetime.now(UTC))
            spec = lease["spec"]
            # As client-go: no holder, a 1 s duration, the transitions count kept.
            spec.update(holderIdentity=None, leaseDurationSeconds=1, acquireTime=now,
                        renewTime=now)  # fmt: skip
            self._call(self.api.replace_namespaced_lease, self.name, self.namespace, lease,
                       timeout=5.0)  # fmt: skip
        except Exception as exc:  # noqa: BLE001  (the Lease then expires by itself)
            logger.warning("could not release Lease %s: %s (it expires by itself)", self.lease,
                           exc)  # fmt: skip
            return False
        self.holder = ""
        logger.info("released Lease %s", self.lease)
        return True


def exit_on_lost_lease(why: str) -> None:
    """client-go's 'exit on lost leadership': stop at once, so that two leaders never act.

    No graceful shutdown: another process may be the leader already, and kopf's cleanup would
    act on the resources. The kubelet restarts the container, which comes back as a standby.
    """
    logger.critical("lost the leader Lease (%s): exiting with %d", why, LOST_LEASE_EXIT_CODE)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(LOST_LEASE_EXIT_CODE)
