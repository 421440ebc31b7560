"""Analysis runs in worker threads, one per resource, cancellable and bounded in number.

`run_combined_analysis` is blocking Dask client code. Each run gets a thread from a pool of its
own (so API calls and kopf never wait behind an analysis), a `threading.Event` it polls to
cancel its Dask futures, and a slot of a semaphore that caps concurrent runs; the others wait
in a queue and say so in their status.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from distributed import KilledWorker
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.pipeline import AnalysisCancelled, VersionMismatchError
from portfolio_analysis.vocabulary import ANALYSES

from portfolio_operator.metrics import OperatorMetrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutput:
    """What a run hands back: the plain result (status figures, the ConfigMap's readable
    ``report.json``) and the report document the CLI writes (the served page's source)."""

    result: Mapping[str, Any]
    document: Mapping[str, Any] | None = None


# A run function returns a RunOutput, or only the plain result (then there is no document).
RunFn = Callable[..., "RunOutput | Mapping[str, Any]"]

# The Failed reason of a run failure that has one of its own (reconcile picks
# SchedulerUnreachable or AnalysisError for the others).
VERSION_MISMATCH = "VersionMismatch"


class RunState(enum.StrEnum):
    QUEUED = "Queued"  # waiting for a slot (--max-concurrent-analyses)
    CONNECTING = "Connecting"  # has a slot, has not reached the scheduler yet
    RUNNING = "Running"  # connected: its tasks are on the scheduler
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


ACTIVE_STATES = frozenset({RunState.QUEUED, RunState.CONNECTING, RunState.RUNNING})


@dataclass(frozen=True)
class RunView:
    """A snapshot of one run for the reconcile logic."""

    generation: int
    state: RunState
    address: str
    result: Mapping[str, Any] | None = None
    document: Mapping[str, Any] | None = None
    error: str | None = None
    temporary: bool = False
    reason: str | None = None
    progress: tuple[str, int, int] | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass
class _Run:
    generation: int
    address: str
    kwargs: Mapping[str, Any]
    wake: Callable[[], None]
    cancel: threading.Event = field(default_factory=threading.Event)
    state: RunState = RunState.QUEUED
    result: Mapping[str, Any] | None = None
    document: Mapping[str, Any] | None = None
    error: str | None = None
    temporary: bool = False
    reason: str | None = None
    progress: tuple[str, int, int] | None = None
    task: asyncio.Task | None = None

    def view(self) -> RunView:
        return RunView(
            generation=self.generation,
            state=self.state,
            address=self.address,
            result=self.result,
            document=self.document,
            error=self.error,
            temporary=self.temporary,
            reason=self.reason,
            progress=self.progress,
        )


def run_pipeline(
    *,
    address: str,
    cancel: threading.Event,
    progress: Callable[[str, int, int], None],
    connected: Callable[[], None],
    tickers: Sequence[str] | None = None,
    holdings: Mapping[str, float] | None = None,
    analyses: Collection[str] = ANALYSES,
    config: AnalysisConfig | None = None,
) -> RunOutput:
    """The default run: the library's plain-Dask pipeline against the given scheduler, and
    the report document built from it exactly as the CLI builds report.json.

    It connects first (SchedulerUnreachableError within the connect timeout), says so through
    `connected`, then runs on that client and closes it. Like the CLI's run, it asks for the
    chart tickers' daily series (``report.chart_tickers``) and gives the run's close panel,
    series and holdings to ``report.build_document``, so the served page has the CLI's charts.
    """
    from portfolio_analysis import report
    from portfolio_analysis.pipeline import (
        RunOptions,
        resolve_request,
        run_analysis,
        setup_dask_client,
    )

    chosen, holdings = resolve_request(tickers, holdings)
    client = setup_dask_client(address)
    try:
        connected()
        options = RunOptions(
            analyses=tuple(analyses),
            config=config,
            client=client,
            progress=progress,
            cancel=cancel,
            series_tickers=tuple(report.chart_tickers(chosen, holdings)),
        )
        run = run_analysis(chosen, holdings, options)
    finally:
        client.close()
    document = report.build_document(
        run.result, close=run.close, series=run.series, holdings=run.holdings, config=config
    )
    return RunOutput(run.result, document)


def classify_error(exc: BaseException) -> tuple[str, bool, str | None]:
    """(message, temporary, reason) for an exception a run raised.

    Losing the scheduler (connection errors, timeouts, a killed worker) may heal on a retry;
    bad input and bugs will not, so those fail the resource at once. The library's
    SchedulerUnreachableError (no scheduler, or a peer that is none) and SchedulerLostError
    (gone mid-run) are ConnectionErrors naming the scheduler. MemoryError counts as lost
    too: a connection cut mid-message (a worker pod deleted during a run, its address
    reused) reaches distributed's comm layer as a frame length of exabytes, seen in the e2e
    tests; attempts are bounded, so a real shortage still ends in Failed. A version
    mismatch never heals: permanent, with reason VersionMismatch. ``reason`` is None where
    reconcile's default for temporary or permanent failures fits.
    """
    message = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    if isinstance(exc, VersionMismatchError):
        return message, False, VERSION_MISMATCH
    temporary = (
        OSError,
        TimeoutError,
        MemoryError,
        concurrent.futures.CancelledError,
        KilledWorker,
    )
    return message, isinstance(exc, temporary), None  # ConnectionError is an OSError


class RunRegistry:
    """The runs of all resources of this operator, keyed by resource uid."""

    def __init__(
        self,
        max_concurrent: int,
        metrics: OperatorMetrics,
        run_fn: RunFn = run_pipeline,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.metrics = metrics
        self.run_fn = run_fn
        self._runs: dict[str, _Run] = {}
        self._slots: asyncio.Semaphore | None = None
        # Threads spend their life waiting on Dask futures, so one per allowed run is right.
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="analysis")

    def view(self, uid: str) -> RunView | None:
        run = self._runs.get(uid)
        return None if run is None else run.view()

    def running_count(self) -> int:
        busy = (RunState.CONNECTING, RunState.RUNNING)
        return sum(1 for r in self._runs.values() if r.state in busy)

    def start(
        self,
        uid: str,
        generation: int,
        address: str,
        kwargs: Mapping[str, Any],
        wake: Callable[[], None],
    ) -> None:
        """Queue a run; a previous run of this resource is cancelled first."""
        self.cancel(uid)
        run = _Run(generation=generation, address=address, kwargs=kwargs, wake=wake)
        self._runs[uid] = run
        run.task = asyncio.get_running_loop().create_task(self._execute(uid, run))

    def cancel(self, uid: str) -> None:
        """Ask the run to stop: its Dask futures are cancelled and it ends as CANCELLED."""
        run = self._runs.get(uid)
        if run is None or run.state not in ACTIVE_STATES:
            return
        run.cancel.set()
        if run.state == RunState.QUEUED and run.task is not None:
            run.task.cancel()  # still waiting for a slot: leave the queue at once

    def forget(self, uid: str) -> None:
        self.cancel(uid)
        self._runs.pop(uid, None)

    async def _execute(self, uid: str, run: _Run) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        self.metrics.runs_queued.inc()
        queued = True
        try:
            async with self._slots:
                self.metrics.runs_queued.dec()
                queued = False
                if run.cancel.is_set():
                    run.state = RunState.CANCELLED
                    return
                run.state = RunState.CONNECTING
                run.wake()
                self.metrics.runs_active.inc()
                try:
                    await self._call(uid, run)
                finally:
                    self.metrics.runs_active.dec()
        except asyncio.CancelledError:
            run.cancel.set()
            run.state = RunState.CANCELLED
        finally:
            if queued:
                self.metrics.runs_queued.dec()
            if run.state in ACTIVE_STATES:
                run.state = RunState.CANCELLED
            run.wake()

    async def _call(self, uid: str, run: _Run) -> None:
        def connected() -> None:
            if run.state == RunState.CONNECTING:
                run.state = RunState.RUNNING
                run.wake()

        def report(stage: str, done: int, total: int) -> None:
            run.progress = (str(stage), int(done), int(total))
            connected()  # progress implies a scheduler

        def call() -> RunOutput | Mapping[str, Any]:
            return self.run_fn(
                address=run.address, cancel=run.cancel, progress=report, connected=connected,
                **run.kwargs,
            )  # fmt: skip

        try:
            result = await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except Exception as exc:  # every failure becomes a status, never a crash
            if run.cancel.is_set() or isinstance(exc, AnalysisCancelled):
                run.state = RunState.CANCELLED
            else:
                run.error, run.temporary, run.reason = classify_error(exc)
                run.state = RunState.FAILED
                logger.debug("analysis run %s failed: %s", uid, run.error)  # the controller logs it
        else:
            output = result if isinstance(result, RunOutput) else RunOutput(result)
            run.result, run.document = output.result, output.document
            run.state = RunState.CANCELLED if run.cancel.is_set() else RunState.SUCCEEDED

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel every run and give their threads a moment to notice."""
        tasks = [r.task for r in self._runs.values() if r.task is not None and not r.task.done()]
        for run in self._runs.values():
            run.cancel.set()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
