"""The plain-Dask pipeline: what the CLI and the operator run, on a real LocalCluster.

The parallel result is checked against the reference guide's one-ticker worker functions
called sequentially in this process, so a batching or gathering mistake shows as a wrong
number.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pandas as pd
import pytest
from distributed import get_task_stream
from portfolio_analysis import (
    calculate_security_technicals,
    embedded,
    fetch_news_for_ticker,
    fetch_price_from_multiple_sources,
    pipeline,
    sources,
    technicals,
    workers,
)
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.portfolio import portfolio_figures
from portfolio_analysis.sources import fetch_histories

pytestmark = pytest.mark.dask

SAMPLE = list(embedded.SAMPLE_PORTFOLIO)
TASK_NAMES = ("fetch_price_batch", "price_batch_summary", "technicals_batch", "news_batch")


def _sequential_reference(tickers: list[str]) -> tuple[dict[str, dict], pd.DataFrame]:
    """Per-ticker rows and the close panel from the reference guide's one-ticker API, one
    ticker at a time."""
    rows, closes = {}, {}
    for ticker in tickers:
        priced = fetch_price_from_multiple_sources(ticker)
        if priced is None:
            continue
        ohlcv = pd.DataFrame(priced["price_data"]["ohlcv"])
        closes[ticker] = pd.Series(
            ohlcv["close"].to_numpy(), index=pd.to_datetime(ohlcv["date"]), name=ticker
        ).loc[priced["price_data"]["lookback_start"] :]  # before it: the indicators' warm-up
        technical = calculate_security_technicals(ticker, priced["price_data"])
        news = fetch_news_for_ticker(ticker)
        rows[ticker] = {
            "close": priced["price_data"]["close"],
            "source": priced["source"],
            **technical["summary"],
            "avg_sentiment": news["avg_sentiment"],
            "article_count": news["article_count"],
        }
    return rows, pd.DataFrame(closes).sort_index()


def test_combined_run_equals_the_reference_guide_functions_run_one_by_one(dask_client) -> None:
    result = pipeline.run_combined_analysis(holdings=embedded.SAMPLE_PORTFOLIO, client=dask_client)
    assert result["status"] == "success", result["failed"]
    assert result["failed"] == []
    report = result["report"]
    assert report["securities_analyzed"] == len(SAMPLE)
    assert set(report["timings"]) >= {"pricing", "technicals", "news", "portfolio"}
    # Each concurrent stage's own worker time: positive, and at most every worker busy
    # for the whole analysis (report.stage_durations turns these into durations).
    tasks = report["task_seconds"]
    assert set(tasks) == {"pricing", "technicals", "news"} and min(tasks.values()) > 0
    wall = max(report["timings"][s] for s in tasks)
    assert sum(tasks.values()) <= report["workers"] * wall * 1.05 + 0.05, (tasks, wall)
    assert report["workers"] == 2
    assert report["batches"] >= 2  # work spread over both workers

    reference, close = _sequential_reference(SAMPLE)
    assert [row["ticker"] for row in result["combined_analysis"]] == SAMPLE
    for row in result["combined_analysis"]:
        expected = reference[row["ticker"]]
        for key in ("close", "sma_20", "sma_50", "rsi_14", "bollinger_upper", "macd", "atr_14"):
            assert row[key] == pytest.approx(expected[key], rel=1e-9), (row["ticker"], key)
        assert row["source"] == expected["source"] == "embedded"
        assert row["rsi_signal"] == expected["rsi_signal"]
        assert row["avg_sentiment"] == pytest.approx(expected["avg_sentiment"])
        assert row["article_count"] == expected["article_count"] > 0

    summary = report["summary"]
    assert summary["avg_rsi"] == pytest.approx(
        sum(reference[t]["rsi_14"] for t in SAMPLE) / len(SAMPLE)
    )
    figures = portfolio_figures(close, holdings=dict(embedded.SAMPLE_PORTFOLIO))
    portfolio = report["portfolio"]
    for key in ("total_return", "annualized_volatility", "max_drawdown", "var_95"):
        assert portfolio[key] == pytest.approx(figures[key], rel=1e-9), key
    assert portfolio["total_market_value"] == pytest.approx(figures["total_market_value"])
    assert portfolio["excluded"] == []


def test_chart_series_come_back_in_the_requested_order(dask_client) -> None:
    config = AnalysisConfig(batch_size=1)  # five batches finishing in any order
    options = pipeline.RunOptions(
        config=config, client=dask_client, series_tickers=["FB", "MSFT", "AAPL"]
    )
    run = pipeline.run_analysis(SAMPLE, options=options)
    assert list(run.series) == ["AAPL", "MSFT", "FB"]
    aapl = run.series["AAPL"]
    assert {"close", "sma_20", "bollinger_upper", "rsi_14", "macd", "macd_signal"} <= set(
        aapl.columns
    )
    assert len(aapl) == 251 and aapl.index.is_monotonic_increasing
    row = next(r for r in run.result["combined_analysis"] if r["ticker"] == "AAPL")
    assert aapl["rsi_14"].iloc[-1] == pytest.approx(row["rsi_14"])


def test_a_failed_ticker_is_listed_with_its_reason_and_never_fails_the_run(dask_client) -> None:
    result = pipeline.run_combined_analysis(["AAPL", "NOPE", "msft", "AAPL"], client=dask_client)
    assert result["status"] == "partial"
    assert [row["ticker"] for row in result["combined_analysis"]] == ["AAPL", "MSFT"]
    assert len(result["failed"]) == 1
    failure = result["failed"][0]
    assert failure["ticker"] == "NOPE" and failure["stage"] == "pricing"
    assert "embedded" in failure["reason"]  # names the source that was asked
    portfolio = result["report"]["portfolio"]
    assert portfolio["tickers"] == ["AAPL", "MSFT"]
    assert portfolio["excluded"] == ["NOPE"]


def test_when_no_ticker_can_be_priced_the_run_reports_failed_without_raising(dask_client) -> None:
    result = pipeline.run_combined_analysis(["NOPE1", "NOPE2"], client=dask_client)
    assert result["status"] == "failed"
    assert result["report"]["securities_analyzed"] == 0
    assert {f["ticker"] for f in result["failed"]} == {"NOPE1", "NOPE2"}
    assert "error" in result["report"]["portfolio"]


def test_bad_requests_are_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match="no tickers"):
        pipeline.run_combined_analysis([], holdings={})
    with pytest.raises(ValueError, match="unknown analyses"):
        pipeline.run_combined_analysis(["AAPL"], analyses=["pricing", "astrology"])
    with pytest.raises(ValueError, match="shares of AAPL must be a number"):
        pipeline.run_combined_analysis(holdings={"AAPL": "ten"})


def test_prices_are_fetched_once_per_batch_and_indicators_reuse_them(dask_client) -> None:
    tickers = embedded.universe_tickers("sp500")[:40]
    config = AnalysisConfig(embedded_datasets=("sp500",))
    with get_task_stream(client=dask_client) as stream:
        run = pipeline.run_analysis(
            tickers, options=pipeline.RunOptions(config=config, client=dask_client)
        )
    assert run.result["report"]["securities_analyzed"] == 40
    computed = Counter(
        name for task in stream.data for name in TASK_NAMES if str(task["key"]).startswith(name)
    )
    batches = run.stages.batches
    assert batches == 4  # two per worker, not one per ticker
    assert computed["fetch_price_batch"] == batches
    assert computed["technicals_batch"] == batches
    assert computed["news_batch"] == batches
    assert computed["price_batch_summary"] == batches


def test_each_ticker_is_fetched_exactly_once_in_a_combined_run(
    thread_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With in-process workers the price fetch itself can be counted."""
    fetched: Counter[str] = Counter()
    lock = threading.Lock()
    original = sources.fetch_histories

    def counting(tickers, config=None, sources=None):
        with lock:
            fetched.update(tickers)
        return original(tickers, config, sources)

    monkeypatch.setattr(sources, "fetch_histories", counting)
    result = pipeline.run_combined_analysis(
        holdings=embedded.SAMPLE_PORTFOLIO, client=thread_client
    )
    assert result["status"] == "success"
    assert fetched == Counter(SAMPLE)  # every ticker once: technicals and portfolio reuse it


