"""`./dev` installs compiled bytecode, so start-up does not depend on PYTHONDONTWRITEBYTECODE.

Many containers and CI systems set PYTHONDONTWRITEBYTECODE=1; in an environment that was never
compiled, every start then compiles the whole library stack again (importing it took 3.9 s
instead of 1.1 s, issue 15). This syncs a fresh environment through `./dev run --help` and
checks that every module the command imports, under PYTHONDONTWRITEBYTECODE=1, has its
bytecode already on disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What `portfolio-analysis run` imports before and during a run.
IMPORTS = (
    "portfolio_analysis.cli",
    "portfolio_analysis.pipeline",
    "portfolio_analysis.report",
    "portfolio_analysis.workers",
    "distributed",
    "rich.console",
)
CHECK = f"""
import importlib, json, sys
from pathlib import Path
for name in {IMPORTS!r}:
    importlib.import_module(name)
missing = []
for module in list(sys.modules.values()):
    source = getattr(module, "__file__", None)
    cached = getattr(module, "__cached__", None)
    if source and source.endswith(".py") and cached and not Path(cached).exists():
        missing.append(source)
print(json.dumps({{"modules": len(sys.modules), "missing": missing}}))
"""


def uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(found).exists():
        raise AssertionError("uv is needed to sync the environment (./dev installs it)")
    return found


@pytest.mark.timeout(900)
def test_dev_run_environment_has_bytecode_for_everything_the_command_imports(tmp_path):
    venv = tmp_path / "venv"
    # UV_OFFLINE: the packages come from uv's cache (filled when ./dev test synced .venv).
    env = dict(os.environ, UV_PROJECT_ENVIRONMENT=str(venv), UV_OFFLINE="1")
    env["PATH"] = f"{Path(uv()).parent}{os.pathsep}{env['PATH']}"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(
        ["./dev", "run", "--help"], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL
    )
    assert (venv / ".dev-bytecode-stamp").is_file()
    completed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", CHECK],
        cwd=REPO,
        env=dict(env, PYTHONDONTWRITEBYTECODE="1"),
        check=True,
        capture_output=True,
        text=True,
    )
    import json

    outcome = json.loads(completed.stdout)
    assert outcome["modules"] > 500  # pandas, numpy, dask, distributed... were imported
    assert outcome["missing"] == []
