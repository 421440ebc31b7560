"""Price sources against local 127.0.0.1 servers speaking Yahoo's and Stooq's real formats.

yfinance 1.7 runs unmodified: its requests (cookie from fc.yahoo.com, crumb, the v8 chart
endpoint) go through a real curl_cffi session that tests/support/local_yahoo.py routes to the
local server. Backoff is 10 ms and the rate limit 1000/s so the suite stays fast; the rate
limit itself is tested in test_ratelimit.py.
"""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from portfolio_analysis import embedded
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.ratelimit import LocalRateLimiter
from portfolio_analysis.sources import (
    SyntheticSource,
    YFinanceSource,
    describe_yahoo_failure,
    fetch_histories,
    make_sources,
    stooq_symbol,
)
from portfolio_analysis.sources.symbols import yahoo_symbol
from portfolio_analysis.sources.yahoo import _capture_yfinance_log, _instrument, _YahooResponses
from portfolio_analysis.workers import fetch_price_batch, fetch_price_from_multiple_sources

from tests.support.local_http import LocalHTTPServer, Reply, Request
from tests.support.local_yahoo import chart_route, local_yahoo, offline_session

pytestmark = pytest.mark.network_sim

START, END = date(2024, 1, 2), date(2024, 4, 30)
DNS_REASON = "cannot reach Yahoo Finance: DNS lookup failed (no network, or a proxy is needed)"


def ohlcv(seed: int = 0, start: str = "2023-12-01", days: int = 120) -> pd.DataFrame:
    """A realistic daily OHLCV frame (business days), float64, index named date."""
    index = pd.bdate_range(start, periods=days, name="date")
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.015, days)))
    spread = np.abs(rng.normal(0, 0.01, days)) + 0.002
    return pd.DataFrame(
        {
            "open": close * (1 + rng.normal(0, 0.003, days)),
            "high": close * (1 + spread),
            "low": close * (1 - spread),
            "close": close,
            "volume": rng.integers(1_000_000, 5_000_000, days).astype(float),
        },
        index=index,
    )


def config(tmp_path: Path, *sources: str, **changes: object) -> AnalysisConfig:
    settings = {
        "price_sources": sources,
        "start": START,
        "end": END,
        "cache_dir": tmp_path / "cache",
        "use_cache": False,
        "backoff_base_seconds": 0.01,
        "max_retries": 2,
        "timeout_seconds": 2.0,
        "requests_per_second": 1000.0,
        "min_history_days": 20,
        "warmup_days": 0,  # the indicators' warm-up has its own test
    }
    return AnalysisConfig(**{**settings, **changes})


