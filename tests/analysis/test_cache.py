"""The on-disk price cache: a repeated run must not touch the network again."""

from __future__ import annotations

import os
import threading
import time
from datetime import date, timedelta

import pandas as pd
import pytest
from portfolio_analysis.cache import PriceCache
from portfolio_analysis.sources import fetch_histories
from portfolio_analysis.validation import validate_ohlcv

from tests.analysis.test_sources import (
    END,
    START,
    chart_route,
    config,
    ohlcv,
    stooq_config,
    stooq_route,
    yahoo_source,
)
from tests.support.local_http import LocalHTTPServer
from tests.support.local_yahoo import local_yahoo


@pytest.fixture
def stooq():
    with LocalHTTPServer() as server:
        server.route("/q/d/l/", stooq_route({"AAPL": ohlcv(1), "MSFT": ohlcv(2)}))
        yield server


@pytest.mark.network_sim
def test_repeated_stooq_run_is_served_from_disk(tmp_path, stooq):
    cfg = stooq_config(tmp_path, stooq, use_cache=True)
    first, _ = fetch_histories(["AAPL", "MSFT"], cfg)
    assert stooq.count() == 2

    again, failures = fetch_histories(["AAPL", "MSFT"], cfg)

    assert failures == {}
    assert stooq.count() == 2  # no second request
    assert {t: h.source for t, h in again.items()} == {"AAPL": "stooq", "MSFT": "stooq"}
    for ticker in first:
        pd.testing.assert_frame_equal(again[ticker].frame, first[ticker].frame)
    # One file for the batch, not one per ticker, in a folder per source and range.
    (path,) = (tmp_path / "cache").rglob("*.arrow")
    assert str(path.parent.relative_to(tmp_path)) == "cache/prices/stooq/2024-01-02_2024-04-30"


@pytest.mark.network_sim
def test_repeated_yfinance_run_is_served_from_disk(tmp_path):
    cfg = config(tmp_path, "yfinance", use_cache=True)
    with local_yahoo(tmp_path) as (server, session):
        server.route("/v8/finance/chart/", chart_route({"AAPL": ohlcv(1)}))
        first, _ = fetch_histories(["AAPL"], cfg, [yahoo_source(cfg, session)])
        seen = server.count()
        assert server.count(r"^/v8/finance/chart/AAPL") >= 1

        again, failures = fetch_histories(["AAPL"], cfg, [yahoo_source(cfg, session)])

        assert server.count() == seen  # not even a cookie or crumb request
    assert failures == {}
    assert again["AAPL"].source == "yfinance"
    pd.testing.assert_frame_equal(again["AAPL"].frame, first["AAPL"].frame)


@pytest.mark.network_sim
def test_the_key_is_source_ticker_and_range(tmp_path, stooq):
    cfg = stooq_config(tmp_path, stooq, use_cache=True)
    fetch_histories(["AAPL"], cfg)
    fetch_histories(["AAPL"], cfg.with_changes(end=END - timedelta(days=7)))
    fetch_histories(["MSFT"], cfg)
    fetch_histories(["AAPL"], cfg)  # the first range again: cached
    assert [(r.query["s"], r.query["d2"]) for r in stooq.requests] == [
        ("aapl.us", "20240430"),
        ("aapl.us", "20240423"),
        ("msft.us", "20240430"),
    ]


@pytest.mark.network_sim
def test_failures_are_not_cached(tmp_path, stooq):
    cfg = stooq_config(tmp_path, stooq, use_cache=True)
    fetch_histories(["ZZZZ"], cfg)
    _, failures = fetch_histories(["ZZZZ"], cfg)
    assert "no data" in failures["ZZZZ"]
    assert stooq.count() == 2


@pytest.mark.network_sim
def test_use_cache_false_always_asks(tmp_path, stooq):
    cfg = stooq_config(tmp_path, stooq, use_cache=False)
    fetch_histories(["AAPL"], cfg)
    fetch_histories(["AAPL"], cfg)
    assert stooq.count() == 2
    assert not (tmp_path / "cache" / "prices").exists()


@pytest.mark.network_sim
def test_a_range_ending_today_is_refetched_after_the_ttl(tmp_path):
    today = date.today()
    frame = ohlcv(3, start=str(today - timedelta(days=200)), days=140)
    frame = frame.loc[: pd.Timestamp(today)]
    with LocalHTTPServer() as server:
        server.route("/q/d/l/", stooq_route({"AAPL": frame}))
        cfg = stooq_config(
            tmp_path, server, use_cache=True, start=None, end=None, cache_ttl_seconds=3600
        )
        fetch_histories(["AAPL"], cfg)
        fetch_histories(["AAPL"], cfg)
        assert server.count() == 1  # fresh
        (path,) = (tmp_path / "cache" / "prices" / "stooq").rglob("*.arrow")
        assert path.parent.name.endswith(f"_{today.isoformat()}")
        old = time.time() - 7200
        os.utime(path, (old, old))
        fetch_histories(["AAPL"], cfg)
        assert server.count() == 2  # today's bar may have changed: asked again