def test_news_runs_alongside_prices(dask_client) -> None:
    """News tasks start before the last price task finishes, not after the price stage."""
    tickers = embedded.universe_tickers("sp500")[:60]
    config = AnalysisConfig(embedded_datasets=("sp500",), batch_size=5)
    with get_task_stream(client=dask_client) as stream:
        pipeline.run_analysis(
            tickers, options=pipeline.RunOptions(config=config, client=dask_client)
        )

    def spans(prefix: str) -> list[tuple[float, float]]:
        out = []
        for task in stream.data:
            if str(task["key"]).startswith(prefix):
                compute = [s for s in task["startstops"] if s["action"] == "compute"]
                out.extend((s["start"], s["stop"]) for s in compute)
        return out

    news, prices = spans("news_batch"), spans("fetch_price_batch")
    assert len(news) == len(prices) == 12
    assert min(start for start, _ in news) < max(stop for _, stop in prices)


def test_progress_reports_every_stage_up_to_its_total(dask_client) -> None:
    calls: list[tuple[str, int, int]] = []
    pipeline.run_combined_analysis(
        SAMPLE[:3], client=dask_client, progress=lambda *call: calls.append(call)
    )
    final = {}
    for stage, done, total in calls:
        assert 0 < done <= total
        assert done >= final.get(stage, (0, 0))[0]  # never goes backwards
        final[stage] = (done, total)
    assert final == {
        "pricing": (3, 3),
        "technicals": (3, 3),
        "news": (3, 3),
        "portfolio": (1, 1),
    }


