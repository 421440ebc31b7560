"""Prometheus metrics: analyses by phase, outcomes, durations, queueing.

Metrics live in their own registry so that several operators in one process (tests) can each
count their own, and `/metrics` shows only what this operator reports plus process figures.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import (
    ProcessCollector as _ProcessCollector,
)

from portfolio_operator.constants import PHASES

DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


class OperatorMetrics:
    """The operator's metrics and the bookkeeping behind the per-phase gauge."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        _ProcessCollector(registry=self.registry)
        self.analyses = Gauge(
            "portfolio_analyses",
            "PortfolioAnalysis resources handled by this operator, by current phase.",
            ["phase"],
            registry=self.registry,
        )
        self.finished = Counter(
            "portfolio_analyses_finished",
            "Analyses that reached a terminal phase, by phase and reason.",
            ["phase", "reason"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "portfolio_analysis_duration_seconds",
            "Seconds from start (provisioning included) to Succeeded or Failed.",
            ["phase"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.cluster_wait = Histogram(
            "portfolio_analysis_cluster_wait_seconds",
            "Seconds from start until the Dask scheduler was ready and the run began.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.runs_active = Gauge(
            "portfolio_analysis_runs_active",
            "Analysis runs executing now.",
            registry=self.registry,
        )
        self.runs_queued = Gauge(
            "portfolio_analysis_runs_queued",
            "Analysis runs waiting for a free slot (--max-concurrent-analyses).",
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "portfolio_operator_reconcile_errors",
            "Reconcile passes that failed and were retried with backoff.",
            registry=self.registry,
        )
        self._phases: dict[str, str] = {}
        for phase in PHASES:
            self.analyses.labels(phase).set(0)

    def set_phase(self, uid: str, phase: str | None) -> None:
        """Record the current phase of one resource (None: it is gone)."""
        if phase is None:
            self._phases.pop(uid, None)
        else:
            self._phases[uid] = phase
        counts = Tally(self._phases.values())
        for known in PHASES:
            self.analyses.labels(known).set(counts.get(known, 0))

    def record_finish(self, phase: str, reason: str, duration: float | None) -> None:
        self.finished.labels(phase, reason).inc()
        if duration is not None:
            self.duration.labels(phase).observe(duration)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
