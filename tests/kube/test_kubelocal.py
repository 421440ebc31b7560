"""hack.kubelocal, shared by the `kube` tests' control plane and the e2e cluster (no binaries).

What is shown here without Kubernetes: the scripts that import it still run with the standard
library alone, the PKI it makes with openssl is a valid chain with the right names, its
kubeconfigs are self-contained, and the one binaries lookup keeps its order and never reads PATH.
The certificates and flags working against a real API server is tests/kube/test_control_plane.py.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hack.kubelocal import components
from hack.kubelocal.binaries import (
    E2E_FOLDER_VARIABLES,
    REPO_ROOT,
    BinariesNotFoundError,
    cache_root,
    find_binaries,
    find_binary,
    find_helm,
    pinned_versions,
)
from hack.kubelocal.pki import APISERVER_NAMES, control_plane_pki, write_kubeconfig
from tests.kube.test_binaries import fake_binaries


@pytest.mark.parametrize(
    "argv",
    [
        ["hack/local-cluster/cluster.py", "--help"],
        ["hack/images/images.py", "refs", "base", "pause", "coredns"],
        ["-c", "import hack.kubelocal.binaries, hack.kubelocal.pki, hack.kubelocal.components"],
    ],
    ids=["cluster.py", "images.py", "import"],
)
def test_scripts_run_on_the_standard_library_alone(argv: list[str]) -> None:
    """cluster.py runs as root before the virtualenv exists: `-S` leaves out site-packages."""
    result = subprocess.run(
        [sys.executable, "-S", *argv],
        cwd=REPO_ROOT,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def openssl(*args: str | Path) -> str:
    result = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_control_plane_pki_is_a_chain_with_the_names_the_components_need(tmp_path: Path) -> None:
    pki = control_plane_pki(
        tmp_path / "pki",
        ca_subject="/CN=test-ca",
        admin_subject="/O=system:masters/CN=admin",
        service_ip=components.API_SERVICE_IP,
        apiserver_names=["192.0.2.7", "node-a"],
    )
    pki.issue("kubelet", "/CN=node-a", server_names=["192.0.2.7", "node-a"])

    for name in ("apiserver", "admin", "controller-manager", "kubelet"):
        assert "OK" in openssl("verify", "-CAfile", pki.ca_cert, pki.cert(name))
        assert stat.S_IMODE(pki.key(name).stat().st_mode) == 0o600
    sans = openssl("x509", "-in", pki.cert("apiserver"), "-noout", "-ext", "subjectAltName")
    for name in ("192.0.2.7", "node-a", components.API_SERVICE_IP, *APISERVER_NAMES):
        assert name in sans, sans
    assert components.API_SERVICE_IP == "10.0.0.1"
    # Kubernetes takes the user from CN and the groups from O.
    subject = openssl("x509", "-in", pki.cert("admin"), "-noout", "-subject", "-nameopt", "RFC2253")
    assert subject.strip() == "subject=CN=admin,O=system:masters"
    usage = openssl("x509", "-in", pki.cert("admin"), "-noout", "-ext", "extendedKeyUsage")
    assert "Client Authentication" in usage and "Server Authentication" not in usage
    # The token verification key is the public half of the signing key.
    public = openssl("pkey", "-in", pki.service_account_key, "-pubout")
    assert public == pki.service_account_public_key.read_text()
    assert not list((tmp_path / "pki").glob("*.csr")) and not list((tmp_path / "pki").glob("*.ext"))


def test_kubeconfig_embeds_its_credentials_and_takes_one_kind(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("ca pem")
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    cert.write_text("cert pem")
    key.write_text("key pem")

    path = write_kubeconfig(
        tmp_path / "cert.kubeconfig",
        server="https://127.0.0.1:6443",
        ca_cert=ca,
        user="admin",
        client_cert=cert,
        client_key=key,
        namespace="ns",
    )
    config = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"ca pem"
    user = config["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == b"cert pem"
    assert base64.b64decode(user["client-key-data"]) == b"key pem"
    assert config["current-context"] == "admin"
    assert config["contexts"][0]["context"] == {"cluster": "control-plane", "user": "admin",
                                                "namespace": "ns"}  # fmt: skip

    for wrong in ({}, {"token": "t", "client_cert": cert, "client_key": key}):
        with pytest.raises(ValueError, match="token or a client_cert"):
            write_kubeconfig(tmp_path / "x", server="s", ca_cert=ca, user="u", **wrong)


def test_e2e_lookup_asks_e2e_kube_bin_first_and_never_path(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cached = fake_binaries(
        cache / "portfolio-operator" / "kube" / pinned_versions()["KUBE_VERSION"] / "bin",
        ("kubectl", "kubelet"),
    )
    e2e = fake_binaries(tmp_path / "e2e", ("kubectl",))
    on_path = fake_binaries(tmp_path / "path", ("kubectl", "kubelet", "helm", "kube-proxy"))
    environ = {
        "XDG_CACHE_HOME": str(cache),
        "E2E_KUBE_BIN": str(e2e),
        "KUBEBUILDER_ASSETS": str(tmp_path / "empty"),
        "PATH": str(on_path),
    }

    found = find_binaries(["kubectl", "kubelet"], environ, folder_variables=E2E_FOLDER_VARIABLES)
    assert found == {"kubectl": e2e / "kubectl", "kubelet": cached / "kubelet"}
    # The `kube` tests' lookup does not read the e2e variable.
    assert find_binary("kubectl", environ) == cached / "kubectl"
    assert find_helm(environ) is None
    with pytest.raises(BinariesNotFoundError, match="kube-proxy not found"):
        find_binaries(["kube-proxy"], environ, folder_variables=E2E_FOLDER_VARIABLES)


def test_optional_binaries_are_left_out_but_a_wrong_test_asset_is_an_error(
    tmp_path: Path,
) -> None:
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert find_binaries([], environ, optional=["helm"]) == {}
    environ["TEST_ASSET_HELM"] = str(tmp_path / "no-helm")
    assert find_helm(environ) is None
    with pytest.raises(BinariesNotFoundError, match="TEST_ASSET_HELM=.* is not an executable"):
        find_binaries([], environ, optional=["helm"])


def test_cache_root_follows_the_build_script_when_xdg_cache_home_is_empty(
    tmp_path: Path,
) -> None:
    """bash's ${XDG_CACHE_HOME:-$HOME/.cache} treats an empty variable as unset."""
    environ = {"XDG_CACHE_HOME": "", "HOME": str(tmp_path)}
    assert cache_root(environ) == tmp_path / ".cache" / "portfolio-operator"


def test_free_ports_differ() -> None:
    ports = components.free_ports(4)
    assert len(set(ports)) == 4