def test_a_past_range_never_expires(tmp_path):
    cache = PriceCache(tmp_path, ttl_seconds=0)
    frame = ohlcv()
    cache.put("stooq", "AAPL", START, END, frame)
    (path,) = cache.files("stooq", START, END)
    os.utime(path, (0, 0))
    pd.testing.assert_frame_equal(cache.get("stooq", "AAPL", START, END), frame, check_freq=False)


@pytest.mark.network_sim
def test_a_damaged_file_is_a_miss_and_gets_replaced(tmp_path, stooq):
    cfg = stooq_config(tmp_path, stooq, use_cache=True)
    fetch_histories(["AAPL"], cfg)
    (path,) = (tmp_path / "cache" / "prices" / "stooq").rglob("*.arrow")
    path.write_bytes(b"ARROW1 truncated")

    histories, failures = fetch_histories(["AAPL"], cfg)
    assert failures == {} and histories["AAPL"].source == "stooq"
    assert stooq.count() == 2
    assert PriceCache(tmp_path / "cache", 0).get("stooq", "AAPL", START, END) is not None


def test_concurrent_writers_never_expose_a_partial_file(tmp_path):
    """Dask workers may fetch the same ticker at once: readers see no file or a whole one."""
    cache = PriceCache(tmp_path, ttl_seconds=60)
    frame = ohlcv(days=2000, start="2010-01-01")
    stop = threading.Event()
    seen: list[object] = []

    def write() -> None:
        while not stop.is_set():
            cache.put("stooq", "AAPL", START, END, frame)

    def read() -> None:
        while not stop.is_set():
            got = cache.get("stooq", "AAPL", START, END)
            seen.append(None if got is None else len(got))

    threads = [threading.Thread(target=write) for _ in range(3)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()
    lengths = {n for n in seen if n is not None}
    assert lengths == {2000}
    assert not list((tmp_path / "prices" / "stooq").rglob("*.tmp"))


def _frames(*tickers: str, days: int = 300) -> dict[str, pd.DataFrame]:
    return {
        t: validate_ohlcv(t, ohlcv(i + 1, days=days, start="2020-01-01"))
        for i, t in enumerate(tickers)
    }


def test_a_batch_is_one_file_and_a_reader_reads_the_tickers_it_asks_for(tmp_path):
    cache = PriceCache(tmp_path, ttl_seconds=60)
    frames = _frames("AAPL", "MSFT", "IBM")
    cache.put_many("yfinance", frames, START, END)
    assert len(cache.files("yfinance", START, END)) == 1

    got = cache.get_many("yfinance", ["IBM", "AAPL", "ZZZZ"], START, END)

    assert sorted(got) == ["AAPL", "IBM"]  # ZZZZ is a miss, MSFT was not asked for
    for ticker, frame in got.items():
        pd.testing.assert_frame_equal(frame, frames[ticker], check_freq=False)
    assert cache.get_many("yfinance", ["AAPL"], START, END + timedelta(days=1)) == {}


def test_a_ticker_in_two_batch_files_is_served_from_the_newest(tmp_path):
    """Runs batch tickers differently (worker counts); a ticker re-downloaded into a newer
    file must win over its older copy."""
    cache = PriceCache(tmp_path, ttl_seconds=60)
    old = _frames("AAPL", "MSFT")
    new = _frames("MSFT", "AAPL", days=320)  # other prices and length under the same names
    cache.put_many("stooq", old, START, END)
    (first,) = cache.files("stooq", START, END)
    os.utime(first, (time.time() - 100, time.time() - 100))
    cache.put_many("stooq", {"AAPL": new["AAPL"]}, START, END)

    got = cache.get_many("stooq", ["AAPL", "MSFT"], START, END)

    assert len(got["AAPL"]) == 320
    pd.testing.assert_frame_equal(got["AAPL"], new["AAPL"], check_freq=False)
    pd.testing.assert_frame_equal(got["MSFT"], old["MSFT"], check_freq=False)


@pytest.mark.network_sim
def test_an_unusable_cache_folder_is_a_warning_not_a_failed_run(tmp_path, caplog):
    """Also for the rate limit, whose shared state lives in the same folder."""
    blocked = tmp_path / "cache"
    blocked.write_text("not a folder")
    with LocalHTTPServer() as server:
        server.route("/q/d/l/", stooq_route({"AAPL": ohlcv()}))
        cfg = stooq_config(tmp_path, server, use_cache=True, cache_dir=blocked)
        histories, failures = fetch_histories(["AAPL"], cfg)
    assert failures == {}
    assert histories["AAPL"].source == "stooq"
    assert "could not cache AAPL from stooq" in caplog.text
