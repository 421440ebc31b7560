"""The five Prefect flows: the reference guide's names, arguments and result shapes, run
against a real (temporary) Prefect server, with the Dask work on the session's LocalCluster
over tcp://.

Prefect's test harness costs ~19 s to enter, so it is entered once per session
(``prefect_harness`` in conftest.py) and these tests share it.
"""

from __future__ import annotations

import uuid

import pytest
from portfolio_analysis import embedded, pipeline
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.prefect_settings import STARTUP_TIMEOUT_SECONDS

pytestmark = [pytest.mark.prefect, pytest.mark.dask]

FLOW_NAMES = (
    "dask_multi_source_pricing_flow",
    "dask_portfolio_technical_analysis_flow",
    "dask_news_analysis_flow",
    "dask_comprehensive_portfolio_analysis_flow",
    "dask_combined_analysis_flow",
)
VOLATILE = {"timestamp", "execution_time_seconds", "timings", "task_seconds"}


# Weights headlines by their age, so it moves with the clock between two runs.
TIME_DEPENDENT = "recency_weighted_sentiment"


def _without_volatile(result: dict) -> dict:
    out = {k: v for k, v in result.items() if k not in VOLATILE}
    if "report" in out:
        out["report"] = {k: v for k, v in out["report"].items() if k not in VOLATILE}
    if "combined_analysis" in out:
        out["combined_analysis"] = [
            {k: v for k, v in row.items() if k != TIME_DEPENDENT}
            for row in out["combined_analysis"]
        ]
    return out


def _task_run_names(flow_run_id: uuid.UUID) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            limit=100,
        )
    return sorted(run.name.rsplit("-", 1)[0] for run in runs)


def test_the_flows_are_prefect_flows_with_the_reference_guide_names() -> None:
    import portfolio_analysis
    from prefect import Flow

    for name in FLOW_NAMES:
        flow = getattr(portfolio_analysis, name)
        assert isinstance(flow, Flow)
        assert flow.name == name


def test_pricing_flow_reference_guide_shape_and_failures(prefect_harness, dask_client) -> None:
    from portfolio_analysis import dask_multi_source_pricing_flow

    result = dask_multi_source_pricing_flow(
        tickers=["AAPL", "MSFT", "NOPE"], dask_scheduler=dask_client.scheduler.address
    )
    assert result["status"] == "partial"
    assert result["securities_fetched"] == 2
    assert set(result["prices"]) == {"AAPL", "MSFT"}
    assert all(isinstance(p, float) and p > 0 for p in result["prices"].values())
    assert result["sources"] == {"AAPL": "embedded", "MSFT": "embedded"}
    assert [(f["ticker"], f["stage"]) for f in result["failed"]] == [("NOPE", "pricing")]
    assert result["timestamp"]


def test_technical_flow_reference_guide_shape(prefect_harness, dask_client) -> None:
    from portfolio_analysis import dask_portfolio_technical_analysis_flow

    state = dask_portfolio_technical_analysis_flow(
        tickers=["AAPL", "MSFT", "GOOG"],
        dask_scheduler=dask_client.scheduler.address,
        return_state=True,
    )
    assert state.is_completed()
    result = state.result()
    assert result["status"] == "success"
    assert result["securities_analyzed"] == 3
    summary = result["technical_summary"]
    assert [row["ticker"] for row in summary] == ["AAPL", "MSFT", "GOOG"]
    for row in summary:
        assert 0 <= row["rsi_14"] <= 100
        assert row["bollinger_lower"] < row["sma_20"] < row["bollinger_upper"]
    # The Dask part is one task; the aggregation runs as Prefect tasks with the guide's names.
    assert _task_run_names(state.state_details.flow_run_id) == [
        "aggregate_technical_results",
        "build_technical_report",
        "gather_on_dask",
    ]


