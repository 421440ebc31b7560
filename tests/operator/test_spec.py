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
        (
            {},
            "give exactly one of spec.tickers, spec.holdings, spec.universe, spec.tickersFrom "
            "or spec.holdingsFrom",
        ),
        ({"tickers": ["A"], "universe": "sp500"}, "(got spec.tickers and spec.universe)"),
        ({"universe": "nasdaq"}, "spec.universe is 'nasdaq': choose from sample, sp500"),
        ({"tickers": ["A"], "embeddedDatasets": ["crsp"]}, "unknown value(s) ['crsp']"),
        (
            {"tickersFrom": {"configMapKeyRef": {"name": "Bad_Name", "key": "t"}}},
            "spec.tickersFrom.configMapKeyRef needs the name of a ConfigMap",
        ),
        ({"tickers": []}, "non-empty list"),
        ({"tickers": ["AAPL", "msft"]}, "spec.tickers[1] is 'msft': use an upper-case ticker"),
        ({"tickers": ["AAPL", "AAPL"]}, "lists a ticker twice"),
        ({"tickers": ["BRK.B", "BRK-B"]}, "lists a ticker twice"),
        (
            {"holdings": [{"ticker": "BF-B", "shares": 1}, {"ticker": "BF.B", "shares": 2}]},
            "BF.B is listed twice",
        ),
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
        {"universe": "sp500", "embeddedDatasets": ["sp500"]},
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


@pytest.mark.parametrize("rate", [-1.5, -1.0, -0.99, 0.0, 0.04, 1.0, 1.01])
def test_the_schema_the_parser_and_the_library_accept_the_same_risk_free_rates(
    rate: float,
) -> None:
    """A rate the API server stores is one the analysis runs with (-1 was stored, then refused)."""
    schema = spec_schema()["properties"]["riskFreeRate"]
    low, high = schema["minimum"], schema["maximum"]
    by_schema = (low < rate if schema.get("exclusiveMinimum") else low <= rate) and rate <= high
    try:
        parse_spec({"tickers": ["AAPL"], "riskFreeRate": rate})
        by_parser = True
    except SpecError:
        by_parser = False
    try:
        AnalysisConfig(risk_free_rate=rate)
        by_library = True
    except ValueError:
        by_library = False
    assert by_schema == by_parser == by_library, (by_schema, by_parser, by_library)


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


# --- universes and data sets: the CLI's request, one for one ------------------------------------


@pytest.mark.parametrize("universe", ["sample", "sp500"])
def test_a_universe_is_the_clis_universe_request_and_data_sets(universe: str) -> None:
    from portfolio_analysis import cli, pipeline

    args = cli.parse_args(["run", "--universe", universe])
    asked = cli._request(args)  # the CLI's own reading of its arguments (private, in flux)
    if isinstance(asked, tuple):  # (tickers, holdings); the settings from _config
        (asked_tickers, asked_holdings), config = asked, cli._config(args)
    else:  # one object with tickers, holdings and config
        asked_tickers, asked_holdings, config = asked.tickers, asked.holdings, asked.config
    tickers, holdings = pipeline.resolve_request(asked_tickers, asked_holdings)
    request = parse_spec({"universe": universe})
    assert list(request.tickers) == tickers
    assert request.holdings == holdings
    assert request.config.embedded_datasets == config.embedded_datasets
    assert request.config.price_sources == config.price_sources
    if universe == "sp500":
        assert len(request.tickers) > 500 and request.config.embedded_datasets[0] == "sp500"


def test_a_ticker_list_chooses_its_embedded_data_sets() -> None:
    default = parse_spec({"tickers": ["AAPL"]}).config.embedded_datasets
    chosen = parse_spec({"tickers": ["AAPL"], "embeddedDatasets": ["sp500", "sample"]})
    assert default == AnalysisConfig().embedded_datasets
    assert chosen.config.embedded_datasets == ("sp500", "sample")
    # An explicit order wins over the universe's own.
    mixed = parse_spec({"universe": "sp500", "embeddedDatasets": ["sample", "sp500"]})
    assert mixed.config.embedded_datasets == ("sample", "sp500")


