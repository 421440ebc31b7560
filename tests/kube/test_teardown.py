"""Teardown leaves no process and no port behind, however the session using the fixture ends.

Each case runs a small pytest session in a subprocess that starts the control plane through
the real fixture, records its process ids, ports and work folder, then ends badly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hack.kubelocal.binaries import REPO_ROOT
from tests.support.control_plane import port_is_free, processes_mentioning

pytestmark = pytest.mark.kube

INNER_TEST = """
import json, os, signal, time
from pathlib import Path

def test_ends_badly(control_plane):
    Path(os.environ["INNER_REPORT"]).write_text(json.dumps({
        "pids": control_plane.pids,
        "ports": control_plane.ports,
        "work_dir": str(control_plane.work_dir),
    }))
    mode = os.environ["INNER_MODE"]
    if mode == "interrupt":
        os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C
        time.sleep(30)
    if mode == "killed":
        os.kill(os.getpid(), signal.SIGKILL)  # no Python clean-up at all
    assert False, "this test fails on purpose"
"""


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("mode", "exit_code"),
    [("fail", 1), ("interrupt", 2), ("killed", -9)],
)
def test_no_process_or_port_left_after_the_session(
    tmp_path: Path, mode: str, exit_code: int
) -> None:
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    report = tmp_path / "report.json"
    environ = {**os.environ, "INNER_MODE": mode, "INNER_REPORT": str(report)}
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), environ.get("PYTHONPATH")])
    )
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.kube_fixtures",
         "-p", "no:cacheprovider", "-q", "test_inner.py"],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert inner.returncode == exit_code, inner.stdout[-3000:] + inner.stderr[-3000:]
    started = json.loads(report.read_text())
    assert set(started["pids"]) == {"etcd", "kube-apiserver", "kube-controller-manager"}

    # A SIGKILLed parent leaves its children to the kernel's parent-death signal: give it a moment.
    deadline = time.monotonic() + (15 if mode == "killed" else 0)
    while True:
        alive = [name for name, pid in started["pids"].items() if pid_alive(pid)]
        strays = list(processes_mentioning(started["work_dir"]))
        busy = [name for name, port in started["ports"].items() if not port_is_free(port)]
        if not (alive or strays or busy) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert alive == [] and strays == [], f"left running: {alive} {strays}"
    assert busy == [], f"ports still listening: {busy}"
    if mode == "killed":
        shutil.rmtree(started["work_dir"], ignore_errors=True)  # nobody was left to remove it
    else:
        assert not Path(started["work_dir"]).exists()
