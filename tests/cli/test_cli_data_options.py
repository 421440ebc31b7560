"""Where ``portfolio-analysis run`` gets prices: ``--data-dir``, ``STOOQ_API_KEY``,
``--requests-per-second`` and ``--no-cache``.

Runs call ``main([...])`` in-process against the shared LocalCluster (``--scheduler``); the
Stooq runs go to a local server speaking Stooq's CSV (tests/support/local_http.py), which
the run's config points at in place of stooq.com.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from portfolio_analysis import cli, embedded
from portfolio_analysis.config import AnalysisConfig

from tests.analysis.test_sources import ohlcv, stooq_route
from tests.support.local_http import LocalHTTPServer

pytestmark = [pytest.mark.dask, pytest.mark.network_sim]

TICKERS = ("AAPL", "MSFT", "IBM")


def _run(capsys, *argv: str) -> tuple[int, dict, str]:
    code = cli.main(["run", *argv, "--no-progress"])
    err = capsys.readouterr().err
    output = Path(argv[argv.index("--output") + 1])
    written = (cli.EXIT_OK, cli.EXIT_PARTIAL)  # a run that analysed nothing writes no report
    report = json.loads((output / "report.json").read_text()) if code in written else {}
    return code, report, err


def test_data_dir_prices_come_from_the_users_files(
    tmp_path: Path, capsys, scheduler_address: str
) -> None:
    folder = tmp_path / "my prices"
    folder.mkdir()
    sample = embedded.dataset_histories("sample")
    # Three times the embedded prices: a close from the embedded data would not match.
    mine = {t: sample[t] * [3, 3, 3, 3, 1] for t in ("AAPL", "MSFT")}
    for ticker, frame in mine.items():
        frame.rename(columns=str.title).rename_axis("Date").to_csv(folder / f"{ticker}.csv")

    code, report, err = _run(
        capsys,
        "--tickers",
        "AAPL,MSFT,IBM",
        "--data-dir",
        str(folder),
        "--scheduler",
        scheduler_address,
        "--output",
        str(tmp_path / "out"),
    )

    assert code == cli.EXIT_PARTIAL, err  # IBM has no file
    rows = {r["ticker"]: r for r in report["combined_analysis"]}
    assert {t: r["source"] for t, r in rows.items()} == {"AAPL": "local", "MSFT": "local"}
    for ticker, frame in mine.items():
        assert rows[ticker]["close"] == pytest.approx(frame["close"].iloc[-1])
    # --data-dir alone means "my files only": IBM has none, and no other source filled in.
    (ibm,) = [f for f in report["failed"] if f["ticker"] == "IBM"]
    assert f"no file IBM.csv or IBM.parquet in {folder}" in ibm["reason"]


@pytest.fixture
def stooq(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalHTTPServer]:
    """A local Stooq with a year of prices up to today for TICKERS, and an empty cache."""
    today = pd.Timestamp.today().normalize()
    start = pd.bdate_range(end=today, periods=300)[0]
    histories = {
        t: ohlcv(seed, start=str(start.date()), days=300) for seed, t in enumerate(TICKERS)
    }
    monkeypatch.setenv("PORTFOLIO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(cli.STOOQ_KEY_ENV, raising=False)
    with LocalHTTPServer() as server:
        server.route("/q/d/l/", stooq_route(histories))
        url = f"{server.url}/q/d/l/"
        monkeypatch.setattr(cli, "AnalysisConfig", functools.partial(AnalysisConfig, stooq_url=url))
        yield server


def _stooq_run(capsys, tmp_path: Path, scheduler: str, *flags: str) -> tuple[int, dict, str]:
    return _run(
        capsys,
        "--tickers",
        ",".join(TICKERS),
        "--source",
        "stooq",
        "--scheduler",
        scheduler,
        "--output",
        str(tmp_path / "out"),
        *flags,
    )


def test_the_stooq_api_key_comes_from_stooq_api_key_and_stays_out_of_the_report(
    stooq: LocalHTTPServer, tmp_path: Path, capsys, scheduler_address: str, monkeypatch
) -> None:
    fast = ("--requests-per-second", "50", "--no-cache")
    code, _, err = _stooq_run(capsys, tmp_path, scheduler_address, *fast)
    assert code == 0, err
    assert [r.query.get("apikey") for r in stooq.requests] == [None] * 3

    stooq.reset_log()
    monkeypatch.setenv(cli.STOOQ_KEY_ENV, "k3y-from-env")
    code, report, err = _stooq_run(capsys, tmp_path, scheduler_address, *fast)
    assert code == 0, err
    assert sorted(r.query["s"] for r in stooq.requests) == ["aapl.us", "ibm.us", "msft.us"]
    assert {r.query.get("apikey") for r in stooq.requests} == {"k3y-from-env"}
    assert {r["source"] for r in report["combined_analysis"]} == {"stooq"}
    written = "".join(p.read_text() for p in (tmp_path / "out").iterdir())
    assert "k3y-from-env" not in written + err


def test_requests_per_second_spaces_the_requests_of_all_workers(
    stooq: LocalHTTPServer, tmp_path: Path, capsys, scheduler_address: str
) -> None:
    # Two workers fetch at once; the default (2/s) would let requests start 0.5 s apart.
    code, report, err = _stooq_run(
        capsys, tmp_path, scheduler_address, "--requests-per-second", "1", "--no-cache"
    )
    assert code == 0, err
    assert len(report["combined_analysis"]) == len(TICKERS)
    starts = sorted(r.time for r in stooq.requests)
    assert len(starts) == len(TICKERS)
    assert np.diff(starts).min() >= 0.8, np.diff(starts)  # arrival jitter: ~0.05 s


def test_no_cache_fetches_again_and_caches_nothing(
    stooq: LocalHTTPServer, tmp_path: Path, capsys, scheduler_address: str
) -> None:
    def requests_made(*flags: str) -> int:
        before = stooq.count()
        code, report, err = _stooq_run(
            capsys, tmp_path, scheduler_address, "--requests-per-second", "50", *flags
        )
        assert code == 0, err
        assert {r["source"] for r in report["combined_analysis"]} == {"stooq"}
        return stooq.count() - before

    assert requests_made("--no-cache") == 3
    assert requests_made() == 3  # the --no-cache run left nothing in the cache
    assert requests_made() == 0  # served from the cache the previous run filled
    assert requests_made("--no-cache") == 3  # not read either
