"""The reference guide's aggregation step: gathered per-ticker results -> frames -> flow reports.

Plain functions, so these tests need neither Dask nor Prefect.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from portfolio_analysis import aggregate, pipeline, workers
from portfolio_analysis.sentiment import Article, score_headlines, summarize_sentiment


def _price(ticker: str, close: float, source: str = "embedded") -> dict:
    return {
        "ticker": ticker,
        "price_data": {"close": close, "start": "2012-01-03", "end": "2012-12-31", "days": 250},
        "source": source,
    }


def _tech(ticker: str, rsi: float, sma: float) -> dict:
    return {"ticker": ticker, "summary": {"rsi_14": rsi, "sma_20": sma, "bollinger_upper": sma + 5}}


def _news(ticker: str, sentiment: float | None, count: int) -> dict:
    return {
        "ticker": ticker,
        "article_count": count,
        "avg_sentiment": sentiment,
        "articles": [{"title": "x", "score": 0.1}] * count,
    }


def test_none_results_and_junk_are_skipped_like_the_reference_guide_says() -> None:
    frame = aggregate.aggregate_pricing_results(
        [_price("AAPL", 150.5), None, {"no": "ticker"}, _price("MSFT", 380.0), None]
    )
    assert list(frame["ticker"]) == ["AAPL", "MSFT"]
    assert list(frame.columns[:3]) == ["ticker", "source", "close"]
    assert frame.loc[frame.ticker == "MSFT", "close"].item() == 380.0


def test_duplicate_ticker_results_keep_the_first() -> None:
    frame = aggregate.aggregate_technical_results(
        [_tech("AAPL", 60.0, 150.0), _tech("AAPL", 10.0, 1.0)]
    )
    assert len(frame) == 1
    assert frame["rsi_14"].item() == 60.0


def test_news_aggregation_drops_the_article_list() -> None:
    frame = aggregate.aggregate_news_results([_news("AAPL", 0.2, 3)])
    assert "articles" not in frame.columns
    assert frame.iloc[0].to_dict() == {"ticker": "AAPL", "article_count": 3, "avg_sentiment": 0.2}


def test_empty_inputs_give_empty_frames_with_the_key_column() -> None:
    for frame in (
        aggregate.aggregate_pricing_results([]),
        aggregate.aggregate_technical_results([None]),
        aggregate.aggregate_news_results([]),
    ):
        assert frame.empty
        assert "ticker" in frame.columns


def test_combine_joins_per_ticker_in_requested_order_and_prices_decide_membership() -> None:
    pricing = aggregate.aggregate_pricing_results([_price("MSFT", 380.0), _price("AAPL", 150.0)])
    technicals = aggregate.aggregate_technical_results([_tech("AAPL", 70.0, 148.0)])
    # NEWSONLY has headlines but no price: not an analysed security.
    news = aggregate.aggregate_news_results([_news("MSFT", -0.1, 2), _news("NEWSONLY", 0.5, 1)])
    combined = aggregate.combine_analysis(pricing, technicals, news, ["AAPL", "MSFT"])
    assert list(combined["ticker"]) == ["AAPL", "MSFT"]
    aapl, msft = combined.to_dict(orient="records")
    assert aapl["rsi_14"] == 70.0 and aapl["close"] == 150.0
    assert math.isnan(aapl["avg_sentiment"])
    assert msft["avg_sentiment"] == -0.1 and math.isnan(msft["rsi_14"])


def test_with_no_ticker_priced_headlines_alone_do_not_make_a_security_analysed() -> None:
    combined = aggregate.combine_analysis(
        aggregate.aggregate_pricing_results([None, None]),
        aggregate.aggregate_technical_results([]),
        aggregate.aggregate_news_results([_news("NOPE", 0.0, 0)]),
    )
    assert combined.empty
    # Without a price stage, news decides.
    news_only = aggregate.combine_analysis(
        None, None, aggregate.aggregate_news_results([_news("AAPL", 0.4, 2)])
    )
    assert list(news_only["ticker"]) == ["AAPL"]


def test_comprehensive_summary_averages_and_counts_sentiment() -> None:
    combined = pd.DataFrame(
        {
            "ticker": ["A", "B", "C", "D"],
            "rsi_14": [60.0, 40.0, np.nan, 50.0],
            "sma_20": [10.0, 20.0, 30.0, 40.0],
            "avg_sentiment": [0.3, -0.2, 0.01, np.nan],
        }
    )
    summary = aggregate.summarize_combined(combined)
    assert summary["avg_rsi"] == pytest.approx(50.0)
    assert summary["avg_sma_20"] == pytest.approx(25.0)
    assert summary["avg_news_sentiment"] == pytest.approx((0.3 - 0.2 + 0.01) / 3)
    assert summary["securities_with_positive_sentiment"] == 1
    assert summary["securities_with_negative_sentiment"] == 1


def test_status_is_partial_with_some_failures_and_failed_with_no_result() -> None:
    failure = [{"ticker": "XXXX", "stage": "pricing", "reason": "embedded: unknown ticker"}]
    pricing = aggregate.aggregate_pricing_results([_price("AAPL", 1.0)])
    assert aggregate.pricing_report(pricing)["status"] == "success"
    partial = aggregate.pricing_report(pricing, failure)
    assert partial["status"] == "partial"
    assert partial["failed"] == failure
    nothing = aggregate.pricing_report(aggregate.aggregate_pricing_results([]), failure)
    assert nothing["status"] == "failed"
    assert nothing["securities_fetched"] == 0


def test_reference_guide_shapes_of_the_three_stage_reports() -> None:
    pricing = aggregate.pricing_report(
        aggregate.aggregate_pricing_results([_price("AAPL", 150.5), _price("MSFT", 380.0, "stooq")])
    )
    assert pricing["securities_fetched"] == 2
    assert pricing["prices"] == {"AAPL": 150.5, "MSFT": 380.0}
    assert pricing["sources"] == {"AAPL": "embedded", "MSFT": "stooq"}

    technical = aggregate.technical_report(
        aggregate.aggregate_technical_results([_tech("AAPL", 65.2, 150.5)])
    )
    assert technical["securities_analyzed"] == 1
    assert technical["technical_summary"] == [
        {"ticker": "AAPL", "rsi_14": 65.2, "sma_20": 150.5, "bollinger_upper": 155.5}
    ]

    news = aggregate.news_report(
        aggregate.aggregate_news_results(
            [_news("AAPL", 0.2, 5), _news("MSFT", -0.1, 7), _news("IBM", None, 0)]
        )
    )
    assert news["total_articles"] == 12
    assert news["securities_with_news"] == 2
    assert news["sentiment_by_ticker"] == {"AAPL": 0.2, "MSFT": -0.1, "IBM": None}
    assert (news["positive_sentiment"], news["negative_sentiment"]) == (1, 1)
    for result in (pricing, technical, news):
        assert result["status"] == "success"
        assert result["timestamp"].endswith("+00:00")


def test_comprehensive_report_is_strict_json_with_nan_as_null() -> None:
    combined = aggregate.combine_analysis(
        aggregate.aggregate_pricing_results([_price("AAPL", 150.0)]),
        aggregate.aggregate_technical_results([_tech("AAPL", float("nan"), 149.0)]),
        aggregate.aggregate_news_results([]),
    )
    result = aggregate.comprehensive_report(
        combined,
        failed=[{"ticker": "ZZZ", "stage": "news", "reason": "no source"}],
        execution_time_seconds=np.float64(1.23456),
        timings={"pricing": 0.5},
        portfolio={"total_return": np.float64(0.1), "beta": np.nan},
        extra={"workers": np.int64(2)},
    )
    text = json.dumps(result, allow_nan=False)  # raises on NaN/inf
    back = json.loads(text)
    assert back["status"] == "partial"
    assert back["report"]["securities_analyzed"] == 1
    assert back["report"]["portfolio"] == {"total_return": 0.1, "beta": None}
    assert back["report"]["workers"] == 2
    assert back["combined_analysis"][0]["rsi_14"] is None
    assert back["report"]["summary"]["avg_rsi"] is None


# --- report["news"]: each ticker's headlines, labelled when they are invented --------------


def _real_news(ticker: str, titles: list[str]) -> dict:
    """A ticker's news result as a live source (RSS) gives it."""
    articles = [Article(title, datetime(2024, 3, 1, tzinfo=UTC), "rss") for title in titles]
    return summarize_sentiment(ticker, articles, now=datetime(2024, 3, 2, tzinfo=UTC))


