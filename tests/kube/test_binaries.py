"""Finding the control-plane binaries the envtest way, and failing (never skipping) without them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hack.kubelocal.binaries import (
    REPO_ROOT,
    BinariesNotFoundError,
    binaries_dir,
    pinned_versions,
)
from tests.support.control_plane import KubeBinaries

NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")


def fake_binaries(folder: Path, names=NAMES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return folder


def test_kubebuilder_assets_wins_over_the_cache_and_test_asset_wins_over_both(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    fake_binaries(cache / "portfolio-operator" / "kube" / pinned_versions()["KUBE_VERSION"] / "bin")
    # setup-envtest ships only these three; the controller manager must come from the cache.
    assets = fake_binaries(tmp_path / "assets", ("etcd", "kube-apiserver", "kubectl"))
    own_etcd = fake_binaries(tmp_path / "own", ("etcd",)) / "etcd"
    environ = {
        "XDG_CACHE_HOME": str(cache),
        "KUBEBUILDER_ASSETS": str(assets),
        "TEST_ASSET_ETCD": str(own_etcd),
        "HOME": str(tmp_path),
    }

    found = KubeBinaries.find(environ)

    assert found.etcd == own_etcd
    assert found.kube_apiserver == assets / "kube-apiserver"
    assert found.kubectl == assets / "kubectl"
    assert found.kube_controller_manager == binaries_dir(environ) / "kube-controller-manager"
    assert binaries_dir(environ).is_relative_to(cache)


def test_missing_binaries_name_each_one_and_the_way_to_get_them(tmp_path: Path) -> None:
    assets = fake_binaries(tmp_path / "assets", ("kubectl",))
    environ = {
        "XDG_CACHE_HOME": str(tmp_path / "empty-cache"),
        "KUBEBUILDER_ASSETS": str(assets),
        "TEST_ASSET_KUBE_APISERVER": str(tmp_path / "nowhere" / "kube-apiserver"),
    }
    with pytest.raises(BinariesNotFoundError) as error:
        KubeBinaries.find(environ)
    message = str(error.value)
    assert "etcd not found" in message
    assert "kube-controller-manager not found" in message
    assert "TEST_ASSET_KUBE_APISERVER=" in message and "not an executable" in message
    assert "kubectl not found" not in message
    assert "hack/kube-binaries.sh" in message and "KUBEBUILDER_ASSETS" in message


def test_build_script_prints_the_folder_the_fixture_looks_in(tmp_path: Path) -> None:
    environ = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    environ.pop("KUBE_BINARIES_DIR", None)
    script = str(REPO_ROOT / "hack" / "kube-binaries.sh")

    missing = subprocess.run([script, "--print-dir"], env=environ, capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stdout == ""
    assert "hack/kube-binaries.sh" in missing.stderr

    folder = fake_binaries(
        binaries_dir(environ),
        (*NAMES, "kube-scheduler", "kubelet", "kube-proxy"),
    )
    present = subprocess.run([script, "--print-dir"], env=environ, capture_output=True, text=True)
    assert present.returncode == 0, present.stderr
    assert present.stdout.strip() == str(folder)


def helm_stamp() -> str:
    """What hack/kube-binaries.sh writes in helm's stamp: the pinned version and the recipe."""
    script = (REPO_ROOT / "hack" / "kube-binaries.sh").read_text()
    match = re.search(r'^HELM_STAMP="\$HELM_VERSION([^"$]*)"$', script, re.M)
    assert match, 'no HELM_STAMP="$HELM_VERSION..." line in hack/kube-binaries.sh'
    return pinned_versions()["HELM_VERSION"] + match.group(1)


def test_build_script_reuses_stamped_binaries_without_go_or_the_lock(tmp_path: Path) -> None:
    """`./dev test` runs the script every time: once built, it must not rebuild or wait."""
    # A PATH with the shell tools the script uses but no Go, wherever Go is installed.
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("bash", "dirname", "cut", "date", "cat", "mkdir", "flock"):
        (tools / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    environ = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": str(tools)}
    environ.pop("KUBE_BINARIES_DIR", None)
    pins = pinned_versions()
    folder = binaries_dir(environ)
    version_of = {
        "etcd": pins["ETCD_VERSION"],
        "helm": helm_stamp(),
        **{
            name: pins["KUBE_VERSION"]
            for name in ("kube-apiserver", "kube-controller-manager", "kubectl")
            + ("kube-scheduler", "kubelet", "kube-proxy")
        },
    }
    fake_binaries(folder, tuple(version_of))
    for name, version in version_of.items():
        # Built by an older Go patch release: still the pinned version, so still good.
        (folder / f".{name}.stamp").write_text(f"{version} go1.26.0\n")
    # A concurrent build (say of CoreDNS) holds the lock the whole time.
    lock = folder.parent / ".lock"
    holder = subprocess.Popen(["flock", str(lock), "sleep", "60"])
    try:
        script = str(REPO_ROOT / "hack" / "kube-binaries.sh")
        reused = subprocess.run([script], env=environ, capture_output=True, text=True, timeout=20)
        assert reused.returncode == 0, reused.stderr
        assert reused.stdout.strip() == str(folder)

        (folder / ".etcd.stamp").write_text("v3.5.0 go1.26.0\n")  # pin moved on: must rebuild
        stale = subprocess.run([script], env=environ, capture_output=True, text=True, timeout=20)
        assert stale.returncode == 1 and "no Go toolchain" in stale.stderr

        # A helm built before the Kubernetes-version ldflags (stamped with the bare version)
        # assumes Kubernetes v1.20: it must be rebuilt once, like a moved pin.
        (folder / ".etcd.stamp").write_text(f"{pins['ETCD_VERSION']} go1.26.0\n")
        (folder / ".helm.stamp").write_text(f"{pins['HELM_VERSION']} go1.26.0\n")
        old_helm = subprocess.run([script], env=environ, capture_output=True, text=True, timeout=20)
        assert old_helm.returncode == 1 and "no Go toolchain" in old_helm.stderr
    finally:
        holder.kill()
        holder.wait()


def test_fixture_fails_rather_than_skips_without_binaries(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(
        "def test_needs_kube(control_plane):\n    assert control_plane.running\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TEST_ASSET_")}
    environ.update(
        KUBEBUILDER_ASSETS=str(tmp_path / "no-assets"),
        XDG_CACHE_HOME=str(tmp_path / "no-cache"),
        PYTHONPATH=str(REPO_ROOT),
        PATH=os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin",
    )
    environ.pop("KUBE_BINARIES_DIR", None)
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.kube_fixtures",
         "-p", "no:cacheprovider", "-rA", "test_inner.py"],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert inner.returncode == 1, inner.stdout + inner.stderr
    assert "1 error" in inner.stdout and "skipped" not in inner.stdout
    assert "hack/kube-binaries.sh" in inner.stdout