def in_range(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[pd.Timestamp(START) : pd.Timestamp(END)]


def yahoo_source(cfg: AnalysisConfig, session) -> YFinanceSource:
    return YFinanceSource(cfg, session_factory=lambda: session)


def chart_requests(server: LocalHTTPServer, ticker: str) -> list[Request]:
    return server.requests_to(rf"^/v8/finance/chart/{ticker}$")


def flaky(first: list[Reply], then) -> callable:
    """A route answering ``first`` in order, then ``then(request)`` for ever."""
    served = {"n": 0}

    def answer(request: Request) -> Reply:
        served["n"] += 1
        return first[served["n"] - 1] if served["n"] <= len(first) else then(request)

    return answer


# --- Stooq's format ------------------------------------------------------------------------


def stooq_csv(frame: pd.DataFrame) -> str:
    """Stooq's daily CSV: ``Date,Open,High,Low,Close,Volume``, ISO dates, oldest first."""
    out = frame.rename(columns=str.capitalize).rename_axis("Date").reset_index()
    out["Date"] = out["Date"].dt.strftime("%Y-%m-%d")
    out["Volume"] = out["Volume"].astype(int)
    return out.to_csv(index=False, float_format="%.4f", lineterminator="\n")


def stooq_route(histories: dict[str, pd.DataFrame]):
    """``/q/d/l/?s=aapl.us&i=d&d1=YYYYMMDD&d2=YYYYMMDD`` like Stooq: CSV, or ``No data``."""
    by_symbol = {stooq_symbol(t): f for t, f in histories.items()}

    def answer(request: Request) -> Reply:
        frame = by_symbol.get(request.query.get("s", ""))
        if frame is None or request.query.get("i") != "d":
            return Reply.text("No data", content_type="text/plain")
        first = pd.Timestamp(request.query["d1"])
        last = pd.Timestamp(request.query["d2"])
        rows = frame.loc[first:last]
        if rows.empty:
            return Reply.text("No data")
        return Reply(
            200,
            stooq_csv(rows),
            {"Content-Type": "text/csv", "Content-Disposition": "attachment;filename=x.csv"},
        )

    return answer


@pytest.fixture
def stooq():
    with LocalHTTPServer() as server:
        yield server


def stooq_config(tmp_path: Path, server: LocalHTTPServer, *sources: str, **changes: object):
    return config(tmp_path, *(sources or ("stooq",)), stooq_url=f"{server.url}/q/d/l/", **changes)


# --- yfinance ------------------------------------------------------------------------------


def test_yfinance_batch_download_serves_adjusted_prices_and_names_the_source(tmp_path):
    aapl, msft = ohlcv(1), ohlcv(2)
    # A 4:1 split-like adjustment: yfinance's auto_adjust scales OHLC by adjclose/close.
    adj = aapl["close"] / 4
    cfg = config(tmp_path, "yfinance")
    with local_yahoo(tmp_path) as (server, session):
        server.route("/v8/finance/chart/", chart_route({"AAPL": aapl, "MSFT": msft}, {"AAPL": adj}))
        histories, failures = fetch_histories(["AAPL", "msft"], cfg, [yahoo_source(cfg, session)])

    assert failures == {}
    assert {t: h.source for t, h in histories.items()} == {"AAPL": "yfinance", "MSFT": "yfinance"}
    got = histories["AAPL"].frame
    expected = in_range(aapl)
    assert list(got.index) == list(expected.index)
    np.testing.assert_allclose(got["close"], expected["close"] / 4, rtol=1e-6)
    np.testing.assert_allclose(got["open"], expected["open"] / 4, rtol=1e-6)
    np.testing.assert_allclose(histories["MSFT"].frame["close"], in_range(msft)["close"], rtol=1e-6)
    # It asked like yfinance asks Yahoo: cookie, crumb, then the chart with the range.
    assert server.count(r"^/v1/test/getcrumb$") >= 1
    (request,) = [r for r in chart_requests(server, "AAPL") if "period1" in r.query]
    assert request.original_host == "query2.finance.yahoo.com"
    assert request.query["interval"] == "1d"
    assert request.query["crumb"] == "tEsTcRuMb.1"
    assert pd.Timestamp(int(request.query["period1"]), unit="s").date() == START


def test_yahoo_is_asked_for_share_classes_with_a_dash_and_answers_under_the_given_spelling(
    tmp_path,
):
    brk = ohlcv(5)
    cfg = config(tmp_path, "yfinance")
    with local_yahoo(tmp_path) as (server, session):
        # Yahoo knows only BRK-B: asked for BRK.B it answers 404 ("possibly delisted").
        server.route("/v8/finance/chart/", chart_route({"BRK-B": brk}))
        histories, failures = fetch_histories(["BRK.B", "BRK-B"], cfg, [yahoo_source(cfg, session)])

    assert failures == {}
    assert set(histories) == {"BRK.B", "BRK-B"}
    for history in histories.values():
        np.testing.assert_allclose(history.frame["close"], in_range(brk)["close"], rtol=1e-6)
    assert server.requests_to(r"^/v8/finance/chart/BRK\.B$") == []


def test_unknown_ticker_is_reported_once_as_unknown_without_retries(tmp_path):
    cfg = config(tmp_path, "yfinance", max_retries=3)
    with local_yahoo(tmp_path) as (server, session):
        server.route("/v8/finance/chart/", chart_route({"AAPL": ohlcv()}))
        histories, failures = fetch_histories(["AAPL", "ZZZZ"], cfg, [yahoo_source(cfg, session)])
        probes = len(chart_requests(server, "ZZZZ"))

    assert list(histories) == ["AAPL"]
    assert failures == {"ZZZZ": "yfinance: no data (unknown or delisted ticker)"}
    # One download attempt: yfinance's timezone probe and its own retry with the other
    # cookie strategy. Three retries of ours would have made it 8.
    assert probes <= 2


def test_offline_download_is_a_clear_dns_error_for_every_ticker(tmp_path):
    cfg = config(tmp_path, "yfinance")
    with local_yahoo(tmp_path) as (server, _):
        session = offline_session(server)
        histories, failures = fetch_histories(["AAPL", "MSFT"], cfg, [yahoo_source(cfg, session)])
        assert server.count(r"^/v8/") == 0

    assert histories == {}
    assert failures == {"AAPL": f"yfinance: {DNS_REASON}", "MSFT": f"yfinance: {DNS_REASON}"}


def test_offline_ticker_history_possibly_delisted_gets_the_same_dns_error(tmp_path, caplog):
    """``Ticker.history`` offline returns an empty frame and logs "possibly delisted"."""
    import yfinance as yf

    responses = _YahooResponses()
    with local_yahoo(tmp_path) as (server, _):
        session = _instrument(offline_session(server), LocalRateLimiter(1000), responses, 2.0)
        with _capture_yfinance_log() as yahoo_log:
            frame = yf.Ticker("AAPL", session=session).history(start="2024-01-02", end="2024-02-01")

    assert frame.empty
    message = next(m for m in yahoo_log.messages if "possibly delisted" in m)
    error = describe_yahoo_failure(
        responses.status("AAPL"), message, 2.0, responses.error("AAPL") or responses.transport_error
    )
    assert str(error) == DNS_REASON
    # Without the session's record it would have been taken for an unknown ticker; with
    # an answer from Yahoo (404) it is one.
    assert "unknown" in str(describe_yahoo_failure(404, message, 2.0))


def test_429_with_retry_after_is_waited_out_then_retried(tmp_path):
    ok = chart_route({"AAPL": ohlcv()})
    limited = Reply(429, "Too Many Requests", {"Retry-After": "1"})
    cfg = config(tmp_path, "yfinance")
    with local_yahoo(tmp_path) as (server, session):
        # yfinance retries a >= 400 answer once itself, then raises its rate-limit error.
        server.route("/v8/finance/chart/", flaky([limited, limited], ok))
        histories, failures = fetch_histories(["AAPL"], cfg, [yahoo_source(cfg, session)])
        times = [r.time for r in chart_requests(server, "AAPL")]

    assert failures == {}
    assert histories["AAPL"].source == "yfinance"
    assert len(times) == 4  # two 429s, then the timezone probe and the history
    assert times[2] - times[1] >= 0.95  # Retry-After: 1, not the 10 ms backoff


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (Reply(500, "<html>Internal Server Error</html>"), "Yahoo server error (HTTP 500)"),
        (Reply(503, ""), "Yahoo server error (HTTP 503)"),
        (Reply.text("{not json", content_type="application/json"), "malformed answer from Yahoo"),
        (Reply.text("<html>Will be right back...</html>", content_type="text/html"), "malformed"),
        (Reply.json({"chart": {"result": None, "error": None}}, delay=2.0), "did not answer"),
        (Reply(drop=True), "closed the connection without an answer (curl: (52)"),
    ],
    ids=["500", "503", "malformed-json", "html-page", "timeout", "reset"],
)
def test_transient_yahoo_failures_retry_then_fall_back_with_the_reason(tmp_path, failure, expected):
    cfg = config(tmp_path, "yfinance", "synthetic", max_retries=1, timeout_seconds=1.0)
    with local_yahoo(tmp_path) as (server, session):
        server.route("/v8/finance/chart/", failure)
        sources = [yahoo_source(cfg, session), SyntheticSource(cfg)]
        histories, failures = fetch_histories(["AAPL"], cfg, sources)
        attempts = len([r for r in chart_requests(server, "AAPL") if "period1" not in r.query])

    assert failures == {}
    history = histories["AAPL"]
    assert history.source == "synthetic"
    (reason,) = history.fallback_reasons
    assert reason.startswith("yfinance: ") and expected in reason
    assert reason.endswith("(gave up after 2 attempts)")
    assert attempts >= 2  # retried: each attempt starts with a timezone probe


