"""A partial result is visible at a glance (issue 14, item 7): ``result["status"]`` is
``partial`` when an asked ticker failed a stage or was left out of the portfolio figures, or
the benchmark could not be priced; ``report["warnings"]`` says each in one line (with close
names for a mistyped ticker); the terminal shows a PARTIAL line with them and the run exits
with its own code, 3.

The status rule is tested on ``aggregate.comprehensive_report`` (every path builds its
result there: the CLI, the Prefect flows, the operator), the terminal and exit code on the
CLI against the shared LocalCluster.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from portfolio_analysis import aggregate, cli

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _combined(*tickers: str) -> pd.DataFrame:
    return pd.DataFrame({"ticker": list(tickers), "close": [100.0] * len(tickers)})


def _portfolio(**changes: object) -> dict:
    figures = {
        "tickers": ["AAPL", "MSFT"],
        "start": "2012-03-01",
        "end": "2013-03-01",
        "sharpe_ratio": 0.5,
        "beta": None,
        "excluded": [],
        "excluded_reasons": {},
    }
    return {**figures, **changes}


def _report(combined: pd.DataFrame, **options: object) -> dict:
    options.setdefault("execution_time_seconds", 1.0)
    options.setdefault("extra", {"price_sources": ["embedded"]})
    return aggregate.comprehensive_report(combined, **options)


def test_everything_asked_for_is_success_with_no_warnings() -> None:
    result = _report(_combined("AAPL", "MSFT"), portfolio=_portfolio())
    assert result["status"] == "success"
    assert result["report"]["warnings"] == []


def test_a_ticker_left_out_of_the_portfolio_is_partial_even_with_no_failure() -> None:
    """--tickers AAPL,BAC: both priced, but from data sets without common dates."""
    portfolio = _portfolio(
        tickers=["AAPL"],
        excluded=["BAC"],
        excluded_reasons={"BAC": "its 250 prices overlap too little with the others'"},
    )
    result = _report(_combined("AAPL", "BAC"), portfolio=portfolio)
    assert result["status"] == "partial"
    assert result["failed"] == []
    assert result["report"]["warnings"] == [
        "portfolio figures cover 1 of 2 tickers from 2012-03-01 to 2013-03-01; left out: BAC "
        "(its 250 prices overlap too little with the others')"
    ]


def test_coverage_from_the_data_helper_decides_when_present() -> None:
    coverage = {
        "tickers_asked": 523,
        "tickers_used": 492,
        "start": "2009-08-21",
        "end": "2010-08-20",
        "returns": 250,
        "rule": "the window that keeps most tickers",
        "excluded": {f"T{i}": "listed late" for i in range(31)},
    }
    portfolio = _portfolio(coverage=coverage)
    result = _report(_combined("AAPL", "MSFT"), portfolio=portfolio)
    assert result["status"] == "partial"
    (line,) = result["report"]["warnings"]
    assert line.startswith("portfolio figures cover 492 of 523 tickers from 2009-08-21 to ")
    assert line.endswith(
        "left out: T0, T1, T2, T3, T4, T5, T6, T7 and 23 more (each with its reason in the "
        "report's portfolio section)"
    )

    full = {**coverage, "tickers_used": 523, "excluded": {}}
    result = _report(_combined("AAPL", "MSFT"), portfolio=_portfolio(coverage=full))
    assert result["status"] == "success"


def test_a_benchmark_without_prices_is_partial_with_a_warning_naming_it() -> None:
    result = _report(_combined("AAPL", "MSFT"), portfolio=_portfolio(benchmark="NOPE"))
    assert result["status"] == "partial"
    portfolio = result["report"]["portfolio"]
    assert portfolio["beta"] is None
    assert "benchmark NOPE has no prices" in portfolio["beta_reason"]
    assert result["report"]["warnings"] == [portfolio["beta_reason"]]
    # A mistyped benchmark gets close names, like a mistyped ticker.
    typo = _report(_combined("AAPL"), portfolio=_portfolio(benchmark="IBMM"))
    assert typo["report"]["warnings"][0].endswith("so the portfolio has no beta; did you mean IBM?")
    # With its beta, a benchmark is no warning.
    priced = _report(_combined("AAPL"), portfolio=_portfolio(benchmark="IBM", beta=0.7))
    assert priced["status"] == "success" and "beta_reason" not in priced["report"]["portfolio"]


def test_no_portfolio_figures_at_all_is_partial() -> None:
    result = _report(_combined("AAPL"), portfolio={"error": "none of the held tickers was priced"})
    assert result["status"] == "partial"
    assert result["report"]["warnings"] == [
        "no portfolio figures: none of the held tickers was priced"
    ]


def test_failures_are_warnings_with_close_names_for_a_mistyped_ticker() -> None:
    failed = [
        {"ticker": "MSFTT", "stage": "pricing", "reason": "embedded: not in the embedded data"},
        {"ticker": "IBM", "stage": "news", "reason": "no headlines"},
    ]
    result = _report(_combined("AAPL", "IBM"), failed=failed)
    assert result["status"] == "partial"
    assert result["report"]["warnings"] == [
        "MSFTT: pricing failed: embedded: not in the embedded data; did you mean MSFT or STT?",
        "IBM: news failed: no headlines",
    ]
    assert "AAPL" in aggregate.ticker_suggestions("APPL")
    assert aggregate.ticker_suggestions("AAPL") == []  # a known ticker is not "corrected"
    assert aggregate.ticker_suggestions("ZZZZZZ") == []


def test_many_failures_are_counted_not_listed_one_by_one() -> None:
    failed = [{"ticker": f"X{i}", "stage": "pricing", "reason": "r"} for i in range(25)]
    result = _report(_combined("AAPL"), failed=failed, extra={"price_sources": ["yfinance"]})
    warnings = result["report"]["warnings"]
    assert len(warnings) == aggregate.MAX_FAILURE_WARNINGS + 1
    assert warnings[-1] == "... and 15 more failures, each listed under failed in report.json"
    assert len(result["failed"]) == 25  # nothing is lost


def test_invented_headlines_are_a_warning_but_not_a_partial_result() -> None:
    note = "All headlines are invented sample data."
    news = {"illustrative": True, "note": note, "headlines": {}}
    result = _report(_combined("AAPL"), extra={"price_sources": ["embedded"], "news": news})
    assert result["status"] == "success"
    assert result["report"]["warnings"] == [note]


def test_nothing_analysed_is_still_failed() -> None:
    failed = [{"ticker": "NOPE", "stage": "pricing", "reason": "r"}]
    assert _report(_combined(), failed=failed)["status"] == "failed"


# --- the CLI -------------------------------------------------------------------------------


def _run(capsys, tmp_path: Path, scheduler: str, *argv: str) -> tuple[int, dict, str, str]:
    code = cli.main(
        ["run", *argv, "--scheduler", scheduler, "--output", str(tmp_path), "--no-progress"]
    )
    captured = capsys.readouterr()
    result = json.loads((tmp_path / "report.json").read_text())
    return code, result, ANSI.sub("", captured.out), ANSI.sub("", captured.err)


@pytest.mark.dask
def test_a_mistyped_ticker_is_a_partial_run_with_exit_code_3(
    tmp_path: Path, capsys, scheduler_address: str
) -> None:
    code, result, out, err = _run(capsys, tmp_path, scheduler_address, "--tickers", "AAPL,MSFTT")
    assert code == cli.EXIT_PARTIAL == 3
    assert result["status"] == "partial"
    warnings = result["report"]["warnings"]
    assert warnings[0].startswith("MSFTT: pricing failed: ")
    assert warnings[0].endswith("did you mean MSFT or STT?")
    assert any(w.startswith("portfolio figures cover 1 of 2 tickers") for w in warnings)
    lines = err.splitlines()
    assert lines[0] == (
        f"PARTIAL: some of what was asked for is missing (exit code 3); {len(warnings)} warning(s):"
    )
    assert lines[1 : 1 + len(warnings)] == [f"warning: {w}" for w in warnings]
    assert "Portfolio analysis: partial" in out


@pytest.mark.dask
def test_a_benchmark_that_cannot_be_priced_is_a_partial_run(
    tmp_path: Path, capsys, scheduler_address: str
) -> None:
    code, result, _, err = _run(capsys, tmp_path, scheduler_address, "--benchmark", "NOPE")
    assert code == 3
    portfolio = result["report"]["portfolio"]
    assert portfolio["beta"] is None
    assert portfolio["benchmark"] == "NOPE" and "NOPE" in portfolio["beta_reason"]
    # The benchmark's own pricing failure says why, not a guess about dates.
    assert "could not be priced" in portfolio["beta_reason"]
    assert portfolio["benchmark_error"] in portfolio["beta_reason"]
    assert f"warning: {portfolio['beta_reason']}" in err
    assert err.startswith("PARTIAL")


@pytest.mark.dask
def test_the_sample_portfolio_is_a_success_with_exit_code_0(
    tmp_path: Path, capsys, scheduler_address: str
) -> None:
    code, result, out, err = _run(capsys, tmp_path, scheduler_address, "--benchmark", "IBM")
    assert code == 0, err
    assert result["status"] == "success"
    assert result["report"]["portfolio"]["beta"] is not None
    assert "PARTIAL" not in err
    # Its warnings (invented sample headlines) are shown, one line each, without PARTIAL.
    for warning in result["report"]["warnings"]:
        assert f"warning: {warning}" in err
