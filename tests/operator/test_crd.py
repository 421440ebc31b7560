"""The PortfolioAnalysis CRD (schema, docs, validation rules) and spec parsing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from portfolio_operator.crd import (
    CRD_NAME,
    SpecError,
    crd_manifest,
    crd_yaml,
    parse_spec,
)

REPO = Path(__file__).resolve().parents[2]


def schema() -> dict[str, Any]:
    return crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, child in (node.get("properties") or {}).items():
        yield f"{path}.{name}", child
        yield from walk(child, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    missing = [p for p, n in walk(schema()) if not n.get("description") and p != ".metadata"]
    assert missing == []


def test_committed_manifest_and_command_output_match_the_source() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "portfolio_operator.crd"], capture_output=True, text=True, check=True
    ).stdout
    assert out == crd_yaml()
    committed = (REPO / "manifests" / "crd.yaml").read_text()
    assert committed == out, "manifests/crd.yaml is stale: python -m portfolio_operator.crd"
    assert yaml.safe_load(out)["metadata"]["name"] == CRD_NAME


def test_status_declares_every_field_the_operator_writes() -> None:
    """The API server prunes undeclared status fields: compare with what decide() writes."""
    from portfolio_operator.status import result_fields

    status = schema()["properties"]["status"]["properties"]
    written = result_fields({"report": {}, "combined_analysis": [{"ticker": "A"}]})
    for key, value in written.items():
        assert key in status, key
        if isinstance(value, dict):
            assert set(value) <= set(status[key]["properties"]), key
    row = written["results"][0]
    assert set(row) <= set(status["results"]["items"]["properties"])
    for key in ("phase", "conditions", "startTime", "completionTime", "durationSeconds",
                "daskCluster", "reportConfigMap", "attempts", "progress", "observedGeneration",
                "tickerCount", "workers"):  # fmt: skip
        assert key in status, key


def test_printer_columns_cover_what_kubectl_get_should_show() -> None:
    columns = crd_manifest()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == [
        "Phase", "Tickers", "Workers", "Sentiment", "Duration", "Age"
    ]  # fmt: skip


def test_defaults_are_filled_like_the_api_server_would() -> None:
    request = parse_spec({"tickers": ["AAPL"]})
    assert request.analyses == ("pricing", "technicals", "news", "portfolio")
    assert request.config_options["price_sources"] == ("embedded",)
    assert request.cluster.min_workers == 1 and request.cluster.max_workers == 4
    assert request.cluster.on_completion == "Delete"
    assert request.active_deadline_seconds is None


def test_holdings_become_the_run_arguments() -> None:
    request = parse_spec(
        {"holdings": [{"ticker": "AAPL", "shares": 10}, {"ticker": "IBM", "shares": 2.5}],
         "analyses": ["portfolio"], "endDate": "2013-01-31", "riskFreeRate": 0.02}
    )  # fmt: skip
    kwargs = request.run_kwargs()
    assert kwargs["tickers"] is None
    assert kwargs["holdings"] == {"AAPL": 10.0, "IBM": 2.5}
    assert kwargs["analyses"] == ("pricing", "portfolio"), "portfolio needs prices"
    assert kwargs["config"].risk_free_rate == 0.02
    assert str(kwargs["config"].end) == "2013-01-31"


@pytest.mark.parametrize(
    ("spec", "fix"),
    [
        ({}, "exactly one of spec.tickers or spec.holdings"),
        ({"tickers": []}, "non-empty list"),
        ({"tickers": ["AAPL", "msft"]}, "spec.tickers[1] is 'msft': use an upper-case ticker"),
        ({"tickers": ["AAPL", "AAPL"]}, "lists a ticker twice"),
        ({"holdings": [{"ticker": "AAPL", "shares": 0}]}, "greater than zero"),
        ({"tickers": ["A"], "analyses": ["magic"]}, "unknown value(s) ['magic']"),
        (
            {"tickers": ["A"], "cluster": {"minWorkers": 5, "maxWorkers": 2}},
            "minWorkers must be less than or equal to spec.cluster.maxWorkers (got 5 > 2)",
        ),
        ({"tickers": ["A"], "cluster": {"maxWorkers": 1000}}, "use at most 100"),
        ({"tickers": ["A"], "cluster": {"schedulerAddress": "dask:8786"}}, "tcp://"),
        ({"tickers": ["A"], "endDate": "31/01/2013"}, "YYYY-MM-DD"),
    ],
)
def test_bad_specs_say_what_to_fix(spec: dict[str, Any], fix: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert fix in str(caught.value)
