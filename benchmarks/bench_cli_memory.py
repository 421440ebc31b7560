"""Peak memory of the CLI and of each of its Dask workers for big synthetic universes (issue 19).

Runs the whole command a user runs, once per size, in a fresh process:

    portfolio-analysis run --tickers SYN00000,... --source synthetic --lookback-days 7300 \\
        --workers 2 --no-progress --output DIR

and samples every 0.1 s, for the CLI process and each process it started (the Dask worker
processes), the kernel's own peak resident set (``VmHWM`` in ``/proc/<pid>/status``, which
keeps the peak between samples). The last sample of each process before it exits is its
peak. Targets: client under 1.5 GiB and each worker under 2 GiB at 10,000 tickers x 20 years,
growing linearly (2,500, 5,000, 10,000).

    uv run python benchmarks/bench_cli_memory.py                   # 2500 5000 10000, 20 years
    uv run python benchmarks/bench_cli_memory.py --sizes 500 --days 3650
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def _hwm_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def run(n_tickers: int, days: int, workers: int) -> dict:
    tickers = ",".join(f"SYN{i:05d}" for i in range(n_tickers))
    with tempfile.TemporaryDirectory(prefix="bench-cli-memory-") as folder:
        command = [
            str(Path(sys.executable).with_name("portfolio-analysis")),
            "run",
            "--tickers",
            tickers,
            "--source",
            "synthetic",
            "--lookback-days",
            str(days),
            "--workers",
            str(workers),
            "--no-progress",
            "--output",
            str(Path(folder) / "report"),
        ]
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        peaks: dict[int, tuple[str, float]] = {}
        parent = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                children = parent.children(recursive=True)
            except psutil.Error:
                children = []
            for proc in [parent, *children]:
                peak = _hwm_mib(proc.pid)
                if peak is None:
                    continue
                try:
                    kind = "client" if proc.pid == process.pid else _kind(proc)
                except psutil.Error:
                    kind = peaks.get(proc.pid, ("other", 0))[0]
                peaks[proc.pid] = (kind, max(peak, peaks.get(proc.pid, (kind, 0.0))[1]))
            time.sleep(0.1)
        out, err = process.communicate()
        elapsed = time.perf_counter() - started
        report = Path(folder) / "report" / "report.json"
        document = json.loads(report.read_text()) if report.exists() else {}
    workers_mib = sorted((p for k, p in peaks.values() if k == "worker"), reverse=True)
    return {
        "tickers": n_tickers,
        "exit": process.returncode,
        "seconds": elapsed,
        "client_mib": peaks.get(process.pid, ("client", float("nan")))[1],
        "workers_mib": workers_mib,
        "analysed": (document.get("result") or document)
        .get("report", {})
        .get("securities_analyzed"),
        "stderr": err.strip().splitlines()[-3:],
    }


def _kind(proc: psutil.Process) -> str:
    line = " ".join(proc.cmdline())
    return "worker" if "spawn_main" in line or "multiprocessing" in line else "other"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2500, 5000, 10000])
    parser.add_argument("--days", type=int, default=7300, help="lookback, calendar days")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(
        f"# bench_cli_memory: {args.days} days, {args.workers} workers, commit {commit or '?'}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load}"
    )
    print(
        "| tickers | exit | wall s | client peak MiB | worker peaks MiB | MiB/1000 tickers "
        "(client) | analysed |"
    )
    print("|---|---|---:|---:|---|---:|---:|")
    for n in args.sizes:
        r = run(n, args.days, args.workers)
        workers = ", ".join(f"{w:.0f}" for w in r["workers_mib"][: args.workers + 1])
        print(
            f"| {n} | {r['exit']} | {r['seconds']:.1f} | {r['client_mib']:.0f} | {workers} | "
            f"{r['client_mib'] / n * 1000:.0f} | {r['analysed']} |",
            flush=True,
        )
        if r["exit"] not in (0, 3):
            print(f"  stderr: {r['stderr']}")
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average at the end: {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