@pytest.mark.parametrize(
    "failure",
    [
        Reply(500, "oops"),
        Reply.text("{not json"),
        Reply.json({}, delay=3.0),
    ],
    ids=["500", "malformed", "timeout"],
)
def test_transient_yahoo_failure_then_success_is_served_by_yahoo(tmp_path, failure):
    # 1.5 s: the good answers must still come in time on a loaded machine.
    cfg = config(tmp_path, "yfinance", "embedded", timeout_seconds=1.5)
    ok = chart_route({"AAPL": ohlcv()})
    with local_yahoo(tmp_path) as (server, session):
        server.route("/v8/finance/chart/", flaky([failure, failure], ok))
        histories, failures = fetch_histories(["AAPL"], cfg, [yahoo_source(cfg, session)])

    assert failures == {}
    assert histories["AAPL"].source == "yfinance"
    assert histories["AAPL"].fallback_reasons == ()


# --- Stooq ---------------------------------------------------------------------------------


def test_stooq_csv_is_parsed_into_the_shared_shape(tmp_path, stooq):
    aapl = ohlcv(3)
    stooq.route("/q/d/l/", stooq_route({"AAPL": aapl, "BRK.B": ohlcv(4)}))
    cfg = stooq_config(tmp_path, stooq)
    histories, failures = fetch_histories(["AAPL", "BRK.B"], cfg)

    assert failures == {}
    assert {t: h.source for t, h in histories.items()} == {"AAPL": "stooq", "BRK.B": "stooq"}
    frame = histories["AAPL"].frame
    pd.testing.assert_index_equal(frame.index, in_range(aapl).index)
    np.testing.assert_allclose(frame["close"], in_range(aapl)["close"], atol=5e-5)
    assert frame.dtypes.eq(np.float64).all()
    queries = [r.query for r in stooq.requests]
    assert {q["s"] for q in queries} == {"aapl.us", "brk-b.us"}
    assert all(q["i"] == "d" and q["d1"] == "20240102" and q["d2"] == "20240430" for q in queries)
    assert all("apikey" not in q for q in queries)


