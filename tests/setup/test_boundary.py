"""The analysis library stands alone: no Kubernetes code in it, none installed for the CLI.

Dependencies point one way, operator -> analysis. The laptop install (`./dev run`:
`uv sync --no-dev`, the distribution without its `operator` extra) must run the CLI, and the
operator's entry point must then say which extra it needs instead of a traceback.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "analysis" / "portfolio_analysis"
KUBERNETES_PACKAGES = {"kopf", "kubernetes", "kubernetes_asyncio", "dask_kubernetes", "kr8s"}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, wherever the import statement is."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_nothing_in_the_library_imports_kubernetes_or_the_operator() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(found)
        for path in sorted(LIBRARY.rglob("*.py"))
        if (found := imported_modules(path) & (KUBERNETES_PACKAGES | {"portfolio_operator"}))
    }
    assert offenders == {}


@pytest.fixture(scope="module")
def laptop_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `./dev run` installs (`uv sync --no-dev`), in a separate environment, offline."""
    venv = tmp_path_factory.mktemp("laptop") / "venv"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {"UV_PROJECT_ENVIRONMENT": str(venv), "UV_OFFLINE": "1", "UV_LINK_MODE": "hardlink"}
    sync = subprocess.run(
        ["uv", "sync", "--locked", "--no-dev", "--quiet", "--python", sys.executable],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert sync.returncode == 0, sync.stderr
    return venv / "bin"


def test_the_laptop_install_runs_the_cli_without_any_kubernetes_package(
    laptop_install: Path,
) -> None:
    probe = subprocess.run(
        [
            str(laptop_install / "python"),
            "-c",
            "import importlib.util, json, portfolio_analysis.cli, portfolio_analysis.flows;"
            f"print(json.dumps([m for m in {sorted(KUBERNETES_PACKAGES)!r}"
            " if importlib.util.find_spec(m)]))",
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]", "the laptop install carries Kubernetes packages"
    help_text = subprocess.run(
        [str(laptop_install / "portfolio-analysis"), "run", "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert help_text.returncode == 0 and "--tickers" in help_text.stdout, help_text.stderr


def test_the_operator_without_its_extra_says_which_extra_to_install(laptop_install: Path) -> None:
    run = subprocess.run(
        [str(laptop_install / "portfolio-operator"), "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode != 0
    assert "pip install 'portfolio-operator[operator]'" in run.stderr
    assert "Traceback" not in run.stderr
