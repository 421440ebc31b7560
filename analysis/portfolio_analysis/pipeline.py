"""The plain-Dask pipeline shared by the CLI, the Prefect flows and the operator.

One client, batches of tickers per task, prices kept on the workers:

* one ``fetch_price_batch`` task per batch; its result (the validated histories) stays on
  the worker that fetched it, as a future;
* ``technicals_batch`` and ``price_batch_summary`` take that future as their argument, so
  Dask runs them where the prices already are, and nothing fetches prices twice;
* ``news_batch`` tasks run alongside the price tasks;
* only small results (summaries, the close panel) travel back to the client, which adds the
  portfolio figures.

A failed ticker never fails the run: workers report per-ticker error records, and a batch
task that still raises after Dask's ``retries`` turns into an error record for each of its
tickers. A worker that dies mid-run is Dask's business: the scheduler re-runs its tasks
elsewhere (up to ``distributed.scheduler.allowed-failures`` times), recomputing lost price
batches from their lineage. A lost *scheduler* is not the tickers' fault: the run raises
:class:`SchedulerLostError` instead of recording failures for them.

Per-ticker work stays plain Dask (never Prefect tasks) because Dask workers in other
processes cannot reach a temporary Prefect server; ``flows.py`` wraps this module.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.vocabulary import ANALYSES, security

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client, Future

DEFAULT_CONNECT_TIMEOUT = 5.0
# Log level of an embedded cluster's scheduler and worker processes (they write to this
# process's stderr), unless a run's options say otherwise. The CLI passes CRITICAL unless
# --debug: a cancelled run's workers otherwise print heartbeat tracebacks while their
# cluster shuts down.
DEFAULT_LOCAL_CLUSTER_LOG_LEVEL = logging.ERROR
# An embedded cluster for a run of at most this many tickers, with no worker count asked
# for, runs its tasks in threads of this process: starting and stopping worker processes
# (each importing Dask, pandas and numba, ~1.5 s of CPU each) cost more than what they
# save by working in parallel, up to about this size on 2 cores. `./dev run` measured on 2
# cores (docs/benchmarks.md): the sample portfolio took 5.3 s of CPU with two worker
# processes, 2.2 s in this process; the S&P universe (521) 8.5-12 s against 4.1-5.3 s, and
# less wall time at every load seen. Bigger runs, and any --workers, get worker processes.
IN_PROCESS_MAX_TICKERS = 600
# Rows of indicator history a chart ticker brings back (about a year of trading days).
SERIES_DAYS = 260
# Batching: at least this many batches per worker, so that a slow or lost batch is not the
# whole run, and at most MAX_BATCH_SIZE tickers per task, so that one task stays short.
BATCHES_PER_WORKER = 2
MAX_BATCH_SIZE = 100
# Dask re-runs a task that raised this many times before the pipeline records its tickers
# as failed (worker functions catch per-ticker problems themselves; this covers the rest).
TASK_RETRIES = 2
POLL_SECONDS = 0.005
# What must match between this client and a cluster it connects to: pickled tasks and results
# cross between them. Python by major.minor (cloudpickle's code objects differ between
# minors, not patch releases); the scheduler runs none of our code, so only Dask is compared
# there, as distributed itself does.
OWN_DISTRIBUTION = "portfolio-operator"
WORKER_VERSIONS = ("python", "dask", "distributed", OWN_DISTRIBUTION)
SCHEDULER_VERSIONS = ("python", "dask", "distributed")
# glibc settings for the embedded cluster's worker processes. Dask's nanny sets
# MALLOC_TRIM_THRESHOLD_, which also switches off glibc's adaptive mmap threshold: every array
# above 128 KiB then comes from a fresh mmap whose pages the kernel zeroes, and a worker's
# pricing and indicator tasks ran 2-3x slower than the same code in one process (issue 19,
# docs/benchmarks.md). Below this threshold freed blocks are reused instead (a batch's arrays
# are 0.1-30 MB); trimming stays on.
PRE_SPAWN_ENVIRON = "distributed.nanny.pre-spawn-environ"
WORKER_MALLOC_ENVIRON = {"MALLOC_MMAP_THRESHOLD_": str(64 * 2**20)}
# distributed's reason for the futures it cancels when its scheduler connection drops.
CONNECTION_LOST = "scheduler-connection-lost"


Progress = Callable[[str, int, int], None]


class SchedulerUnreachableError(ConnectionError):
    """The Dask scheduler named by the user could not be reached."""


class SchedulerLostError(ConnectionError):
    """The client lost its Dask scheduler mid-run; the run's tasks went with it.

    A ConnectionError, so callers that retry lost connections (the operator) retry it.
    """


class VersionMismatchError(RuntimeError):
    """The client and the Dask cluster run different versions of Python, Dask or this package.

    Not a ConnectionError: it does not heal by retrying (tasks would fail to unpickle).
    """


class AnalysisCancelled(RuntimeError):
    """The run was cancelled through its ``cancel`` event; outstanding tasks were cancelled."""


# --- client set-up -------------------------------------------------------------------------


def local_worker_count(requested: int | None = None) -> int:
    """Workers for an embedded cluster: one process per core, fewer if asked for fewer."""
    cores = os.cpu_count() or 1
    if requested is None:
        return cores
    if requested < 1:
        raise ValueError(f"workers must be at least 1, got {requested}")
    return min(cores, requested)


def in_process_cluster(n_tickers: int | None, n_workers: int | None) -> bool:
    """Whether a run's embedded cluster runs in this process: a run of at most
    ``IN_PROCESS_MAX_TICKERS`` tickers for which no worker count was asked."""
    return n_workers is None and n_tickers is not None and n_tickers <= IN_PROCESS_MAX_TICKERS


def setup_dask_client(
    address: str | None = None,
    *,
    n_workers: int | None = None,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    log_level: int = DEFAULT_LOCAL_CLUSTER_LOG_LEVEL,
    in_process: bool = False,
) -> Client:
    """A Dask client: connected to ``address`` (``tcp://host:port``), or to a new LocalCluster.

    The embedded cluster uses worker processes with one thread each (the work is pandas code
    that holds the GIL), ``min(cores, n_workers)`` of them, logging at ``log_level``;
    with ``in_process``, one worker in this process with a thread per core instead (see
    ``IN_PROCESS_MAX_TICKERS``). Closing the client closes it.
    An unreachable or malformed address, or a peer that is no Dask scheduler (silent, or
    answering in another protocol), raises :class:`SchedulerUnreachableError` after at most
    ``timeout`` seconds, naming the address and what to check; a cluster running other
    versions raises :class:`VersionMismatchError`.
    """
    import dask
    from distributed import Client

    if address is None or address == "":
        # Read by each nanny as it starts its worker process (environment set before spawn).
        environ = {**dask.config.get(PRE_SPAWN_ENVIRON, {}), **WORKER_MALLOC_ENVIRON}
        with dask.config.set({PRE_SPAWN_ENVIRON: environ}):
            return Client(
                n_workers=1 if in_process else local_worker_count(n_workers),
                threads_per_worker=local_worker_count() if in_process else 1,
                processes=not in_process,
                dashboard_address=None,
                # No dashboard; its HTTP routes on a free port, not the default 8787, which
                # another cluster may hold (Dask then warns on stderr).
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                silence_logs=log_level,
                set_as_default=False,
            )
    if "://" not in address and ":" not in address:
        raise SchedulerUnreachableError(
            f"{address!r} is not a Dask scheduler address: use tcp://HOST:PORT "
            "(e.g. tcp://127.0.0.1:8786)"
        )
    _check_handshake(address, timeout)
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerUnreachableError(_unreachable(address, timeout, exc)) from exc
    try:
        check_versions(client, address)
    except BaseException:
        client.close()
        raise
    return client


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip() if exc is not None else ""
    return text.splitlines()[0] if text else type(exc).__name__


def _unreachable(address: str, timeout: float, exc: BaseException | None) -> str:
    return (
        f"cannot reach the Dask scheduler at {address} within {timeout:g} s: check the "
        f"address and that a scheduler is running there ({_first_line(exc)})"
    )


def _not_dask(address: str, what: str) -> str:
    return (
        f"no Dask scheduler at {address}: {what}; check the address: a scheduler's port "
        "(8786 by default), not its dashboard's (8787) or another service's"
    )


def _check_handshake(address: str, timeout: float) -> None:
    """Raise :class:`SchedulerUnreachableError` unless ``address`` gives a Dask handshake in time.

    ``Client(address, timeout=...)`` bounds only the TCP connect: distributed then reads the
    peer's handshake with no deadline (a peer that accepts and never answers hung a client
    for 678 s), and takes the first 8 bytes of any answer for a frame length (an HTTP 400
    became ``MemoryError: Unable to allocate 3.07 EiB``). This probe bounds both by
    ``timeout`` and says which one it was; the client connects only after it passed.
    """
    from concurrent.futures import ThreadPoolExecutor

    # An event loop of its own, in a thread of its own: the caller may run one already.
    with ThreadPoolExecutor(1, thread_name_prefix="dask-handshake") as pool:
        pool.submit(asyncio.run, _handshake(address, timeout)).result()


async def _handshake(address: str, timeout: float) -> None:
    from distributed.comm import parse_address
    from distributed.comm.registry import get_backend
    from distributed.security import Security

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        scheme, location = parse_address(address)
        connector = get_backend(scheme).get_connector()
    except ValueError as exc:
        raise SchedulerUnreachableError(_unreachable(address, timeout, exc)) from exc
    arguments = Security().get_connection_args("client")
    comm, last = None, None
    while comm is None:  # refused: the scheduler may be starting, as distributed retries
        left = deadline - loop.time()
        if left <= 0:
            raise SchedulerUnreachableError(_unreachable(address, timeout, last)) from last
        try:
            comm = await asyncio.wait_for(connector.connect(location, **arguments), left)
        except (OSError, TimeoutError, ValueError) as exc:
            last = exc
            await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))
    try:
        await comm.write(comm.handshake_info())
        reply = await asyncio.wait_for(comm.read(), max(0.1, deadline - loop.time()))
    except TimeoutError as exc:
        what = f"it accepted the connection but sent no Dask handshake within {timeout:g} s"
        raise SchedulerUnreachableError(_not_dask(address, what)) from exc
    except OSError as exc:  # distributed's CommClosedError is one
        what = "it closed the connection without a Dask handshake"
        raise SchedulerUnreachableError(_not_dask(address, what)) from exc
    except Exception as exc:  # e.g. MemoryError: HTTP's first bytes read as a frame length
        what = "it answered in another protocol (e.g. HTTP)"
        raise SchedulerUnreachableError(_not_dask(address, what)) from exc
    finally:
        comm.abort()
    if not isinstance(reply, dict) or "pickle-protocol" not in reply:
        raise SchedulerUnreachableError(_not_dask(address, "its handshake is not Dask's"))


def check_versions(client: Client, address: str) -> None:
    """Raise :class:`VersionMismatchError` naming both sides if the cluster runs other versions.

    Compared now, on connecting, rather than met later as an obscure unpickling error in a
    task; workers that join afterwards are not checked.
    """
    versions = client.get_versions(packages=[OWN_DISTRIBUTION])
    mismatches = version_mismatches(versions)
    if mismatches:
        raise VersionMismatchError(
            f"the Dask cluster at {address} runs other versions than this client: "
            f"{'; '.join(mismatches)}. Install the same versions on both sides (e.g. the "
            "same image for the client and the cluster)"
        )


def version_mismatches(versions: Mapping[str, Any]) -> list[str]:
    """``"<package> <here> here, <there> on <where>"`` per package that differs.

    ``versions`` is what ``Client.get_versions`` returns.
    """

    def version(info: Mapping[str, Any] | None, package: str) -> str:
        value = ((info or {}).get("packages") or {}).get(package)
        if package == "python" and value:
            value = ".".join(str(value).split(".")[:2])
        return str(value) if value else "missing"

    others = [("the scheduler", versions.get("scheduler"), SCHEDULER_VERSIONS)]
    others += [
        (f"worker {worker}", info, WORKER_VERSIONS)
        for worker, info in sorted((versions.get("workers") or {}).items())
    ]
    mismatches = []
    for package in WORKER_VERSIONS:
        here = version(versions.get("client"), package)
        differ = [
            (where, version(info, package))
            for where, info, packages in others
            if package in packages and version(info, package) != here
        ]
        if differ:
            where, there = differ[0]
            more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
            mismatches.append(f"{package} {here} here, {there} on {where}{more}")
    return mismatches


@contextmanager
def dask_session(options: RunOptions, n_tickers: int | None = None) -> Iterator[Client]:
    """The options' client as is, or a new one that is closed (with its cluster) afterwards;
    an embedded cluster for ``n_tickers`` runs in this process if ``in_process_cluster``."""
    if options.client is not None:
        yield options.client
        return
    own = setup_dask_client(
        options.dask_scheduler,
        n_workers=options.n_workers,
        log_level=options.local_cluster_log_level,
        in_process=in_process_cluster(n_tickers, options.n_workers),
    )
    try:
        yield own
    finally:
        own.close()


def worker_count(client: Client) -> int:
    """Workers currently connected to the client's scheduler (at least 1 for planning)."""
    return max(1, len(client.scheduler_info(n_workers=-1)["workers"]))


