#!/usr/bin/env python3
"""A real single-node Kubernetes from host processes, for the end-to-end tests.

The way Kubernetes' own hack/local-up-cluster.sh does it: containerd + runc (Debian), etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy (the pinned
build of hack/kube-binaries.sh) run as processes on this host; pods get a CNI bridge
(Debian's containernetworking-plugins) and cluster DNS from CoreDNS running as a Deployment
from a locally built image (hack/images). Nothing is pulled.

    cluster.py deps              install missing Debian packages
    cluster.py smoke             containerd + runc run a base-image container (no Kubernetes)
    cluster.py up [--images product]
                                 start everything, wait for node Ready and DNS, write a kubeconfig
    cluster.py load product      rebuild (if changed) and import it into a running cluster
    cluster.py down              stop everything and remove every trace (also after a failed up)
    cluster.py status            what runs, as JSON

Everything lives under /var/lib/portfolio-e2e and /run/portfolio-e2e (override with
E2E_STATE_DIR / E2E_RUN_DIR); ports are picked free at start; iptables chains, network
devices, mounts and sysctls it touched are put back by `down`. It must run as root.

What it shares with the `kube` tests' control plane (the binaries lookup, the PKI and
kubeconfigs, etcd/kube-apiserver/kube-controller-manager command lines) is in hack/kubelocal;
this script keeps the node: containerd, kube-scheduler, kubelet, kube-proxy, CoreDNS, the host
set-up and the teardown.

Standard library only: it runs before the project's virtualenv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shlex
import shutil
import signal
import string
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TEMPLATES = HERE / "templates"
sys.path.insert(0, str(REPO / "hack" / "images"))
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # for hack.kubelocal; appended, so nothing shadows the stdlib
import images  # noqa: E402  (hack/images/images.py, stdlib only)

from hack.kubelocal import components  # noqa: E402
from hack.kubelocal.binaries import (  # noqa: E402
    CONTROL_PLANE_BINARIES,
    E2E_FOLDER_VARIABLES,
    NODE_BINARIES,
    BinariesNotFoundError,
    find_binaries,
)
from hack.kubelocal.pki import Pki, PkiError, control_plane_pki, write_kubeconfig  # noqa: E402

STATE = Path(os.environ.get("E2E_STATE_DIR", "/var/lib/portfolio-e2e"))
RUN = Path(os.environ.get("E2E_RUN_DIR", "/run/portfolio-e2e"))
PKI = STATE / "pki"
LOGS = STATE / "logs"
STATE_FILE = STATE / "cluster.json"
KUBECONFIG = STATE / "admin.kubeconfig"
CONTAINERD_SOCK = RUN / "containerd" / "containerd.sock"

NODE_NAME = "portfolio-e2e-node"
CNI_NETWORK = "portfolio-e2e"
BRIDGE = "pfe2e0"
POD_CIDR = "10.244.0.0/24"
DNS_IP = "10.0.0.10"

DEBIAN_PACKAGES = {
    # command -> Debian package
    "containerd": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "debootstrap": "debootstrap",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "openssl": "openssl",
    "gcc": "gcc",
    "buildah": "buildah",
}
# Kernel settings the kubelet changes at start; `down` puts the host's values back.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
OUR_SYSCTLS = {"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"}
# Start order; `down` stops in reverse.
COMPONENTS = (
    "containerd",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)


class ClusterError(RuntimeError):
    """The cluster could not be brought up or down; the message says what to look at."""


def log(message: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str | Path], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    cmd = [str(c) for c in cmd]
    kwargs.setdefault("text", True)
    try:
        return subprocess.run(cmd, check=check, **kwargs)
    except FileNotFoundError as exc:
        raise ClusterError(f"{cmd[0]} not found: run `{sys.argv[0]} deps`") from exc
    except subprocess.CalledProcessError as exc:
        detail = (
            (exc.stderr or exc.stdout or "").strip()[-2000:] if kwargs.get("capture_output") else ""
        )
        raise ClusterError(f"`{shlex.join(cmd)}` exited {exc.returncode}\n{detail}") from exc


def wait_for(
    what: str,
    check: Callable[[], object],
    timeout: float,
    interval: float = 1.0,
    component: str | None = None,
) -> object:
    """Poll until check() returns something truthy; on timeout name what and where to look."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if component:
            ensure_running(component)
        try:
            result = check()
            if result:
                return result
        except (ClusterError, OSError, ValueError) as exc:
            last_error = exc
        time.sleep(interval)
    hint = f"; see {LOGS / (component + '.log')}" if component else ""
    raise ClusterError(
        f"timed out after {timeout:.0f} s waiting for {what}{hint}"
        + (f" (last error: {last_error})" if last_error else "")
    )


