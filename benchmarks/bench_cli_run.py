"""Time `./dev run` as a user does, and say where the time goes (issue 15).

Runs the whole command (`./dev run --output DIR --no-progress`, for the sample portfolio and
for `--universe sp500`) in a fresh process each time, after one untimed warm-up run (warm
caches: the uv environment, numba's compiled kernels, the OS file cache), and prints per
run the wall time and its breakdown:

* ``start-up``: everything outside the analysis and the report: `./dev`'s `uv sync` check,
  `uv run`, the interpreter, imports, argument parsing, the terminal summary and exit
  (wall minus the parts below); ``imports`` is measured on its own (a process importing
  what the command imports);
* ``cluster``: starting the local Dask cluster (``report.stage_durations.dask_setup``);
* ``analysis``: the rest of ``execution_time_seconds`` (the Dask work, aggregation, the
  cluster's shutdown);
* ``rendering``: building the document and the HTML (``report_build`` + ``report_render``);
* ``writing``: writing report.html and report.json;
* ``CPU``: user + system seconds of the command and every process it started (Dask's
  workers included), which other jobs on a shared machine hardly move: on an idle machine
  the wall time of a run in one process is about this.

and the ratio of the wall time to the reference guide's 2.0 s (4 workers, 5 tickers) and to the
5 s asked for the S&P universe. A last run sets ``PYTHONDONTWRITEBYTECODE=1`` (many containers
and CI systems do) to show that start-up does not depend on it: `./dev` installs compiled
bytecode.

The runs use their own uv environment (``--venv``, default
``~/.cache/portfolio-operator/bench-venv``): `./dev run` syncs without the dev group, which
would take pytest and ruff out of the project's `.venv`.

    python3 benchmarks/bench_cli_run.py               # sample and S&P, 3 timed runs each
    python3 benchmarks/bench_cli_run.py --runs 5 --only sample
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import load  # benchmarks/measure.py, beside this script

REPO = Path(__file__).resolve().parents[1]
GUIDE_SECONDS = 2.0  # the reference guide's combined analysis, 5 tickers on 4 workers
TARGETS = {"sample": GUIDE_SECONDS, "sp500": 5.0}
ARGS = {"sample": [], "sp500": ["--universe", "sp500"]}
OK_EXIT_CODES = (0, 3)  # 3: a partial result (the S&P universe leaves tickers out)
IMPORTS = (
    "import portfolio_analysis.cli, portfolio_analysis.pipeline, portfolio_analysis.report, "
    "distributed, rich.console"
)


def uv() -> str:
    for folder in (os.environ.get("PATH", "").split(os.pathsep)) + [
        str(Path.home() / ".local" / "bin")
    ]:
        candidate = Path(folder) / "uv"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise SystemExit("bench_cli_run: uv not found (./dev installs it: run ./dev run once)")


def environment(venv: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, UV_PROJECT_ENVIRONMENT=str(venv), **extra)
    env["PATH"] = f"{Path(uv()).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_once(universe: str, venv: Path, **extra: str) -> dict[str, float]:
    """One `./dev run`, timed from outside; the breakdown from its report.json."""
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as folder:
        output = Path(folder) / "report"
        command = ["./dev", "run", "--output", str(output), "--no-progress", *ARGS[universe]]
        load_1m = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        completed = subprocess.run(
            command,
            cwd=REPO,
            env=environment(venv, **extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if completed.returncode not in OK_EXIT_CODES:
            raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr}")
        text = (output / "report.json").read_text(encoding="utf-8")
        document = json.loads(text)
        html_bytes = (output / "report.html").stat().st_size
        # report.json is written after its own durations were recorded: time that write here.
        from_json = time.perf_counter()
        (Path(folder) / "copy.json").write_text(text, encoding="utf-8")
        json_write = time.perf_counter() - from_json
    report = document["report"]
    durations = report.get("stage_durations") or report.get("timings") or {}
    execution = float(report["execution_time_seconds"])
    cluster = float(durations.get("dask_setup", 0.0))
    rendering = float(durations.get("report_build", 0.0)) + float(
        durations.get("report_render", 0.0)
    )
    writing = float(durations.get("report_write_html", 0.0)) + json_write
    return {
        "wall": wall,
        # CPU seconds of the command and every process it started (uv, python, Dask's
        # workers): unlike wall time, hardly moved by other jobs on a shared machine.
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "start-up": wall - execution - rendering - writing,
        "cluster": cluster,
        "analysis": execution - cluster,
        "rendering": rendering,
        "writing": writing,
        "html_kb": html_bytes / 1000,
        "load": load_1m,
        "json_kb": len(text.encode()) / 1000,
    }


def imports_seconds(venv: Path, **extra: str) -> float:
    """A fresh interpreter importing what the command imports (through `uv run`)."""
    started = time.perf_counter()
    subprocess.run(
        [uv(), "run", "--no-sync", "python", "-c", IMPORTS],
        cwd=REPO,
        env=environment(venv, **extra),
        check=True,
    )
    return time.perf_counter() - started


def row(name: str, figures: dict[str, float], target: float) -> str:
    cells = [f"{figures[k]:.2f}" for k in ("wall", "cpu", "start-up", "cluster", "analysis")]
    cells += [f"{figures['rendering']:.3f}", f"{figures['writing']:.3f}"]
    cells += [f"{figures['wall'] / target:.2f}", f"{figures['html_kb']:.0f}"]
    cells += [f"{figures['load']:.1f}"]
    return f"| {name} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per universe")
    parser.add_argument("--only", choices=tuple(ARGS), help="one universe only")
    parser.add_argument(
        "--venv",
        type=Path,
        default=Path.home() / ".cache" / "portfolio-operator" / "bench-venv",
        help="the uv environment the runs use (UV_PROJECT_ENVIRONMENT)",
    )
    args = parser.parse_args(argv)
    universes = [args.only] if args.only else list(ARGS)
    print(f"# bench_cli_run: {os.cpu_count()} cores, load average before {load()}")
    print(f"# python {sys.version.split()[0]}, environment {args.venv}")
    print(
        "| run | wall s | CPU s | start-up s | cluster s | analysis s | rendering s | writing s "
        "| wall / target | HTML KB | load 1 min |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    summary: dict[str, dict[str, float]] = {}
    for universe in universes:
        run_once(universe, args.venv)  # warm-up, not timed
        runs = [run_once(universe, args.venv) for _ in range(args.runs)]
        for index, figures in enumerate(runs, start=1):
            print(row(f"{universe} #{index}", figures, TARGETS[universe]))
        median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(row(f"**{universe} median**", median, TARGETS[universe]))
        summary[universe] = median
    no_bytecode = {"PYTHONDONTWRITEBYTECODE": "1"}
    nodwb = run_once(universes[0], args.venv, **no_bytecode)
    print(row(f"{universes[0]}, PYTHONDONTWRITEBYTECODE=1", nodwb, TARGETS[universes[0]]))
    imports = statistics.median(imports_seconds(args.venv) for _ in range(3))
    imports_nodwb = statistics.median(imports_seconds(args.venv, **no_bytecode) for _ in range(3))
    print()
    print(
        f"imports (uv run + interpreter + the command's imports): {imports:.2f} s; "
        f"with PYTHONDONTWRITEBYTECODE=1: {imports_nodwb:.2f} s"
    )
    for universe, median in summary.items():
        print(
            f"{universe}: median wall {median['wall']:.2f} s = "
            f"{median['wall'] / TARGETS[universe]:.2f} x the {TARGETS[universe]:.1f} s target "
            f"({median['wall'] / GUIDE_SECONDS:.2f} x the reference guide's 2.0 s); "
            f"rendering {median['rendering'] * 1000:.0f} ms, HTML {median['html_kb']:.0f} KB, "
            f"JSON {median['json_kb']:.0f} KB"
        )
    print(f"# load average after {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