# --- batching ------------------------------------------------------------------------------


def plan_batches(
    tickers: Sequence[str], n_workers: int, batch_size: int | None = None
) -> list[list[str]]:
    """Split tickers into batches, one Dask task each.

    With ``batch_size`` given, chunks of that size. Otherwise ``BATCHES_PER_WORKER`` batches
    per worker (more when a batch would exceed ``MAX_BATCH_SIZE``), nearly equal in size:
    per-task overhead (~2 ms scheduling, ~13 ms per result round-trip measured here) is paid
    per batch, not per ticker, and every worker still gets work to balance.
    """
    tickers = list(tickers)
    if not tickers:
        return []
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        return [tickers[i : i + batch_size] for i in range(0, len(tickers), batch_size)]
    n_workers = max(1, n_workers)
    per_worker = max(BATCHES_PER_WORKER, math.ceil(len(tickers) / (n_workers * MAX_BATCH_SIZE)))
    n_batches = min(len(tickers), n_workers * per_worker)
    size, extra = divmod(len(tickers), n_batches)
    batches, start = [], 0
    for i in range(n_batches):
        stop = start + size + (1 if i < extra else 0)
        batches.append(tickers[start:stop])
        start = stop
    return batches


# --- the options of one run ---------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """Everything about one run except its tickers and holdings, in one value.

    The public entry points turn their keyword arguments into one of these once and hand
    it down explicitly (the Prefect flows take it as their ``options`` parameter), so no
    setting travels through a module global, a context variable or ``os.environ``, and two
    runs in one process cannot see each other's callbacks or log levels.

    ``analyses`` is validated and put in the canonical order; ``config`` None means the
    defaults. ``client`` reuses a client, else ``dask_scheduler`` (``tcp://...``) is
    connected to, else an embedded cluster of ``n_workers`` processes logging at
    ``local_cluster_log_level`` is started. ``progress(stage, done, total)`` is called as
    batches finish; setting ``cancel`` cancels the outstanding tasks. ``series_tickers``
    bring back their last ``series_days`` rows of indicators (report charts), and
    ``on_gathered`` receives what the Dask part gathered before aggregation (how a Prefect
    flow's caller gets the frames the flow result does not carry).
    """

    analyses: tuple[str, ...] = ANALYSES
    config: AnalysisConfig = field(default_factory=AnalysisConfig)
    dask_scheduler: str | None = None
    client: Client | None = None
    n_workers: int | None = None
    progress: Progress | None = None
    cancel: threading.Event | None = None
    local_cluster_log_level: int = DEFAULT_LOCAL_CLUSTER_LOG_LEVEL
    series_tickers: tuple[str, ...] = ()
    series_days: int = SERIES_DAYS
    on_gathered: Callable[[StageResults], None] | None = None

    def __post_init__(self) -> None:
        # Normalised here, once, so that every layer below can rely on the fields.
        object.__setattr__(self, "analyses", tuple(_check_stages(self.analyses)))
        config = self.config or AnalysisConfig()
        if "technicals" not in self.analyses and config.warmup_days is None:
            config = config.with_changes(warmup_days=0)  # only indicators need a warm-up
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "series_tickers", tuple(self.series_tickers))


# --- the run -------------------------------------------------------------------------------


def normalize_tickers(tickers: Sequence[str] | str | None) -> list[str]:
    """Upper-case, stripped, de-duplicated tickers in their given order; the two spellings of
    a share class (BRK.B, BRK-B) are one security, kept as first given."""
    if tickers is None:
        return []
    if isinstance(tickers, str):
        tickers = tickers.split(",")
    seen: dict[str, str] = {}
    for ticker in tickers:
        if not isinstance(ticker, str):
            raise ValueError(f"tickers must be strings, got {ticker!r}")
        cleaned = ticker.strip().upper()
        if cleaned:
            seen.setdefault(security(cleaned), cleaned)
    return list(seen.values())


def error_record(ticker: str, stage: str, reason: str) -> dict[str, str]:
    """The per-ticker error shape shared by every stage (see docs/architecture.md)."""
    return {"ticker": ticker, "stage": stage, "reason": reason}


@dataclass
class StageResults:
    """What the Dask part of a run gathered, before aggregation.

    ``pricing``/``technicals``/``news`` hold the reference guide's worker result shapes
    (pricing without the full OHLCV list, technicals without the indicator history).
    """

    tickers: list[str]
    pricing: list[dict] = field(default_factory=list)
    technicals: list[dict] = field(default_factory=list)
    news: list[dict] = field(default_factory=list)
    close: pd.DataFrame | None = None
    series: dict[str, pd.DataFrame] = field(default_factory=dict)
    failed: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    # Worker seconds per stage, summed over its batches (report.stage_durations).
    task_seconds: dict[str, float] = field(default_factory=dict)
    workers: int = 0
    batches: int = 0
    tasks: int = 0
    close_parts: list[pd.DataFrame] = field(default_factory=list, repr=False)


@dataclass
class _Job:
    stage: str
    tickers: list[str]
    depends_on: Future | None = None


def _stages_needing_prices(stages: Collection[str]) -> bool:
    return bool({"pricing", "technicals", "portfolio"} & set(stages))


def _check_stages(stages: Collection[str]) -> list[str]:
    unknown = sorted(set(stages) - set(ANALYSES))
    if unknown:
        raise ValueError(f"unknown analyses {unknown}: choose from {', '.join(ANALYSES)}")
    if not stages:
        raise ValueError(f"no analyses requested: choose from {', '.join(ANALYSES)}")
    return [s for s in ANALYSES if s in stages]


def run_stages(tickers: Sequence[str], options: RunOptions) -> StageResults:
    """Run the per-ticker work of ``options.analyses`` on Dask and gather it (no aggregation).

    ``options.series_tickers`` name tickers whose indicator history (last
    ``options.series_days`` rows) comes back too, for report charts.
    """
    from distributed import as_completed

    config, cancel, progress = options.config, options.cancel, options.progress
    tickers = normalize_tickers(tickers)
    if not tickers:
        raise ValueError("no tickers to analyse: pass tickers or holdings")
    results = StageResults(tickers=tickers)
    _raise_if_cancelled(cancel, None, [])
    started = time.perf_counter()
    with dask_session(options, len(tickers)) as dask_client:
        results.timings["dask_setup"] = time.perf_counter() - started
        results.workers = worker_count(dask_client)
        batches = plan_batches(tickers, results.workers, config.batch_size)
        results.batches = len(batches)
        jobs = _submit(dask_client, batches, options)
        results.tasks = len(jobs)
        totals = _stage_totals(jobs)
        done = dict.fromkeys(totals, 0)
        run_started = time.perf_counter()
        address = dask_client.scheduler.address  # gone from the client once it closes
        # Results stream back as tasks finish; errors come back as (type, exc, tb).
        pending = as_completed(
            list(jobs), loop=dask_client.loop, with_results=True, raise_errors=False
        )
        failed_price_batches: set[Future] = set()
        while not pending.is_empty():
            _raise_if_cancelled(cancel, dask_client, list(jobs))
            ready = pending.next_batch(block=False)
            _raise_if_scheduler_lost(dask_client, address, ready, pending.count())
            if not ready:
                (cancel or threading.Event()).wait(POLL_SECONDS)
                continue
            for future, outcome in ready:
                # Dropped once handled: when both tasks of a price batch are, nothing
                # refers to its future any more and the worker frees the batch's prices.
                job = jobs.pop(future)
                if future.status == "error" or future.status == "cancelled":
                    _record_batch_failure(results, job, outcome, failed_price_batches, future)
                else:
                    _collect(results, job, outcome)
                if job.stage in totals:
                    done[job.stage] += len(job.tickers)
                    results.timings[job.stage] = time.perf_counter() - run_started
                    if progress:
                        progress(job.stage, done[job.stage], totals[job.stage])
        # Drop the futures so the workers can release the price batches.
        jobs.clear()
    order = {t: i for i, t in enumerate(tickers)}
    for part in (results.pricing, results.technicals, results.news, results.failed):
        part.sort(key=lambda r: order.get(r["ticker"], len(order)))
    # Batches finish in any order; charts follow the requested order.
    results.series = {t: results.series[t] for t in tickers if t in results.series}
    results.close = _concat_close(results)
    if options.on_gathered:
        options.on_gathered(results)
    return results


def _submit(client: Client, batches: list[list[str]], options: RunOptions) -> dict[Future, _Job]:
    """Submit every task of the run up front; the scheduler orders and places them."""
    from portfolio_analysis import workers

    stages, config = options.analyses, options.config
    series_tickers = frozenset(options.series_tickers)
    jobs: dict[Future, _Job] = {}
    need_prices = _stages_needing_prices(stages)
    price_futures: list[tuple[Future, list[str]]] = []
    # Interleave price and news batches so both make progress from the start.
    for batch in batches:
        if need_prices:
            prices = client.submit(
                workers.fetch_price_batch, batch, config, pure=False, retries=TASK_RETRIES
            )
            price_futures.append((prices, batch))
        if "news" in stages:
            news = client.submit(
                workers.news_batch, batch, config, pure=False, retries=TASK_RETRIES
            )
            jobs[news] = _Job("news", batch)
    for prices, batch in price_futures:
        # A higher priority than the price fetches still waiting: a worker finishes a
        # batch it has priced before it prices another, so it holds one or two batches'
        # prices at a time, not every batch (10,000 tickers x 20 years: 4 GB).
        summary = client.submit(
            workers.price_batch_summary, prices, retries=TASK_RETRIES, priority=1
        )
        jobs[summary] = _Job("pricing", batch, depends_on=prices)
        if "technicals" in stages:
            wanted = sorted(series_tickers.intersection(batch))
            technicals = client.submit(
                workers.technicals_batch,
                prices,
                wanted,
                options.series_days,
                retries=TASK_RETRIES,
                priority=1,
            )
            jobs[technicals] = _Job("technicals", batch, depends_on=prices)
    return jobs


def _stage_totals(jobs: Mapping[Future, _Job]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for job in jobs.values():
        totals[job.stage] = totals.get(job.stage, 0) + len(job.tickers)
    return totals


def _raise_if_cancelled(
    cancel: threading.Event | None, client: Client | None, futures: list[Future]
) -> None:
    if cancel is None or not cancel.is_set():
        return
    if client is not None and futures:
        client.cancel(futures, force=True)
    raise AnalysisCancelled(
        f"analysis cancelled; {len(futures)} outstanding task(s) were cancelled"
    )


def _raise_if_scheduler_lost(
    client: Client, address: str, ready: list[tuple[Future, Any]], pending: int
) -> None:
    """Raise :class:`SchedulerLostError` once the client has lost its scheduler.

    distributed cancels every future (reason ``scheduler-connection-lost``) when the
    connection drops, then tries to reconnect; those cancellations are no ticker's failure.
    """
    lost = client.status != "running" or any(
        future.status == "cancelled"
        and getattr(_exception(outcome), "reason", None) == CONNECTION_LOST
        for future, outcome in ready
    )
    if lost:
        raise SchedulerLostError(
            f"lost the connection to the Dask scheduler at {address} mid-run, with "
            f"{pending + len(ready)} task(s) outstanding: check that the scheduler is still "
            "running (its logs; under Kubernetes, its pod), then run again"
        )


def _exception(outcome: Any) -> Any:
    """The exception of an errored future's (type, exception, traceback) outcome."""
    return outcome[1] if isinstance(outcome, tuple) and len(outcome) == 3 else outcome


def _reason(outcome: Any) -> str:
    """A one-line reason from an errored future's (type, exception, traceback)."""
    exc = _exception(outcome)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _record_batch_failure(
    results: StageResults,
    job: _Job,
    outcome: Any,
    failed_price_batches: set[Future],
    future: Future,
) -> None:
    """Every ticker of a batch whose task failed for good becomes an error record."""
    if job.depends_on is not None:
        if job.depends_on in failed_price_batches:
            return  # the pricing failure is already recorded for these tickers
        if job.depends_on.status in ("error", "cancelled"):
            failed_price_batches.add(job.depends_on)
            stage = "pricing"
        else:
            stage = job.stage
    else:
        stage = job.stage
    reason = f"batch task failed after {TASK_RETRIES} retries: {_reason(outcome)}"
    results.failed.extend(error_record(t, stage, reason) for t in job.tickers)


def _collect(results: StageResults, job: _Job, outcome: Any) -> None:
    """Fold one finished batch into the results."""
    results.failed.extend(outcome.failed)
    results.task_seconds[job.stage] = results.task_seconds.get(job.stage, 0.0) + outcome.seconds
    if job.stage == "pricing":
        results.pricing.extend(outcome.results)
        if outcome.close is not None and not outcome.close.empty:
            results.close_parts.append(outcome.close)
    elif job.stage == "technicals":
        results.technicals.extend(outcome.results)
        results.series.update(outcome.series)
    elif job.stage == "news":
        results.news.extend(outcome.results)


def _concat_close(results: StageResults) -> pd.DataFrame | None:
    """The batches' close panels as one dates x tickers frame, in request order.

    Written into one block allocated up front, each part dropped once copied: the peak
    is about one panel (417 MB at 10,000 tickers x 20 years), where ``pd.concat`` of the
    parts held the parts and the result at once.
    """
    if not results.close_parts:
        return None
    import numpy as np
    import pandas as pd

    order = {t: i for i, t in enumerate(results.tickers)}
    parts = sorted(results.close_parts, key=lambda part: order.get(part.columns[0], len(order)))
    results.close_parts.clear()
    indexes = [part.index for part in parts]
    dates = indexes[0]
    if not all(index.equals(dates) for index in indexes[1:]):
        dates = pd.DatetimeIndex(
            np.unique(np.concatenate([index.to_numpy() for index in indexes])), name="date"
        )
    columns = [t for part in parts for t in part.columns]
    block = np.empty((len(columns), len(dates)))  # tickers x dates: the frame's own layout
    row = 0
    while parts:
        part = parts.pop(0)
        values = part.to_numpy(dtype=np.float64).T
        if part.index.equals(dates):
            block[row : row + values.shape[0]] = values
        else:
            block[row : row + values.shape[0]] = np.nan
            block[row : row + values.shape[0], dates.get_indexer(part.index)] = values
        row += values.shape[0]
        del part, values
    close = pd.DataFrame(block.T, index=dates, columns=pd.Index(columns), copy=False)
    ordered = [t for t in results.tickers if t in close.columns]
    return close if ordered == columns else close[ordered]


# --- the whole analysis --------------------------------------------------------------------


@dataclass
class AnalysisRun:
    """A finished run: the report dict plus the frames the charts are drawn from."""

    result: dict
    close: pd.DataFrame | None
    series: dict[str, pd.DataFrame]
    holdings: dict[str, float] | None
    stages: StageResults


def resolve_request(
    tickers: Sequence[str] | str | None, holdings: Mapping[str, float] | None
) -> tuple[list[str], dict[str, float] | None]:
    """Tickers and holdings of a run: given tickers, else the holdings' tickers, else the
    embedded sample portfolio."""
    if holdings is not None:
        if not isinstance(holdings, Mapping):
            raise ValueError("holdings must map ticker -> shares, e.g. {'AAPL': 10}")
        holdings = {str(t).strip().upper(): v for t, v in holdings.items()}
        for ticker, shares in holdings.items():
            if not isinstance(shares, (int, float)) or isinstance(shares, bool):
                raise ValueError(f"holdings: shares of {ticker} must be a number, got {shares!r}")
    chosen = normalize_tickers(tickers)
    if not chosen and holdings:
        chosen = list(holdings)
    if tickers is None and holdings is None:
        from portfolio_analysis import embedded

        holdings = dict(embedded.SAMPLE_PORTFOLIO)
        chosen = list(holdings)
    if not chosen:
        raise ValueError("no tickers to analyse: pass tickers or holdings with at least one")
    return chosen, holdings


def run_analysis(
    tickers: Sequence[str] | str | None = None,
    holdings: Mapping[str, float] | None = None,
    options: RunOptions | None = None,
) -> AnalysisRun:
    """:func:`run_combined_analysis` plus the frames a report draws (close panel, series)."""
    started = time.perf_counter()
    options = options or RunOptions()
    chosen, holdings = resolve_request(tickers, holdings)
    gathered = run_stages(fetch_list(chosen, options.analyses, options.config), options)
    result = assemble_report(gathered, chosen, holdings, options, started=started)
    return AnalysisRun(result, gathered.close, gathered.series, holdings, gathered)


@dataclass(frozen=True)
class ReportSteps:
    """The aggregation steps of a run. Plain functions by default; ``flows.py`` passes the
    same functions wrapped as Prefect tasks, so both paths aggregate identically."""

    aggregate_pricing_results: Callable[..., Any]
    aggregate_technical_results: Callable[..., Any]
    aggregate_news_results: Callable[..., Any]
    combine_analysis: Callable[..., Any]
    portfolio_section: Callable[..., Any]
    comprehensive_report: Callable[..., Any]


def plain_steps() -> ReportSteps:
    """The aggregation steps as plain function calls (no Prefect)."""
    from portfolio_analysis import aggregate

    return ReportSteps(
        aggregate.aggregate_pricing_results,
        aggregate.aggregate_technical_results,
        aggregate.aggregate_news_results,
        aggregate.combine_analysis,
        portfolio_section,
        aggregate.comprehensive_report,
    )


def assemble_report(
    gathered: StageResults,
    tickers: Sequence[str],
    holdings: Mapping[str, float] | None,
    options: RunOptions,
    *,
    started: float,
    steps: ReportSteps | None = None,
) -> dict:
    """Aggregate what the workers gathered into the comprehensive report."""
    steps = steps or plain_steps()
    stages, config = options.analyses, options.config
    extra_tickers = set(gathered.tickers) - set(tickers)  # e.g. the benchmark
    # A stage that was not run is None, so that it cannot decide which tickers appear.
    pricing = technicals = news = None
    if _stages_needing_prices(stages):
        pricing = steps.aggregate_pricing_results(
            [r for r in gathered.pricing if r["ticker"] not in extra_tickers]
        )
    if "technicals" in stages:
        technicals = steps.aggregate_technical_results(
            [r for r in gathered.technicals if r["ticker"] not in extra_tickers]
        )
    if "news" in stages:
        news = steps.aggregate_news_results(gathered.news)
    combined = steps.combine_analysis(pricing, technicals, news, list(tickers))
    portfolio = None
    if "portfolio" in stages:
        portfolio_started = time.perf_counter()
        unpriced = {r["ticker"]: r["reason"] for r in gathered.failed if r["stage"] == "pricing"}
        portfolio = steps.portfolio_section(
            gathered.close, list(tickers), holdings, config, unpriced
        )
        gathered.timings["portfolio"] = time.perf_counter() - portfolio_started
        portfolio = _with_benchmark_reason(portfolio, config.benchmark, gathered.failed)
        if options.progress:
            options.progress("portfolio", 1, 1)
    return steps.comprehensive_report(
        combined,
        failed=[r for r in gathered.failed if r["ticker"] not in extra_tickers],
        execution_time_seconds=time.perf_counter() - started,
        timings=gathered.timings,
        portfolio=portfolio,
        extra={
            "data_notes": data_notes(gathered.pricing, config),
            "task_seconds": {k: round(v, 4) for k, v in gathered.task_seconds.items()},
            "tickers": list(tickers),
            "workers": gathered.workers,
            "batches": gathered.batches,
            "price_sources": list(config.price_sources),
            "news_sources": list(config.news_sources),
            # Each ticker's headlines, and whether they are invented (aggregate.news_section).
            **(
                {
                    "news": _news_section(
                        [r for r in gathered.news if r["ticker"] not in extra_tickers]
                    )
                }
                if "news" in stages
                else {}
            ),
        },
    )


def _with_benchmark_reason(
    portfolio: dict, benchmark: str | None, failed: Sequence[Mapping]
) -> dict:
    """The portfolio section with ``benchmark_error`` when the benchmark could not be priced:
    its own pricing failure says why (a typo, no data from any source), which the report's
    beta warning then quotes (aggregate.beta_reason)."""
    if not benchmark or portfolio.get("beta") is not None:
        return portfolio
    reasons = [r["reason"] for r in failed if r["ticker"] == benchmark and r["stage"] == "pricing"]
    return {**portfolio, "benchmark_error": reasons[0]} if reasons else portfolio


def _news_section(news_results: list[dict]) -> dict:
    from portfolio_analysis.aggregate import news_section

    return news_section(news_results)


def data_notes(pricing: Sequence[Mapping], config: AnalysisConfig) -> dict:
    """The report's ``data_notes``: what happened to the data before any figure was
    computed (docs/data.md): sources skipped, rows dropped, adjustments, windows."""
    from portfolio_analysis.technicals import WARMUP_SESSIONS

    fallbacks: dict[str, dict[str, str]] = {}
    dropped: dict[str, dict] = {}
    adjustments: list[dict] = []
    short: dict[str, int] = {}
    for result in pricing:
        ticker, notes = result.get("ticker"), result.get("data_notes") or {}
        reasons = notes.get("fallbacks") or []
        if reasons:
            fallbacks[ticker] = dict(reason.split(": ", 1) for reason in reasons if ": " in reason)
        if notes.get("dropped_rows"):
            dropped[ticker] = {"rows": notes["dropped_rows"], "reason": notes["dropped_reason"]}
        adjustments.extend(
            {**adjustment, "ticker": ticker} for adjustment in notes.get("adjustments") or []
        )
        sessions = notes.get("warmup_sessions")
        if config.warmup() and sessions is not None and sessions < WARMUP_SESSIONS:
            short[ticker] = sessions
    warmup = config.warmup()
    rule = (
        f"indicators are computed over {warmup} extra calendar days fetched before the "
        f"{config.lookback_days}-day lookback (the {WARMUP_SESSIONS} sessions of the longest "
        "indicator, SMA 200), so they are defined from the lookback's first day; figures, "
        "signals and charts cover the lookback only"
        if warmup
        else f"no warm-up: indicators start within the {config.lookback_days}-day lookback"
    )
    if short:
        rule += (
            f"; {len(short)} ticker(s) have less history before the lookback than that, so "
            "their slow indicators start late (short_warmup: sessions available)"
        )
    return {
        "price_fallbacks": fallbacks,
        "dropped_rows": dropped,
        "adjustments": adjustments,
        "windows": {
            "lookback_days": config.lookback_days,
            "warmup_days": warmup,
            "rule": rule,
            "short_warmup": short,
        },
    }


def fetch_list(
    tickers: Sequence[str], stages: Collection[str], config: AnalysisConfig
) -> list[str]:
    """The tickers to fetch: the requested ones plus the benchmark for the portfolio's beta."""
    fetch = list(tickers)
    if config.benchmark and "portfolio" in stages:
        benchmark = config.benchmark.strip().upper()
        if benchmark not in fetch:
            fetch.append(benchmark)
    return fetch


# The report's correlation matrix covers at most this many positions (the largest): a
# 500-ticker universe would otherwise put 250,000 numbers into every report.
MAX_CORRELATION_TICKERS = 30


def _note_correlation_limit(figures: dict) -> None:
    positions = len(figures.get("tickers") or ())
    if positions > MAX_CORRELATION_TICKERS and figures.get("correlation"):
        shown = len(figures["correlation"])
        figures["correlation_note"] = f"the {shown} largest positions of {positions}"


def portfolio_section(
    close: pd.DataFrame | None,
    tickers: Sequence[str],
    holdings: Mapping[str, float] | None,
    config: AnalysisConfig,
    unpriced: Mapping[str, str] | None = None,
) -> dict:
    """Portfolio figures over the tickers that were priced; ``{"error": ...}`` if none can be.

    ``unpriced`` (ticker -> pricing failure) puts the reason into the coverage.
    """
    from portfolio_analysis.portfolio import choose_members, portfolio_figures

    priced = [t for t in tickers if close is not None and t in close.columns]
    if not priced:
        return {"error": "no ticker was priced, so there are no portfolio figures"}
    unpriced = unpriced or {}
    reasons = {
        t: f"not priced: {unpriced[t]}" if t in unpriced else "not priced"
        for t in tickers
        if t not in priced
    }
    if holdings is not None:
        priced = [t for t in priced if t in holdings]
        if not priced:
            return {"error": "none of the held tickers was priced"}
    chosen = choose_members(close[priced], holdings is not None)
    reasons.update(chosen.excluded)
    priced = chosen.members
    excluded = [t for t in tickers if t in reasons]
    window = close.loc[chosen.start : chosen.end]
    positions = None
    if holdings is not None:
        positions = {t: s for t, s in holdings.items() if t in priced}
    benchmark = None
    if config.benchmark:
        name = config.benchmark.strip().upper()
        if close is not None and name in close.columns:
            benchmark = close[name]
    try:
        figures = portfolio_figures(
            window[priced],
            holdings=positions,
            risk_free_rate=config.risk_free_rate,
            benchmark=benchmark,
            max_correlation_tickers=MAX_CORRELATION_TICKERS,
        )
    except ValueError as exc:
        return {"error": str(exc)}
    figures["excluded"] = excluded
    figures["excluded_reasons"] = {t: reasons[t] for t in excluded}
    figures["coverage"] = {
        "tickers_asked": len(tickers),
        "tickers_used": len(figures["tickers"]),
        "start": figures["start"],
        "end": figures["end"],
        "returns": figures["periods"],
        "sessions": figures["sessions"],
        "dropped_returns": figures["dropped_returns"],
        "rule": chosen.rule,
        "excluded": {t: reasons[t] for t in excluded},
    }
    _note_correlation_limit(figures)
    if config.benchmark:
        figures["benchmark"] = config.benchmark.strip().upper()
    return figures


def run_combined_analysis(
    tickers: Sequence[str] | None = None,
    holdings: Mapping[str, float] | None = None,
    *,
    analyses: Collection[str] = ANALYSES,
    config: AnalysisConfig | None = None,
    dask_scheduler: str | None = None,
    client: Client | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    n_workers: int | None = None,
) -> dict:
    """Prices, indicators, news and portfolio figures for ``tickers`` on one Dask client.

    ``holdings`` (ticker -> shares) gives the portfolio figures' positions and, without
    ``tickers``, the tickers; with neither, the embedded sample portfolio is analysed.
    ``dask_scheduler`` None starts an embedded LocalCluster, ``tcp://...`` connects there
    (:class:`SchedulerUnreachableError` if it can't), ``client`` reuses a client;
    ``n_workers`` sizes the embedded cluster (default: one per core).
    ``progress(stage, done, total)`` is called as batches finish; setting ``cancel`` cancels
    the outstanding tasks and raises :class:`AnalysisCancelled`. Returns the comprehensive
    shape described in docs/architecture.md; failed tickers are listed, never raised.
    """
    options = RunOptions(
        analyses=tuple(analyses),
        config=config,
        dask_scheduler=dask_scheduler,
        client=client,
        n_workers=n_workers,
        progress=progress,
        cancel=cancel,
    )
    return run_analysis(tickers, holdings, options).result
