"""The report document (report.json) and the HTML page drawn from it.

Runs are built from the deterministic synthetic prices with the pipeline's own aggregation
(tests/support/report_documents.py), so no Dask cluster is needed. The page is checked here
as text; tests/cli/test_report_browser.py opens it in a real Chromium.
"""

from __future__ import annotations

import html
import json
import re
import tracemalloc
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
from portfolio_analysis import portfolio, report
from portfolio_analysis.report_html import MAX_HEATMAP_TICKERS, MAX_SENTIMENT_BARS_EACH_END

from tests.support.report_documents import spread_sentiment, synthetic_run, with_contract_notes

SAMPLE_HOLDINGS = {"AAA": 10.0, "BBB": 20.0, "CCC": 5.0, "DDD": 7.0}
REPO = Path(__file__).resolve().parents[2]


def document(run) -> dict:
    return report.build_document(
        run.result, close=run.close, series=run.series, holdings=run.holdings
    )


@pytest.fixture(scope="module")
def holdings_doc() -> dict:
    run = synthetic_run(
        list(SAMPLE_HOLDINGS), SAMPLE_HOLDINGS, sentiment={"AAA": 0.31, "BBB": -0.004}
    )
    return document(run)


@pytest.fixture(scope="module")
def benchmark_doc() -> dict:
    return document(synthetic_run(list(SAMPLE_HOLDINGS), SAMPLE_HOLDINGS, benchmark="SPY"))