def test_concurrent_runs_in_one_process_report_only_to_their_own_callbacks(
    dask_client,
) -> None:
    """Each run's options travel with it: two runs at once on one client never see each
    other's progress callback or cancel event."""
    calls: dict[str, list[tuple[str, int, int]]] = {"two": [], "three": [], "cancelled": []}
    cancel = threading.Event()
    cancel.set()  # only the third run is cancelled, before it starts
    errors: list[BaseException] = []

    def run(name: str, tickers: list[str], **options) -> None:
        try:
            pipeline.run_combined_analysis(
                tickers, client=dask_client, progress=lambda *c: calls[name].append(c), **options
            )
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("two", SAMPLE[:2])),
        threading.Thread(target=run, args=("three", SAMPLE[2:5])),
        threading.Thread(target=run, args=("cancelled", SAMPLE[:1]), kwargs={"cancel": cancel}),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [type(e) for e in errors] == [pipeline.AnalysisCancelled]
    assert calls["cancelled"] == []
    for name, count in (("two", 2), ("three", 3)):
        totals = {(stage, total) for stage, _, total in calls[name]}
        assert totals == {
            ("pricing", count),
            ("technicals", count),
            ("news", count),
            ("portfolio", 1),
        }


# Module level, so that Dask pickles the function by reference and the workers (threads of
# this process) update this very counter.
_FLAKY_CALLS: Counter[str] = Counter()
_ORIGINAL_NEWS_BATCH = workers.news_batch


def _flaky_news_batch(tickers, config=None):
    _FLAKY_CALLS.update(tickers)
    if "MSFT" in tickers:
        raise RuntimeError("news service returned garbage")
    return _ORIGINAL_NEWS_BATCH(tickers, config)


