"""The request rate limit holds for all processes together, not per process.

The multi-process tests start real processes (forked: spawning four Python processes that
import pandas takes 15-25 s on this 2-core machine) that wait at a barrier, note when they
were released, and then all ask at once. The limiter's promise is measured as an envelope:
counting from the earliest release ``t0``, the k-th request (k = 0, 1, ...) in time order
starts no earlier than ``t0 + k / rate``, i.e. by any time ``t`` at most ``(t - t0) * rate + 1``
requests have started. Being late (a loaded machine, a slow request) never breaks the envelope,
so the test is not flaky; a limit that holds per process only breaks it at once (see the
control test).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd
import pytest
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.ratelimit import (
    FileRateLimiter,
    LocalRateLimiter,
    limiter_for,
    rate_limiter,
    service_for_host,
)
from portfolio_analysis.sentiment import RssNewsSource
from portfolio_analysis.sources import fetch_histories

from tests.support.local_http import LocalHTTPServer, Reply

RATE = 5.0  # requests per second
CLOCK = 0.005  # timestamps of one machine's processes agree to well within this


def too_early(starts: Sequence[float], t0: float, rate: float) -> list[int]:
    """Positions k (in time order) of starts earlier than ``t0 + k / rate`` allows."""
    times = np.sort(np.asarray(starts))
    earliest = t0 + np.arange(len(times)) / rate - CLOCK
    return np.flatnonzero(times < earliest).tolist()


def _acquire_many(kind: str, path: str, rate: float, count: int, barrier, out) -> None:
    limiter = FileRateLimiter(path, rate) if kind == "file" else LocalRateLimiter(rate)
    barrier.wait()
    released = time.time()
    starts = []
    for _ in range(count):
        limiter.acquire()
        starts.append(time.time())
    out.put((released, starts))


def run_processes(target, args_for: Sequence[tuple], timeout: float = 60) -> tuple[float, list]:
    """One forked process per argument tuple, released together: (earliest release, results)."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(args_for))
    out = context.Queue()
    processes = [
        context.Process(target=target, args=(*args, barrier, out), daemon=True) for args in args_for
    ]
    for process in processes:
        process.start()
    try:
        answers = [out.get(timeout=timeout) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    return min(released for released, _ in answers), [result for _, result in answers]


def test_file_limiter_holds_across_processes(tmp_path):
    path = str(tmp_path / "service.slot")
    t0, results = run_processes(_acquire_many, [("file", path, RATE, 4)] * 4)
    starts = [t for result in results for t in result]

    assert len(starts) == 16
    assert too_early(starts, t0, RATE) == []
    # 16 starts at 5/s take at least 3 s, however many processes ask.
    assert max(starts) - t0 >= 15 / RATE - CLOCK


def test_the_measurement_catches_a_limit_that_holds_per_process_only(tmp_path):
    """The same harness with a per-process limiter: 4 processes start together."""
    t0, results = run_processes(_acquire_many, [("local", "", RATE, 4)] * 4)
    starts = [t for result in results for t in result]
    assert len(too_early(starts, t0, RATE)) >= 9  # 3 of every 4 starts come too early


def _fetch_from_stooq(config: AnalysisConfig, tickers: list[str], barrier, out) -> None:
    from portfolio_analysis.network import http_client

    http_client.cache_clear()  # don't share the parent's pooled connections
    barrier.wait()
    released = time.time()
    histories, failures = fetch_histories(tickers, config)
    out.put((released, ({t: h.source for t, h in histories.items()}, failures)))


@pytest.mark.network_sim
def test_processes_fetching_prices_share_one_limit(tmp_path):
    """Four processes fetch 3 tickers each from a local Stooq server at 5 requests/s."""
    index = pd.bdate_range("2024-01-02", periods=40)
    csv = "Date,Open,High,Low,Close,Volume\n" + "".join(
        f"{d:%Y-%m-%d},{100 + i},{101 + i},{99 + i},{100.5 + i},{1000 + i}\n"
        for i, d in enumerate(index)
    )
    with LocalHTTPServer() as server:
        server.route("/q/d/l/", Reply.text(csv, content_type="text/csv"))
        config = AnalysisConfig(
            price_sources=("stooq",),
            start=date(2024, 1, 2),
            end=date(2024, 2, 28),
            stooq_url=f"{server.url}/q/d/l/",
            cache_dir=tmp_path / "cache",
            use_cache=False,
            requests_per_second=RATE,
            min_history_days=20,
        )
        batches = [[f"T{p}{k}" for k in range(3)] for p in range(4)]
        t0, results = run_processes(_fetch_from_stooq, [(config, batch) for batch in batches])
        arrivals = [r.time for r in server.requests]

    assert [failures for _, failures in results] == [{}] * 4
    assert sorted(t for sources, _ in results for t in sources) == sorted(sum(batches, []))
    assert len(arrivals) == 12
    # What the server saw: never more than (t - t0) * 5 + 1 requests by time t.
    assert too_early(arrivals, t0, RATE) == []
    # The limit's state is where the docs say: the run's cache folder.
    assert (tmp_path / "cache" / "ratelimit" / "stooq.slot").is_file()


def test_pause_holds_back_every_process_sharing_the_file(tmp_path):
    path = tmp_path / "yahoo.slot"
    one, other = FileRateLimiter(path, 100.0), FileRateLimiter(path, 100.0)
    one.pause(0.4)  # e.g. a 429 with Retry-After seen by one worker
    started = time.monotonic()
    other.acquire()
    assert time.monotonic() - started >= 0.38


def test_pause_is_capped_so_a_run_never_hangs_on_a_huge_retry_after(tmp_path):
    limiter = FileRateLimiter(tmp_path / "x.slot", 100.0)
    limiter.pause(10**9)
    assert float((tmp_path / "x.slot").read_text()) - time.time() <= 60.5


def test_a_damaged_or_far_future_slot_file_does_not_block(tmp_path):
    path = tmp_path / "svc.slot"
    limiter = FileRateLimiter(path, 10.0)
    for content in ("garbage\n", f"{time.time() + 10**7:.6f}\n"):
        path.write_text(content)
        started = time.monotonic()
        limiter.acquire()
        assert time.monotonic() - started < 1.0  # not the 1e7 s the file asked for


def test_local_limiter_spaces_threads():
    limiter = LocalRateLimiter(20.0)
    starts: list[float] = []
    t0 = time.time()

    def work() -> None:
        for _ in range(3):
            limiter.acquire()
            starts.append(time.time())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(starts) == 12
    assert too_early(starts, t0, 20.0) == []


def test_limiters_are_shared_per_service_and_validated(tmp_path):
    config = AnalysisConfig(cache_dir=tmp_path, requests_per_second=3.0)
    assert limiter_for(config, "yahoo") is limiter_for(config, "yahoo")
    assert limiter_for(config, "yahoo") is not limiter_for(config, "stooq")
    assert isinstance(limiter_for(config, "yahoo"), FileRateLimiter)
    with pytest.raises(ValueError, match="requests per second must be positive, got 0"):
        rate_limiter("x", 0)
    assert service_for_host("feeds.finance.yahoo.com") == "yahoo"
    assert service_for_host("query2.finance.yahoo.com:443") == "yahoo"
    assert service_for_host("stooq.com") == "stooq"
    assert service_for_host("127.0.0.1") == "127.0.0.1"


@pytest.mark.network_sim
def test_news_feeds_use_the_shared_limit(tmp_path):
    feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        "<item><title>Shares rally</title><link>https://example.com/a</link></item>"
        "</channel></rss>"
    )
    with LocalHTTPServer() as server:
        server.route("/rss", Reply.text(feed, content_type="application/rss+xml"))
        config = AnalysisConfig(
            news_sources=("rss",),
            rss_url_template=server.url + "/rss?s={ticker}",
            cache_dir=tmp_path,
            requests_per_second=5.0,
        )
        t0 = time.time()
        for ticker in ("AAPL", "MSFT", "IBM", "GOOG"):
            assert RssNewsSource().fetch(ticker, config)[0].title == "Shares rally"
        arrivals = [r.time for r in server.requests]
    assert len(arrivals) == 4
    assert too_early(arrivals, t0, 5.0) == []
    assert max(arrivals) - t0 >= 3 * 0.2 - CLOCK