def test_stooq_api_key_is_sent_when_configured(tmp_path, stooq):
    stooq.route("/q/d/l/", stooq_route({"AAPL": ohlcv()}))
    fetch_histories(["AAPL"], stooq_config(tmp_path, stooq, stooq_api_key="k3y"))
    assert [r.query.get("apikey") for r in stooq.requests] == ["k3y"]


def test_stooq_unknown_ticker_is_not_retried(tmp_path, stooq):
    stooq.route("/q/d/l/", stooq_route({}))
    histories, failures = fetch_histories(["ZZZZ"], stooq_config(tmp_path, stooq, max_retries=3))
    assert histories == {}
    assert failures == {
        "ZZZZ": "stooq: no data (unknown ticker or no rows in the date range)",
    }
    assert stooq.count() == 1


def test_stooq_429_retry_after_pauses_the_shared_limit(tmp_path, stooq):
    ok = stooq_route({"AAPL": ohlcv(), "MSFT": ohlcv(5)})
    limited = Reply(429, "Too Many Requests", {"Retry-After": "1"})
    stooq.route("/q/d/l/", flaky([limited], ok))
    histories, failures = fetch_histories(["AAPL", "MSFT"], stooq_config(tmp_path, stooq))

    assert failures == {}
    assert {h.source for h in histories.values()} == {"stooq"}
    times = [r.time for r in stooq.requests]
    symbols = [r.query["s"] for r in stooq.requests]
    assert symbols == ["aapl.us", "msft.us", "aapl.us"]
    # MSFT's request, the next one after the 429, waited for Retry-After as well.
    assert times[1] - times[0] >= 0.95


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (Reply(500, "Internal Server Error"), "Stooq server error (HTTP 500)"),
        (Reply(502, "Bad Gateway"), "Stooq server error (HTTP 502)"),
        (Reply.text("Date;Zamkniecie\n2024-01-02;1"), "malformed answer from Stooq"),
        (Reply.text("<?xml version='1.0'?><error/>"), "malformed answer from Stooq"),
        (Reply.text("Date,Open,High,Low,Close,Volume\n", delay=2.0), "did not answer within 1 s"),
        (Reply(drop=True), "Stooq closed the connection"),
    ],
    ids=["500", "502", "wrong-csv", "xml", "timeout", "reset"],
)
def test_transient_stooq_failures_retry_then_fall_back(tmp_path, stooq, failure, expected):
    stooq.route("/q/d/l/", failure)
    cfg = stooq_config(tmp_path, stooq, "stooq", "synthetic", max_retries=2, timeout_seconds=1.0)
    histories, failures = fetch_histories(["AAPL"], cfg)

    assert failures == {}
    assert histories["AAPL"].source == "synthetic"
    (reason,) = histories["AAPL"].fallback_reasons
    assert reason.startswith("stooq: ") and expected in reason, reason
    assert reason.endswith("(gave up after 3 attempts)")
    assert stooq.count() == 3