def test_news_flow_reference_guide_shape(prefect_harness, dask_client) -> None:
    from portfolio_analysis import dask_news_analysis_flow

    result = dask_news_analysis_flow(
        tickers=["AAPL", "MSFT"], dask_scheduler=dask_client.scheduler.address
    )
    assert result["status"] == "success"
    assert result["securities_with_news"] == 2
    assert set(result["sentiment_by_ticker"]) == {"AAPL", "MSFT"}
    assert result["total_articles"] > 0
    assert result["positive_sentiment"] + result["negative_sentiment"] <= 2


def test_comprehensive_and_combined_flows_equal_the_plain_pipeline(
    prefect_harness, dask_client
) -> None:
    from portfolio_analysis import (
        dask_combined_analysis_flow,
        dask_comprehensive_portfolio_analysis_flow,
    )

    address = dask_client.scheduler.address
    holdings = {"AAPL": 10.0, "MSFT": 30.0, "NOPE": 5.0}
    plain = pipeline.run_combined_analysis(holdings=holdings, client=dask_client)
    combined = dask_combined_analysis_flow(holdings=holdings, dask_scheduler=address)
    assert _without_volatile(combined) == _without_volatile(plain)
    assert combined["status"] == "partial"
    assert combined["report"]["portfolio"]["excluded"] == ["NOPE"]
    # The flow carries the same coverage and data notes (docs/data.md) as the plain run.
    coverage = combined["report"]["portfolio"]["coverage"]
    assert (coverage["tickers_asked"], coverage["tickers_used"]) == (3, 2)
    assert coverage["excluded"]["NOPE"].startswith("not priced: embedded: not in the embedded")
    assert combined["report"]["data_notes"]["windows"]["warmup_days"] == 300

    comprehensive = dask_comprehensive_portfolio_analysis_flow(
        tickers=["AAPL", "MSFT"], dask_scheduler=address
    )
    assert comprehensive["status"] == "success"
    report = comprehensive["report"]
    assert report["securities_analyzed"] == 2
    assert "portfolio" not in report
    assert set(report["summary"]) == {
        "avg_rsi",
        "avg_sma_20",
        "avg_news_sentiment",
        "securities_with_positive_sentiment",
        "securities_with_negative_sentiment",
    }
    assert report["execution_time_seconds"] > 0
    rows = {row["ticker"]: row for row in comprehensive["combined_analysis"]}
    for row in plain["combined_analysis"]:
        assert rows[row["ticker"]]["rsi_14"] == row["rsi_14"]


def test_flow_runs_are_recorded_on_the_prefect_server(prefect_harness, dask_client) -> None:
    from portfolio_analysis import dask_combined_analysis_flow
    from prefect.client.orchestration import get_client

    state = dask_combined_analysis_flow(
        tickers=["IBM"], dask_scheduler=dask_client.scheduler.address, return_state=True
    )
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        flow = client.read_flow(run.flow_id)
    assert flow.name == "dask_combined_analysis_flow"
    assert run.state.is_completed()
    assert run.parameters["tickers"] == ["IBM"]
    assert _task_run_names(flow_run_id) == [
        "aggregate_news_results",
        "aggregate_pricing_results",
        "aggregate_technical_results",
        "build_comprehensive_report",
        "combine_analysis",
        "compute_portfolio_figures",
        "gather_on_dask",
    ]