# --- state -----------------------------------------------------------------------------------


def load_state() -> dict:
    return json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}


def save_state(state: dict) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.rename(STATE_FILE)


def node_ip() -> str:
    """The host's primary IPv4 address (the default route's interface): pods reach the API
    server there, so it can't be loopback."""
    if env_ip := os.environ.get("E2E_NODE_IP"):
        return env_ip
    routes = json.loads(
        run(["ip", "-4", "-j", "route", "show", "default"], capture_output=True).stdout or "[]"
    )
    if not routes:
        raise ClusterError("no default IPv4 route: set E2E_NODE_IP to an address of this host")
    dev = routes[0]["dev"]
    addrs = json.loads(
        run(["ip", "-4", "-j", "addr", "show", "dev", dev], capture_output=True).stdout
    )
    for link in addrs:
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                return info["local"]
    raise ClusterError(f"interface {dev} has no IPv4 address: set E2E_NODE_IP")


@functools.cache
def kube_binaries() -> dict[str, Path]:
    """The pinned binaries the cluster runs, looked up as the `kube` tests do
    (hack.kubelocal.binaries; E2E_KUBE_BIN is asked before KUBEBUILDER_ASSETS)."""
    try:
        return find_binaries(
            [*CONTROL_PLANE_BINARIES, *NODE_BINARIES], folder_variables=E2E_FOLDER_VARIABLES
        )
    except BinariesNotFoundError as error:
        raise ClusterError(str(error)) from error


# --- host preparation ------------------------------------------------------------------------


def cmd_deps() -> None:
    """apt-get install whatever the cluster and the image builds need and is missing."""
    missing = sorted(
        {
            pkg
            for cmd, pkg in DEBIAN_PACKAGES.items()
            if not (Path(cmd).exists() if cmd.startswith("/") else shutil.which(cmd))
        }
    )
    if not Path("/usr/lib/x86_64-linux-gnu/libc.a").exists():
        missing.append("libc6-dev")
    if not missing:
        log("Debian packages: all present")
        return
    log(f"apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
    run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        env=env,
        stdout=subprocess.DEVNULL,
    )


def read_sysctl(key: str) -> str | None:
    path = Path("/proc/sys") / key
    return path.read_text().strip() if path.exists() else None


def write_sysctl(key: str, value: str) -> None:
    with contextlib.suppress(OSError):
        (Path("/proc/sys") / key).write_text(value + "\n")


def prepare_host(state: dict) -> None:
    """Remember the sysctls we or the kubelet change, then set ours; make / rshared."""
    if "host_sysctls" not in state:
        state["host_sysctls"] = {key: read_sysctl(key) for key in (*KUBELET_SYSCTLS, *OUR_SYSCTLS)}
        save_state(state)
    for key, value in OUR_SYSCTLS.items():
        write_sysctl(key, value)
    # The kubelet needs shared mount propagation for volumes and containers' rootfs.
    run(["mount", "--make-rshared", "/"])


def restore_sysctls(state: dict, keys: Sequence[str] | None = None) -> None:
    for key, value in state.get("host_sysctls", {}).items():
        if value is not None and (keys is None or key in keys):
            write_sysctl(key, value)


# --- certificates and kubeconfigs ------------------------------------------------------------