def test_a_batch_that_keeps_raising_is_retried_by_dask_then_recorded(
    thread_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _FLAKY_CALLS.clear()
    monkeypatch.setattr(workers, "news_batch", _flaky_news_batch)
    config = AnalysisConfig(batch_size=1)
    result = pipeline.run_combined_analysis(["AAPL", "MSFT"], config=config, client=thread_client)
    # Dask's retries, not a loop of ours.
    assert _FLAKY_CALLS["MSFT"] == 1 + pipeline.TASK_RETRIES
    assert _FLAKY_CALLS["AAPL"] == 1
    assert result["status"] == "partial"
    assert [r["ticker"] for r in result["combined_analysis"]] == ["AAPL", "MSFT"]
    (failure,) = result["failed"]
    assert failure["ticker"] == "MSFT" and failure["stage"] == "news"
    assert "news service returned garbage" in failure["reason"]
    assert "RuntimeError" in failure["reason"]


def test_a_price_batch_that_fails_for_good_is_one_pricing_error_per_ticker(
    thread_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = workers.fetch_price_batch

    def broken(tickers, config=None):
        if "IBM" in tickers:
            raise OSError("disk vanished")
        return original(tickers, config)

    monkeypatch.setattr(workers, "fetch_price_batch", broken)
    config = AnalysisConfig(batch_size=2)
    result = pipeline.run_combined_analysis(SAMPLE, config=config, client=thread_client)
    assert result["status"] == "partial"
    # Batches: [AAPL, MSFT] [IBM, GOOG] [FB]; the second one is lost, once per ticker.
    assert [(f["ticker"], f["stage"]) for f in result["failed"]] == [
        ("IBM", "pricing"),
        ("GOOG", "pricing"),
    ]
    assert all("disk vanished" in f["reason"] for f in result["failed"])
    assert [r["ticker"] for r in result["combined_analysis"]] == ["AAPL", "MSFT", "FB"]
    assert result["report"]["portfolio"]["excluded"] == ["IBM", "GOOG"]


def test_cancelling_stops_the_run_and_frees_the_cluster(dask_client) -> None:
    cancel = threading.Event()

    def progress(stage: str, done: int, total: int) -> None:
        cancel.set()  # cancel as soon as the first batch is back

    tickers = embedded.universe_tickers("sp500")[:200]
    config = AnalysisConfig(embedded_datasets=("sp500",), batch_size=10)
    with pytest.raises(pipeline.AnalysisCancelled, match="cancelled"):
        pipeline.run_combined_analysis(
            tickers, config=config, client=dask_client, progress=progress, cancel=cancel
        )
    # Nothing of the cancelled run is left on the cluster, and the cluster still works.
    deadline = time.monotonic() + 20
    while _run_tasks_on_scheduler(dask_client) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _run_tasks_on_scheduler(dask_client) == []
    assert dask_client.submit(sum, [2, 2], pure=False).result(timeout=60) == 4


def _run_tasks_on_scheduler(client) -> list[str]:
    def keys(dask_scheduler) -> list[str]:
        return [str(k) for k in dask_scheduler.tasks if str(k).startswith(TASK_NAMES)]

    return client.run_on_scheduler(keys)


def test_portfolio_leaves_out_tickers_whose_history_barely_overlaps() -> None:
    dates = pd.bdate_range("2024-01-01", periods=100)
    close = pd.DataFrame(
        {
            "LONG1": 100.0,
            "LONG2": 50.0,
            "LATE": [float("nan")] * 30 + [20.0] * 70,  # listed later: still overlaps well
            "GONE": [10.0] * 20 + [float("nan")] * 80,  # delisted early
        },
        index=dates,
    )
    close = close * (1 + 0.001 * pd.Series(range(100), index=dates).to_numpy()[:, None])
    config = AnalysisConfig()
    figures = pipeline.portfolio_section(close, list(close.columns) + ["NOPE"], None, config)
    assert figures["tickers"] == ["LONG1", "LONG2", "LATE"]
    assert figures["periods"] == 69  # returns over LATE's 70 dates
    assert figures["excluded"] == ["GONE", "NOPE"]
    assert figures["excluded_reasons"]["NOPE"] == "not priced"
    assert figures["excluded_reasons"]["GONE"] == (
        "its prices (2024-01-01 to 2024-01-26) do not span the window chosen, 2024-02-12 to "
        "2024-05-17, which uses the most ticker-days"
    )
    assert figures["coverage"]["tickers_used"] == 3 and figures["coverage"]["returns"] == 69
    # Holdings that overlap well keep every position.
    held = pipeline.portfolio_section(close[["LONG1", "LATE"]], ["LONG1", "LATE"], None, config)
    assert held["tickers"] == ["LONG1", "LATE"] and held["excluded"] == []


def test_the_correlation_matrix_of_a_large_portfolio_keeps_the_largest_positions() -> None:
    dates = pd.bdate_range("2024-01-01", periods=60)
    growth = pd.Series(range(60), index=dates).to_numpy()[:, None]
    tickers = [f"T{i:02d}" for i in range(40)]
    wiggle = 1 + 0.01 * ((growth * (1 + pd.Series(range(40)).to_numpy())) % 7)
    close = pd.DataFrame(wiggle * 10.0, index=dates, columns=tickers)
    holdings = {t: float(i + 1) for i, t in enumerate(tickers)}  # T39 is the largest
    figures = pipeline.portfolio_section(close, tickers, holdings, AnalysisConfig())
    kept = list(figures["correlation"])
    assert len(kept) == pipeline.MAX_CORRELATION_TICKERS
    assert set(kept) == set(tickers[-pipeline.MAX_CORRELATION_TICKERS :])
    assert all(list(row) == kept for row in figures["correlation"].values())
    assert figures["correlation_note"] == "the 30 largest positions of 40"
    assert len(figures["weights"]) == 40  # only the matrix is trimmed


# --- issue 14: warm-up, coverage, data notes ------------------------------------------------


def test_indicators_are_warmed_up_before_the_lookback_and_shown_over_it_only(
    thread_client,
) -> None:
    options = pipeline.RunOptions(client=thread_client, series_tickers=["AAPL"])
    run = pipeline.run_analysis(["AAPL", "MSFT"], options=options)
    aapl = run.series["AAPL"]
    # The chart covers the 365-day lookback, and every indicator is defined from its first
    # day (before: SMA 200 covered its last ~50 days, RSI and MACD started a month late).
    assert aapl.index[0] >= pd.Timestamp("2012-03-01")
    assert aapl.index[0] <= pd.Timestamp("2012-03-05")
    assert aapl[["sma_200", "rsi_14", "macd", "macd_signal"]].notna().all().all()
    # Summaries and the close panel cover the lookback; the warm-up is only an input.
    (priced,) = [r for r in run.stages.pricing if r["ticker"] == "AAPL"]
    assert priced["price_data"]["start"] == aapl.index[0].date().isoformat()
    assert run.close.index[0] == aapl.index[0]
    full = embedded.sample_histories()["AAPL"]
    expected = technicals.compute_indicators(technicals.build_panel({"AAPL": full}))
    (row,) = [r for r in run.result["combined_analysis"] if r["ticker"] == "AAPL"]
    assert row["sma_200"] == pytest.approx(expected["sma_200"]["AAPL"].iloc[-1], rel=1e-9)
    windows = run.result["report"]["data_notes"]["windows"]
    assert windows["lookback_days"] == 365
    assert windows["warmup_days"] == AnalysisConfig().warmup() >= 290
    assert "SMA 200" in windows["rule"] and windows["short_warmup"] == {}


def test_tickers_from_data_sets_with_no_common_dates_say_so_in_the_coverage(
    thread_client,
) -> None:
    result = pipeline.run_combined_analysis(
        ["AAPL", "BAC"], analyses=("portfolio",), client=thread_client
    )
    portfolio = result["report"]["portfolio"]
    coverage = portfolio["coverage"]
    assert portfolio["tickers"] == ["AAPL"]  # not silently: the coverage says 1 of 2
    assert (coverage["tickers_asked"], coverage["tickers_used"]) == (2, 1)
    assert (coverage["start"], coverage["end"]) == (portfolio["start"], portfolio["end"])
    assert coverage["returns"] == portfolio["periods"] > 200
    assert coverage["excluded"]["BAC"] == (
        "its prices (2009-08-21 to 2010-08-20) do not span the window chosen, 2012-03-01 to "
        "2013-03-01, which uses the most ticker-days"
    )
    assert "NYSE sessions" in coverage["rule"]


def test_the_sp500_portfolio_covers_at_least_480_tickers_over_200_daily_returns() -> None:
    config = AnalysisConfig(embedded_datasets=("sp500",), cache_dir=None)
    tickers = embedded.universe_tickers("sp500")
    histories, failures = fetch_histories(tickers, config)
    close = pd.DataFrame({t: h.window["close"] for t, h in histories.items()})
    figures = pipeline.portfolio_section(close, tickers, None, config)
    coverage = figures["coverage"]
    # Before: 492 of 523 over 132 returns (2009-11-05..2010-05-28), gaps merged into "days".
    assert coverage["tickers_used"] >= 480 and coverage["returns"] >= 200
    assert coverage["tickers_asked"] == len(tickers) == 521
    assert coverage["tickers_used"] + len(coverage["excluded"]) == len(tickers)
    # The data set has no rows for 2009-10-29..11-04: that move is no daily return.
    assert "2009-11-05" in coverage["dropped_returns"]
    assert figures["periods"] + len(figures["dropped_returns"]) < figures["sessions"] + 1


def test_data_notes_name_fallbacks_dropped_rows_and_adjustments(tmp_path, thread_client) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    mine = embedded.sp500_histories()["XOM"].copy()
    mine.iloc[5, 1] = float("nan")  # one day without its high
    mine.rename_axis("date").to_csv(folder / "XOM.csv")
    config = AnalysisConfig(
        price_sources=("local", "embedded"),
        local_data_dir=folder,
        embedded_datasets=("sp500",),
        cache_dir=None,
    )
    result = pipeline.run_combined_analysis(
        ["XOM", "DHR"], analyses=("pricing",), config=config, client=thread_client
    )
    notes = result["report"]["data_notes"]
    assert notes["price_fallbacks"] == {
        "DHR": {"local": f"no file DHR.csv or DHR.parquet in {folder}"}
    }
    assert notes["dropped_rows"] == {
        "XOM": {"rows": 1, "reason": "some of open/high/low/close missing on the day"}
    }
    assert notes["adjustments"] == [
        {"ticker": "DHR", "date": "2010-06-14", "ratio": 2.0, "kind": "split"}
    ]
    assert notes["windows"]["warmup_days"] == 0  # no indicators asked for: no warm-up


@pytest.mark.parametrize("warmup_days", [0, None])
def test_the_pipeline_gives_the_in_process_floor_figures_on_the_same_histories(
    dask_client, warmup_days
) -> None:
    """The optimised path (fast validation, batch panels, warm-up blanked by rows, the close
    panel assembled in one block) against the floor of benchmarks/bench_pipeline.py:
    build_panel + compute_indicators + summarize in this process on the same histories.
    Without a warm-up every figure must match; with one, every figure on the last date."""
    from datetime import date

    from portfolio_analysis.sources.base import fetch_start, network_window

    tickers = [f"SYN{i:03d}" for i in range(37)]  # batches of unequal size
    config = AnalysisConfig(
        price_sources=("synthetic",),
        lookback_days=900,
        warmup_days=warmup_days,
        end=date(2026, 11, 20),
        use_cache=False,
    )
    run = pipeline.run_analysis(
        tickers,
        options=pipeline.RunOptions(
            analyses=("pricing", "technicals", "portfolio"), config=config, client=dask_client
        ),
    )
    start, end = network_window(fetch_start(config), config.end, config)
    histories = embedded.synthetic_histories(tickers, start, end, seed=config.synthetic_seed)
    panel = technicals.build_panel(histories)
    floor = technicals.summarize(panel, technicals.compute_indicators(panel))

    assert run.result["status"] == "success" and run.stages.batches > 1
    rows = pd.DataFrame(run.result["combined_analysis"]).set_index("ticker")
    numbers = ["close", *technicals.INDICATORS, "bollinger_pct_b"]
    signals = ["rsi_signal", "bollinger_signal", "macd_trend", "ma_trend"]
    if warmup_days == 0:
        signals += ["ma_cross", "ma_cross_date"]  # crosses are looked for in the lookback only
    for column in numbers:
        pd.testing.assert_series_equal(
            rows[column].astype(float), floor[column].astype(float), check_names=False, rtol=0
        )

    def labels(series: pd.Series) -> list:
        return [None if pd.isna(v) else v for v in series]

    for column in signals:
        assert labels(rows[column]) == labels(floor[column]), column
    lookback = panel["close"].loc[pd.Timestamp(end) - pd.Timedelta(days=900) :]
    pd.testing.assert_frame_equal(run.close, lookback, check_names=False, check_freq=False)


def test_embedded_cluster_workers_reuse_freed_memory_instead_of_fresh_pages() -> None:
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_, which turns off glibc's adaptive mmap
    threshold; the embedded cluster's workers get a fixed one so that a batch's arrays reuse
    freed memory (pricing and indicators ran 2-3x slower without it, issue 19), and the
    nanny's own settings stay."""
    import os

    client = pipeline.setup_dask_client(None, n_workers=1)
    try:
        environ = client.run(
            lambda: {
                k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
            }
        )
    finally:
        client.close()
    (worker,) = environ.values()
    assert worker == {"MALLOC_MMAP_THRESHOLD_": str(64 * 2**20), "MALLOC_TRIM_THRESHOLD_": "65536"}
