"""Batch worker functions: one bad ticker never takes its batch down."""

from __future__ import annotations

import logging
import socket
import time

import numpy as np
import pandas as pd
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


class _Frames:
    """A price source that answers with the frames it was given."""

    name = "frames"

    def __init__(self, frames: dict) -> None:
        self.frames = frames

    def fetch(self, tickers, start, end):
        return {t: self.frames[t] for t in tickers}


def _shapes() -> dict[str, pd.DataFrame]:
    """Frames in the shared shape already, nearly so, and not at all."""
    from datetime import date

    synthetic = embedded.synthetic_histories(["S1", "S2"], date(2024, 1, 1), date(2024, 6, 28))
    good = synthetic["S1"]  # nanosecond dates with a business-day freq, float64
    holes = good.copy()
    holes.iloc[5, 1] = np.nan  # one partial row: dropped and counted
    zero = good.copy()
    zero.iloc[3, 3] = 0.0  # a non-positive close: refused
    unsorted = good.iloc[::-1]
    timed = good.set_axis(good.index + pd.Timedelta(hours=9, minutes=30), axis=0)
    integers = good.astype({"volume": "int64"})
    upper = good.rename(columns=str.upper)
    return {
        "GOOD": good,
        "SHARED": synthetic["S2"],  # the same index object as GOOD
        "CACHED": good.set_axis(good.index.as_unit("us").rename("date"), axis=0),
        "SAMPLE": embedded.sample_histories()["AAPL"],
        "HOLES": holes,
        "ZERO": zero,
        "UNSORTED": unsorted,
        "TIMED": timed,
        "INTVOL": integers,
        "UPPER": upper,
        "NOVOL": good.drop(columns=["volume"]),
        "NANVOL": good.assign(volume=np.nan),
    }


def test_histories_in_shape_take_the_fast_checks_and_come_out_as_validate_ohlcv_makes_them():
    """fetch_histories accepts frames in the shared shape with numpy checks only (issue 19);
    every frame must still come out, or be refused, exactly as validate_ohlcv does it."""
    from portfolio_analysis.sources import fetch_histories
    from portfolio_analysis.validation import PriceDataError, validate_ohlcv_counting

    frames = _shapes()
    config = AnalysisConfig(min_history_days=30, lookback_days=3650, warmup_days=0)
    histories, failures = fetch_histories(list(frames), config, [_Frames(frames)])
    for ticker, frame in frames.items():
        try:
            expected, dropped = validate_ohlcv_counting(ticker, frame, min_rows=30)
        except PriceDataError as error:
            assert failures[ticker] == f"frames: {error.reason}"
            continue
        pd.testing.assert_frame_equal(histories[ticker].frame, expected)
        assert histories[ticker].dropped_rows == dropped
    assert set(failures) == {"ZERO"}


def test_a_batch_close_panel_spans_every_lookback_date_with_holes_as_nan() -> None:
    """Tickers with other dates and other lookback starts: the batch's close panel is the
    union of their lookback dates, each ticker NaN where it has no row (as one pandas
    alignment of their closes gives it), and each summary counts its own rows."""
    from datetime import date

    histories = embedded.synthetic_histories(["A", "B", "C"], date(2024, 1, 1), date(2024, 3, 29))
    b = histories["B"].iloc[10:-5]  # listed later, stopped earlier
    c = histories["C"].drop(histories["C"].index[[20, 21, 40]])  # missing sessions
    batch = workers.PriceBatch(
        histories={"A": histories["A"], "B": b, "C": c},
        sources=dict.fromkeys("ABC", "synthetic"),
        starts={"A": pd.Timestamp("2024-02-01"), "C": pd.Timestamp("2024-01-15")},
    )
    out = workers.price_batch_summary(batch)

    windows = {t: batch.window(t)["close"] for t in "ABC"}
    expected = pd.DataFrame(windows)
    pd.testing.assert_frame_equal(out.close, expected, check_freq=False)
    assert out.close.index[0] == b.index[0]  # B has no start: all its rows count
    for result in out.results:
        window = windows[result["ticker"]]
        assert result["price_data"] == {
            "close": window.iloc[-1],
            "start": window.index[0].date().isoformat(),
            "end": window.index[-1].date().isoformat(),
            "days": len(window),
        }
