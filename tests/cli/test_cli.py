"""``portfolio-analysis run``: the README's main command.

The default run goes through the installed console script in a fresh process, as a user
runs it; the other runs call ``main([...])`` in-process against a shared LocalCluster
(``--scheduler``), which is the same code path minus the cluster start.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from portfolio_analysis import cli, embedded

from tests.support.bad_schedulers import HTTP_400, peer, scheduler_process, wait_for_tasks

SCRIPT = Path(sys.executable).with_name("portfolio-analysis")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("portfolio-analysis: error: ")
    return lines[0]


@pytest.mark.dask
def test_no_arguments_analyses_the_sample_portfolio_offline(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PORTFOLIO_CACHE_DIR": str(tmp_path / "cache"),
        "TTY_COMPATIBLE": "1",  # rich draws the progress bar as on a terminal
        "COLUMNS": "150",
        # Any attempt to reach the network goes nowhere.
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    out, err = ANSI.sub("", done.stdout), ANSI.sub("", done.stderr)
    assert done.returncode == 0, err
    assert "Traceback" not in err
    # The progress bar went through every stage.
    for label in ("Prices", "Indicators", "News sentiment"):
        assert re.search(rf"{label}\s.*5/5", err), err
    assert "Portfolio figures" in err
    # The summary table lists every holding, then the portfolio figures and the report paths.
    assert "Portfolio analysis: success (5 securities" in out
    for ticker in embedded.SAMPLE_PORTFOLIO:
        assert re.search(rf"│ {ticker}\s+│ embedded", out), out
    assert "Portfolio (" in out and "Max drawdown" in out
    result = json.loads((tmp_path / "portfolio-report" / "report.json").read_text())
    assert result["status"] == "success"
    assert result["report"]["portfolio"]["total_market_value"] > 0
    assert (tmp_path / "portfolio-report" / "report.html").stat().st_size > 10_000
    # The default path never starts (or even configures) a temporary Prefect server.
    assert not (tmp_path / "cache" / "prefect").exists()


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.dask
def test_json_flag_prints_the_same_report_as_the_json_file(
    tmp_path: Path, capsys, scheduler_address: str
) -> None:
    code, out, err = _run(
        capsys,
        "run",
        "--tickers",
        "aapl, msft ,NOPE",
        "--scheduler",
        scheduler_address,
        "--output",
        str(tmp_path),
        "--json",
        "--no-progress",
    )
    assert code == cli.EXIT_PARTIAL, err  # NOPE failed: a partial result
    printed = json.loads(out)
    assert printed == json.loads((tmp_path / "report.json").read_text())
    assert printed["status"] == "partial"
    assert [r["ticker"] for r in printed["combined_analysis"]] == ["AAPL", "MSFT"]
    assert printed["failed"][0]["ticker"] == "NOPE"
    assert "not in the embedded data" in printed["failed"][0]["reason"]


def _write_holdings(tmp_path: Path) -> dict[str, Path]:
    csv_path = tmp_path / "holdings.csv"
    csv_path.write_text("Ticker,Shares\nAAPL,15\nIBM,4\n")
    yaml_path = tmp_path / "holdings.yaml"
    yaml_path.write_text(
        "holdings:\n  - {ticker: aapl, shares: 15}\n  - {ticker: IBM, shares: 4}\n"
    )
    return {"csv": csv_path, "yaml": yaml_path}


def test_holdings_files_in_csv_and_yaml_read_the_same(tmp_path: Path) -> None:
    files = _write_holdings(tmp_path)
    expected = {"AAPL": 15.0, "IBM": 4.0}
    assert cli.read_holdings(files["csv"]) == expected
    assert cli.read_holdings(files["yaml"]) == expected
    plain = tmp_path / "plain.yml"
    plain.write_text("AAPL: 15\nIBM: 4\n")
    assert cli.read_holdings(plain) == expected


@pytest.mark.dask
def test_holdings_give_the_portfolio_its_positions_and_the_html_its_charts(
    tmp_path: Path, capsys, scheduler_address: str
) -> None:
    files = _write_holdings(tmp_path)
    output = tmp_path / "out"
    code, out, err = _run(
        capsys,
        "run",
        "--holdings",
        str(files["yaml"]),
        "--scheduler",
        scheduler_address,
        "--output",
        str(output),
        "--no-progress",
    )
    assert code == 0, err
    result = json.loads((output / "report.json").read_text())
    rows = {r["ticker"]: r for r in result["combined_analysis"]}
    assert list(rows) == ["AAPL", "IBM"]
    portfolio = result["report"]["portfolio"]
    assert portfolio["mode"] == "holdings"
    assert portfolio["market_value"]["AAPL"] == pytest.approx(15 * rows["AAPL"]["close"])
    assert portfolio["market_value"]["IBM"] == pytest.approx(4 * rows["IBM"]["close"])
    assert "AAPL" in out and "IBM" in out and "Market value" in out

    page = (output / "report.html").read_text()
    # Self-contained: nothing is fetched when the page opens.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    # Every chart is drawn in the browser from the data embedded in the page
    # (tests/cli/test_report_browser.py opens it in Chromium).
    charts = set(re.findall(r"data-chart='([^']+)'", page))
    assert {"equity", "drawdown", "price:AAPL", "macd:IBM"} <= charts
    assert "<table class='heat'>" in page and "<ul class='sentiment'>" in page
    data = json.loads(re.search(r"id='report-data'>(.*?)</script>", page, re.S).group(1))
    assert [t["ticker"] for t in data["tickers"]] == ["AAPL", "IBM"]


@pytest.mark.dask
def test_the_sp500_universe_runs_and_the_table_stays_short(
    tmp_path: Path, capsys, scheduler_address: str
) -> None:
    code, out, err = _run(
        capsys,
        "run",
        "--universe",
        "sp500",
        "--scheduler",
        scheduler_address,
        "--output",
        str(tmp_path),
        "--no-progress",
    )
    # Tickers listed or delisted in the period are left out of the portfolio figures: partial.
    assert code == cli.EXIT_PARTIAL, err
    result = json.loads((tmp_path / "report.json").read_text())
    assert result["status"] == "partial"
    analysed = result["report"]["securities_analyzed"]
    assert analysed >= 500
    assert len(result["combined_analysis"]) + len(
        {f["ticker"] for f in result["failed"] if f["stage"] == "pricing"}
    ) == len(embedded.universe_tickers("sp500"))
    assert f"and {analysed - cli_table_rows()} more" in out
    # Listings and delistings in the period: tickers that overlap too little with the rest
    # are left out of the portfolio, each with its reason, instead of failing the figures.
    portfolio = result["report"]["portfolio"]
    assert "error" not in portfolio
    assert len(portfolio["tickers"]) > 450
    assert sorted(portfolio["tickers"] + portfolio["excluded"]) == sorted(
        embedded.universe_tickers("sp500")
    )
    assert set(portfolio["excluded_reasons"]) == set(portfolio["excluded"])


def cli_table_rows() -> int:
    from portfolio_analysis.report import MAX_TABLE_ROWS

    return MAX_TABLE_ROWS


@pytest.mark.dask
def test_nothing_analysable_is_exit_code_1_with_the_reasons(
    tmp_path: Path, capsys, scheduler_address: str
) -> None:
    code, _, err = _run(
        capsys,
        "run",
        "--tickers",
        "NOPE1,NOPE2",
        "--scheduler",
        scheduler_address,
        "--output",
        str(tmp_path),
        "--no-progress",
    )
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("portfolio-analysis: error: no ticker could be analysed: NOPE1: ")
    assert "Check the tickers and --source" in last


class _NoCluster(Exception):
    """Raised by a stand-in for distributed.Client: the test only wants its arguments."""


def test_each_run_gets_its_own_log_level_and_the_process_keeps_its_settings(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI hands its cluster log level to its own run: a --debug run and a quiet run in
    one process each get theirs, the environment is left as it was, and a library run
    afterwards gets the library's default."""
    import distributed
    from portfolio_analysis import pipeline

    levels: list[int] = []

    def no_cluster(*args: object, **kwargs: object) -> None:
        levels.append(kwargs["silence_logs"])
        raise _NoCluster

    monkeypatch.setattr(distributed, "Client", no_cluster)
    environment = dict(os.environ)
    argv = ["run", "--tickers", "AAPL", "--output", str(tmp_path), "--no-progress"]
    with pytest.raises(_NoCluster):
        cli.main([*argv, "--debug"])
    code, _, err = _run(capsys, *argv)
    assert code == 1 and "unexpected _NoCluster" in err
    with pytest.raises(_NoCluster):
        pipeline.run_combined_analysis(["AAPL"])
    assert levels == [logging.INFO, logging.CRITICAL, pipeline.DEFAULT_LOCAL_CLUSTER_LOG_LEVEL]
    assert dict(os.environ) == environment


