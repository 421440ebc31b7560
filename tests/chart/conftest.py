"""Helm for the chart tests: the pinned binary, `helm template` into parsed objects."""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from hack.kubelocal.binaries import find_helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "portfolio-operator"
RELEASE = "pfo"
NAMESPACE = "portfolio-system"


@dataclass
class Helm:
    binary: Path
    home: Path
    _rendered: dict[tuple[str, ...], list[dict]] = field(default_factory=dict, repr=False)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        for variable, sub in (
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ):
            env[variable] = str(self.home / sub)
        result = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
            )
        return result

    def template(
        self, *set_args: str, include_crds: bool = False, extra: Sequence[str] = ()
    ) -> list[dict]:
        """Render the chart with `--set` arguments; parsed objects, empty documents dropped."""
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra]
        if include_crds:
            args.append("--include-crds")
        for value in set_args:
            args += ["--set", value]
        key = tuple(args)
        if key not in self._rendered:  # the same render is asked for by several tests
            result = self.run(*args)
            assert not result.stderr.strip(), f"helm template warned:\n{result.stderr}"
            rendered = result.stdout
            self._rendered[key] = [doc for doc in yaml.safe_load_all(rendered) if doc]
        return copy.deepcopy(self._rendered[key])

    def template_error(self, *set_args: str) -> str:
        """stderr of a render that must fail; fails the test if it renders."""
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        for value in set_args:
            args += ["--set", value]
        result = self.run(*args, check=False)
        assert result.returncode != 0, f"helm template accepted {set_args}"
        return result.stderr


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = find_helm()
    if binary is None:
        pytest.fail(
            "helm not found: run hack/kube-binaries.sh (it builds the pinned helm), or set "
            "TEST_ASSET_HELM (or KUBEBUILDER_ASSETS)",
            pytrace=False,
        )
    return Helm(binary=binary, home=tmp_path_factory.mktemp("helm-home"))


def by_kind(objects: Sequence[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: Sequence[dict], kind: str, name: str | None = None) -> dict:
    matches = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, got {len(matches)}"
    return matches[0]
