"""The console script ends its process itself once everything is written (cli.end_process),
skipping the interpreter's teardown of pandas, numba and Dask (0.2-0.6 s), and loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("portfolio-analysis")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_end_process_joins_threads_runs_atexit_and_flushes_before_exiting() -> None:
    done = _python(
        "import atexit, sys, threading, time\n"
        "from portfolio_analysis.cli import end_process\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread finished'))).start()\n"
        "print('buffered', end=' ')\n"  # stdout is a pipe: block-buffered, not yet written
        "sys.stderr.write('to stderr')\n"
        "end_process(3)\n"
        "print('not reached')\n"
    )
    assert done.returncode == 3
    assert done.stdout.split() == ["buffered", "thread", "finished", "atexit", "ran"]
    assert done.stderr == "to stderr"


def test_main_without_argv_ends_the_process_with_the_exit_code() -> None:
    done = _python(
        "import sys\n"
        "from portfolio_analysis import cli\n"
        "sys.argv = ['portfolio-analysis', 'run', '--tickers', 'NOT A TICKER']\n"
        "cli.main()\n"
        "print('not reached')\n"
    )
    assert done.returncode == 2  # EXIT_USAGE
    assert "not reached" not in done.stdout
    assert "portfolio-analysis: error:" in done.stderr or "usage:" in done.stderr


def test_the_command_writes_its_reports_and_summary_and_exits_with_its_code(tmp_path) -> None:
    output = tmp_path / "reports"
    env = {**os.environ, "HOME": str(tmp_path), "PORTFOLIO_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [str(SCRIPT), "run", "--tickers", "AAPL,MSFT", "--output", str(output), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"Reports: {output / 'report.html'}" in done.stdout.replace("\n", "")
    document = json.loads((output / "report.json").read_text(encoding="utf-8"))
    assert [row["ticker"] for row in document["combined_analysis"]] == ["AAPL", "MSFT"]
    assert (output / "report.html").read_text(encoding="utf-8").rstrip().endswith("</html>")
