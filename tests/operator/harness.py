"""Run the real operator against the real control plane: CRDs, RBAC, a subprocess, Dask.

Shared by the lifecycle tests and benchmarks/bench_operator.py. The operator runs as
``python -m portfolio_operator`` with the ServiceAccount token of manifests/rbac.yaml, so every
test also proves the RBAC is enough. Nothing here imitates Kubernetes: the one stand-in is for
the dask-kubernetes *controller* (no kubelet runs pods here), played by `mark_cluster_running`,
which writes the ``status.phase: Running`` that controller writes once the scheduler is up,
while the operator's scheduler-address template points at a LocalCluster on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from portfolio_operator.constants import (
    API_VERSION,
    CRD_NAME,
    DASK_GROUP,
    DASK_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
)

from tests.support.control_plane import ControlPlane, free_loopback_port
from tests.support.polling import wait_until

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
OPERATOR_SA = ("portfolio-system", "portfolio-operator")


def dask_kubernetes_crds() -> list[Path]:
    """The DaskCluster/DaskAutoscaler/... CRDs shipped in the installed dask-kubernetes."""
    import dask_kubernetes

    folder = (
        Path(dask_kubernetes.__file__).parent
        / "operator/deployment/helm/dask-kubernetes-operator/crds"
    )
    files = sorted(folder.glob("*.yaml"))
    assert files, f"no CRDs in {folder}: is dask-kubernetes installed?"
    return files


def install(plane: ControlPlane) -> None:
    """Our CRD, dask-kubernetes' CRDs and the operator's RBAC; idempotent."""
    for path in [MANIFESTS / "crd.yaml", *dask_kubernetes_crds(), MANIFESTS / "rbac.yaml"]:
        plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    names = [CRD_NAME, "daskclusters.kubernetes.dask.org", "daskautoscalers.kubernetes.dask.org"]
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                  *[f"crd/{n}" for n in names])  # fmt: skip


def operator_kubeconfig(plane: ControlPlane, folder: Path) -> Path:
    """A kubeconfig holding a token of the operator's ServiceAccount (least-privilege RBAC)."""
    namespace, name = OPERATOR_SA
    token = plane.kubectl("create", "token", name, "-n", namespace, "--duration=4h").stdout
    return plane.write_kubeconfig(
        folder / "operator.kubeconfig", user=f"system:serviceaccount:{namespace}:{name}",
        token=token.strip(),
    )  # fmt: skip


def api_client(plane: ControlPlane) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(str(plane.kubeconfig))


class OperatorProcess:
    """``python -m portfolio_operator`` as a child process, with its log in a file."""

    def __init__(
        self,
        kubeconfig: Path,
        namespaces: Iterable[str],
        log_path: Path,
        scheduler_address: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_loopback_port()
        self.log_path = log_path
        env = dict(os.environ)
        env.update(
            {
                "KUBECONFIG": str(kubeconfig),
                "PORTFOLIO_OPERATOR_HEALTH_HOST": "127.0.0.1",
                "PORTFOLIO_OPERATOR_POLL_SECONDS": "0.5",
                "PORTFOLIO_OPERATOR_PROGRESS_SECONDS": "1",
                "PORTFOLIO_OPERATOR_RETRY_BACKOFF_SECONDS": "1",
                "PORTFOLIO_OPERATOR_WORKER_IMAGE": "portfolio-operator:test",
            }
        )
        if scheduler_address:
            # Every created DaskCluster's scheduler "is" this local one (see module docstring).
            env["PORTFOLIO_OPERATOR_SCHEDULER_ADDRESS_TEMPLATE"] = scheduler_address
        env.update(extra_env or {})
        args = [sys.executable, "-m", "portfolio_operator", "--health-port", str(self.port)]
        for namespace in namespaces:
            args += ["--namespace", namespace]
        self._log = open(log_path, "ab")  # noqa: SIM115  (closed in stop/kill)
        self.process = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"operator exited {self.process.returncode}:\n{self.log()}")
            try:
                return self.get("/readyz")[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout, "the operator reports ready", self.log)

    def log(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode


class Kube:
    """The few reads and writes the tests make, as the cluster admin."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.plane = plane
        self.namespace = namespace
        self.api = api_client(plane)
        self.custom = k8s.CustomObjectsApi(self.api)
        self.core = k8s.CoreV1Api(self.api)

    def apply_pfa(self, name: str, spec: dict[str, Any]) -> dict:
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )

    def _get_or_none(self, group: str, version: str, plural: str, name: str) -> dict | None:
        """A custom object of this namespace; None if it does not exist (any more)."""
        try:
            return self.custom.get_namespaced_custom_object(
                group, version, self.namespace, plural, name
            )
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pfa(self, name: str) -> dict | None:
        return self._get_or_none(GROUP, VERSION, PLURAL, name)

    def status(self, name: str) -> dict:
        return (self.pfa(name) or {}).get("status") or {}

    def delete_pfa(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def dask(self, plural: str, name: str | None = None) -> Any:
        if name is None:
            return self.custom.list_namespaced_custom_object(
                DASK_GROUP, DASK_VERSION, self.namespace, plural
            )["items"]
        return self._get_or_none(DASK_GROUP, DASK_VERSION, plural, name)

    def mark_cluster_running(self, name: str) -> None:
        """What the dask-kubernetes controller writes once the scheduler Service exists."""
        self.custom.patch_namespaced_custom_object(
            DASK_GROUP, DASK_VERSION, self.namespace, "daskclusters", name,
            {"status": {"phase": "Running"}},
        )  # fmt: skip

    def events(self, name: str) -> list[Any]:
        return self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items

    def reasons(self, name: str) -> list[str]:
        return [e.reason for e in self.events(name)]

    def wait_for_reasons(
        self, name: str, *reasons: str, timeout: float = 30, detail=None
    ) -> list[str]:
        """Wait until each of ``reasons`` was posted for ``name`` (a reason listed twice, twice).

        kopf posts Events from a background queue, so an Event may trail the status that a
        test has just seen: read once, the assertion would race it. Returns every reason posted.
        """
        wanted = Counter(reasons)

        def posted() -> list[str] | None:
            seen = self.reasons(name)
            return seen if not wanted - Counter(seen) else None

        return wait_until(posted, timeout, f"Events {sorted(wanted.elements())} for {name}", detail)

    def configmap(self, name: str) -> Any:
        try:
            return self.core.read_namespaced_config_map(name, self.namespace)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def condition(self, name: str, type_: str) -> dict:
        for item in self.status(name).get("conditions") or []:
            if item["type"] == type_:
                return item
        return {}


def table_row(table: str, row: int = 0) -> dict[str, str]:
    """One row of `kubectl get` output by column: cells are cut at the header's column starts,
    so an empty cell (a printer column without a value yet) stays empty."""
    import re

    header, *rows = table.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    line = rows[row]
    bounds = [*starts[1:], max(len(line), len(header)) + 1]
    return {header[a:b].strip(): line[a:b].strip() for a, b in zip(starts, bounds, strict=True)}


def phase_is(kube: Kube, name: str, *phases: str) -> Callable[[], bool]:
    """A wait_until condition: the resource's phase is one of `phases`."""
    return lambda: kube.status(name).get("phase") in phases
