"""Handles on the e2e cluster (hack/local-cluster/cluster.py) for the end-to-end tests.

`LocalCluster.up()` starts the real single-node Kubernetes (containerd, runc, kubelet,
kube-proxy, CoreDNS, ...) with the product image imported, and `down()` removes every trace.
`Kube` wraps kubectl and helm with that cluster's kubeconfig, plus the polling the tests need.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hack.kubelocal.binaries import (
    CONTROL_PLANE_BINARIES,
    E2E_FOLDER_VARIABLES,
    NODE_BINARIES,
    BinariesNotFoundError,
    find_binaries,
)

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "hack" / "local-cluster" / "cluster.py"
# What cluster.py runs, and helm for the chart; found the way cluster.py finds them.
E2E_BINARIES = (*CONTROL_PLANE_BINARIES, *NODE_BINARIES, "helm")
CHART = REPO / "charts" / "portfolio-operator"
# The chart's release in the tests, and the Service that serves its HTML report pages.
RELEASE = "portfolio-operator"
OPERATOR_NAMESPACE = "portfolio-system"
REPORTS_SERVICE = f"{RELEASE}-reports"
# cluster.py's default state folder (its logs are under logs/).
STATE_DIR = Path(os.environ.get("E2E_STATE_DIR", "/var/lib/portfolio-e2e"))
# A cold `up` builds the base image (debootstrap), CoreDNS and the product image.
UP_TIMEOUT = float(os.environ.get("E2E_UP_TIMEOUT", 3000))


class E2EError(RuntimeError):
    """The cluster or a step of a test did not do what it should; the message says what."""


def prerequisite_problem() -> str | None:
    """Why the end-to-end tests cannot run on this machine, or None."""
    if sys.platform != "linux":
        return "the e2e cluster runs Linux host processes (containerd, kubelet): Linux only"
    if os.geteuid() != 0:
        return (
            "the e2e cluster starts containerd and the kubelet: run as root "
            '(or deselect with -m "not e2e")'
        )
    try:
        e2e_binaries()
    except BinariesNotFoundError as error:
        return f"{error} For the e2e cluster run hack/kube-binaries.sh --with-coredns."
    return None


def e2e_binaries() -> dict[str, Path]:
    """The pinned binaries, looked up as cluster.py does (E2E_KUBE_BIN, KUBEBUILDER_ASSETS, the
    cache folder): the tests' kubectl and helm are those of the cluster."""
    return find_binaries(E2E_BINARIES, folder_variables=E2E_FOLDER_VARIABLES)


@dataclass
class LocalCluster:
    """The single-node cluster that cluster.py runs; `state` is what `up` printed."""

    state: dict[str, Any] = field(default_factory=dict)
    up_seconds: float = 0.0
    reused: bool = False

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state["kubeconfig"])

    @property
    def images(self) -> dict[str, str]:
        return self.state["images"]

    @classmethod
    def running(cls) -> LocalCluster | None:
        """The cluster a previous `up` left running (E2E_REUSE_CLUSTER=1), if all of it runs;
        its product image is rebuilt and imported first if the sources changed since."""
        out = subprocess.run(
            [sys.executable, CLUSTER_SCRIPT, "status"], capture_output=True, text=True
        )
        if out.returncode != 0:
            return None
        status = json.loads(out.stdout)
        running = status.get("running") or {}
        if not running or not all(running.values()) or "kubeconfig" not in status:
            return None
        loaded = subprocess.run(
            [sys.executable, CLUSTER_SCRIPT, "load", "product"],
            stdout=subprocess.PIPE,
            text=True,
            timeout=UP_TIMEOUT,
        )
        if loaded.returncode != 0:
            raise E2EError("cluster.py load product failed (see its output above)")
        status.setdefault("images", {}).update(json.loads(loaded.stdout))
        return cls(state=status, reused=True)

    @classmethod
    def up(cls, log: Path) -> LocalCluster:
        """Start the cluster with the product image; on failure the script tears it down."""
        started = time.monotonic()
        with log.open("w") as err:
            try:
                out = subprocess.run(
                    [sys.executable, CLUSTER_SCRIPT, "up", "--images", "product"],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    timeout=UP_TIMEOUT,
                )
            except subprocess.TimeoutExpired as exc:
                cls.down()
                raise E2EError(f"cluster.py up took over {UP_TIMEOUT:.0f} s; see {log}") from exc
        if out.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise E2EError(f"cluster.py up failed (full log {log}):\n{tail}")
        return cls(state=json.loads(out.stdout), up_seconds=time.monotonic() - started)

    @staticmethod
    def down() -> None:
        out = subprocess.run(
            [sys.executable, CLUSTER_SCRIPT, "down"], capture_output=True, text=True
        )
        if out.returncode != 0:
            raise E2EError(f"cluster.py down failed: {out.stderr.strip()}")