@pytest.fixture(scope="module")
def universe_run():
    tickers = [f"U{i:03d}" for i in range(120)]
    return synthetic_run(tickers, None, sentiment=spread_sentiment(tickers), chart_tickers=8)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(report.schema_path().read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def text_of(page: str) -> str:
    """The page's visible text, roughly: tags removed, whitespace collapsed."""
    body = page.split("<script", 1)[0]
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


# --- the JSON document ---------------------------------------------------------------------


def test_documents_match_the_json_schema(holdings_doc, benchmark_doc, universe_run, validator):
    for doc in (holdings_doc, benchmark_doc, document(universe_run)):
        validator.validate(json.loads(report.to_json(doc)))
    validator.validate(json.loads(report.to_json(with_contract_notes(holdings_doc))))


def test_schema_rejects_a_document_without_its_version_or_with_a_negative_drawdown(
    holdings_doc, validator
):
    missing = {k: v for k, v in holdings_doc.items() if k != "schema_version"}
    assert not validator.is_valid(missing)
    wrong = json.loads(report.to_json(holdings_doc))
    wrong["report"]["portfolio"]["max_drawdown"] = -0.1  # losses are positive fractions
    assert not validator.is_valid(wrong)


def test_schema_file_is_shipped_in_the_package():
    assert report.schema_path().is_file()
    assert report.schema_path().is_relative_to(Path(report.__file__).parent)


def test_document_has_version_tool_settings_and_as_of(holdings_doc):
    assert holdings_doc["schema_version"] == report.SCHEMA_VERSION
    assert holdings_doc["tool"]["name"] == "portfolio-operator"
    assert holdings_doc["tool"]["version"]
    settings = holdings_doc["report"]["settings"]
    assert settings["holdings"] == SAMPLE_HOLDINGS
    assert settings["price_sources"] == ["synthetic"]
    assert holdings_doc["report"]["as_of"] == "2022-06-30"


def test_settings_come_from_the_config_when_given(holdings_doc):
    from datetime import date

    from portfolio_analysis.config import AnalysisConfig

    config = AnalysisConfig(lookback_days=200, end=date(2022, 6, 30), risk_free_rate=0.03)
    settings = report.run_settings(holdings_doc, SAMPLE_HOLDINGS, config)
    assert (settings["lookback_days"], settings["end"], settings["risk_free_rate"]) == (
        200,
        "2022-06-30",
        0.03,
    )


def test_daily_series_reproduce_the_portfolio_figures(holdings_doc):
    portfolio = holdings_doc["report"]["portfolio"]
    series = holdings_doc["report"]["series"]["portfolio"]
    values = np.array(series["value"])
    assert series["dates"][0] == portfolio["start"] and series["dates"][-1] == portfolio["end"]
    assert len(values) == portfolio["periods"] + 1
    assert values[-1] / values[0] - 1 == pytest.approx(portfolio["total_return"], abs=1e-5)
    assert -min(series["drawdown"]) == pytest.approx(portfolio["max_drawdown"], abs=1e-5)
    # Monthly returns compound to the total return.
    monthly = holdings_doc["report"]["analytics"]["monthly_returns"]
    growth = np.prod([1 + m["return"] for m in monthly]) - 1
    assert growth == pytest.approx(portfolio["total_return"], abs=1e-9)


def test_rolling_figures_start_after_the_window(holdings_doc):
    series = holdings_doc["report"]["series"]["portfolio"]
    window = series["rolling_window_days"]
    volatility = series["rolling_volatility"]
    assert window == 63
    assert all(v is None for v in volatility[:window])  # 63 returns need 64 prices
    assert volatility[window] is not None and volatility[window] > 0
    assert len(volatility) == len(series["dates"]) == len(series["rolling_sharpe"])


@pytest.mark.parametrize("holdings", [SAMPLE_HOLDINGS, None], ids=["holdings", "equal-weights"])
def test_contributions_add_up_to_the_total_return_and_risk_shares_to_one(holdings):
    run = synthetic_run(list(SAMPLE_HOLDINGS), holdings)
    doc = document(run)
    positions = doc["report"]["analytics"]["positions"]
    total = doc["report"]["portfolio"]["total_return"]
    assert sum(p["contribution_to_return"] for p in positions) == pytest.approx(total, abs=1e-12)
    assert sum(p["contribution_to_risk"] for p in positions) == pytest.approx(1.0, abs=1e-12)
    assert [p["weight"] for p in positions] == sorted(
        (p["weight"] for p in positions), reverse=True
    )


def test_benchmark_gives_the_reference_line_and_excess_return(benchmark_doc):
    analytics = benchmark_doc["report"]["analytics"]
    series = benchmark_doc["report"]["series"]["portfolio"]
    portfolio = benchmark_doc["report"]["portfolio"]
    assert analytics["reference"]["kind"] == "benchmark"
    assert analytics["reference"]["ticker"] == "SPY"
    reference = np.array(series["reference"], dtype=float)
    assert reference[0] == pytest.approx(series["value"][0])  # rebased to the portfolio
    bench_return = reference[-1] / reference[0] - 1
    assert analytics["excess_return"] == pytest.approx(
        portfolio["total_return"] - bench_return, abs=1e-5
    )


def test_without_benchmark_the_reference_is_the_labelled_equal_weighted_holdings(holdings_doc):
    reference = holdings_doc["report"]["analytics"]["reference"]
    assert reference["kind"] == "equal_weight"
    assert "4 tickers" in reference["label"] and "No benchmark was given" in reference["note"]
    page = text_of(report.render_html(holdings_doc))
    assert "equally weighted and rebalanced daily" in page


def test_an_equal_weight_portfolio_is_not_compared_with_itself(universe_run):
    doc = document(universe_run)
    assert doc["report"]["analytics"]["reference"]["kind"] == "none"
    assert doc["report"]["series"]["portfolio"]["reference"] is None
    assert "no reference line is drawn" in text_of(report.render_html(doc))


def test_stage_durations_are_durations_not_offsets():
    """Stages that run at the same time end at offsets (pricing = technicals = 9.76 read
    like a bug): each gets its tasks' own time, and the shared wall time is ``analysis``."""
    durations = report.stage_durations(
        {
            "timings": {"dask_setup": 0.5, "pricing": 9.76, "technicals": 9.76, "news": 3.0,
                        "portfolio": 0.01},
            "task_seconds": {"pricing": 4.0, "technicals": 1.5, "news": 2.5},
        }
    )  # fmt: skip
    assert durations == {"dask_setup": 0.5, "portfolio": 0.01, "analysis": 9.76,
                         "pricing": 4.0, "technicals": 1.5, "news": 2.5}  # fmt: skip


def test_json_lists_of_numbers_stay_on_one_line_and_round_trip(holdings_doc):
    text = report.to_json(holdings_doc)
    assert json.loads(text) == json.loads(json.dumps(holdings_doc))
    dates_line = next(line for line in text.splitlines() if '"dates": [' in line)
    assert dates_line.rstrip().endswith("],")


def test_write_reports_writes_both_files_and_the_document_becomes_the_result(tmp_path):
    run = synthetic_run(list(SAMPLE_HOLDINGS), SAMPLE_HOLDINGS)
    paths = report.write_reports(run, tmp_path / "out")
    written = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(run.result))
    assert written["schema_version"] == report.SCHEMA_VERSION
    durations = written["report"]["stage_durations"]
    assert {"report_build", "report_render", "report_write_html"} <= set(durations)
    assert paths["html"].read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json"]


# --- the HTML page ---------------------------------------------------------------------------


