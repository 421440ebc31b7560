"""Spec parsing (spec.py): defaults, the library's settings, and messages that say what to fix.

The API server validates with the schema that schema.py generates; the parser must accept and
default exactly the same specs, so both are checked against each other here.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.sources import normalise_tickers
from portfolio_operator.schema import crd_manifest
from portfolio_operator.spec import SpecError, parse_spec


def spec_schema() -> dict[str, Any]:
    root = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root["properties"]["spec"]


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Structural defaulting as the API server does it: absent fields with a default get it."""
    if isinstance(value, dict):
        for name, child in (schema.get("properties") or {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                apply_defaults(value[name], child)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(item, schema["items"])
    return value


def test_defaults_are_filled_like_the_api_server_would() -> None:
    request = parse_spec({"tickers": ["AAPL"]})
    assert request.analyses == ("pricing", "technicals", "news", "portfolio")
    assert request.config.price_sources == ("embedded",)
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
        ({"tickers": ["A"], "cluster": {"podLabels": {"dask.org/component": "x"}}}, "dask.org/"),
        ({"tickers": ["A"], "cluster": {"podLabels": {"team": "quant-"}}}, "a label value"),
        ({"tickers": ["A"], "cluster": {"podLabels": {"bad key!": "x"}}}, "invalid label key"),
    ],
)
def test_bad_specs_say_what_to_fix(spec: dict[str, Any], fix: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert fix in str(caught.value)


@pytest.mark.parametrize(
    "spec",
    [
        {"tickers": ["AAPL"]},
        {"holdings": [{"ticker": "AAPL", "shares": 3}], "cluster": {"maxWorkers": 9}},
        {"tickers": ["IBM"], "cluster": {"schedulerAddress": "tcp://dask:8786"}},
    ],
)
def test_the_api_servers_defaults_and_the_parsers_agree(spec: dict[str, Any]) -> None:
    as_stored = apply_defaults(copy.deepcopy(spec), spec_schema())
    assert as_stored != spec, "the schema should default something here"
    assert parse_spec(as_stored) == parse_spec(spec)


def test_the_spec_becomes_the_librarys_settings_when_it_is_parsed() -> None:
    request = parse_spec({"tickers": ["AAPL"], "lookbackDays": 90, "priceSources": ["stooq"]})
    assert isinstance(request.config, AnalysisConfig)
    assert request.config.lookback_days == 90 and request.config.price_sources == ("stooq",)
    assert request.run_kwargs()["config"] is request.config


@pytest.mark.parametrize(
    "ticker", ["AAPL", "BRK.B", "BF-B", "EURUSD=X", "^GSPC", "^EUR=X", "brk.b", "A B", "=X", ""]
)
def test_the_schema_the_parser_and_the_sources_accept_the_same_tickers(ticker: str) -> None:
    pattern = spec_schema()["properties"]["tickers"]["items"]["pattern"]
    by_schema = re.search(pattern, ticker) is not None
    try:
        parse_spec({"tickers": [ticker]})
        by_parser = True
    except SpecError:
        by_parser = False
    valid, _ = normalise_tickers([ticker]) if ticker == ticker.upper() else ([], {})
    assert by_schema == by_parser == bool(valid), (by_schema, by_parser, valid)


def test_a_huge_value_is_not_echoed_back_whole() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"tickers": ["A"], "endDate": "9" * 1_000_000})
    assert len(str(caught.value)) < 200 and "YYYY-MM-DD" in str(caught.value)


def test_every_string_in_the_spec_has_a_length_limit() -> None:
    """A 1 MB string is refused by the API server's schema, not echoed in a 2 MB error."""

    def strings(node: dict[str, Any], path: str) -> list[str]:
        found = []
        is_string = node.get("type") == "string" or node.get("x-kubernetes-int-or-string")
        if is_string and "maxLength" not in node and "enum" not in node:
            found.append(path)
        for name, child in (node.get("properties") or {}).items():
            found += strings(child, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                found += strings(node[key], f"{path}[]")
        return found

    assert strings(spec_schema(), "spec") == []
