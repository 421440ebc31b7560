"""A real Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager as processes.

This is the approach of controller-runtime's envtest, done in plain Python so pytest, the
`kubernetes` client, kopf, kubectl and helm can all talk to a real API server without Docker.
The API server flags follow envtest (controller-runtime pkg/internal/testing/controlplane):
secure port on 127.0.0.1, generated serving certificate, one RSA key for both service-account
flags, RBAC authorization, ServiceAccount admission disabled; authentication by a static token
file whose `admin` user is in `system:masters`, and by client certificates from a generated CA.
The controller manager adds what envtest lacks: garbage collection and namespace deletion.

Binaries are found the envtest way (see `KubeBinaries.find`); `hack/kube-binaries.sh` builds
them from the Go module proxy into the pinned cache folder.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import datetime
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "hack" / "kube-versions.env"
BUILD_SCRIPT = REPO_ROOT / "hack" / "kube-binaries.sh"

# Binary name -> the envtest-style variable that names it directly.
ASSET_VARIABLES = {
    "etcd": "TEST_ASSET_ETCD",
    "kube-apiserver": "TEST_ASSET_KUBE_APISERVER",
    "kubectl": "TEST_ASSET_KUBECTL",
    "kube-controller-manager": "TEST_ASSET_KUBE_CONTROLLER_MANAGER",
    "helm": "TEST_ASSET_HELM",
}
REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")


class BinariesNotFoundError(RuntimeError):
    """The control-plane binaries are missing; the message says how to get them."""


class ControlPlaneError(RuntimeError):
    """A control-plane process failed to start or become ready; the message holds its log tail."""


def pinned_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KEY=value pins shared with hack/kube-binaries.sh (KUBE_VERSION, ETCD_VERSION, ...)."""
    versions: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


def default_binaries_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where hack/kube-binaries.sh puts the pinned build (same rule as the script)."""
    if environ.get("KUBE_BINARIES_DIR"):
        return Path(environ["KUBE_BINARIES_DIR"])
    cache_root = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_root / "portfolio-operator" / "kube" / pinned_versions()["KUBE_VERSION"] / "bin"


@dataclass(frozen=True)
class KubeBinaries:
    """Paths of the executables the control plane runs; helm is optional."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    helm: Path | None = None

    @classmethod
    def find(cls, environ: Mapping[str, str] = os.environ) -> KubeBinaries:
        """Look each binary up as envtest does, then in the pinned cache folder.

        Order per binary: its TEST_ASSET_* variable, then $KUBEBUILDER_ASSETS/<name>, then
        the folder hack/kube-binaries.sh builds into (never PATH: the pinned versions only).
        Raises BinariesNotFoundError naming every missing binary and how to get it.
        """
        folders = []
        if environ.get("KUBEBUILDER_ASSETS"):
            folders.append(Path(environ["KUBEBUILDER_ASSETS"]))
        folders.append(default_binaries_dir(environ))

        found: dict[str, Path] = {}
        problems: list[str] = []
        for name in (*REQUIRED_BINARIES, "helm"):
            variable = ASSET_VARIABLES[name]
            if environ.get(variable):
                path = Path(environ[variable])
                if _is_executable(path):
                    found[name] = path
                else:
                    problems.append(f"{variable}={path} is not an executable file")
                continue
            candidates = [folder / name for folder in folders]
            path = next((c for c in candidates if _is_executable(c)), None)
            if path is not None:
                found[name] = path
            elif name != "helm":
                looked = ", ".join(str(c) for c in candidates)
                problems.append(f"{name} not found (looked in {looked})")
        if problems:
            raise BinariesNotFoundError(
                "Kubernetes test binaries are missing: "
                + "; ".join(problems)
                + f". Build the pinned set with `{BUILD_SCRIPT.relative_to(REPO_ROOT)}` "
                "(first build takes a while; see docs/control-plane.md), or set "
                "KUBEBUILDER_ASSETS to a folder holding etcd, kube-apiserver, "
                "kube-controller-manager and kubectl (or TEST_ASSET_ETCD, "
                "TEST_ASSET_KUBE_APISERVER, TEST_ASSET_KUBE_CONTROLLER_MANAGER, "
                "TEST_ASSET_KUBECTL)."
            )
        return cls(
            etcd=found["etcd"],
            kube_apiserver=found["kube-apiserver"],
            kube_controller_manager=found["kube-controller-manager"],
            kubectl=found["kubectl"],
            helm=found.get("helm"),
        )


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port (TIME_WAIT leftovers don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# --- certificates -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pki:
    """Files written by `_write_pki`, all inside one folder."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    controller_manager_cert: Path
    controller_manager_key: Path
    service_account_key: Path


def _write_pki(folder: Path) -> _Pki:
    """A throw-away CA, the API server's serving pair, two client pairs and the SA signing key.

    EC P-256 for the certificates (fast to generate); RSA 2048 for the service-account key,
    which the API server uses both to sign and to verify tokens.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7))

    def write_key(path: Path, key) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    def name(common_name: str, organization: str | None = None) -> x509.Name:
        parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        return x509.Name(parts)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("portfolio-operator-test-ca"))
        .issuer_name(name("portfolio-operator-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    def issue(subject: x509.Name, usage, sans: list[x509.GeneralName] | None = None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(validity[0])
            .not_valid_after(validity[1])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    pem = serialization.Encoding.PEM
    paths = _Pki(
        ca_cert=folder / "ca.crt",
        ca_key=folder / "ca.key",
        serving_cert=folder / "apiserver.crt",
        serving_key=folder / "apiserver.key",
        admin_cert=folder / "admin.crt",
        admin_key=folder / "admin.key",
        controller_manager_cert=folder / "kube-controller-manager.crt",
        controller_manager_key=folder / "kube-controller-manager.key",
        service_account_key=folder / "service-account.key",
    )
    paths.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    write_key(paths.ca_key, ca_key)

    serving_sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),  # first IP of the service range
    ]
    for (cert_path, key_path), (subject, usage, sans) in {
        (paths.serving_cert, paths.serving_key): (
            name("kube-apiserver"),
            ExtendedKeyUsageOID.SERVER_AUTH,
            serving_sans,
        ),
        (paths.admin_cert, paths.admin_key): (
            name("admin", "system:masters"),
            ExtendedKeyUsageOID.CLIENT_AUTH,
            None,
        ),
        (paths.controller_manager_cert, paths.controller_manager_key): (
            name("system:kube-controller-manager"),
            ExtendedKeyUsageOID.CLIENT_AUTH,
            None,
        ),
    }.items():
        cert, key = issue(subject, usage, sans)
        cert_path.write_bytes(cert.public_bytes(pem))
        write_key(key_path, key)

    write_key(paths.service_account_key, rsa.generate_private_key(65537, 2048))
    return paths