def test_news_section_lists_headlines_with_score_and_source_and_says_which_are_invented() -> None:
    (sample,) = workers.news_batch(["AAPL"]).results  # the embedded, invented headlines
    live = _real_news("MSFT", ["Microsoft shares jump", "Microsoft to hold investor day"])
    section = aggregate.news_section([sample, live, None])

    assert section["illustrative"] is True
    assert "AAPL" in section["note"] and "MSFT" not in section["note"]
    assert "not real news" in section["note"]
    assert section["headlines"]["MSFT"] == [
        {"title": t, "score": s, "source": "rss", "illustrative": False}
        for t, s in zip(
            ["Microsoft shares jump", "Microsoft to hold investor day"],
            score_headlines(["Microsoft shares jump", "Microsoft to hold investor day"]),
            strict=True,
        )
    ]
    aapl = section["headlines"]["AAPL"]
    assert len(aapl) == sample["article_count"]
    assert [h["score"] for h in aapl] == score_headlines([h["title"] for h in aapl])
    assert all(h["illustrative"] and h["source"] == "embedded" for h in aapl)
    json.dumps(section, allow_nan=False)

    only_live = aggregate.news_section([live])
    assert only_live["illustrative"] is False and only_live["note"] is None


def test_news_flow_result_and_combined_rows_say_when_headlines_are_invented() -> None:
    results = workers.news_batch(["AAPL"]).results + [_real_news("MSFT", ["Microsoft slips"])]
    frame = aggregate.aggregate_news_results(results)
    assert dict(zip(frame["ticker"], frame["news_illustrative"], strict=True)) == {
        "AAPL": True,
        "MSFT": False,
    }
    report = aggregate.news_report(frame)
    assert report["illustrative"] is True and "AAPL" in report["note"]
    assert report["sentiment_by_ticker"].keys() == {"AAPL", "MSFT"}  # the guide's keys stay


def test_the_run_report_carries_the_news_section() -> None:
    gathered = pipeline.StageResults(
        tickers=["AAPL", "SPY"], news=workers.news_batch(["AAPL", "SPY"]).results
    )
    result = pipeline.assemble_report(
        gathered, ["AAPL"], None, pipeline.RunOptions(analyses=("news",)), started=0.0
    )
    # The benchmark's (SPY's) headlines are not the portfolio's.
    assert result["report"]["news"] == aggregate.news_section(gathered.news[:1])
    assert result["report"]["news"]["illustrative"] is True
    assert result["combined_analysis"][0]["news_illustrative"] is True
