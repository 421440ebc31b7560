"""The network layer (network.py) is one for prices and news: the same failure is retried and
reported the same way by a price source and a news source."""

from __future__ import annotations

import socket
from datetime import date

import httpx
import numpy as np
import pytest
from curl_cffi import requests as curl_requests
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.network import TransientSourceError, is_name_resolution_error
from portfolio_analysis.sentiment import NewsSourceError, RssNewsSource
from portfolio_analysis.sources import fetch_histories

from tests.support.local_http import LocalHTTPServer, Reply

pytestmark = pytest.mark.network_sim


def test_a_503_is_retried_alike_by_a_price_source_and_a_news_source(tmp_path):
    with LocalHTTPServer() as server:
        server.route("/q/d/l/", Reply(503, "Service Unavailable"))
        server.route("/rss", Reply(503, "Service Unavailable"))
        config = AnalysisConfig(
            price_sources=("stooq",),
            news_sources=("rss",),
            stooq_url=f"{server.url}/q/d/l/",
            rss_url_template=f"{server.url}/rss?s={{ticker}}",
            start=date(2024, 1, 2),
            end=date(2024, 4, 30),
            cache_dir=tmp_path / "cache",
            use_cache=False,
            backoff_base_seconds=0.1,
            max_retries=2,
            requests_per_second=1000.0,
        )
        _, failures = fetch_histories(["AAPL"], config)
        with pytest.raises(NewsSourceError) as news:
            RssNewsSource().fetch("AAPL", config)
        price_times = [r.time for r in server.requests_to(r"^/q/d/l/$")]
        news_times = [r.time for r in server.requests_to(r"^/rss$")]

    assert failures == {"AAPL": "stooq: Stooq server error (HTTP 503) (gave up after 3 attempts)"}
    assert str(news.value).endswith(": HTTP 503 (gave up after 3 attempts)")
    for times in (price_times, news_times):
        assert len(times) == 3
        # The one backoff: base * 2**(n-1) plus up to `base` of jitter, 0.1-0.2 s then
        # 0.2-0.3 s. The upper bounds leave room for a loaded machine.
        gaps = np.diff(times)
        assert all(
            low - 0.02 <= gap <= low + 0.5 for gap, low in zip(gaps, (0.1, 0.2), strict=True)
        )


def _raised(call) -> BaseException:
    try:
        call()
    except Exception as error:  # the library's own exception, whatever it is
        return error
    raise AssertionError("expected the request to fail")


def test_a_name_that_does_not_resolve_is_told_apart_from_a_refused_connection():
    """httpx (news RSS, Stooq) and curl (yfinance) each say "no DNS" their own way; a refused
    port is a different, possibly passing, failure. name.invalid (RFC 2606) resolves nowhere."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with httpx.Client() as client:
        no_dns = _raised(lambda: client.get("http://name.invalid/", timeout=5))
        refused = _raised(lambda: client.get(f"http://127.0.0.1:{closed_port}/", timeout=5))
    curl_no_dns = _raised(lambda: curl_requests.get("https://name.invalid/", timeout=5))

    assert isinstance(no_dns, httpx.ConnectError) and isinstance(refused, httpx.ConnectError)
    assert is_name_resolution_error(no_dns)
    assert is_name_resolution_error(curl_no_dns)
    assert not is_name_resolution_error(refused)
    assert not is_name_resolution_error(TransientSourceError("HTTP 503"))