def make_pki(ip: str) -> Pki:
    """A fresh CA and every certificate the components need (hack.kubelocal.pki), node ones too."""
    try:
        pki = control_plane_pki(
            PKI,
            ca_subject="/CN=portfolio-e2e-ca",
            admin_subject="/O=system:masters/CN=portfolio-e2e-admin",
            service_ip=components.API_SERVICE_IP,
            apiserver_names=[ip],
        )
        pki.issue("kubelet", f"/CN={NODE_NAME}", server_names=[ip, NODE_NAME])
        for name, subject in {
            "apiserver-kubelet-client": "/O=system:masters/CN=kube-apiserver-kubelet-client",
            "scheduler": "/CN=system:kube-scheduler",
            "kubelet-client": f"/O=system:nodes/CN=system:node:{NODE_NAME}",
            "kube-proxy": "/CN=system:kube-proxy",
        }.items():
            pki.issue(name, subject, client=True)
    except PkiError as error:
        raise ClusterError(str(error)) from error
    return pki


def write_kubeconfigs(pki: Pki, server: str) -> None:
    """STATE/<component>.kubeconfig for each client certificate (kubelet: kubelet-client)."""
    for component, cert in (
        ("admin", "admin"),
        ("controller-manager", "controller-manager"),
        ("scheduler", "scheduler"),
        ("kube-proxy", "kube-proxy"),
        ("kubelet", "kubelet-client"),
    ):
        write_kubeconfig(
            STATE / f"{component}.kubeconfig",
            server=server,
            ca_cert=pki.ca_cert,
            user=cert,
            client_cert=pki.cert(cert),
            client_key=pki.key(cert),
            cluster="portfolio-e2e",
            context="portfolio-e2e",
        )


def render(template: str, dest: Path, values: dict[str, object]) -> Path:
    text = string.Template((TEMPLATES / template).read_text()).substitute(values)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return dest


# --- processes -------------------------------------------------------------------------------


def start(name: str, cmd: Sequence[str | Path], state: dict, nofile: int = 20000) -> None:
    """Start a daemon in its own session (it outlives this script), logging to LOGS/name.log."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log_file = (LOGS / f"{name}.log").open("ab")
    cmd = [str(c) for c in cmd]
    env = dict(os.environ, PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")

    def limits() -> None:
        # Containers inherit containerd's limits; this VM allows nofile up to 20000.
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=log_file,
        start_new_session=True,
        env=env,
        preexec_fn=limits,
    )
    state.setdefault("pids", {})[name] = proc.pid
    state.setdefault("commands", {})[name] = cmd
    save_state(state)
    log(f"started {name} (pid {proc.pid})")


def pid_alive(pid: int, binary: str | None = None) -> bool:
    """True if pid runs and (when given) is still that binary, not a recycled pid."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return False
    return binary is None or Path(cmdline).name == Path(binary).name


def ensure_running(name: str) -> None:
    state = load_state()
    pid = state.get("pids", {}).get(name)
    if pid and not pid_alive(pid, state["commands"][name][0]):
        tail = log_tail(name)
        raise ClusterError(f"{name} exited; last lines of {LOGS / (name + '.log')}:\n{tail}")


