"""Analysis runs in the background: capped in number, cancellable, failures classified."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from portfolio_operator.metrics import OperatorMetrics
from portfolio_operator.runs import RunOutput, RunRegistry, RunState, classify_error, run_pipeline
from portfolio_operator.spec import parse_spec


def blocking_run(started: threading.Event, release: threading.Event):
    """A run that waits for `release` or for its cancel event, like a Dask gather would."""

    def run(*, address: str, cancel: threading.Event, progress, **kwargs: Any) -> dict:
        started.set()
        progress("pricing", 1, 4)
        while not release.is_set():
            if cancel.wait(0.01):
                from portfolio_analysis.pipeline import AnalysisCancelled

                raise AnalysisCancelled("cancelled")
        return {"status": "success", "address": address}

    return run


async def wait_for(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


def test_a_run_finishes_with_its_result_and_wakes_its_controller() -> None:
    async def scenario() -> None:
        started, release = threading.Event(), threading.Event()
        runs = RunRegistry(2, OperatorMetrics(), run_fn=blocking_run(started, release))
        woken = []
        runs.start("u1", 1, "tcp://x:1", {}, lambda: woken.append(1))
        await wait_for(lambda: runs.view("u1").state == RunState.RUNNING)
        assert runs.view("u1").progress == ("pricing", 1, 4)
        release.set()
        await wait_for(lambda: runs.view("u1").state == RunState.SUCCEEDED)
        assert runs.view("u1").result == {"status": "success", "address": "tcp://x:1"}
        assert len(woken) >= 2  # on start and on finish
        await runs.shutdown()

    asyncio.run(scenario())


def test_a_run_is_running_only_once_it_has_reached_the_scheduler() -> None:
    async def scenario() -> None:
        reached, release = threading.Event(), threading.Event()

        def run(*, address: str, cancel: threading.Event, connected, **kwargs: Any) -> dict:
            reached.wait(5)  # connecting
            connected()
            release.wait(5)
            return {"status": "success"}

        runs = RunRegistry(2, OperatorMetrics(), run_fn=run)
        runs.start("u1", 1, "tcp://x:1", {}, lambda: None)
        await wait_for(lambda: runs.view("u1").state == RunState.CONNECTING)
        await asyncio.sleep(0.1)
        assert runs.view("u1").state == RunState.CONNECTING
        reached.set()
        await wait_for(lambda: runs.view("u1").state == RunState.RUNNING)
        release.set()
        await wait_for(lambda: runs.view("u1").state == RunState.SUCCEEDED)
        await runs.shutdown()

    asyncio.run(scenario())


def test_cancelling_stops_the_worker_thread_not_only_the_bookkeeping() -> None:
    async def scenario() -> None:
        started, release = threading.Event(), threading.Event()
        runs = RunRegistry(2, OperatorMetrics(), run_fn=blocking_run(started, release))
        runs.start("u1", 1, "tcp://x:1", {}, lambda: None)
        await wait_for(started.is_set)
        runs.cancel("u1")
        await wait_for(lambda: runs.view("u1").state == RunState.CANCELLED)
        await wait_for(lambda: runs.running_count() == 0)
        await runs.shutdown()

    asyncio.run(scenario())


def test_runs_beyond_the_cap_wait_in_a_queue() -> None:
    async def scenario() -> None:
        started, release = threading.Event(), threading.Event()
        metrics = OperatorMetrics()
        runs = RunRegistry(2, metrics, run_fn=blocking_run(started, release))
        for uid in ("a", "b", "c"):
            runs.start(uid, 1, "tcp://x:1", {}, lambda: None)
        await wait_for(lambda: runs.running_count() == 2)
        assert [runs.view(u).state for u in "abc"].count(RunState.QUEUED) == 1
        assert metrics.runs_queued._value.get() == 1
        release.set()
        await wait_for(lambda: all(runs.view(u).state == RunState.SUCCEEDED for u in "abc"))
        assert metrics.runs_queued._value.get() == 0
        await runs.shutdown()

    asyncio.run(scenario())


def test_a_lost_scheduler_is_temporary_and_a_bug_is_not() -> None:
    from portfolio_analysis.pipeline import SchedulerLostError, SchedulerUnreachableError

    message, temporary, reason = classify_error(SchedulerUnreachableError("cannot reach tcp://x:1"))
    assert temporary and "cannot reach tcp://x:1" in message and reason is None
    lost = SchedulerLostError("lost the connection to the Dask scheduler at tcp://x:1 mid-run")
    message, temporary, reason = classify_error(lost)
    assert temporary and reason is None
    assert message == f"SchedulerLostError: {lost}"  # the scheduler's message, no ticker's
    message, temporary, reason = classify_error(KeyError("close"))
    assert not temporary and message == "KeyError: 'close'" and reason is None
    garbled = MemoryError(
        "Unable to allocate 3.07 EiB for an array with shape (3543824036068086856,)"
    )
    message, temporary, _ = classify_error(garbled)
    assert temporary and message.startswith("MemoryError: Unable to allocate")


def test_a_version_mismatch_is_permanent_with_its_own_reason() -> None:
    from portfolio_analysis.pipeline import VersionMismatchError

    mismatch = VersionMismatchError("portfolio-operator 0.1.0 here, 0.0.1 on worker tcp://w:1")
    message, temporary, reason = classify_error(mismatch)
    assert (temporary, reason) == (False, "VersionMismatch")
    assert "0.0.1 on worker tcp://w:1" in message


def test_a_failed_run_carries_its_reason_to_the_view() -> None:
    async def scenario() -> None:
        from portfolio_analysis.pipeline import VersionMismatchError

        def run(**kwargs: Any) -> dict:
            raise VersionMismatchError("dask 1 here, 2 on the scheduler")

        runs = RunRegistry(1, OperatorMetrics(), run_fn=run)
        runs.start("u1", 1, "tcp://x:1", {}, lambda: None)
        await wait_for(lambda: runs.view("u1").state == RunState.FAILED)
        view = runs.view("u1")
        assert (view.temporary, view.reason) == (False, "VersionMismatch")
        await runs.shutdown()

    asyncio.run(scenario())


def test_a_runs_document_reaches_the_view_beside_its_result() -> None:
    async def scenario() -> None:
        def run(**kwargs: Any) -> RunOutput:
            return RunOutput({"status": "success"}, {"schema_version": "1.0"})

        runs = RunRegistry(1, OperatorMetrics(), run_fn=run)
        runs.start("u1", 1, "tcp://x:1", {}, lambda: None)
        await wait_for(lambda: runs.view("u1").state == RunState.SUCCEEDED)
        view = runs.view("u1")
        assert view.result == {"status": "success"}
        assert view.document == {"schema_version": "1.0"}
        await runs.shutdown()

    asyncio.run(scenario())


# Fields of the document that differ between any two runs (clock, durations).
_PER_RUN = {"timestamp", "execution_time_seconds", "timings", "task_seconds", "stage_durations"}


@pytest.mark.dask
def test_the_default_run_builds_the_document_the_cli_writes(dask_cluster, tmp_path) -> None:
    """The operator's run on a scheduler gives the CLI's report.json for the same request:
    the daily series behind every chart, the analytics, the settings (not only the result)."""
    from portfolio_analysis import cli

    request = parse_spec({"holdings": [{"ticker": "AAPL", "shares": 10},
                                       {"ticker": "IBM", "shares": 5}]})  # fmt: skip
    output = run_pipeline(address=dask_cluster.scheduler_address, cancel=threading.Event(),
                          progress=lambda *a: None, connected=lambda: None,
                          **request.run_kwargs())  # fmt: skip
    assert isinstance(output, RunOutput) and output.document is not None
    holdings = tmp_path / "holdings.yaml"
    holdings.write_text("AAPL: 10\nIBM: 5\n")
    cli.main(["run", "--holdings", str(holdings), "--scheduler", dask_cluster.scheduler_address,
              "--output", str(tmp_path / "cli"), "--no-progress"])  # fmt: skip
    written = json.loads((tmp_path / "cli" / "report.json").read_text())

    def same(doc: Any) -> Any:
        # Floats to 10 significant digits: sums of the same figures in another order differ
        # in the last bits (recency-weighted sentiment).
        doc = json.loads(json.dumps(doc), parse_float=lambda text: float(f"{float(text):.10g}"))
        doc["report"] = {k: v for k, v in doc["report"].items() if k not in _PER_RUN}
        doc["report"]["settings"].pop("workers", None)
        return doc

    ours = same(output.document)
    assert ours["report"]["series"]["tickers"].keys() == {"AAPL", "IBM"}
    assert ours["report"]["series"]["portfolio"]["dates"]
    assert ours == same(written)
    # The plain result is the pipeline's (what status figures and report.json's key come from).
    assert "series" not in output.result["report"]
