"""The kind end-to-end entry points (`make kind-e2e`, hack/kind-e2e.sh, the GitHub workflow).

No Docker here, so the end-to-end run itself happens in CI (.github/workflows/kind-e2e.yml).
These tests check what can break without an engine: a mistyped input must fail at once with a
message (before a cluster is created), the workflow must call the same entry point with the
pinned helm, and the sample the script applies must exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "kind-e2e.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "kind-e2e.yml"


@pytest.fixture(scope="module")
def bare_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH with only what the script needs before its tool check: never docker or kind,
    so no test can start a real cluster whatever this machine has installed."""
    folder = tmp_path_factory.mktemp("bin")
    for tool in ("bash", "dirname", "date"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run the script"
        (folder / tool).symlink_to(found)
    return str(folder)


def _run_script(path: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(
        [shutil.which("bash") or "bash", str(SCRIPT)],
        env=environment, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMAGE": "portfolio-operator"}, "needs an explicit tag"),
        ({"IMAGE": "portfolio-operator:latest"}, "must not use the tag 'latest'"),
        ({"SAMPLE": "manifests/samples/nope.yaml"}, "sample manifests/samples/nope.yaml not found"),
        ({"DASK_OPERATOR": "helm"}, "DASK_OPERATOR must be 'chart' or 'upstream'"),
        ({"TIMEOUT": "10m"}, "TIMEOUT='10m' must be a whole number of seconds"),
    ],
)
def test_bad_inputs_fail_before_a_cluster_is_created(
    bare_path: str, env: dict[str, str], message: str
) -> None:
    result = _run_script(bare_path, **env)
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert "creating kind cluster" not in result.stderr


def test_missing_tools_are_named(bare_path: str) -> None:
    result = _run_script(bare_path)
    assert result.returncode == 1
    assert "docker is not on PATH; install it" in result.stderr, result.stderr


def test_default_sample_exists_and_runs_without_the_network() -> None:
    text = SCRIPT.read_text()
    default = text.split('SAMPLE="${SAMPLE:-', 1)[1].split("}", 1)[0]
    sample = yaml.safe_load((ROOT / default).read_text())
    assert sample["kind"] == "PortfolioAnalysis"
    # kind nodes may have no route to Yahoo: the sample must use the embedded data.
    assert sample["spec"].get("priceSources", ["embedded"]) == ["embedded"]
    assert "schedulerAddress" not in sample["spec"].get("cluster", {}), (
        "the e2e sample must get its own DaskCluster (that is what kind tests)"
    )


def test_make_target_and_workflow_run_the_script_with_the_pinned_helm() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "kind-e2e", "IMAGE=portfolio-operator:ci-1"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "IMAGE=portfolio-operator:ci-1" in dry_run.stdout
    assert "hack/kind-e2e.sh" in dry_run.stdout

    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)
    assert "make kind-e2e" in commands and "make helm-lint" in commands
    assert "hack/kube-versions.env" in commands  # helm version pinned in one place
    helm_step = next(s for s in steps if "setup-helm" in s.get("uses", ""))
    assert helm_step["with"]["version"] == "${{ steps.versions.outputs.helm }}"
    # YAML 1.1 reads the `on:` key as True.
    triggers = workflow.get("on", workflow.get(True))
    assert {"push", "pull_request"} <= set(triggers)
