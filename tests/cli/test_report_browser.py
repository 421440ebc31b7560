"""The HTML report in a real headless Chromium: it loads with no console errors, fetches
nothing, draws every chart, and a screenshot of it is saved.

The sample and S&P reports come from the real command (``portfolio-analysis run``, its own
local Dask cluster); a synthetic partial run carries every banner and data note. Screenshots
go to ``$REPORT_SCREENSHOT_DIR`` when set (to look at them), else to the test's tmp folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from portfolio_analysis import cli, report

from tests.support.report_documents import synthetic_run, with_contract_notes
from tests.support.report_page import open_and_check

SAMPLE_HTML_LIMIT = 300_000  # bytes (issue 15)
SP500_HTML_LIMIT = 1_000_000
OK_EXIT_CODES = {cli.EXIT_OK, getattr(cli, "EXIT_PARTIAL", cli.EXIT_OK)}


def run_cli(output: Path, *args: str) -> Path:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "portfolio_analysis.cli",
            "run",
            "--output",
            str(output),
            "--no-progress",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    # A partial result (the S&P universe leaves some tickers out) still writes its report.
    assert completed.returncode in OK_EXIT_CODES, completed.stderr
    return output / "report.html"


def validate(output: Path) -> dict:
    """The run's report.json, checked against the report's JSON Schema."""
    document = json.loads((output / "report.json").read_text(encoding="utf-8"))
    schema = json.loads(report.schema_path().read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(document)
    return document


@pytest.mark.dask
@pytest.mark.timeout(400)
def test_sample_report_opens_in_chromium_with_every_chart_drawn(tmp_path):
    page = run_cli(tmp_path / "sample")
    assert page.stat().st_size <= SAMPLE_HTML_LIMIT
    document = validate(tmp_path / "sample")
    tickers = list(document["report"]["series"]["tickers"])
    assert len(tickers) == 5
    seen = open_and_check(page, tmp_path, "sample")
    assert seen["charts"] == ["equity", "drawdown", "volatility", "sharpe"] + [
        f"{kind}:{t}" for t in tickers for kind in ("price", "rsi", "macd")
    ]


@pytest.mark.dask
@pytest.mark.timeout(400)
def test_sp500_report_is_under_a_megabyte_and_opens_in_chromium(tmp_path):
    page = run_cli(tmp_path / "sp500", "--universe", "sp500")
    assert page.stat().st_size <= SP500_HTML_LIMIT
    validate(tmp_path / "sp500")
    seen = open_and_check(page, tmp_path, "sp500")
    assert len(seen["charts"]) == 4 + 3 * report.MAX_TICKER_CHARTS


@pytest.mark.timeout(300)
def test_partial_report_with_every_data_note_opens_in_chromium(tmp_path):
    holdings = {"AAA": 10.0, "BBB": 20.0, "CCC": 5.0, "DDD": 7.0}
    run = synthetic_run(
        list(holdings), holdings, benchmark="SPY", sentiment={"AAA": 0.4, "BBB": -0.3}
    )
    document = with_contract_notes(
        report.build_document(run.result, close=run.close, series=run.series, holdings=holdings)
    )
    # A stored report whose first ticker has no MACD series (e.g. too short a history).
    first = next(iter(document["report"]["series"]["tickers"].values()))
    del first["macd"], first["macd_signal"]
    page = report.write_html_report(document, tmp_path / "partial" / "report.html")
    seen = open_and_check(page, tmp_path, "partial")
    assert len(seen["charts"]) == 4 + 3 * 3 - 1