class Kube:
    """kubectl and helm against one cluster, with the waits the tests need."""

    def __init__(self, kubeconfig: Path, binaries: dict[str, Path]) -> None:
        self.kubeconfig = kubeconfig
        self.binaries = binaries

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        cmd = [str(self.binaries["kubectl"]), f"--kubeconfig={self.kubeconfig}", *args]
        out = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
        if check and out.returncode != 0:
            raise E2EError(f"kubectl {' '.join(args)} exited {out.returncode}: {out.stderr}")
        return out

    def helm(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        cmd = [str(self.binaries["helm"]), f"--kubeconfig={self.kubeconfig}", *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise E2EError(f"helm {' '.join(args)} exited {out.returncode}: {out.stderr}")
        return out

    def get(self, *args: str) -> dict[str, Any] | None:
        """One object (or a List) as JSON; None when it does not exist."""
        out = self.kubectl("get", *args, "-o", "json", "--ignore-not-found", check=True)
        return json.loads(out.stdout) if out.stdout.strip() else None

    def items(self, *args: str) -> list[dict[str, Any]]:
        found = self.get(*args)
        return found["items"] if found else []

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def pods(self, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["pods", "-n", namespace]
        if selector:
            args += ["-l", selector]
        return self.items(*args)

    @contextmanager
    def port_forward(self, namespace: str, target: str, port: int) -> Iterator[int]:
        """`kubectl port-forward <target> :<port>` as a user runs it; yields the local port."""
        cmd = [
            str(self.binaries["kubectl"]), f"--kubeconfig={self.kubeconfig}",
            "port-forward", "-n", namespace, target, f":{port}", "--address=127.0.0.1",
        ]  # fmt: skip
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = process.stdout.readline() if process.stdout else ""
            found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
            if not found:
                process.kill()
                _, err = process.communicate(timeout=10)
                raise E2EError(f"kubectl port-forward {target} printed {line!r}: {err}")
            yield int(found.group(1))
        finally:
            process.kill()
            process.wait(timeout=10)

    def describe(self, namespace: str, kinds: Iterable[str] = ("pfa", "daskclusters")) -> str:
        """Diagnostics for a failure message: objects, pods, recent events, operator logs."""
        parts = []
        for args in (
            ["get", ",".join(kinds) + ",pods,services", "-n", namespace, "-o", "wide"],
            ["get", "pfa", "-n", namespace, "-o", "yaml"],
            ["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"],
            [
                "logs",
                "-n",
                OPERATOR_NAMESPACE,
                "-l",
                "app.kubernetes.io/component=operator",
                "--tail=60",
            ],
        ):
            out = self.kubectl(*args, check=False)
            parts.append(f"$ kubectl {' '.join(args)}\n{out.stdout[-6000:]}{out.stderr[-2000:]}")
        return "\n".join(parts)


def install_chart(kube: Kube, product_image: str, *, upgrade: bool = False) -> None:
    """`helm install` (or upgrade) of the chart with the product image and the dask-kubernetes
    operator enabled, waiting for both Deployments; shared by the tests and the benchmarks."""
    repository, tag = product_image.rsplit(":", 1)
    kube.helm(
        "upgrade" if upgrade else "install",
        RELEASE,
        str(CHART),
        "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        "--set", f"image.repository={repository}",
        "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=IfNotPresent",
        "--set", "daskKubernetesOperator.enabled=true",
        "--wait", "--timeout", "6m",
        timeout=420,
    )  # fmt: skip


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def names(objects: Sequence[dict[str, Any]]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objects)