def test_headline_cards_lead_with_return_risk_and_the_as_of_date(holdings_doc, benchmark_doc):
    page = report.render_html(holdings_doc)
    cards = re.findall(r"<div class='card'[^>]*><span>([^<]+)</span>", page)
    assert cards[:5] == [
        "Total return",
        "Annualised return",
        "Volatility (ann.)",
        "Sharpe ratio",
        "Max drawdown",
    ]
    assert "Avg SMA 20" not in page
    assert "Data as of</span><b>2022-06-30</b>" in page
    bench_cards = re.findall(r"<span>([^<]+)</span>", report.render_html(benchmark_doc))
    assert "Excess vs SPY" in bench_cards and "Beta vs SPY" in bench_cards


def test_every_chart_has_its_data_in_the_page(holdings_doc):
    page = report.render_html(holdings_doc)
    charts = re.findall(r"data-chart='([^']+)'", page)
    tickers = list(holdings_doc["report"]["series"]["tickers"])
    assert charts == ["equity", "drawdown", "volatility", "sharpe"] + [
        f"{kind}:{t}" for t in tickers for kind in ("price", "rsi", "macd")
    ]
    data = json.loads(re.search(r"id='report-data'>(.*?)</script>", page, re.S).group(1))
    assert [t["ticker"] for t in data["tickers"]] == tickers
    assert len(data["portfolio"]["value"]) == len(data["portfolio"]["dates"])


def test_page_tables_show_holdings_signals_and_monthly_returns(holdings_doc):
    page = text_of(report.render_html(holdings_doc))
    for heading in ("Holdings", "Contribution to return", "Share of risk", "Monthly returns"):
        assert heading in page
    for column in ("RSI signal", "MACD trend", "MA trend", "Bollinger", "SMA 50/200 cross"):
        assert column in page
    assert "SMA_20" not in page and "sma_20" not in page


def test_tiny_sentiment_bars_stay_visible_and_have_a_word_besides_colour(holdings_doc):
    page = report.render_html(holdings_doc)
    bbb = re.search(r"BBB</span><span class='track'><span class='bar (\w+)' style='([^']+)'", page)
    assert bbb is not None
    assert "+ 3px" in bbb.group(2)  # a minimum width, whatever the score
    assert "\u22120.004 neutral" in page
    assert "+0.310 positive" in page


def test_large_universe_shows_both_ends_and_says_how_many_are_hidden(universe_run):
    doc = document(universe_run)
    page = report.render_html(doc)
    text = text_of(page)
    scores = {r["ticker"]: r["avg_sentiment"] for r in doc["combined_analysis"]}
    ordered = sorted(scores, key=scores.get)
    shown = re.findall(r"<li><span class='tk'>(\w+)</span>", page)
    each = MAX_SENTIMENT_BARS_EACH_END
    assert set(shown) == set(ordered[:each]) | set(ordered[-each:])
    assert f"{len(scores) - 2 * each} tickers in between not shown" in text
    assert "most negative" in text
    # Signals table: both RSI ends and the count of those between.
    assert "tickers not shown" in text and "tickers between them are in report.json" in text


def test_heat_map_shows_the_largest_positions_and_its_note_says_so():
    # Weights grow with the name, so the largest positions are the alphabetically last.
    tickers = [f"H{i:02d}" for i in range(40)]
    holdings = {t: float(1 + 5 * i) for i, t in enumerate(tickers)}
    doc = document(synthetic_run(tickers, holdings, chart_tickers=1))
    page = report.render_html(doc)
    heat = page[page.index("<table class='heat'>") :]
    heat = heat[: heat.index("</table>")]
    shown = re.findall(r"<th scope='row'>(\w+)</th>", heat)
    weights = doc["report"]["portfolio"]["weights"]
    in_matrix = doc["report"]["portfolio"]["correlation"]
    largest = sorted(in_matrix, key=lambda t: -weights[t])[:MAX_HEATMAP_TICKERS]
    assert shown == largest
    assert "H39" in shown and "H00" not in shown
    note = text_of(page[page.index("<table class='heat'>") :])
    assert f"the {len(in_matrix)} largest of {len(tickers)} positions by current weight" in note
    assert f"shows the {MAX_HEATMAP_TICKERS} largest by weight" in note