BAD_INPUTS = {
    "unknown source": (["--source", "bloomberg"], "unknown price source bloomberg: choose from"),
    "unknown news source": (["--news-source", "tv"], "unknown news source tv: choose from"),
    "unknown flag": (["--tickrs", "AAPL"], "unrecognized arguments: --tickrs"),
    "unknown universe": (["--universe", "nasdaq"], "invalid choice: 'nasdaq'"),
    "zero workers": (["--workers", "0"], "must be at least 1"),
    "word workers": (["--workers", "two"], "'two' is not a whole number"),
    "empty tickers": (["--tickers", " , "], "empty ticker list: give e.g. --tickers AAPL,MSFT"),
    "tickers and holdings": (
        ["--tickers", "AAPL", "--holdings", "h.csv"],
        "not allowed with argument",
    ),
    "no scheduler address": (["--scheduler", "localhost"], "use tcp://HOST:PORT"),
    # The cluster behind --scheduler has the size it was given where it runs.
    "workers with scheduler": (
        ["--workers", "4", "--scheduler", "tcp://127.0.0.1:8786"],
        "--workers sizes the local cluster only; with --scheduler the cluster's size is set "
        "where it runs",
    ),
    "data dir without local source": (
        ["--data-dir", ".", "--source", "stooq,embedded"],
        "--data-dir is read by the local price source only: add local to --source",
    ),
    "local source without data dir": (["--source", "local"], "give --data-dir DIR"),
    "zero request rate": (["--requests-per-second", "0"], "must be a positive number, got 0"),
    "word request rate": (["--requests-per-second", "fast"], "'fast' is not a number"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_flags_get_one_line_saying_what_to_fix(case: str, capsys) -> None:
    argv, message = BAD_INPUTS[case]
    code, out, err = _run(capsys, "run", *argv)
    assert code == 2
    assert message in _one_line_error(err)
    assert out == ""


HOLDINGS_FILES = {
    "missing": (None, "cannot read holdings file"),
    "empty": ("", "is empty"),
    "no header": ("AAPL,10\n", "expected a CSV header 'ticker,shares'"),
    "bad shares": ("ticker,shares\nAAPL,ten\n", "line 2: shares 'ten' is not a number"),
    "negative shares": ("ticker,shares\nAAPL,-3\n", "shares must be a positive number"),
    "bad yaml": ("AAPL: [10\n", "is not valid YAML"),
    "yaml list": ("- AAPL\n- MSFT\n", "list entries need 'ticker' and 'shares'"),
    "wrong suffix": ("AAPL 10\n", "use a .csv or .yaml file"),
}


@pytest.mark.parametrize("case", list(HOLDINGS_FILES))
def test_unreadable_holdings_files_get_one_line_saying_what_to_fix(
    case: str, tmp_path: Path, capsys
) -> None:
    text, message = HOLDINGS_FILES[case]
    suffix = {"bad yaml": ".yaml", "yaml list": ".yaml", "wrong suffix": ".txt"}.get(case, ".csv")
    path = tmp_path / f"holdings{suffix}"
    if text is not None:
        path.write_text(text)
    code, out, err = _run(capsys, "run", "--holdings", str(path), "--no-progress")
    assert code == 2
    line = _one_line_error(err)
    assert message in line
    assert str(path) in line


@pytest.mark.parametrize("case", ["missing", "a file"])
def test_an_unusable_data_dir_gets_one_line_saying_what_to_fix(
    case: str, tmp_path: Path, capsys
) -> None:
    path = tmp_path / "prices"
    if case == "a file":
        path.write_text("date,close\n")
    code, out, err = _run(capsys, "run", "--data-dir", str(path), "--no-progress")
    assert code == 2
    line = _one_line_error(err)
    assert f"data folder {path}" in line
    assert {"missing": "does not exist", "a file": "is a file"}[case] in line
    assert out == ""


def test_an_unreachable_scheduler_is_one_line_in_a_real_process(tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_closed_port()}"
    done = subprocess.run(
        [str(SCRIPT), "run", "--scheduler", address, "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    line = _one_line_error(done.stderr)
    assert f"cannot reach the Dask scheduler at {address}" in line
    assert "scheduler is running" in line
    assert not (tmp_path / "report.json").exists()


def test_help_lists_the_options() -> None:
    done = subprocess.run(
        [str(SCRIPT), "run", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    for option in (
        "--tickers",
        "--holdings",
        "--source",
        "--workers",
        "--scheduler",
        "--output",
        "--json",
        "--universe",
        "--prefect",
        "--data-dir",
        "--requests-per-second",
        "--no-cache",
        "STOOQ_API_KEY",
    ):
        assert option in done.stdout


@pytest.mark.dask
def test_ctrl_c_exits_130_with_one_line_and_no_process_left(tmp_path: Path) -> None:
    """Ctrl-C at a terminal signals the whole foreground process group: the CLI and every
    worker process of its embedded cluster. The run is cancelled, the cluster shut down, and
    all the user sees after the signal is one line (it used to be 18-72 lines of worker
    tracebacks and an UnboundLocalError from distributed's atexit close_clusters)."""
    import signal
    import threading
    import time

    import psutil

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PORTFOLIO_CACHE_DIR": str(tmp_path / "cache"),
        "TTY_COMPATIBLE": "1",  # so the progress bar tells when the analysis is under way
    }
    output = tmp_path / "reports"
    process = subprocess.Popen(
        [str(SCRIPT), "run", "--universe", "sp500", "--workers", "2", "--output", str(output)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,  # its own group, as a shell gives a foreground job
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(process.stderr.readline, "")))
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not re.search(r"Prices .*[1-9]\d*/", "".join(err)) and time.monotonic() < deadline:
            assert process.poll() is None, "".join(err)
            time.sleep(0.05)
        assert "Prices" in "".join(err), "the analysis never started"
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= 2, children  # the cluster's worker processes at least
        before = len(err)
        os.killpg(process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        code = process.wait(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        reader.join(timeout=10)
    assert code == 130
    after = [ANSI.sub("", line).strip() for line in err[before:]]
    # Only the one line is left once the bar's last frames (drawn before the signal landed,
    # or the erasing of the bar) are set aside.
    assert [line for line in after if line and "━" not in line] == [
        "portfolio-analysis: error: interrupted; outstanding Dask tasks were cancelled"
    ], "".join(err[before:])
    assert not output.exists()
    # No process of the run is left (reaped or gone within a few seconds).
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], alive


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (None, "it accepted the connection but sent no Dask handshake within 5 s"),
        (HTTP_400, "it answered in another protocol (e.g. HTTP)"),
    ],
    ids=["silent", "http-400"],
)
def test_a_peer_that_is_no_dask_scheduler_is_one_line_within_the_connect_timeout(
    tmp_path: Path, answer: bytes | None, says: str
) -> None:
    import time

    with peer(answer) as address:
        started = time.monotonic()
        done = subprocess.run(
            [str(SCRIPT), "run", "--scheduler", address, "--output", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    line = _one_line_error(done.stderr)
    assert f"no Dask scheduler at {address}: {says}" in line
    assert "MemoryError" not in line
    # The connect timeout (5 s) plus the process's start and imports, never minutes.
    assert elapsed < 5 + 25, elapsed
    assert not (tmp_path / "report.json").exists()


@pytest.mark.dask
def test_sigterm_of_the_scheduler_mid_run_is_one_line_about_the_scheduler(
    tmp_path: Path,
) -> None:
    import signal

    with scheduler_process() as (scheduler, address):
        process = subprocess.Popen(
            [str(SCRIPT), "run", "--scheduler", address, "--output", str(tmp_path),
             "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for_tasks(address)  # connected and submitted: mid-run (it has no workers)
            scheduler.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 2, err
    line = _one_line_error(err)
    assert f"lost the connection to the Dask scheduler at {address} mid-run" in line
    assert "AAPL" not in line and "batch task failed" not in line
    assert out == ""
    assert not (tmp_path / "report.json").exists()