def test_stooq_transient_failure_then_success(tmp_path, stooq):
    ok = stooq_route({"AAPL": ohlcv()})
    stooq.route("/q/d/l/", flaky([Reply(503), Reply.text("garbage"), Reply(drop=True)], ok))
    histories, failures = fetch_histories(["AAPL"], stooq_config(tmp_path, stooq, max_retries=3))
    assert failures == {}
    assert histories["AAPL"].source == "stooq"
    assert stooq.count() == 4


def test_stooq_web_page_stops_asking_stooq_and_says_what_to_do(tmp_path, stooq):
    page = "<!DOCTYPE html><html><body>Checking your browser...</body></html>"
    stooq.route("/q/d/l/", Reply.text(page, content_type="text/html"))
    cfg = stooq_config(tmp_path, stooq, "stooq", "synthetic", max_retries=3)
    histories, failures = fetch_histories(["AAPL", "MSFT", "IBM"], cfg)

    assert failures == {}
    assert {h.source for h in histories.values()} == {"synthetic"}
    reason = histories["IBM"].fallback_reasons[0]
    assert "web page instead of CSV" in reason and "stooq_api_key" in reason
    assert stooq.count() == 1  # not once per ticker, and never retried


def test_stooq_daily_limit_is_reported(tmp_path, stooq):
    stooq.route("/q/d/l/", Reply.text("Exceeded the daily hits limit"))
    _, failures = fetch_histories(["AAPL", "MSFT"], stooq_config(tmp_path, stooq))
    assert "daily request limit is used up" in failures["MSFT"]
    assert stooq.count() == 1


def test_bad_values_from_a_source_are_a_per_ticker_error(tmp_path, stooq):
    bad = ohlcv()
    bad.iloc[30, bad.columns.get_loc("close")] = -1.0
    stooq.route("/q/d/l/", stooq_route({"AAPL": bad, "MSFT": ohlcv(1)}))
    histories, failures = fetch_histories(["AAPL", "MSFT"], stooq_config(tmp_path, stooq))
    assert list(histories) == ["MSFT"]
    assert failures["AAPL"].startswith("stooq: non-positive close -1 on 2024-01-1")


def test_index_symbols_use_stooqs_names():
    assert stooq_symbol("^GSPC") == "^spx"
    assert stooq_symbol("BRK.B") == "brk-b.us"
    assert stooq_symbol("aapl") == "aapl.us"


# --- the order, offline sources, workers ---------------------------------------------------


def test_first_good_answer_wins_in_the_configured_order(tmp_path, stooq):
    stooq.route("/q/d/l/", stooq_route({"AAPL": ohlcv(1), "MSFT": ohlcv(2)}))
    cfg = stooq_config(tmp_path, stooq, "yfinance", "stooq", "embedded")
    with local_yahoo(tmp_path) as (server, session):
        server.route("/v8/finance/chart/", chart_route({"AAPL": ohlcv(9)}))
        sources = [yahoo_source(cfg, session), *make_sources(cfg)[1:]]
        histories, failures = fetch_histories(["AAPL", "MSFT", "ZZZZ"], cfg, sources)

    assert {t: h.source for t, h in histories.items()} == {"AAPL": "yfinance", "MSFT": "stooq"}
    assert histories["MSFT"].fallback_reasons == ("yfinance: no data (unknown or delisted ticker)",)
    # Stooq was only asked for what Yahoo didn't have.
    assert {r.query["s"] for r in stooq.requests} == {"msft.us", "zzzz.us"}
    assert failures["ZZZZ"] == (
        "yfinance: no data (unknown or delisted ticker); "
        "stooq: no data (unknown ticker or no rows in the date range); "
        "embedded: not in the embedded data (the sample portfolio and the 2009-2010 S&P 500)"
    )