def log_tail(name: str, lines: int = 25) -> str:
    path = LOGS / f"{name}.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop_pid(pid: int, binary: str, name: str, grace: float = 10.0) -> None:
    if not pid_alive(pid, binary):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid, binary):
        time.sleep(0.1)
    if pid_alive(pid, binary):
        log(f"{name} (pid {pid}) ignored SIGTERM: killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # Reap it if it is our child (the `up` that started it failing half-way).
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def kubectl(
    *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess:
    binary = kube_binaries()["kubectl"]
    return run(
        [binary, f"--kubeconfig={KUBECONFIG}", "--request-timeout=20s", *args],
        check=check,
        capture_output=True,
        input=input,
    )


def ctr(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    return run(["ctr", "--address", CONTAINERD_SOCK, "-n", "k8s.io", *args], **kwargs)


# --- bring-up --------------------------------------------------------------------------------


def start_containerd(state: dict, pause_image: str) -> None:
    values = {"state": STATE, "run": RUN, "pause_image": pause_image}
    config = render("containerd.toml", STATE / "containerd.toml", values)
    render(
        "cni.conflist",
        STATE / "cni" / "net.d" / f"10-{CNI_NETWORK}.conflist",
        {"state": STATE, "cni_network": CNI_NETWORK, "bridge": BRIDGE, "pod_cidr": POD_CIDR},
    )
    (RUN / "containerd").mkdir(parents=True, exist_ok=True)
    start("containerd", ["containerd", "--config", config], state)
    wait_for(
        "containerd to answer",
        lambda: ctr("version", capture_output=True, check=False).returncode == 0,
        timeout=30,
        interval=0.3,
        component="containerd",
    )


def cmd_load(names: Sequence[str]) -> dict[str, str]:
    """Build (if its inputs changed) and import images into the running cluster's containerd,
    recording their references in the state: after an edit, no need for a new cluster."""
    state = load_state()
    if not state.get("pids"):
        raise ClusterError("no cluster is up: run `up` first")
    ensure_running("containerd")
    built = images.build(names)
    images.import_images(built, str(CONTAINERD_SOCK))
    state.setdefault("images", {}).update({image.name: image.ref for image in built})
    save_state(state)
    return {image.name: image.ref for image in built}


def start_control_plane(state: dict, bins: dict[str, Path], ip: str, pki: Pki) -> None:
    etcd_client, etcd_peer, kcm_port, sched_port = components.free_ports(4)
    (api_port,) = components.free_ports(1, host=ip)
    state["ports"] = {
        "etcd": etcd_client,
        "etcd_peer": etcd_peer,
        "apiserver": api_port,
        "controller_manager": kcm_port,
        "scheduler": sched_port,
    }
    server = f"https://{ip}:{api_port}"
    state["server"] = server
    write_kubeconfigs(pki, server)
    (STATE / "etcd").mkdir(mode=0o700, exist_ok=True)
    etcd_url = f"http://127.0.0.1:{etcd_client}"
    start(
        "etcd",
        [
            bins["etcd"],
            *components.etcd_args(
                data_dir=STATE / "etcd",
                client_url=etcd_url,
                peer_url=f"http://127.0.0.1:{etcd_peer}",
                name="e2e",
            ),
        ],
        state,
    )
    start(
        "kube-apiserver",
        [
            bins["kube-apiserver"],
            *components.apiserver_args(
                etcd_url=etcd_url,
                pki=pki,
                # Pods reach the API server at the node's address (the `kubernetes` Service).
                address=ip,
                port=api_port,
                cert_dir=STATE / "apiserver-certs",
                service_account_issuer="https://kubernetes.default.svc.cluster.local",
                authorization_mode="Node,RBAC",
                extra=[
                    f"--kubelet-client-certificate={pki.cert('apiserver-kubelet-client')}",
                    f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
                    f"--kubelet-certificate-authority={pki.ca_cert}",
                    "--kubelet-preferred-address-types=InternalIP",
                    "--enable-admission-plugins=NodeRestriction",
                ],
            ),
        ],
        state,
    )
    wait_for(
        "kube-apiserver /readyz",
        lambda: kubectl("get", "--raw=/readyz", check=False).returncode == 0,
        timeout=90,
        component="kube-apiserver",
    )
    start(
        "kube-controller-manager",
        [
            bins["kube-controller-manager"],
            *components.controller_manager_args(
                kubeconfig=STATE / "controller-manager.kubeconfig",
                pki=pki,
                port=kcm_port,
                cert_dir=STATE / "kcm-certs",
                extra=["--cluster-name=portfolio-e2e"],
            ),
        ],
        state,
    )
    sched = STATE / "scheduler.kubeconfig"
    start(
        "kube-scheduler",
        [
            bins["kube-scheduler"],
            f"--kubeconfig={sched}",
            f"--authentication-kubeconfig={sched}",
            f"--authorization-kubeconfig={sched}",
            "--bind-address=127.0.0.1",
            f"--secure-port={sched_port}",
            "--leader-elect=false",
            "--v=1",
        ],
        state,
    )


def start_node(state: dict, bins: dict[str, Path], ip: str) -> None:
    kubelet_port, kubelet_healthz, proxy_healthz, proxy_metrics = components.free_ports(4)
    state["ports"].update(
        {
            "kubelet": kubelet_port,
            "kubelet_healthz": kubelet_healthz,
            "proxy_healthz": proxy_healthz,
            "proxy_metrics": proxy_metrics,
        }
    )
    shutil.copyfile("/etc/resolv.conf", STATE / "resolv.conf")
    for sub in ("pod-logs", "kubelet-plugins", "kubelet"):
        (STATE / sub).mkdir(parents=True, exist_ok=True)
    values = {
        "state": STATE,
        "run": RUN,
        "pki": PKI,
        "node_ip": ip,
        "node_name": NODE_NAME,
        "dns_ip": DNS_IP,
        "pod_cidr": POD_CIDR,
        "kubelet_port": kubelet_port,
        "kubelet_healthz_port": kubelet_healthz,
        "proxy_healthz_port": proxy_healthz,
        "proxy_metrics_port": proxy_metrics,
    }
    kubelet_config = render("kubelet-config.yaml", STATE / "kubelet-config.yaml", values)
    proxy_config = render("kube-proxy-config.yaml", STATE / "kube-proxy-config.yaml", values)
    start(
        "kubelet",
        [
            bins["kubelet"],
            f"--config={kubelet_config}",
            f"--kubeconfig={STATE / 'kubelet.kubeconfig'}",
            f"--root-dir={STATE / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={ip}",
            "--v=1",
        ],
        state,
    )
    start("kube-proxy", [bins["kube-proxy"], f"--config={proxy_config}", "--v=1"], state)


def node_ready() -> bool:
    out = kubectl(
        "get",
        "node",
        NODE_NAME,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        check=False,
    )
    return out.returncode == 0 and out.stdout.strip() == "True"


def deploy_dns(coredns_image: str) -> None:
    manifest = STATE / "coredns.yaml"
    render("coredns.yaml", manifest, {"coredns_image": coredns_image, "dns_ip": DNS_IP})
    kubectl("apply", "-f", str(manifest))


# Retries for a while: CoreDNS being Ready does not mean every path to it works yet (likely
# kube-proxy's rules for its Service). A single attempt failed a CI run once with "Temporary
# failure in name resolution"; the teardown removed the logs that would have said why.
DNS_PROBE = """
import socket, sys, time
deadline = time.monotonic() + 90
for name in sys.argv[1:]:
    while True:
        try:
            print(name, socket.gethostbyname(name), flush=True)
            break
        except OSError as error:
            if time.monotonic() > deadline:
                raise
            print(name, "not yet:", error, flush=True)
            time.sleep(1)
"""


def check_dns(base_image: str, timeout: float = 120) -> str:
    """Run a pod from the base image that resolves the kubernetes Service by DNS."""
    pod = f"dns-probe-{int(time.time())}"
    overrides = {
        "spec": {
            "containers": [
                {
                    "name": "probe",
                    "image": base_image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": [
                        "python3",
                        "-c",
                        DNS_PROBE,
                        "kubernetes.default",
                        "kubernetes.default.svc.cluster.local",
                    ],
                }
            ],
            "restartPolicy": "Never",
        }
    }
    wait_for(
        "the default ServiceAccount",
        lambda: kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
        timeout=60,
    )
    kubectl(
        "run",
        pod,
        "-n",
        "default",
        f"--image={base_image}",
        "--restart=Never",
        f"--overrides={json.dumps(overrides)}",
    )
    try:

        def finished() -> str | None:
            phase = kubectl("get", "pod", pod, "-o", "jsonpath={.status.phase}").stdout
            return phase if phase in ("Succeeded", "Failed") else None

        phase = wait_for(
            "a pod to resolve kubernetes.default", finished, timeout=timeout, component="kubelet"
        )
        logs = kubectl("logs", pod, check=False).stdout.strip()
        if phase == "Failed":  # it retried for 90 s: not a start-up race
            raise ClusterError(f"DNS probe pod failed:\n{logs}")
        return logs
    finally:
        kubectl("delete", "pod", pod, "--wait=false", check=False)


def cmd_up(extra_images: Sequence[str], keep_on_failure: bool) -> dict:
    if os.geteuid() != 0:
        raise ClusterError("must run as root (it starts containerd and the kubelet)")
    bins = kube_binaries()
    if load_state().get("pids"):
        log("a previous cluster's state exists: tearing it down first")
        cmd_down()
    timings: dict[str, float] = {}
    started = time.monotonic()

    def lap(step: str, since: list[float] = [started]) -> None:  # noqa: B006
        now = time.monotonic()
        timings[step] = round(now - since[0], 1)
        since[0] = now

    try:
        cmd_deps()
        built = images.build(["base", "pause", "coredns", *extra_images])
        refs = {image.name: image.ref for image in built}
        lap("deps_and_images")
        state = {"started_at": time.time(), "images": refs}
        save_state(state)
        prepare_host(state)
        ip = node_ip()
        state["node_ip"] = ip
        pki = make_pki(ip)
        lap("host_and_pki")
        start_containerd(state, refs["pause"])
        images.import_images(built, str(CONTAINERD_SOCK))
        lap("containerd_and_import")
        start_control_plane(state, bins, ip, pki)
        lap("control_plane")
        start_node(state, bins, ip)
        wait_for(f"node {NODE_NAME} Ready", node_ready, timeout=120, component="kubelet")
        # The kubelet set these at start for itself; the host's panic policy is not its to keep.
        restore_sysctls(state, ["kernel/panic", "kernel/panic_on_oops"])
        lap("node_ready")
        deploy_dns(refs["coredns"])
        wait_for(
            "CoreDNS ready",
            lambda: (
                kubectl(
                    "-n",
                    "kube-system",
                    "get",
                    "deploy",
                    "coredns",
                    "-o",
                    "jsonpath={.status.readyReplicas}",
                    check=False,
                ).stdout.strip()
                == "1"
            ),
            timeout=120,
            component="kubelet",
        )
        state["dns_probe"] = check_dns(refs["base"])
        lap("dns_ready")
        timings["total"] = round(time.monotonic() - started, 1)
        state["timings"] = timings
        state["kubeconfig"] = str(KUBECONFIG)
        save_state(state)
        log(f"cluster up in {timings['total']} s: KUBECONFIG={KUBECONFIG}")
        return state
    except BaseException:
        if keep_on_failure:
            log(f"up failed; keeping state for inspection (logs in {LOGS}); run `down` later")
        else:
            log("up failed: tearing down")
            with contextlib.suppress(Exception):
                cmd_down()
        raise


# --- smoke test without Kubernetes -----------------------------------------------------------


def cmd_smoke() -> str:
    """containerd + runc run one container from the base image (no Kubernetes binaries)."""
    if load_state().get("pids"):
        raise ClusterError("a cluster is up: run `down` first")
    cmd_deps()
    built = images.build(["base", "pause"])
    refs = {image.name: image.ref for image in built}
    state: dict = {"started_at": time.time(), "images": refs}
    save_state(state)
    try:
        start_containerd(state, refs["pause"])
        images.import_images(built, str(CONTAINERD_SOCK))
        out = ctr(
            "run",
            "--rm",
            "--runc-binary",
            "/usr/sbin/runc",
            "--runc-root",
            RUN / "runc",
            refs["base"],
            f"smoke-{os.getpid()}",
            "python3",
            "-c",
            "import platform, ssl; print(platform.python_version(), ssl.OPENSSL_VERSION)",
            capture_output=True,
        ).stdout.strip()
        log(f"container said: {out}")
        return out
    finally:
        cmd_down()


# --- teardown --------------------------------------------------------------------------------


def mounts_under(*roots: Path) -> list[str]:
    """Mount points below our folders, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == str(r) or point.startswith(f"{r}/") for r in roots):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def sandbox_netns_paths() -> list[str]:
    """Network namespaces containerd made for our pods (bind mounts under /run/netns)."""
    if not CONTAINERD_SOCK.exists():
        return []
    listing = ctr("containers", "ls", "-q", check=False, capture_output=True)
    paths = []
    for cid in listing.stdout.split() if listing.returncode == 0 else []:
        info = ctr("containers", "info", cid, check=False, capture_output=True)
        if info.returncode != 0:
            continue
        with contextlib.suppress(ValueError, KeyError, TypeError):
            for ns in json.loads(info.stdout)["Spec"]["linux"]["namespaces"]:
                if ns.get("type") == "network" and ns.get("path", "").startswith("/var/run/netns/"):
                    paths.append(ns["path"])
    return sorted(set(paths))


def kill_containers() -> None:
    """Kill and remove every container in our containerd (the shims outlive containerd)."""
    tasks = ctr("tasks", "ls", "-q", check=False, capture_output=True)
    for cid in tasks.stdout.split() if tasks.returncode == 0 else []:
        ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False, capture_output=True)
    for cid in tasks.stdout.split() if tasks.returncode == 0 else []:
        for _ in range(50):
            if ctr("tasks", "delete", "-f", cid, check=False, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
    containers = ctr("containers", "ls", "-q", check=False, capture_output=True)
    for cid in containers.stdout.split() if containers.returncode == 0 else []:
        ctr("containers", "rm", cid, check=False, capture_output=True)


def our_shim_pids() -> list[int]:
    """containerd-shim processes started by our containerd (their command names our socket)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmdline
            and cmdline[0].endswith(b"containerd-shim-runc-v2")
            and str(CONTAINERD_SOCK).encode() in cmdline
        ):
            pids.append(int(proc.name))
    return pids


def iptables_binaries() -> list[str]:
    """The iptables front ends whose tables may hold our rules. A legacy front end is only
    asked when legacy tables exist: listing them would create them, and from then on every
    iptables-nft call warns that legacy tables are present."""

    def has_legacy_tables(proc_file: str) -> bool:
        path = Path(proc_file)
        return path.exists() and bool(path.read_text().strip())

    candidates = {
        "iptables-nft": True,
        "ip6tables-nft": True,
        "iptables-legacy": has_legacy_tables("/proc/net/ip_tables_names"),
        "ip6tables-legacy": has_legacy_tables("/proc/net/ip6_tables_names"),
    }
    return [b for b, wanted in candidates.items() if wanted and shutil.which(b)]


def clean_iptables() -> None:
    """Remove the KUBE-* chains (kubelet, kube-proxy) and the CNI chains of our network.

    Only rules that jump to those chains, or carry our CNI network's name, are deleted; the
    host's other rules and policies are left as they are."""
    ours = f'name: "{CNI_NETWORK}"'
    for binary in iptables_binaries():
        for table in ("filter", "nat", "mangle"):
            listing = run([binary, "-w", "-t", table, "-S"], check=False, capture_output=True)
            if listing.returncode != 0:
                continue
            rules = [shlex.split(line) for line in listing.stdout.splitlines()]
            chains = {r[1] for r in rules if r[:1] == ["-N"] and r[1].startswith("KUBE-")}
            cni_chains = {
                r[r.index("-j") + 1]
                for r in rules
                if r[:1] == ["-A"]
                and "-j" in r
                and ours in " ".join(r)
                and r[r.index("-j") + 1].startswith("CNI-")
            }
            doomed = chains | cni_chains
            for rule in rules:
                if rule[:1] != ["-A"] or rule[1] in doomed:
                    continue
                target = rule[rule.index("-j") + 1] if "-j" in rule else ""
                if target in doomed or ours in " ".join(rule):
                    run(
                        [binary, "-w", "-t", table, "-D", *rule[1:]],
                        check=False,
                        capture_output=True,
                    )
            for chain in doomed:
                run([binary, "-w", "-t", table, "-F", chain], check=False, capture_output=True)
            for chain in doomed:
                run([binary, "-w", "-t", table, "-X", chain], check=False, capture_output=True)


def remove_cgroups() -> None:
    """The kubelet's kubepods hierarchy in every cgroup v1 controller (empty by now)."""
    for controller in Path("/sys/fs/cgroup").iterdir():
        root = controller / "kubepods"
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def cmd_down() -> None:
    """Stop everything `up` started and remove every trace, whatever state it got to."""
    state = load_state()
    pids = state.get("pids", {})
    commands = state.get("commands", {})
    # The kubelet first, so it restarts nothing; containerd last but one, after its containers.
    for name in (
        "kube-proxy",
        "kubelet",
        "kube-scheduler",
        "kube-controller-manager",
        "kube-apiserver",
        "etcd",
    ):
        if name in pids:
            stop_pid(pids[name], commands[name][0], name)
    netns = sandbox_netns_paths()
    if CONTAINERD_SOCK.exists() and "containerd" in pids and pid_alive(pids["containerd"]):
        kill_containers()
    for pid in our_shim_pids():
        stop_pid(pid, "containerd-shim-runc-v2", "containerd-shim", grace=2)
    if "containerd" in pids:
        stop_pid(pids["containerd"], commands["containerd"][0], "containerd")
    for path in netns:
        run(["umount", path], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            os.unlink(path)
    for point in mounts_under(STATE, RUN):
        run(["umount", "-l", point], check=False, capture_output=True)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        run(["ip", "link", "delete", BRIDGE], check=False, capture_output=True)
    clean_iptables()
    remove_cgroups()
    restore_sysctls(state)
    for folder in (STATE, RUN):
        shutil.rmtree(folder, ignore_errors=True)
    leftovers = [
        f"{name} (pid {pid})" for name, pid in pids.items() if pid_alive(pid, commands[name][0])
    ]
    if leftovers or mounts_under(STATE, RUN):
        raise ClusterError(f"teardown left {leftovers or mounts_under(STATE, RUN)}")
    log("cluster down")


def cmd_status() -> dict:
    state = load_state()
    running = {
        name: pid_alive(pid, state["commands"][name][0])
        for name, pid in state.get("pids", {}).items()
    }
    return {"state_dir": str(STATE), "running": running, **state}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("deps", help="install missing Debian packages")
    sub.add_parser("smoke", help="containerd + runc run a container from the base image")
    up = sub.add_parser("up", help="start the single-node cluster")
    up.add_argument(
        "--images",
        nargs="*",
        default=[],
        choices=["product"],
        help="also build and import these images",
    )
    up.add_argument(
        "--keep-on-failure",
        action="store_true",
        help="leave processes and logs for inspection when up fails",
    )
    load = sub.add_parser("load", help="build and import images into the running cluster")
    load.add_argument("names", nargs="+", choices=["product"], metavar="NAME")
    sub.add_parser("down", help="stop everything and remove all state")
    sub.add_parser("status", help="print what runs, as JSON")
    args = parser.parse_args(argv)
    try:
        if args.command == "deps":
            cmd_deps()
        elif args.command == "smoke":
            print(cmd_smoke())
        elif args.command == "up":
            print(json.dumps(cmd_up(args.images, args.keep_on_failure), indent=2))
        elif args.command == "load":
            print(json.dumps(cmd_load(args.names), indent=2))
        elif args.command == "down":
            cmd_down()
        elif args.command == "status":
            print(json.dumps(cmd_status(), indent=2))
    except (ClusterError, images.BuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