def test_contract_notes_are_rendered(holdings_doc):
    doc = with_contract_notes(holdings_doc)
    page = report.render_html(doc)
    text = text_of(page)
    assert "Partial result" in text
    for warning in doc["report"]["warnings"]:
        assert warning in text
    assert "Portfolio figures cover 4 of 5 tickers" in text
    assert "never bridged" in text and "ZZZZ" in text
    assert "Illustrative headlines." in text and "invented sample data" in text
    assert "AAA beats &lt;estimates&gt;" in page  # escaped, listed with its score and source
    assert "+0.420" in text and "illustrative" in text
    assert "yahoo" in text and "DNS lookup failed" in text  # fallbacks
    assert "close was NaN" in text  # dropped rows
    assert "2021-06-01" in text and "split" in text  # adjustments
    assert "warm up on 200 extra days" in text  # windows
    assert "not in the data set" in text  # failed


def test_page_is_self_contained_and_small(holdings_doc, universe_run):
    for doc in (holdings_doc, document(universe_run)):
        page = report.render_html(doc)
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
        assert "<link" not in page and "@import" not in page
        assert len(page.encode()) < 300_000


def test_a_plain_result_without_series_renders(holdings_doc):
    """The operator renders stored reports; an older one has no series."""
    plain = {k: v for k, v in holdings_doc.items() if k not in ("schema_version", "tool")}
    plain["report"] = {k: v for k, v in plain["report"].items() if k not in ("series", "analytics")}
    page = report.render_html(plain)
    assert "data-chart='" not in page and "Total return" in page


def test_rendering_from_the_stored_json_gives_the_same_page(holdings_doc):
    stored = json.loads(report.to_json(holdings_doc))
    assert report.render_html(stored) == report.render_html(holdings_doc)


def test_report_docs_describe_every_schema_field():
    docs = (REPO / "docs" / "report.md").read_text(encoding="utf-8")
    schema = json.loads(report.schema_path().read_text(encoding="utf-8"))
    names: set[str] = set()

    def collect(node):
        if isinstance(node, dict):
            for key, value in (node.get("properties") or {}).items():
                names.add(key)
                collect(value)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(schema)
    missing = sorted(name for name in names if f"`{name}`" not in docs)
    assert not missing, f"docs/report.md does not describe {missing}"


def test_the_illustrative_news_warning_is_not_shown_twice(holdings_doc):
    doc = with_contract_notes(holdings_doc)
    doc["report"]["warnings"].append(doc["report"]["news"]["note"])
    doc["status"] = "success"
    text = text_of(report.render_html(doc))
    assert text.count(doc["report"]["news"]["note"]) == 1
    assert "benchmark NOPE could not be priced" in text


def test_equal_weights_show_the_largest_contributors_and_detractors(universe_run):
    doc = document(universe_run)
    page = report.render_html(doc)
    table = page[page.index("<table class='positions'>") :]
    table = table[: table.index("</table>")]
    shown = re.findall(r"<tr><td>(U\d+)</td>", table)
    positions = sorted(
        doc["report"]["analytics"]["positions"], key=lambda p: -p["contribution_to_return"]
    )
    tickers = [p["ticker"] for p in positions]
    assert shown == tickers[:12] + tickers[-12:]
    assert f"{len(tickers) - 24} positions not shown" in table
    assert "largest contributors" in text_of(page)


def test_a_failed_run_renders_its_failures_and_no_charts(validator):
    failed = {
        "status": "failed",
        "report": {
            "timestamp": "2026-12-03T12:00:00+00:00",
            "execution_time_seconds": 0.5,
            "securities_analyzed": 0,
            "summary": {},
            "portfolio": {"error": "no ticker was priced, so there are no portfolio figures"},
            "timings": {"dask_setup": 0.4},
            "warnings": ["NOPE: pricing failed: not in the embedded data"],
        },
        "combined_analysis": [],
        "failed": [{"ticker": "NOPE", "stage": "pricing", "reason": "not in the embedded data"}],
    }
    doc = report.build_document(failed)
    validator.validate(json.loads(report.to_json(doc)))
    text = text_of(report.render_html(doc))
    assert "Failed: no ticker could be analysed" in text
    assert "no ticker was priced" in text and "not in the embedded data" in text
    assert "data-chart='" not in report.render_html(doc)