def test_local_folder_reads_csv_and_parquet(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    aapl, msft = ohlcv(1), ohlcv(2)
    aapl.rename(columns=str.title).rename_axis("Date").to_csv(folder / "AAPL.csv")
    msft.to_parquet(folder / "msft.parquet")
    cfg = config(tmp_path, "local", local_data_dir=folder)
    histories, failures = fetch_histories(["AAPL", "MSFT", "IBM"], cfg)

    assert {t: h.source for t, h in histories.items()} == {"AAPL": "local", "MSFT": "local"}
    pd.testing.assert_frame_equal(histories["MSFT"].frame, in_range(msft), check_freq=False)
    np.testing.assert_allclose(histories["AAPL"].frame["close"], in_range(aapl)["close"])
    assert failures == {"IBM": f"local: no file IBM.csv or IBM.parquet in {folder}"}


def test_local_folder_reads_a_yfinance_csv_whose_offset_changes_with_daylight_saving(tmp_path):
    # What yf.Ticker("SPY").history(...).to_csv() writes: New York midnight bars, -05:00 in
    # winter, -04:00 from 2011-03-13 on. pandas alone refuses the mix ("Mixed timezones").
    folder = tmp_path / "yahoo"
    folder.mkdir()
    days = pd.bdate_range("2011-02-01", "2011-04-29", tz="America/New_York", name="Date")
    frame = ohlcv(3, days=len(days)).rename(columns=str.title).set_axis(days)
    frame["Dividends"], frame["Stock Splits"] = 0.0, 0.0
    frame.to_csv(folder / "SPY.csv")
    text = (folder / "SPY.csv").read_text()
    assert "2011-03-11 00:00:00-05:00" in text and "2011-03-14 00:00:00-04:00" in text
    cfg = config(
        tmp_path, "local", local_data_dir=folder, start=date(2011, 2, 1), end=date(2011, 4, 29)
    )
    histories, failures = fetch_histories(["SPY"], cfg)

    assert failures == {}
    got = histories["SPY"].frame
    # Each bar on its exchange-local date, none moved to the day before.
    assert list(got.index) == list(pd.bdate_range("2011-02-01", "2011-04-29"))
    np.testing.assert_allclose(got["close"], frame["Close"])


def test_sources_are_asked_for_the_indicators_warm_up_before_the_lookback(tmp_path, stooq):
    stooq.route("/q/d/l/", stooq_route({"AAPL": ohlcv(7, start="2023-01-02", days=350)}))
    cfg = stooq_config(tmp_path, stooq, warmup_days=None)
    assert cfg.warmup() == 300  # SMA 200's 200 sessions in calendar days, with holidays
    histories, _ = fetch_histories(["AAPL"], cfg)
    (request,) = stooq.requests_to("/q/d/l/")
    assert request.query["d1"] == (START - timedelta(days=300)).strftime("%Y%m%d")
    history = histories["AAPL"]
    assert history.window_start == pd.Timestamp(START)
    assert history.frame.index[0] < pd.Timestamp(START) <= history.window.index[0]
    # Embedded data with no start: lookback_days before its newest row, plus the warm-up.
    histories, _ = fetch_histories(["AAPL"], AnalysisConfig(cache_dir=None))
    aapl = histories["AAPL"]
    assert aapl.window_start == pd.Timestamp("2012-03-01")
    assert aapl.frame.index[0] < pd.Timestamp("2012-03-01") - pd.Timedelta(days=280)


def test_local_folder_reads_yf_download_csvs_and_applies_their_adj_close(tmp_path):
    # yf.download(..., auto_adjust=False).to_csv(): two extra header rows, and an Adj Close
    # that the raw Close lacks (here a 2-for-1 split in the middle, as adj/close = 1/2 before).
    folder = tmp_path / "yahoo"
    folder.mkdir()
    raw = ohlcv(8)
    adj = raw["close"].where(raw.index >= raw.index[60], raw["close"] / 2)
    header = "Price,Adj Close,Close,High,Low,Open,Volume\nTicker,AAPL,AAPL,AAPL,AAPL,AAPL,AAPL\n"
    rows = pd.DataFrame(
        {
            "Adj Close": adj,
            "Close": raw["close"],
            "High": raw["high"],
            "Low": raw["low"],
            "Open": raw["open"],
            "Volume": raw["volume"],
        }
    )
    body = rows.to_csv(header=False)
    (folder / "AAPL.csv").write_text(header + "Date,,,,,,\n" + body)
    cfg = config(tmp_path, "local", local_data_dir=folder, start=date(2023, 12, 1))
    histories, failures = fetch_histories(["AAPL"], cfg)

    assert failures == {}
    got = histories["AAPL"].frame
    np.testing.assert_allclose(got["close"], adj.loc[got.index])
    np.testing.assert_allclose(got["open"], (raw["open"] * adj / raw["close"]).loc[got.index])
    assert histories["AAPL"].adjustments == (
        {"ticker": "AAPL", "date": "2023-12-01", "ratio": 2.0, "kind": "adj_close"},
    )


def test_embedded_data_is_the_default_and_offline():
    histories, failures = fetch_histories(["AAPL", "NOPE"], AnalysisConfig(cache_dir=None))
    assert histories["AAPL"].source == "embedded"
    assert histories["AAPL"].frame.index[-1] == pd.Timestamp("2013-03-01")
    assert failures["NOPE"].startswith("embedded: not in the embedded data")


def test_share_classes_are_found_in_either_spelling_and_reported_as_given(tmp_path):
    histories, failures = fetch_histories(["BRK-B", "BF.B"], AnalysisConfig(cache_dir=None))
    assert failures == {}
    assert set(histories) == {"BRK-B", "BF.B"}  # the spelling the user gave
    sp500 = embedded.sp500_histories()
    pd.testing.assert_frame_equal(histories["BRK-B"].frame, sp500["BRK.B"].loc["2009-08-20":])
    # A local file named either way serves either spelling; VOD.L is no share class.
    folder = tmp_path / "mine"
    folder.mkdir()
    ohlcv(6).to_csv(folder / "BRK.B.csv")
    cfg = config(tmp_path, "local", local_data_dir=folder)
    histories, failures = fetch_histories(["BRK-B", "VOD.L"], cfg)
    assert set(histories) == {"BRK-B"}
    assert failures["VOD.L"].startswith("local: no file VOD.L.csv")
    assert [stooq_symbol(t) for t in ("BRK.B", "BRK-B")] == ["brk-b.us", "brk-b.us"]
    assert yahoo_symbol("BRK.B") == "BRK-B" and yahoo_symbol("VOD.L") == "VOD.L"


def test_invalid_ticker_symbols_are_rejected_before_any_request(tmp_path, stooq):
    stooq.route("/q/d/l/", stooq_route({"AAPL": ohlcv()}))
    histories, failures = fetch_histories(
        ["AAPL", "", "A B", "../etc"], stooq_config(tmp_path, stooq)
    )
    assert list(histories) == ["AAPL"]
    assert set(failures) == {"", "A B", "../etc"}
    assert all("not a valid ticker symbol" in r for r in failures.values())
    assert stooq.count() == 1


def test_a_source_raising_unexpectedly_is_a_reason_not_a_crash(tmp_path):
    class Broken:
        name = "broken"

        def fetch(self, tickers, start, end):
            raise RuntimeError("boom")

    histories, failures = fetch_histories(["AAPL"], config(tmp_path, "embedded"), [Broken()])
    assert histories == {}
    assert failures == {"AAPL": "broken: failed unexpectedly (RuntimeError: boom)"}


def test_workers_return_none_for_an_unknown_ticker_and_the_batch_records_why(tmp_path, stooq):
    stooq.route("/q/d/l/", stooq_route({"AAPL": ohlcv()}))
    cfg = stooq_config(tmp_path, stooq, "stooq", "embedded")

    assert fetch_price_from_multiple_sources("ZZZZ", cfg) is None
    result = fetch_price_from_multiple_sources("aapl", cfg)
    assert result["ticker"] == "AAPL" and result["source"] == "stooq"
    assert len(result["price_data"]["ohlcv"]) == len(in_range(ohlcv()))

    batch = fetch_price_batch(["aapl", "ZZZZ"], cfg)
    assert batch.sources == {"AAPL": "stooq"}
    (failed,) = batch.failed
    assert failed["ticker"] == "ZZZZ" and failed["stage"] == "pricing"
    assert "stooq: no data" in failed["reason"]
    assert "embedded: not in the embedded data" in failed["reason"]


def test_yfinance_worker_uses_the_default_session_factory(tmp_path, monkeypatch, caplog):
    cfg = config(tmp_path, "yfinance")
    with local_yahoo(tmp_path) as (server, session):
        server.route("/v8/finance/chart/", chart_route({"MSFT": ohlcv(2)}))
        monkeypatch.setattr(
            YFinanceSource, "default_session_factory", staticmethod(lambda: session)
        )
        with caplog.at_level(logging.ERROR, logger="yfinance"):
            result = fetch_price_from_multiple_sources("MSFT", cfg)
            unknown = fetch_price_from_multiple_sources("ZZZZ", cfg)

    assert result["source"] == "yfinance"
    assert unknown is None
    # yfinance's misleading console lines ("possibly delisted") are kept off the console.
    assert not [r for r in caplog.records if r.name.startswith("yfinance")]


def test_retry_waits_grow_exponentially(tmp_path, stooq):
    stooq.route("/q/d/l/", Reply(500))
    cfg = stooq_config(tmp_path, stooq, backoff_base_seconds=0.1, max_retries=3)
    started = time.monotonic()
    fetch_histories(["AAPL"], cfg)
    times = [r.time for r in stooq.requests]
    gaps = np.diff(times)

    assert len(times) == 4
    # base * 2**n plus up to `base` of jitter: 0.1-0.2, 0.2-0.3, 0.4-0.5 s. The upper bounds
    # leave room for a loaded machine; the lower bounds show the doubling.
    assert all(
        low - 0.02 <= gap <= low + 0.1 + 0.4 for gap, low in zip(gaps, (0.1, 0.2, 0.4), strict=True)
    )
    assert time.monotonic() - started < 5


def test_every_yahoo_request_passes_the_limiter_exactly_once(tmp_path, monkeypatch):
    """Also when later batches reuse the process's session (it is instrumented once)."""

    class Counting:
        interval = 0.0

        def __init__(self) -> None:
            self.acquired = 0

        def acquire(self) -> None:
            self.acquired += 1

        def pause(self, seconds: float) -> None:
            pass

    counting = Counting()
    monkeypatch.setattr(
        "portfolio_analysis.sources.yahoo.limiter_for", lambda config, service: counting
    )
    cfg = config(tmp_path, "yfinance")
    with local_yahoo(tmp_path) as (server, session):
        server.route("/v8/finance/chart/", chart_route({"AAPL": ohlcv(), "MSFT": ohlcv(1)}))
        for batch in (["AAPL"], ["MSFT"], ["AAPL", "MSFT"]):
            histories, _ = fetch_histories(batch, cfg, [yahoo_source(cfg, session)])
            assert set(histories) == set(batch)
        assert counting.acquired == server.count() > 6


@pytest.mark.dask
def test_a_dask_run_records_the_unknown_ticker_and_why(tmp_path, stooq):
    """The whole path: pipeline -> Dask worker processes -> Stooq source -> report."""
    from distributed import Client, LocalCluster
    from portfolio_analysis.pipeline import run_combined_analysis

    stooq.route("/q/d/l/", stooq_route({"AAPL": ohlcv(1), "MSFT": ohlcv(2)}))
    cfg = stooq_config(tmp_path, stooq, "stooq", "embedded", batch_size=1)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        report = run_combined_analysis(
            ["AAPL", "MSFT", "ZZZZ"], analyses=("pricing",), config=cfg, client=client
        )

    assert report["status"] == "partial"
    assert {r["ticker"]: r["source"] for r in report["combined_analysis"]} == {
        "AAPL": "stooq",
        "MSFT": "stooq",
    }
    assert report["failed"] == [
        {
            "ticker": "ZZZZ",
            "stage": "pricing",
            "reason": "stooq: no data (unknown ticker or no rows in the date range); "
            "embedded: not in the embedded data (the sample portfolio and the 2009-2010 S&P 500)",
        }
    ]


@pytest.mark.dask
def test_yfinance_in_dask_threads_goes_through_the_cluster_limit(tmp_path, monkeypatch):
    """yfinance's own download threads inside a Dask worker still take the cluster's lease."""
    from distributed import Client, LocalCluster
    from portfolio_analysis.pipeline import run_combined_analysis

    from tests.analysis.test_ratelimit import too_early

    rate = 20.0
    cfg = config(tmp_path, "yfinance", requests_per_second=rate, end=date(2024, 3, 29))
    with (
        local_yahoo(tmp_path) as (server, session),
        # Threads, so the test's session factory reaches the worker.
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        server.route("/v8/finance/chart/", chart_route({"AAPL": ohlcv(1), "MSFT": ohlcv(2)}))
        monkeypatch.setattr(
            YFinanceSource, "default_session_factory", staticmethod(lambda: session)
        )
        t0 = time.time()
        report = run_combined_analysis(
            ["AAPL", "MSFT", "ZZZZ"], analyses=("pricing",), config=cfg, client=client
        )
        arrivals = [r.time for r in server.requests]
        semaphores = client.run_on_scheduler(
            lambda dask_scheduler: sorted(dask_scheduler.extensions["semaphores"].max_leases)
        )

    assert {r["ticker"]: r["source"] for r in report["combined_analysis"]} == {
        "AAPL": "yfinance",
        "MSFT": "yfinance",
    }
    assert report["failed"] == [
        {
            "ticker": "ZZZZ",
            "stage": "pricing",
            "reason": "yfinance: no data (unknown or delisted ticker)",
        }
    ]
    assert "portfolio-operator-rate-yahoo" in semaphores
    assert len(arrivals) > 8
    assert too_early(arrivals, t0, rate) == []
