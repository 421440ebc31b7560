"""A real Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager as processes.

This is the approach of controller-runtime's envtest, done in plain Python so pytest, the
`kubernetes` client, kopf, kubectl and helm can all talk to a real API server without Docker.
The API server flags follow envtest (controller-runtime pkg/internal/testing/controlplane):
secure port on 127.0.0.1, generated serving certificate, one key pair for the service-account
flags, RBAC authorization, ServiceAccount admission disabled; authentication by a static token
file whose `admin` user is in `system:masters`, and by client certificates from a generated CA.
The controller manager adds what envtest lacks: garbage collection and namespace deletion.

What it shares with the e2e cluster (hack/local-cluster/cluster.py) lives in `hack.kubelocal`:
the binaries lookup (`KubeBinaries.find`), the PKI and kubeconfigs, and the components' command
lines. This module keeps the test fixture's own part: the processes' lifecycle on loopback
ports, readiness polling and teardown, and the kubectl/helm helpers.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
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

from hack.kubelocal import components
from hack.kubelocal.binaries import (
    CONTROL_PLANE_BINARIES,
    BinariesNotFoundError,
    find_binaries,
)
from hack.kubelocal.pki import PkiError, control_plane_pki, write_kubeconfig


class ControlPlaneError(RuntimeError):
    """A control-plane process failed to start or become ready; the message holds its log tail."""


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
        """Each binary by `hack.kubelocal.binaries.find_binaries` (TEST_ASSET_*, then
        $KUBEBUILDER_ASSETS, then the folder hack/kube-binaries.sh builds into; never PATH).

        Raises BinariesNotFoundError naming every missing binary and how to get it.
        """
        found = find_binaries(CONTROL_PLANE_BINARIES, environ, optional=["helm"])
        return cls(
            etcd=found["etcd"],
            kube_apiserver=found["kube-apiserver"],
            kube_controller_manager=found["kube-controller-manager"],
            kubectl=found["kubectl"],
            helm=found.get("helm"),
        )


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    return components.free_ports(1)[0]


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port (TIME_WAIT leftovers don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


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
        try:
            pki = control_plane_pki(
                self.work_dir / "pki",
                ca_subject="/CN=portfolio-operator-test-ca",
                admin_subject="/O=system:masters/CN=admin",
                service_ip=components.API_SERVICE_IP,
            )
        except PkiError as error:
            raise ControlPlaneError(f"could not make the certificates: {error}") from error
        self._pki = pki
        self.ca_cert = pki.ca_cert
        self.admin_client_cert = pki.cert("admin")
        self.admin_client_key = pki.key("admin")
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
        etcd_port, etcd_peer_port, apiserver_port, kcm_port = components.free_ports(4)
        self.ports = {
            "etcd": etcd_port,
            "etcd-peer": etcd_peer_port,
            "kube-apiserver": apiserver_port,
            "kube-controller-manager": kcm_port,
        }
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.server = f"https://127.0.0.1:{apiserver_port}"
        timings: dict[str, float] = {}

        data_dir = self.work_dir / "etcd-data"
        shutil.rmtree(data_dir, ignore_errors=True)
        timings["etcd"] = self._start(
            "etcd",
            self.binaries.etcd,
            components.etcd_args(
                data_dir=data_dir,
                client_url=self.etcd_url,
                peer_url=f"http://127.0.0.1:{etcd_peer_port}",
            ),
            lambda: _http_ok(f"{self.etcd_url}/health"),
            "healthy",
        )

        ca_context = _tls_context(pki.ca_cert)
        timings["kube-apiserver"] = self._start(
            "kube-apiserver",
            self.binaries.kube_apiserver,
            components.apiserver_args(
                etcd_url=self.etcd_url,
                pki=pki,
                address="127.0.0.1",
                port=apiserver_port,
                cert_dir=self.work_dir / "apiserver-certs",
                service_account_issuer=f"{self.server}/",
                extra=[
                    f"--token-auth-file={self._token_file}",
                    # In 1.37 a loopback advertise address is refused by the (default) lease
                    # endpoint reconciler. Nothing here routes to the `kubernetes` Service, so
                    # don't reconcile its endpoints rather than advertise a host interface.
                    "--endpoint-reconciler-type=none",
                    # envtest: without this, every namespace would need its default
                    # ServiceAccount before a pod could be created.
                    "--disable-admission-plugins=ServiceAccount",
                ],
            ),
            lambda: _http_ok(f"{self.server}/readyz", context=ca_context, token=self.admin_token),
            "ready (/readyz)",
        )

        self._write_kubeconfigs()

        insecure = _tls_context(None)
        timings["kube-controller-manager"] = self._start(
            "kube-controller-manager",
            self.binaries.kube_controller_manager,
            components.controller_manager_args(
                kubeconfig=self._kcm_kubeconfig,
                pki=pki,
                port=kcm_port,
                cert_dir=self.work_dir / "kcm-certs",
            ),
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
            client_cert=self._pki.cert("controller-manager"),
            client_key=self._pki.key("controller-manager"),
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
        return write_kubeconfig(
            path,
            server=self.server,
            ca_cert=self.ca_cert,
            user=user,
            token=token,
            client_cert=client_cert,
            client_key=client_key,
            namespace=namespace,
        )

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
