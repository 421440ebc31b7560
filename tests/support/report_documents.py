"""Report runs built without Dask, from the deterministic synthetic prices, for report tests.

``synthetic_run`` gives the same ``AnalysisRun`` shape the pipeline returns (result dict,
close panel, indicator series, holdings), with the pipeline's own aggregation, so the
report code sees what it sees after a real run. ``with_contract_notes`` adds every fact of
the helpers' JSON contract (coverage, data notes, news, warnings, partial status).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import date

import numpy as np
import pandas as pd
from portfolio_analysis import aggregate, embedded, technicals
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.pipeline import AnalysisRun, StageResults, portfolio_section
from portfolio_analysis.workers import SERIES_COLUMNS


def synthetic_run(
    tickers: Sequence[str],
    holdings: Mapping[str, float] | None = None,
    *,
    benchmark: str | None = None,
    start: date = date(2021, 1, 4),
    end: date = date(2022, 6, 30),
    chart_tickers: int = 3,
    sentiment: Mapping[str, float] | None = None,
    holes: Mapping[str, Sequence[int]] | None = None,
    missing_sessions: Sequence[int] = (),
) -> AnalysisRun:
    """A finished run over synthetic prices (``benchmark`` priced too, as the pipeline does).

    ``holes``: ticker -> row numbers where its close is missing; ``missing_sessions``: rows
    dropped for every ticker (sessions the data set does not have)."""
    tickers = list(tickers)
    fetched = tickers + ([benchmark] if benchmark and benchmark not in tickers else [])
    histories = embedded.synthetic_histories(fetched, start, end)
    panel = technicals.build_panel(histories)
    indicators = technicals.compute_indicators(panel)
    summary = technicals.summarize(panel, indicators).reset_index()
    rows = []
    for record in summary.to_dict("records"):
        if record["ticker"] not in tickers:
            continue
        record["source"] = "synthetic"
        score = (sentiment or {}).get(record["ticker"])
        record["avg_sentiment"] = score
        record["article_count"] = 4 if score is not None else 0
        rows.append(record)
    combined = pd.DataFrame(rows)
    config = AnalysisConfig(price_sources=("synthetic",), benchmark=benchmark)
    close = panel["close"].copy()
    for ticker, rows_missing in (holes or {}).items():
        close.iloc[list(rows_missing), close.columns.get_loc(ticker)] = np.nan
    close = close.drop(close.index[list(missing_sessions)])
    portfolio = portfolio_section(close, tickers, holdings, config)
    series = {
        t: pd.DataFrame({c: {**indicators, "close": panel["close"]}[c][t] for c in SERIES_COLUMNS})
        .dropna(subset=["close"])
        .tail(260)
        for t in tickers[:chart_tickers]
    }
    result = aggregate.comprehensive_report(
        combined,
        failed=[],
        execution_time_seconds=1.5,
        timings={"dask_setup": 0.5, "pricing": 0.7, "technicals": 0.8, "news": 0.3},
        portfolio=portfolio,
        extra={
            "tickers": tickers,
            "workers": 2,
            "batches": 1,
            "price_sources": ["synthetic"],
            "news_sources": ["embedded"],
        },
    )
    stages = StageResults(tickers=fetched)
    return AnalysisRun(result, close, series, dict(holdings) if holdings else None, stages)


def with_contract_notes(result: Mapping) -> dict:
    """``result`` with every fact of the helpers' JSON contract filled in, as partial."""
    result = copy.deepcopy(dict(result))
    report = result["report"]
    tickers = report["portfolio"]["tickers"]
    report["portfolio"]["coverage"] = {
        "tickers_asked": len(tickers) + 1,
        "tickers_used": len(tickers),
        "start": report["portfolio"]["start"],
        "end": report["portfolio"]["end"],
        "returns": report["portfolio"]["periods"],
        "rule": "The window with the most tickers priced on every trading day; gaps are "
        "never bridged.",
        "excluded": {"ZZZZ": "no prices after 2021-03-01"},
    }
    report["data_notes"] = {
        "price_fallbacks": {tickers[0]: {"yahoo": "offline: DNS lookup failed"}},
        "dropped_rows": {tickers[1]: {"rows": 3, "reason": "close was NaN"}},
        "adjustments": [
            {"ticker": tickers[0], "date": "2021-06-01", "ratio": 4.0, "kind": "split"}
        ],
        "windows": {
            "lookback_days": 365,
            "warmup_days": 200,
            "rule": "Indicators warm up on 200 extra days; only the lookback is shown.",
        },
    }
    report["news"] = {
        "illustrative": True,
        "note": "The embedded headlines are invented sample data, not news.",
        "headlines": {
            tickers[0]: [
                {
                    "title": f"{tickers[0]} beats <estimates>",
                    "score": 0.42,
                    "source": "embedded",
                    "illustrative": True,
                },
                {
                    "title": f"{tickers[0]} cuts guidance",
                    "score": -0.3,
                    "source": "embedded",
                    "illustrative": True,
                },
            ]
        },
    }
    report["warnings"] = [
        "ZZZZ: no prices after 2021-03-01, left out of the portfolio",
        "benchmark NOPE could not be priced",
    ]
    result["status"] = "partial"
    result["failed"] = [{"ticker": "ZZZZ", "stage": "pricing", "reason": "not in the data set"}]
    return result


def spread_sentiment(tickers: Sequence[str], seed: int = 1) -> dict[str, float]:
    """Sentiment scores from -0.9 to 0.9 in a shuffled order (both signs, many of each)."""
    values = np.linspace(-0.9, 0.9, len(tickers))
    np.random.default_rng(seed).shuffle(values)
    return {t: float(v) for t, v in zip(tickers, values, strict=True)}
