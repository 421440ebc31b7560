"""`./dev test` on a machine that has only Python: every tool the tests call comes from ./dev.

The fast tests that call tools (the image recipe's uv, helm, Go, kubectl) run through `./dev
test` with a bare PATH.

A developer's PATH often holds uv, Go, helm or kubectl installed by hand, and a suite that
calls them by name passes there and fails for a new user. This runs the fast part of the suite
through `./dev test` with the PATH of a bare Debian/Ubuntu (where a tool on that PATH would
still hide the problem, a stand-in that fails loudly is put in front of it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BARE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# The fast tests that run tools themselves (uv, helm, go, kubectl): a full second pass of the
# suite would take half an hour after the e2e cluster, for no more proof.
TOOL_TESTS = (
    "tests/chart/test_image.py",
    "tests/chart/test_chart.py",
    "tests/kube/test_binaries.py",
    "tests/kube/test_kubelocal.py",
    "tests/setup/test_boundary.py",
)
# Tools a user does not have before ./dev provides them.
PROVIDED_BY_DEV = ("uv", "uvx", "go", "helm", "kubectl", "ruff", "pytest")


def hide_tools(folder: Path) -> list[str]:
    """Stand-ins, in `folder`, for each PROVIDED_BY_DEV tool that the bare PATH has anyway."""
    folder.mkdir()
    hidden = []
    for tool in PROVIDED_BY_DEV:
        if shutil.which(tool, path=BARE_PATH):
            stand_in = folder / tool
            stand_in.write_text(
                f"#!/bin/sh\necho '{tool} is not on a new machine: ./dev must provide it' >&2\n"
                "exit 127\n"
            )
            stand_in.chmod(0o755)
            hidden.append(tool)
    return hidden


@pytest.mark.timeout(1800)
def test_fast_suite_passes_through_dev_with_a_bare_path(tmp_path: Path) -> None:
    hidden = hide_tools(tmp_path / "hidden")
    results = tmp_path / "results.xml"
    # The machine's environment (certificates, proxies, caches, KUBEBUILDER_ASSETS), less what
    # `uv run` and pytest set for this run, and a bare PATH.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("UV", "VIRTUAL_ENV", "PYTEST", "PYTHONPATH"))
    }
    env["PATH"] = f"{tmp_path / 'hidden'}:{BARE_PATH}"
    run = subprocess.run(
        [
            "./dev", "test", "-m", "not kube and not e2e", "-q", "-p", "no:cacheprovider",
            *TOOL_TESTS, f"--junitxml={results}",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    output = f"(hid {hidden or 'nothing'})\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    assert run.returncode == 0, output
    suite = ElementTree.parse(results).getroot().find("testsuite")
    assert suite is not None, output
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts["failures"] == counts["errors"] == 0, (counts, output)
    assert counts["tests"] - counts["skipped"] > 50, (counts, output)
    # The tests that run uv themselves (the image recipe's `uv sync`, `uv export`) ran and passed.
    image_tests = [
        case
        for case in suite.iter("testcase")
        if case.get("classname", "").endswith("test_image") and case.find("skipped") is None
    ]
    assert len(image_tests) >= 5, output