# --- across a Dask cluster -----------------------------------------------------------------


def _dask_acquire(name: str, rate: float, count: int, pause: float = 0.0) -> list[float]:
    from distributed import get_worker
    from portfolio_analysis.ratelimit import ClusterRateLimiter, rate_limiter

    limiter = rate_limiter(name, rate)
    assert isinstance(limiter, ClusterRateLimiter), type(limiter)
    starts = [time.time()]  # before asking: a lower bound of this task's first grant
    if pause:
        limiter.pause(pause)
    for _ in range(count):
        limiter.acquire()
        starts.append(time.time())
    return [get_worker().address, *starts]


@pytest.fixture(scope="module")
def dask_cluster():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.mark.dask
def test_cluster_limiter_holds_across_dask_workers(dask_cluster):
    client = dask_cluster
    workers = list(client.scheduler_info()["workers"])
    futures = [
        client.submit(_dask_acquire, "svc-a", RATE, 3, workers=[w], pure=False)
        for w in workers
        for _ in range(2)  # two threads per worker
    ]
    results = client.gather(futures)
    assert {r[0] for r in results} == set(workers)  # really on both processes
    t0 = min(r[1] for r in results)
    starts = [t for r in results for t in r[2:]]
    assert len(starts) == 12
    assert too_early(starts, t0, RATE) == []
    assert max(starts) - t0 >= 11 / RATE - CLOCK


@pytest.mark.dask
def test_a_pause_on_one_worker_holds_back_the_others(dask_cluster):
    client = dask_cluster
    first, second = list(client.scheduler_info()["workers"])[:2]
    started = time.time()
    pausing = client.submit(_dask_acquire, "svc-b", 50.0, 0, 1.0, workers=[first], pure=False)
    client.gather(pausing)
    other = client.submit(_dask_acquire, "svc-b", 50.0, 1, workers=[second], pure=False)
    (_, _, start) = client.gather(other)
    assert start - started >= 0.95


def test_envelope_helper_finds_early_starts():
    assert too_early([0.0, 0.1, 0.35], 0.0, 10.0) == []
    assert too_early([0.0, 0.05, 0.2], 0.0, 10.0) == [1]
    assert too_early([0.3, 0.3, 0.3], 0.0, 10.0) == []  # late, then together: allowed
    assert too_early([0.0, 0.0, 0.0, 0.0], 0.0, 10.0) == [1, 2, 3]


def test_retry_after_header_forms():
    from email.utils import format_datetime

    from portfolio_analysis.ratelimit import retry_after_seconds

    soon = format_datetime(pd.Timestamp.now("UTC").to_pydatetime() + pd.Timedelta(seconds=30))
    assert retry_after_seconds("2") == 2.0
    assert 28 <= retry_after_seconds(soon) <= 30
    assert retry_after_seconds("86400") == 60.0  # capped: fall back rather than hang
    assert retry_after_seconds("-5") == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00") == 0.0  # no zone: UTC, past
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