# --- processes ----------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - non-glibc platforms
    _LIBC = None


def _die_with_parent() -> None:
    """Child-side backstop: the kernel SIGKILLs this process if the spawning thread dies."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout`, reap the leader."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        # The group may still hold children even when the leader is gone.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    if ca_file is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=str(ca_file))


def _http_ok(url: str, *, context: ssl.SSLContext | None = None, token: str | None = None) -> bool:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


_ADDRESS_IN_USE = ("address already in use", "bind: address already in use")


class _PortClash(ControlPlaneError):
    """Another process took one of the ports between picking and binding it; retry."""


@dataclass(eq=False)
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on free loopback ports.

    Use as a context manager or call `start()` / `stop()`. After start:
    `kubeconfig` (admin kubeconfig path), `server` (https URL), `env` (environment for
    kubectl/helm/operators: KUBECONFIG, PATH with the pinned kubectl and helm first, private
    HELM_* folders), `admin_token`, `ca_cert`, `admin_client_cert`/`admin_client_key`,
    `service_account_key`, `pids`, `ports`, `startup_seconds`.
    """

    binaries: KubeBinaries | None = None
    work_dir: Path | None = None
    start_timeout: float = 90.0
    stop_timeout: float = 10.0
    keep_work_dir: bool = False

    server: str = field(init=False, default="")
    kubeconfig: Path = field(init=False, default=Path())
    env: dict[str, str] = field(init=False, default_factory=dict)
    admin_token: str = field(init=False, default="")
    ca_cert: Path = field(init=False, default=Path())
    admin_client_cert: Path = field(init=False, default=Path())
    admin_client_key: Path = field(init=False, default=Path())
    service_account_key: Path = field(init=False, default=Path())
    etcd_url: str = field(init=False, default="")
    ports: dict[str, int] = field(init=False, default_factory=dict)
    startup_seconds: float = field(init=False, default=0.0)
    startup_breakdown: dict[str, float] = field(init=False, default_factory=dict)

    _processes: list[_Process] = field(init=False, default_factory=list, repr=False)
    _owns_work_dir: bool = field(init=False, default=False, repr=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the running components, by binary name."""
        return {process.name: process.popen.pid for process in self._processes}

    @property
    def running(self) -> bool:
        return bool(self._processes) and all(p.popen.poll() is None for p in self._processes)

    def start(self, attempts: int = 3) -> ControlPlane:
        """Start all three components and wait until each is ready; stop everything on error."""
        if self._processes:
            raise ControlPlaneError("control plane already started; call stop() first")
        if self.binaries is None:
            self.binaries = KubeBinaries.find()
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="kube-control-plane-"))
            self._owns_work_dir = True
        self.work_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        began = time.monotonic()
        try:
            self._prepare_files()
            for attempt in range(1, attempts + 1):
                try:
                    self._start_processes()
                    break
                except _PortClash:
                    self._stop_processes()
                    if attempt == attempts:
                        raise
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop every process (controller manager, API server, etcd) and remove the work dir.

        Safe to call more than once and from atexit.
        """
        with self._lock:
            self._stop_processes()
            if self._owns_work_dir and not self.keep_work_dir and self.work_dir is not None:
                shutil.rmtree(self.work_dir, ignore_errors=True)
            atexit.unregister(self.stop)

    def _stop_processes(self) -> None:
        for process in reversed(self._processes):
            process.stop(self.stop_timeout)
        self._processes.clear()

    # -- set-up ----------------------------------------------------------------------------

    def _prepare_files(self) -> None:
        assert self.work_dir is not None and self.binaries is not None
        pki = _write_pki(self.work_dir / "pki")
        self._pki = pki
        self.ca_cert = pki.ca_cert
        self.admin_client_cert = pki.admin_cert
        self.admin_client_key = pki.admin_key
        self.service_account_key = pki.service_account_key
        self.admin_token = secrets.token_hex(24)
        self._token_file = self.work_dir / "tokens.csv"
        # token,user,uid,"group1,group2" (kube-apiserver --token-auth-file format)
        self._token_file.write_text(f'{self.admin_token},admin,admin,"system:masters"\n')
        self._token_file.chmod(0o600)

        # PATH entry holding exactly the pinned kubectl (and helm), whatever folders they're in.
        tools = self.work_dir / "bin"
        tools.mkdir(exist_ok=True)
        for tool_name, tool_path in (
            ("kubectl", self.binaries.kubectl),
            ("helm", self.binaries.helm),
        ):
            if tool_path is not None and not (tools / tool_name).exists():
                (tools / tool_name).symlink_to(tool_path.resolve())
        self._tools_dir = tools

    def _spawn(self, name: str, binary: Path, args: Sequence[str]) -> _Process:
        assert self.work_dir is not None
        log_path = self.work_dir / f"{name}.log"
        # PDEATHSIG fires when the spawning *thread* exits, so only use it from the main thread.
        on_main_thread = threading.current_thread() is threading.main_thread()
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                [str(binary), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                start_new_session=True,  # own process group: killpg reaches any children
                preexec_fn=_die_with_parent if on_main_thread else None,
            )
        process = _Process(name, popen, log_path)
        self._processes.append(process)
        return process

    def _wait_ready(self, process: _Process, probe, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if probe():
                return
            if process.popen.poll() is not None:
                tail = process.log_tail()
                if any(marker in tail.lower() for marker in _ADDRESS_IN_USE):
                    raise _PortClash(f"{process.name}: port taken while starting:\n{tail}")
                raise ControlPlaneError(
                    f"{process.name} exited with code {process.popen.returncode} before "
                    f"{what}; last log lines ({process.log_path}):\n{tail}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise ControlPlaneError(
            f"{process.name} not {what} after {self.start_timeout:.0f} s; last log lines "
            f"({process.log_path}):\n{process.log_tail()}"
        )

    def _start(self, name: str, binary: Path, args: Sequence[str], probe, what: str) -> float:
        """Spawn one component and wait until ``probe()`` holds; the seconds that took."""
        t0 = time.monotonic()
        self._wait_ready(self._spawn(name, binary, args), probe, what)
        return time.monotonic() - t0

    def _start_processes(self) -> None:
        assert self.work_dir is not None and self.binaries is not None
        pki = self._pki
        etcd_port, etcd_peer_port = free_loopback_port(), free_loopback_port()
        apiserver_port, kcm_port = free_loopback_port(), free_loopback_port()
        self.ports = {
            "etcd": etcd_port,
            "etcd-peer": etcd_peer_port,
            "kube-apiserver": apiserver_port,
            "kube-controller-manager": kcm_port,
        }
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.server = f"https://127.0.0.1:{apiserver_port}"
        peer_url = f"http://127.0.0.1:{etcd_peer_port}"
        timings: dict[str, float] = {}

        data_dir = self.work_dir / "etcd-data"
        shutil.rmtree(data_dir, ignore_errors=True)
        timings["etcd"] = self._start(
            "etcd",
            self.binaries.etcd,
            [
                f"--data-dir={data_dir}",
                "--name=default",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            lambda: _http_ok(f"{self.etcd_url}/health"),
            "healthy",
        )

        ca_context = _tls_context(pki.ca_cert)
        timings["kube-apiserver"] = self._start(
            "kube-apiserver",
            self.binaries.kube_apiserver,
            [
                f"--etcd-servers={self.etcd_url}",
                f"--cert-dir={self.work_dir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--token-auth-file={self._token_file}",
                f"--secure-port={apiserver_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # In 1.37 a loopback advertise address is refused by the (default) lease
                # endpoint reconciler. Nothing here routes to the `kubernetes` Service, so
                # don't reconcile its endpoints rather than advertise a host interface.
                "--endpoint-reconciler-type=none",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                # envtest: without this, every namespace would need its default
                # ServiceAccount before a pod could be created.
                "--disable-admission-plugins=ServiceAccount",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.server}/",
                f"--service-account-key-file={pki.service_account_key}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                "--v=1",
            ],
            lambda: _http_ok(f"{self.server}/readyz", context=ca_context, token=self.admin_token),
            "ready (/readyz)",
        )

        self._write_kubeconfigs()

        insecure = _tls_context(None)
        timings["kube-controller-manager"] = self._start(
            "kube-controller-manager",
            self.binaries.kube_controller_manager,
            [
                f"--kubeconfig={self._kcm_kubeconfig}",
                f"--authentication-kubeconfig={self._kcm_kubeconfig}",
                f"--authorization-kubeconfig={self._kcm_kubeconfig}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={self.work_dir / 'kcm-certs'}",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                "--v=1",
            ],
            lambda: _http_ok(f"https://127.0.0.1:{kcm_port}/healthz", context=insecure),
            "healthy (/healthz)",
        )
        self.startup_breakdown = timings

    # -- kubeconfigs and environment -------------------------------------------------------

    def _write_kubeconfigs(self) -> None:
        assert self.work_dir is not None
        self.kubeconfig = self.write_kubeconfig(
            self.work_dir / "admin.kubeconfig", user="admin", token=self.admin_token
        )
        self._kcm_kubeconfig = self.write_kubeconfig(
            self.work_dir / "kube-controller-manager.kubeconfig",
            user="system:kube-controller-manager",
            client_cert=self._pki.controller_manager_cert,
            client_key=self._pki.controller_manager_key,
        )
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self._tools_dir}{os.pathsep}{env.get('PATH', '')}"
        helm_home = self.work_dir / "helm"
        for variable, sub in (
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ):
            env[variable] = str(helm_home / sub)
        self.env = env

    def write_kubeconfig(
        self,
        path: Path | str,
        *,
        user: str,
        token: str | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        namespace: str | None = None,
    ) -> Path:
        """Write a self-contained kubeconfig for this API server and return its path.

        Give either a bearer `token` (e.g. a ServiceAccount token from `kubectl create token`)
        or a `client_cert`/`client_key` pair signed by `ca_cert`. CA and client data are
        embedded, so the file works from any working directory and for kopf's own parser.
        """
        if (token is None) == (client_cert is None or client_key is None):
            raise ValueError("write_kubeconfig needs a token or a client_cert/client_key pair")
        credentials: dict[str, str] = {}
        if token is not None:
            credentials["token"] = token
        else:
            assert client_cert is not None and client_key is not None
            credentials["client-certificate-data"] = _b64(Path(client_cert).read_bytes())
            credentials["client-key-data"] = _b64(Path(client_key).read_bytes())
        context: dict[str, str] = {"cluster": "control-plane", "user": user}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "control-plane",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": _b64(self.ca_cert.read_bytes()),
                    },
                }
            ],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": user, "context": context}],
            "current-context": user,
        }
        path = Path(path)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    # -- helpers for tests -----------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this API server as admin; text output.

        With check=True a non-zero exit raises ControlPlaneError carrying kubectl's stderr.
        """
        assert self.binaries is not None
        return self._run([str(self.binaries.kubectl), *args], input, check, timeout)

    def helm(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm against this API server as admin, with private HELM_* folders."""
        assert self.binaries is not None
        if self.binaries.helm is None:
            raise BinariesNotFoundError(
                "helm not found: run hack/kube-binaries.sh (it builds the pinned helm) or "
                "set TEST_ASSET_HELM or KUBEBUILDER_ASSETS"
            )
        return self._run([str(self.binaries.helm), *args], input, check, timeout)

    def _run(
        self, argv: list[str], input: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        if not self.env:
            raise ControlPlaneError("control plane not started")
        result = subprocess.run(
            argv,
            input=input,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"`{' '.join(Path(argv[0]).name.split() + argv[1:])}` exited with "
                f"{result.returncode}:\n{result.stderr.strip()}"
            )
        return result

    def process_command_lines(self) -> Iterator[tuple[int, str]]:
        """(pid, command line) of every process on the machine that mentions our work dir."""
        marker = str(self.work_dir)
        yield from processes_mentioning(marker)


def processes_mentioning(marker: str) -> Iterator[tuple[int, str]]:
    """(pid, command line) of live processes whose command line contains `marker`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        if marker in command and state != "Z":
            yield int(entry.name), command


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
