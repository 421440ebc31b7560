"""Batch worker functions: one bad ticker never takes its batch down."""

from __future__ import annotations

import logging
import socket
import time

from portfolio_analysis import embedded, workers
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.network import forget_unreachable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_broken_history_fails_alone_and_the_rest_of_the_batch_is_analysed() -> None:
    batch = workers.fetch_price_batch(["AAPL", "MSFT", "IBM"])
    assert set(batch.histories) == {"AAPL", "MSFT", "IBM"}
    batch.histories["MSFT"] = batch.histories["MSFT"].drop(columns=["high"])  # unusable
    out = workers.technicals_batch(batch, series_tickers=["AAPL", "MSFT"], series_days=60)
    assert [r["ticker"] for r in out.results] == ["AAPL", "IBM"]
    (failure,) = out.failed
    assert failure["ticker"] == "MSFT" and failure["stage"] == "technicals"
    assert "high" in failure["reason"]
    assert list(out.series) == ["AAPL"] and len(out.series["AAPL"]) == 60
    assert 0 <= out.results[0]["summary"]["rsi_14"] <= 100


def test_price_batch_reports_unknown_tickers_and_keeps_the_others() -> None:
    batch = workers.fetch_price_batch(["AAPL", "NOPE"])
    summary = workers.price_batch_summary(batch)
    assert [r["ticker"] for r in summary.results] == ["AAPL"]
    assert summary.results[0]["source"] == "embedded"
    assert list(summary.close.columns) == ["AAPL"]
    assert summary.failed == [
        {"ticker": "NOPE", "stage": "pricing", "reason": batch.failed[0]["reason"]}
    ]
    expected = embedded.sample_histories()["AAPL"]["close"].iloc[-1]
    assert summary.results[0]["price_data"]["close"] == expected


def test_news_batch_turns_an_unreachable_news_source_into_error_records() -> None:
    config = AnalysisConfig(
        news_sources=("rss",),
        rss_url_template=f"http://127.0.0.1:{_closed_port()}/rss?s={{ticker}}",
        max_retries=0,
        timeout_seconds=2,
    )
    out = workers.news_batch(["AAPL", "MSFT"], config)
    assert out.results == []
    assert [(f["ticker"], f["stage"]) for f in out.failed] == [("AAPL", "news"), ("MSFT", "news")]
    assert all("rss" in f["reason"] for f in out.failed)
    # The reference guide's one-ticker API answers None instead of raising.
    assert workers.fetch_news_for_ticker("AAPL", config) is None
    assert workers.fetch_news_for_ticker("") is None


def test_embedded_news_is_labelled_illustrative_with_each_headline_sourced() -> None:
    """The embedded headlines are invented: each result and each headline says so, and a
    ticker without hand-written sample headlines says its headlines come from templates."""
    out = workers.news_batch(["AAPL", "XOM"])  # XOM has no hand-written sample headlines
    aapl, xom = out.results
    for result in (aapl, xom):
        # The reference guide's news shape is kept; the labels are added keys.
        assert {"ticker", "article_count", "avg_sentiment", "articles"} <= set(result)
        assert result["illustrative"] is True
        assert all(a["illustrative"] and a["source"] == "embedded" for a in result["articles"])
        assert all("not real news" in a["publisher"] for a in result["articles"])
    assert all("template" in a["publisher"] for a in xom["articles"])
    assert not any("template" in a["publisher"] for a in aapl["articles"])
    assert workers.fetch_news_for_ticker("AAPL")["illustrative"] is True


def test_news_batch_offline_reports_each_ticker_but_logs_the_source_once(caplog) -> None:
    """A name that does not resolve (name.invalid, RFC 2606) fails every ticker of the batch
    at once: one log line for the source, no retries (a 4-retry backoff would take seconds)."""
    forget_unreachable()
    config = AnalysisConfig(
        news_sources=("rss",),
        rss_url_template="http://name.invalid/rss?s={ticker}",
        max_retries=4,
        backoff_base_seconds=1.0,
    )
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING):
            out = workers.news_batch(["AAPL", "MSFT", "IBM"], config)
    finally:
        forget_unreachable()
    assert time.monotonic() - started < 1.0
    assert [f["ticker"] for f in out.failed] == ["AAPL", "MSFT", "IBM"]
    assert all("DNS lookup of name.invalid failed" in f["reason"] for f in out.failed)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].startswith("news source rss (name.invalid)")