@pytest.mark.parametrize("holdings", [SAMPLE_HOLDINGS, None], ids=["holdings", "weights"])
def test_series_and_contributions_agree_with_the_figures_when_prices_have_holes(holdings):
    """A ticker missing a day and sessions missing from the data: the page's series come
    from the same valuation as the figures (they once dropped such days and disagreed)."""
    run = synthetic_run(
        list(SAMPLE_HOLDINGS),
        holdings,
        holes={"BBB": [40, 41, 200], "CCC": [120]},
        missing_sessions=[60, 61, 62, 250],
    )
    doc = document(run)
    portfolio = doc["report"]["portfolio"]
    series = doc["report"]["series"]["portfolio"]
    values = np.array(series["value"], dtype=float)
    assert values[-1] / values[0] - 1 == pytest.approx(portfolio["total_return"], abs=1e-5)
    assert -min(series["drawdown"]) == pytest.approx(portfolio["max_drawdown"], abs=1e-5)
    positions = doc["report"]["analytics"]["positions"]
    assert sum(p["contribution_to_return"] for p in positions) == pytest.approx(
        portfolio["total_return"], abs=1e-12
    )
    assert sum(p["contribution_to_risk"] for p in positions) == pytest.approx(1.0, abs=1e-12)
    # Rolling volatility counts only moves between consecutive sessions.
    assert sum(v is not None for v in series["rolling_volatility"]) == (
        portfolio["periods"] - series["rolling_window_days"] + 1
    )


def test_an_unpriced_benchmark_is_said_under_the_chart_with_its_reason():
    run = synthetic_run(list(SAMPLE_HOLDINGS), SAMPLE_HOLDINGS)
    run.result["report"]["portfolio"]["benchmark"] = "NOPE"
    run.result["report"]["portfolio"]["benchmark_error"] = "not in the embedded data"
    doc = document(run)
    reference = doc["report"]["analytics"]["reference"]
    assert reference["kind"] == "none" and doc["report"]["series"]["portfolio"]["reference"] is None
    text = text_of(report.render_html(doc))
    assert "Benchmark NOPE could not be priced over the portfolio's window (not in the" in text


def test_a_ticker_series_without_rsi_or_macd_gets_only_its_price_chart(holdings_doc):
    doc = json.loads(report.to_json(holdings_doc))
    first = next(iter(doc["report"]["series"]["tickers"].values()))
    for column in ("rsi_14", "macd", "macd_signal"):
        del first[column]
    ticker = next(iter(doc["report"]["series"]["tickers"]))
    charts = re.findall(r"data-chart='([^']+)'", report.render_html(doc))
    assert f"price:{ticker}" in charts
    assert f"rsi:{ticker}" not in charts and f"macd:{ticker}" not in charts


@pytest.mark.parametrize("holdings", [False, True])
def test_portfolio_figures_and_analytics_stay_within_a_panel_of_memory(monkeypatch, holdings):
    # Issue 19: at 10,000 tickers x 20 years one dates x tickers panel is 400 MB, and the
    # figures and analytics once built ~5 and ~7 panels of temporaries on top of the close
    # panel (the CLI's client peaked at 5.4 GiB). Per-position work goes block by block
    # of columns; with small blocks, the whole of choose_members, portfolio_figures and
    # portfolio_analytics must stay under one panel of Python/numpy allocations
    # (tracemalloc: deterministic, no timing). Measured: 0.63 panels (tickers) and 0.25
    # (holdings), all of it in choose_members; 8.3 and 9.3 panels before issue 19.
    rng = np.random.default_rng(19)
    dates = pd.bdate_range("2010-01-04", periods=2520)
    moves = rng.standard_normal((len(dates), 2000)) * 0.015 + 0.0003
    close = pd.DataFrame(
        30.0 * np.exp(np.cumsum(moves, axis=0)),
        index=dates,
        columns=[f"SYN{i:05d}" for i in range(2000)],
    )
    del moves
    panel = close.to_numpy().nbytes
    shares = {t: float(1 + i % 5) for i, t in enumerate(close.columns)} if holdings else None
    monkeypatch.setattr(portfolio, "BLOCK_BYTES", 2**20, raising=False)
    tracemalloc.start()
    try:
        chosen = portfolio.choose_members(close, holdings)
        figures = portfolio.portfolio_figures(
            close.loc[chosen.start : chosen.end, chosen.members],
            holdings=shares,
            max_correlation_tickers=30,
        )
        analytics, series = report.portfolio_analytics(close, figures, shares)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(analytics["positions"]) == 2000 and len(series["value"]) == 2520
    assert peak < 1.0 * panel, f"peak {peak / panel:.2f} panels"


def test_the_terminal_line_says_what_the_portfolio_figures_cover():
    result = {
        "report": {
            "portfolio": {
                "start": "2012-03-01", "end": "2013-03-01", "total_return": 0.1,
                "coverage": {"tickers_asked": 2, "tickers_used": 1, "returns": 250},
            }
        }
    }  # fmt: skip
    (line,) = report.portfolio_lines(result)
    covered = "Portfolio (1 of 2 tickers, 2012-03-01 to 2013-03-01, 250 daily returns)"
    assert line.startswith(covered)
