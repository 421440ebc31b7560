"""Conditions, status figures and the size-bounded report ConfigMap."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from portfolio_analysis.aggregate import comprehensive_report
from portfolio_analysis.report import render_html
from portfolio_operator.constants import TRUNCATED_ANNOTATION
from portfolio_operator.status import (
    DOCUMENT_KEY,
    REPORT_CONFIGMAP_MAX_BYTES,
    REPORT_KEY,
    bounded_report,
    get_condition,
    outcome,
    report_configmap,
    result_fields,
    set_condition,
)

from tests.operator.conftest import make_pfa

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_transition_time_moves_only_when_the_status_value_changes() -> None:
    first = set_condition([], "Running", True, "AnalysisRunning", "a", 1, T0)
    same = set_condition(first, "Running", True, "AnalysisRunning", "b", 1, T0 + timedelta(1))
    flipped = set_condition(same, "Running", False, "Finished", "c", 1, T0 + timedelta(2))
    time = lambda c: get_condition(c, "Running")["lastTransitionTime"]  # noqa: E731
    assert time(first) == time(same) == "2026-01-01T00:00:00Z"
    assert get_condition(same, "Running")["message"] == "b"
    assert time(flipped) == "2026-01-03T00:00:00Z"


def test_nan_and_numpy_figures_become_json_safe_status_values() -> None:
    fields = result_fields(
        {
            "report": {"summary": {"avg_rsi": float("nan"), "avg_sma_20": np.float64(3.5)}},
            "combined_analysis": [{"ticker": "A", "close": np.float32(2.0)}],
            "failed": [{"ticker": "B", "stage": "pricing", "reason": "x" * 2000}],
        }
    )
    json.dumps(fields, allow_nan=False)
    assert fields["summary"]["avgRsi"] is None
    assert fields["summary"]["avgSma20"] == 3.5
    assert fields["securitiesFailed"] == 1 and len(fields["failures"][0]["reason"]) == 512


def test_status_tables_are_short_and_say_so() -> None:
    rows = [{"ticker": f"T{i}"} for i in range(50)]
    fields = result_fields({"report": {}, "combined_analysis": rows}, max_rows=20)
    assert len(fields["results"]) == 20 and fields["resultsTruncated"] is True
    assert fields["securitiesAnalyzed"] == 50


def big_result(rows: int) -> dict:
    return {
        "status": "success",
        "report": {"summary": {"avg_rsi": 50.0}},
        "combined_analysis": [{"ticker": f"T{i}", "note": "x" * 200} for i in range(rows)],
        "failed": [],
    }


def test_a_small_report_is_kept_whole() -> None:
    text, truncated = bounded_report(big_result(3), max_bytes=10_000)
    assert not truncated and json.loads(text) == big_result(3)


def test_a_big_report_keeps_the_summary_and_as_many_rows_as_fit_with_a_marker() -> None:
    text, truncated = bounded_report(big_result(1000), max_bytes=50_000)
    doc = json.loads(text)
    assert truncated and len(text.encode()) <= 50_000
    assert doc["report"]["summary"] == {"avg_rsi": 50.0}
    kept = len(doc["combined_analysis"])
    assert 100 < kept < 1000
    assert doc["truncated"]["omitted"]["combined_analysis"] == {"total": 1000, "kept": kept}
    # One more row would not have fitted: the bisection keeps as many as possible.
    more = {**doc, "combined_analysis": big_result(kept + 1)["combined_analysis"]}
    assert len(json.dumps(more, separators=(",", ":")).encode()) > 50_000


def test_a_report_too_big_for_any_rows_still_says_so() -> None:
    result = {**big_result(1), "report": {"blob": "y" * 5000}}
    text, truncated = bounded_report(result, max_bytes=300)
    assert truncated and json.loads(text)["truncated"]["maxBytes"] == 300


def test_the_report_configmap_is_owned_by_the_resource() -> None:
    owner = make_pfa(name="big", uid="u-1")
    cm = report_configmap(owner, big_result(1000), max_bytes=50_000)
    assert cm["metadata"]["name"] == "big-report"
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert cm["metadata"]["ownerReferences"][0]["controller"] is True
    assert cm["metadata"]["annotations"][TRUNCATED_ANNOTATION] == "true"
    assert json.loads(cm["data"][REPORT_KEY])["truncated"]


COVERAGE = {
    "tickers_asked": 523,
    "tickers_used": 492,
    "start": "2009-11-05",
    "end": "2010-08-20",
    "returns": 200,
    "rule": "the window that keeps the most tickers; gaps are not daily returns",
    "excluded": {f"X{i}": f"no prices before 2010 ({i})" for i in range(31)},
}


def test_portfolio_coverage_is_summarised_in_status_and_absent_coverage_is_null() -> None:
    result = {"report": {"portfolio": {"sharpe_ratio": 1.0, "coverage": COVERAGE}}}
    coverage = result_fields(result)["portfolio"]["coverage"]
    assert coverage["tickers"] == "492/523"
    assert (coverage["tickersUsed"], coverage["tickersAsked"]) == (492, 523)
    assert (coverage["start"], coverage["end"], coverage["returns"]) == (
        "2009-11-05", "2010-08-20", 200,
    )  # fmt: skip
    assert coverage["excluded"] == 31
    assert coverage["excludedExamples"][0] == {
        "ticker": "X0",
        "reason": "no prices before 2010 (0)",
    }
    assert len(coverage["excludedExamples"]) == 5
    assert coverage["rule"].startswith("the window")
    assert (
        result_fields({"report": {"portfolio": {"sharpe_ratio": 1.0}}})["portfolio"]["coverage"]
        is None
    )


def test_a_partial_run_with_no_failed_ticker_says_what_is_missing_in_its_condition() -> None:
    """A benchmark that could not be priced leaves beta out although every ticker succeeded:
    the condition names that, instead of '0 failed (see status.failures)'."""
    combined = pd.DataFrame([{"ticker": "AAPL", "close": 1.0}, {"ticker": "MSFT", "close": 2.0}])
    result = comprehensive_report(
        combined,
        execution_time_seconds=1.0,
        portfolio={"tickers": ["AAPL", "MSFT"], "beta": None, "benchmark": "NOPE"},
        extra={"benchmark": "NOPE", "price_sources": ["embedded"]},
    )
    assert result["status"] == "partial" and not result["failed"]
    phase, reason, message = outcome(result)
    assert (phase, reason) == ("Succeeded", "CompletedPartially")
    assert "NOPE" in message and "0 failed" not in message
    assert outcome({**result, "status": "success"})[1] == "Completed"


def _document(rows: int, series_days: int = 250) -> dict:
    """A report document shaped as report.build_document makes it: the result plus daily
    series (the charts' data), here of made-up but incompressible-enough numbers."""
    rng = np.random.default_rng(7)
    dates = [str(d.date()) for d in pd.bdate_range("2024-01-01", periods=series_days)]
    values = [round(float(v), 6) for v in 100 * np.cumprod(1 + rng.normal(0, 0.01, len(dates)))]
    result = big_result(rows)
    for row in result["combined_analysis"]:  # figures that compress like real ones
        row["note"] = rng.bytes(60).hex()
    report = {**result["report"], "warnings": ["the run's own warning"]}
    report["series"] = {
        "portfolio": {"dates": dates, "value": values, "drawdown": values},
        "tickers": {"T0": {"dates": dates, "close": values}},
    }
    return {"schema_version": "1.0", **result, "report": report}


def _stored(cm: dict) -> dict:
    packed = cm["binaryData"][DOCUMENT_KEY]
    return json.loads(gzip.decompress(base64.b64decode(packed)))


def _stored_bytes(cm: dict) -> int:
    """What the API server counts against its 1 MiB: data and binaryData values (decoded)."""
    data = sum(len(v.encode()) for v in cm.get("data", {}).values())
    return data + sum(len(base64.b64decode(v)) for v in cm.get("binaryData", {}).values())


def test_the_whole_document_is_stored_gzipped_beside_the_readable_result() -> None:
    owner = make_pfa(name="small", uid="u-2")
    result, document = big_result(40), _document(40)
    cm = report_configmap(owner, result, max_bytes=50_000, document=document)
    # The readable key is the run's result, as before; the document is whole, series included.
    assert json.loads(cm["data"][REPORT_KEY]) == result
    assert _stored(cm) == document
    assert cm["metadata"]["annotations"][TRUNCATED_ANNOTATION] == "false"


def test_a_document_too_big_for_the_room_left_is_trimmed_and_its_page_and_annotation_say_so():
    owner = make_pfa(name="big", uid="u-3")
    result, document = big_result(2000), _document(2000)
    cm = report_configmap(owner, result, max_bytes=50_000, document=document,
                          total_max_bytes=60_000)  # fmt: skip
    assert _stored_bytes(cm) <= 60_000
    assert len(cm["data"][REPORT_KEY].encode()) <= 50_000
    stored = _stored(cm)
    kept = len(stored["combined_analysis"])
    assert 0 < kept < 2000
    assert stored["truncated"]["omitted"]["combined_analysis"] == {"total": 2000, "kept": kept}
    assert stored["report"]["series"] == document["report"]["series"]  # the charts stay
    note = stored["report"]["warnings"][0]
    assert f"combined_analysis keeps {kept} of 2000 rows" in note
    assert stored["report"]["warnings"][1:] == ["the run's own warning"]
    page = render_html(stored)
    assert "trimmed to fit the Kubernetes ConfigMap size limit" in page
    assert cm["metadata"]["annotations"][TRUNCATED_ANNOTATION] == "true"


def test_without_room_for_even_the_trimmed_document_only_the_readable_key_is_kept() -> None:
    owner = make_pfa(name="full", uid="u-4")
    cm = report_configmap(owner, big_result(1000), max_bytes=50_000,
                          document=_document(1000), total_max_bytes=50_100)  # fmt: skip
    assert "binaryData" not in cm and json.loads(cm["data"][REPORT_KEY])["truncated"]
    assert cm["metadata"]["annotations"][TRUNCATED_ANNOTATION] == "true"


def test_a_large_report_at_the_default_limits_fits_the_api_servers_configmap_limit() -> None:
    owner = make_pfa(name="large", uid="u-5")
    cm = report_configmap(owner, big_result(20_000), document=_document(20_000))
    assert _stored_bytes(cm) <= REPORT_CONFIGMAP_MAX_BYTES < 1024 * 1024
