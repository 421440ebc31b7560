"""The pinned Kubernetes binaries: their versions, their folder and the one way to find each.

A binary is looked up the way controller-runtime's envtest does it, then in the folder
hack/kube-binaries.sh builds into, and never on PATH (a kubectl or helm installed by hand may be
any version; the tests must run the pinned ones):

1. its own variable, `TEST_ASSET_<NAME>` (`TEST_ASSET_KUBE_APISERVER`, `TEST_ASSET_HELM`, ...);
2. the folders named by variables, `KUBEBUILDER_ASSETS` (the e2e cluster reads `E2E_KUBE_BIN`
   first);
3. `binaries_dir()`: `KUBE_BINARIES_DIR`, else
   `<XDG_CACHE_HOME or ~/.cache>/portfolio-operator/kube/<KUBE_VERSION>/bin`, the same rule as
   the build script.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "hack" / "kube-versions.env"
BUILD_SCRIPT = REPO_ROOT / "hack" / "kube-binaries.sh"

# What a control plane runs (kubectl to talk to it), and what a node adds.
CONTROL_PLANE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
NODE_BINARIES = ("kube-scheduler", "kubelet", "kube-proxy")
# Variables naming a folder of binaries, in the order they are asked.
FOLDER_VARIABLES = ("KUBEBUILDER_ASSETS",)
E2E_FOLDER_VARIABLES = ("E2E_KUBE_BIN", *FOLDER_VARIABLES)


class BinariesNotFoundError(RuntimeError):
    """Pinned binaries are missing; the message names each one and how to get it."""


def pinned_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KEY=value pins shared with hack/kube-binaries.sh (KUBE_VERSION, ETCD_VERSION, ...).

    Parsed here rather than sourced: the same file is bash's `source` input, so quotes around a
    value are dropped as bash would.
    """
    versions: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip().strip('"')
    return versions


def cache_root(environ: Mapping[str, str] = os.environ) -> Path:
    """The project's cache folder, `${XDG_CACHE_HOME:-$HOME/.cache}/portfolio-operator`.

    Shared by the binaries (kube/) and the e2e images (images/), as in hack/kube-binaries.sh.
    """
    home = environ.get("HOME") or str(Path.home())
    return Path(environ.get("XDG_CACHE_HOME") or Path(home) / ".cache") / "portfolio-operator"


def binaries_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where hack/kube-binaries.sh puts the pinned build (the script's rule, to the letter)."""
    if environ.get("KUBE_BINARIES_DIR"):
        return Path(environ["KUBE_BINARIES_DIR"])
    return cache_root(environ) / "kube" / pinned_versions()["KUBE_VERSION"] / "bin"


def asset_variable(name: str) -> str:
    """envtest's variable naming one binary: kube-apiserver -> TEST_ASSET_KUBE_APISERVER."""
    return "TEST_ASSET_" + name.upper().replace("-", "_")


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _locate(
    name: str, environ: Mapping[str, str], folder_variables: Sequence[str]
) -> tuple[Path | None, str]:
    """The binary's path, or None and why it was not found."""
    variable = asset_variable(name)
    if environ.get(variable):
        path = Path(environ[variable])
        if _is_executable(path):
            return path, ""
        return None, f"{variable}={path} is not an executable file"
    folders = [Path(environ[v]) for v in folder_variables if environ.get(v)]
    candidates = [folder / name for folder in (*folders, binaries_dir(environ))]
    for candidate in candidates:
        if _is_executable(candidate):
            return candidate, ""
    return None, f"{name} not found (looked in {', '.join(str(c) for c in candidates)})"


def find_binaries(
    names: Iterable[str],
    environ: Mapping[str, str] = os.environ,
    *,
    optional: Iterable[str] = (),
    folder_variables: Sequence[str] = FOLDER_VARIABLES,
) -> dict[str, Path]:
    """name -> path of each binary found (see the module's docstring for the order).

    A required name that is not found, or any TEST_ASSET_* that names no executable, raises
    BinariesNotFoundError listing every problem at once and how to get the binaries; an
    optional name that is not found is simply left out.
    """
    wanted = list(dict.fromkeys([*names, *optional]))
    required = set(names)
    found: dict[str, Path] = {}
    problems: list[str] = []
    for name in wanted:
        path, problem = _locate(name, environ, folder_variables)
        if path is not None:
            found[name] = path
        elif name in required or problem.startswith("TEST_ASSET_"):
            problems.append(problem)
    if problems:
        missing = ", ".join(name for name in wanted if name in required)
        raise BinariesNotFoundError(
            "Kubernetes binaries are missing: "
            + "; ".join(problems)
            + f". Build the pinned set with `{BUILD_SCRIPT.relative_to(REPO_ROOT)}` "
            "(first build takes a while; see docs/control-plane.md), or set "
            f"{' or '.join(folder_variables)} to a folder holding {missing} (or name each "
            "one with its TEST_ASSET_<NAME> variable, e.g. TEST_ASSET_KUBE_APISERVER)."
        )
    return found


def find_binary(
    name: str,
    environ: Mapping[str, str] = os.environ,
    *,
    folder_variables: Sequence[str] = FOLDER_VARIABLES,
) -> Path:
    """One binary's path; BinariesNotFoundError (saying how to get it) if it is missing."""
    return find_binaries([name], environ, folder_variables=folder_variables)[name]


def find_optional_binary(
    name: str,
    environ: Mapping[str, str] = os.environ,
    *,
    folder_variables: Sequence[str] = FOLDER_VARIABLES,
) -> Path | None:
    """One binary's path, or None when it is not found (the caller has another way)."""
    path, _ = _locate(name, environ, folder_variables)
    return path


def find_helm(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The pinned helm (TEST_ASSET_HELM, KUBEBUILDER_ASSETS, the cache folder), or None.

    Never PATH: a helm installed by hand may be any version, and without the pinned build's
    ldflags `helm template` assumes Kubernetes v1.20 (see docs/control-plane.md).
    """
    return find_optional_binary("helm", environ)