def test_a_flow_takes_what_cannot_be_a_parameter_in_its_options(
    prefect_harness, dask_client
) -> None:
    """Progress, chart tickers and the gathered frames go in and out through the explicit
    ``options`` parameter (recorded by type name only); the call runs under the quiet
    Prefect settings, entered by the call without touching the environment."""
    import os

    from portfolio_analysis import dask_combined_analysis_flow
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    calls: list[tuple[str, int, int]] = []
    settings_seen = []

    def progress(stage: str, done: int, total: int) -> None:
        calls.append((stage, done, total))
        settings_seen.append(get_current_settings())

    gathered: list[pipeline.StageResults] = []
    options = pipeline.RunOptions(
        progress=progress, series_tickers=("MSFT",), on_gathered=gathered.append
    )
    environment = dict(os.environ)
    state = dask_combined_analysis_flow(
        tickers=["AAPL", "MSFT"],
        dask_scheduler=dask_client.scheduler.address,
        options=options,
        return_state=True,
    )
    assert state.result()["status"] == "success"
    assert dict(os.environ) == environment
    assert {stage for stage, _, _ in calls} == {"pricing", "technicals", "news", "portfolio"}
    assert calls[-1] == ("portfolio", 1, 1)
    (stages,) = gathered
    assert list(stages.series) == ["MSFT"]
    assert list(stages.close.columns) == ["AAPL", "MSFT"]
    for settings in settings_seen:
        assert not settings.server.ui.enabled
        assert not settings.server.analytics_enabled
        assert settings.server.ephemeral.startup_timeout_seconds == STARTUP_TIMEOUT_SECONDS
    # ... and only during the call.
    assert get_current_settings().server.ephemeral.startup_timeout_seconds != (
        STARTUP_TIMEOUT_SECONDS
    )
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.parameters["options"] == "<RunOptions>"
    assert run.parameters["tickers"] == ["AAPL", "MSFT"]


def test_a_flow_without_scheduler_starts_and_closes_its_own_cluster(prefect_harness) -> None:
    from portfolio_analysis import dask_combined_analysis_flow

    result = dask_combined_analysis_flow(
        tickers=["AAPL", "MSFT"],
        n_workers=1,
        config=AnalysisConfig(),
        analyses=("pricing", "technicals"),
    )
    assert result["status"] == "success"
    assert result["report"]["workers"] == 1
    assert "news" not in result["report"]["timings"]
    assert "avg_sentiment" not in result["combined_analysis"][0]


def test_a_flow_with_an_unreachable_scheduler_fails_with_the_clear_error(prefect_harness) -> None:
    from portfolio_analysis import dask_news_analysis_flow

    state = dask_news_analysis_flow(
        tickers=["AAPL"], dask_scheduler="tcp://127.0.0.1:9", return_state=True
    )
    assert state.is_failed()
    with pytest.raises(pipeline.SchedulerUnreachableError, match="tcp://127.0.0.1:9"):
        state.result()


def test_default_tickers_are_the_sample_portfolio(prefect_harness, dask_client) -> None:
    from portfolio_analysis import dask_multi_source_pricing_flow

    result = dask_multi_source_pricing_flow(dask_scheduler=dask_client.scheduler.address)
    assert list(result["prices"]) == list(embedded.SAMPLE_PORTFOLIO)


def test_the_cli_with_prefect_reports_to_the_server_named_by_prefect_api_url(
    prefect_harness, dask_client, tmp_path
) -> None:
    """`portfolio-analysis run --prefect` in a real process, with PREFECT_API_URL set (as the
    operator's chart may set it): the flow run lands on that server, no temporary one."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PORTFOLIO_CACHE_DIR": str(tmp_path / "cache"),
        "PREFECT_API_URL": api_url,
    }
    script = Path(sys.executable).with_name("portfolio-analysis")
    done = subprocess.run(
        [
            str(script),
            "run",
            "--prefect",
            "--tickers",
            "MSFT,FB",
            "--scheduler",
            dask_client.scheduler.address,
            "--output",
            str(tmp_path / "out"),
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    import json

    printed = json.loads(done.stdout)
    assert [r["ticker"] for r in printed["combined_analysis"]] == ["MSFT", "FB"]
    assert (tmp_path / "out" / "report.html").exists()
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["dask_combined_analysis_flow"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=200,
        )
    ours = [r for r in runs if r.parameters.get("tickers") == ["MSFT", "FB"]]
    assert len(ours) == 1
    assert ours[0].state.is_completed()
    # It used the server it was given: no temporary server's database in its Prefect home.
    assert not list((tmp_path / "cache" / "prefect").glob("*.db"))
