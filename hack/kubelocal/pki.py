"""A throw-away cluster CA, the certificates a control plane needs, and kubeconfigs.

Made with the `openssl` command, not the `cryptography` package: this runs before the
virtualenv exists (hack/local-cluster/cluster.py, as root). EC P-256 keys everywhere: a few
milliseconds each, and kube-apiserver signs and verifies service-account tokens with one
(ES256) as well as with RSA.

Files, all in one folder: `<name>.key` / `<name>.crt` per certificate, `ca.*` for the CA,
`sa.key` / `sa.pub` for the service-account token key.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# The names the API server's serving certificate holds besides the caller's addresses: loopback
# and the in-cluster names of the `kubernetes` Service.
APISERVER_NAMES = (
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
CERT_DAYS = 30


class PkiError(RuntimeError):
    """openssl is missing or failed; the message holds its command and error output."""


def openssl(*args: str | Path) -> None:
    """Run one openssl command; its output is only wanted when it fails."""
    cmd = ["openssl", *map(str, args)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise PkiError("openssl not found: install the openssl package") from exc
    except subprocess.CalledProcessError as exc:
        raise PkiError(
            f"`{shlex.join(cmd)}` exited {exc.returncode}: {exc.stderr.strip()}"
        ) from exc


def _new_key(path: Path) -> Path:
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    path.chmod(0o600)
    return path


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Pki:
    """A folder holding a CA and what it signed; `issue` adds a certificate."""

    folder: Path

    def cert(self, name: str) -> Path:
        return self.folder / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.folder / f"{name}.key"

    @property
    def ca_cert(self) -> Path:
        return self.cert("ca")

    @property
    def ca_key(self) -> Path:
        return self.key("ca")

    @property
    def service_account_key(self) -> Path:
        """Private half: kube-apiserver signs tokens with it, the controller manager too."""
        return self.key("sa")

    @property
    def service_account_public_key(self) -> Path:
        """Public half: kube-apiserver verifies tokens with it."""
        return self.folder / "sa.pub"

    @classmethod
    def create(cls, folder: Path, ca_subject: str) -> Pki:
        """A new CA (`ca_subject` like "/CN=my-ca") and service-account key pair in `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        pki = cls(folder)
        _new_key(pki.ca_key)
        openssl(
            "req", "-x509", "-new", "-key", pki.ca_key, "-subj", ca_subject,
            "-days", str(CERT_DAYS), "-sha256",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out", pki.ca_cert,
        )  # fmt: skip
        _new_key(pki.service_account_key)
        openssl("pkey", "-in", pki.service_account_key, "-pubout", "-out",
                pki.service_account_public_key)  # fmt: skip
        return pki

    def issue(
        self, name: str, subject: str, *, server_names: Sequence[str] = (), client: bool = False
    ) -> Path:
        """A key and a certificate signed by the CA; its path.

        `subject` like "/O=system:masters/CN=admin" (Kubernetes reads the user from CN and the
        groups from O); `server_names` (IPs or DNS names) make it a serving certificate,
        `client` a client one (both may be given).
        """
        key = self.key(name)
        csr, ext_file = self.folder / f"{name}.csr", self.folder / f"{name}.ext"
        _new_key(key)
        openssl("req", "-new", "-key", key, "-subj", subject, "-out", csr)
        usages = (["serverAuth"] if server_names else []) + (["clientAuth"] if client else [])
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={','.join(usages)}",
        ]
        if server_names:
            unique = dict.fromkeys(server_names)
            sans = [f"IP:{n}" if _is_ip(n) else f"DNS:{n}" for n in unique]
            ext.append(f"subjectAltName={','.join(sans)}")
        ext_file.write_text("\n".join(ext) + "\n")
        openssl(
            "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
            "-CAcreateserial", "-days", str(CERT_DAYS), "-sha256", "-extfile", ext_file,
            "-out", self.cert(name),
        )  # fmt: skip
        csr.unlink()
        ext_file.unlink()
        return self.cert(name)


def control_plane_pki(
    folder: Path,
    *,
    ca_subject: str,
    admin_subject: str,
    service_ip: str,
    apiserver_names: Sequence[str] = (),
) -> Pki:
    """The CA and certificates of etcd + kube-apiserver + kube-controller-manager.

    `apiserver` serves on loopback, `service_ip` (the `kubernetes` Service's ClusterIP), its
    in-cluster names and `apiserver_names`; `admin` (in group system:masters by `admin_subject`)
    and `controller-manager` (system:kube-controller-manager, bound by the bootstrap RBAC
    policy) are client certificates.
    """
    pki = Pki.create(folder, ca_subject)
    pki.issue(
        "apiserver",
        "/CN=kube-apiserver",
        server_names=[*apiserver_names, service_ip, *APISERVER_NAMES],
    )
    pki.issue("admin", admin_subject, client=True)
    pki.issue("controller-manager", "/CN=system:kube-controller-manager", client=True)
    return pki


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path | str,
    *,
    server: str,
    ca_cert: Path,
    user: str,
    token: str | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    namespace: str | None = None,
    cluster: str = "control-plane",
    context: str | None = None,
) -> Path:
    """Write a self-contained kubeconfig (mode 0600) and return its path.

    Give either a bearer `token` or a `client_cert`/`client_key` pair signed by `ca_cert`. The
    CA and client data are embedded, so the file works from any working directory and for
    kopf's own parser. Written as JSON, which every kubeconfig reader accepts (it is YAML).
    """
    if (token is None) == (client_cert is None or client_key is None):
        raise ValueError("write_kubeconfig needs a token or a client_cert/client_key pair")
    credentials: dict[str, str] = {}
    if token is not None:
        credentials["token"] = token
    else:
        assert client_cert is not None and client_key is not None
        credentials["client-certificate-data"] = _b64(Path(client_cert))
        credentials["client-key-data"] = _b64(Path(client_key))
    context_name = context or user
    context_spec: dict[str, str] = {"cluster": cluster, "user": user}
    if namespace:
        context_spec["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": context_name, "context": context_spec}],
        "current-context": context_name,
    }
    path = Path(path)
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path