# --- tickers and holdings from a ConfigMap ----------------------------------------------------

TICKERS_FROM = {"tickersFrom": {"configMapKeyRef": {"name": "universe", "key": "tickers.txt"}}}
HOLDINGS_FROM = {"holdingsFrom": {"configMapKeyRef": {"name": "book", "key": "holdings.csv"}}}


def test_tickers_from_a_configmap_are_read_like_the_clis_list_and_may_exceed_2000() -> None:
    text = "# the desk's list\naapl, MSFT\nIBM AAPL\n"
    request = parse_spec(TICKERS_FROM, {"tickers.txt": text})
    assert request.tickers == ("AAPL", "MSFT", "IBM")
    assert request.run_kwargs()["tickers"] == ["AAPL", "MSFT", "IBM"]
    many = "\n".join(f"T{i:05d}" for i in range(5000))
    assert len(parse_spec(TICKERS_FROM, {"tickers.txt": many}).tickers) == 5000


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("holdings.csv", "ticker,shares\nAAPL,10\nIBM,2.5\n"),
        ("holdings.yaml", "AAPL: 10\nIBM: 2.5\n"),
        ("book", "ticker,shares\nAAPL,10\nIBM,2.5\n"),  # no suffix: the header says CSV
        ("book", "holdings:\n  - {ticker: AAPL, shares: 10}\n  - {ticker: IBM, shares: 2.5}\n"),
    ],
)
def test_holdings_from_a_configmap_are_read_by_the_clis_reader(key: str, text: str) -> None:
    from pathlib import Path

    from portfolio_analysis.cli import read_holdings

    spec = {"holdingsFrom": {"configMapKeyRef": {"name": "book", "key": key}}}
    request = parse_spec(spec, {key: text})
    assert request.holdings == {"AAPL": 10.0, "IBM": 2.5}
    suffix = ".csv" if "ticker,shares" in text else ".yaml"
    folder = Path(__import__("tempfile").mkdtemp())
    (folder / f"h{suffix}").write_text(text)
    assert request.holdings == read_holdings(folder / f"h{suffix}")


def test_a_missing_configmap_or_key_is_input_missing_with_the_rest_of_the_spec_parsed() -> None:
    from portfolio_operator.spec import InputMissing

    spec = {**TICKERS_FROM, "ttlSecondsAfterFinished": 60, "cluster": {"onCompletion": "Keep"}}
    with pytest.raises(InputMissing) as missing:
        parse_spec(spec, None)
    assert "ConfigMap universe (key tickers.txt) named by spec.tickersFrom" in str(missing.value)
    assert "does not exist in this namespace: create it" in str(missing.value)
    rest = missing.value.request
    assert rest is not None and rest.ttl_seconds_after_finished == 60
    assert rest.cluster.on_completion == "Keep" and rest.tickers == ()
    with pytest.raises(InputMissing, match=r"has no key tickers.txt \(its keys: a, b\)"):
        parse_spec(spec, {"b": "", "a": ""})


@pytest.mark.parametrize(
    ("spec", "data", "fix"),
    [
        (TICKERS_FROM, {"tickers.txt": "AAPL, $$$"}, "ConfigMap universe (key tickers.txt)"),
        (TICKERS_FROM, {"tickers.txt": "# nothing\n"}, "lists no tickers"),
        (HOLDINGS_FROM, {"holdings.csv": "ticker,shares\nAAPL,ten\n"}, "line 2: shares"),
        (HOLDINGS_FROM, {"holdings.csv": "AAPL 10\n"}, "expected a CSV header 'ticker,shares'"),
    ],
)
def test_bad_configmap_contents_say_what_to_fix(spec: dict, data: dict, fix: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec, data)
    assert fix in str(caught.value)
    assert "/tmp" not in str(caught.value), "the message names the ConfigMap, not a temp file"
