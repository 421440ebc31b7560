"""Apply -> Complete on the real single-node cluster, step by step; and a large universe's memory.

Runs against the e2e cluster of hack/local-cluster/cluster.py through the e2e harness
(tests/e2e/harness.py): it reuses a running cluster (after `cluster.py load product`) or starts
one, installs the chart the way the e2e tests do, then

1. applies manifests/samples/small-portfolio.yaml (onCompletion Keep, so its pods can be read
   afterwards) in a fresh namespace `--runs` times and prints, per run and as medians, the steps
   from the objects' own timestamps: PortfolioAnalysis created -> DaskCluster created ->
   scheduler/worker pods created -> scheduler container started -> scheduler pod Ready -> worker
   registered (the worker log's `Registered to:` line, `kubectl logs --timestamps`) -> analysis
   started (the Running condition and the `Started` Event) -> Complete condition;
2. with `--tickers N` (> 0), runs N synthetic tickers over `--lookback-days` through the operator
   (listed in a ConfigMap, spec.tickersFrom) and prints the peak memory of the operator
   container and of every Dask pod's container
   (cgroup v1 `memory.max_usage_in_bytes`, which counts page cache, and the working set the
   kubelet uses, usage - inactive_file, sampled every second), their limits, OOM kills and time.

Kubernetes writes creationTimestamp and lastTransitionTime to the second, so each step is known
to +-1 s; log timestamps (containerd's) are to the nanosecond.

    sudo E2E_PRODUCT_SOURCE=HEAD .venv/bin/python benchmarks/bench_e2e_apply.py  # --runs 3
    sudo .venv/bin/python benchmarks/bench_e2e_apply.py --runs 0 --tickers 5000 --lookback-days 3650

The cluster is left running when it was already running (or with --keep), else torn down.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import statistics
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The product image from the last commit, not a shared tree's uncommitted edits.
os.environ.setdefault("E2E_PRODUCT_SOURCE", "HEAD")

from benchmarks.measure import load  # noqa: E402
from tests.e2e.harness import (  # noqa: E402
    OPERATOR_NAMESPACE,
    RELEASE,
    E2EError,
    Kube,
    LocalCluster,
    e2e_binaries,
    install_chart,
)
from tests.e2e.test_end_to_end import sample, synthetic_universe  # noqa: E402

CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")
MiB = 1024 * 1024


def stamp(text: str | None) -> float | None:
    """An RFC 3339 timestamp (Kubernetes' or containerd's, nanoseconds cut) as epoch seconds."""
    if not text:
        return None
    text = text.replace("Z", "+00:00")
    if "." in text:  # fromisoformat takes at most microseconds
        head, rest = text.split(".", 1)
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    return datetime.fromisoformat(text).timestamp()


def condition(obj: dict[str, Any], kind: str, status: str = "True") -> float | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == status:
            return stamp(cond.get("lastTransitionTime"))
    return None


def log_line_time(kube: Kube, namespace: str, pod: str, needle: str) -> float | None:
    """When the container wrote the first line containing `needle` (containerd's timestamp)."""
    out = kube.kubectl("logs", "-n", namespace, pod, "--timestamps", check=False)
    for line in (out.stdout + out.stderr).splitlines():
        if needle in line:
            return stamp(line.split(" ", 1)[0])
    return None


def operator_phases(kube: Kube, namespace: str, name: str) -> dict[str, float]:
    """When the operator logged each phase change of the resource (containerd's timestamps)."""
    out = kube.kubectl(
        "logs", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=operator",
        "--timestamps", "--since=30m", "--tail=-1", check=False,
    )  # fmt: skip
    found: dict[str, float] = {}
    marker = f"{namespace}/{name}: phase "
    for line in out.stdout.splitlines():
        if marker in line:
            new = line.rsplit("-> ", 1)[-1].strip()
            found.setdefault(f"log_{new}", stamp(line.split(" ", 1)[0]))
    return found


def wait_terminal(kube: Kube, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = kube.get("pfa", name, "-n", namespace) or {}
        if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return obj
        time.sleep(1)
    raise E2EError(
        f"{namespace}/{name} did not finish in {timeout:.0f} s\n{kube.describe(namespace)}"
    )


def fresh_namespace(kube: Kube, stem: str) -> str:
    name = f"{stem}-{secrets.token_hex(3)}"
    kube.kubectl("create", "namespace", name)
    return name


# --- 1. apply -> Complete ----------------------------------------------------------------------

STEPS = (
    ("PortfolioAnalysis created", "pfa"),
    ("DaskCluster created", "daskcluster"),
    ("scheduler pod created", "scheduler_pod"),
    ("worker pod created", "worker_pod"),
    ("scheduler container started", "scheduler_started"),
    ("scheduler pod Ready", "scheduler_ready"),
    ("worker registered", "worker_joined"),
    ("operator: phase -> Provisioning (log)", "log_Provisioning"),
    ("operator: phase -> Running (log)", "log_Running"),
    ("Started Event", "started_event"),
    ("operator: phase -> Succeeded (log)", "log_Succeeded"),
    ("Complete condition (Succeeded)", "complete"),
)


def one_apply(kube: Kube) -> dict[str, float | None]:
    """Apply the sample in a fresh namespace; the steps' times relative to the apply."""
    namespace = fresh_namespace(kube, "bench-apply")
    name = "small-portfolio"
    applied = time.time()
    kube.apply(sample(namespace, name, onCompletion="Keep"))
    obj = wait_terminal(kube, namespace, name, timeout=600)
    seen = time.time()
    if obj["status"]["phase"] != "Succeeded":
        raise E2EError(f"{name} ended {json.dumps(obj['status'])[:2000]}")
    times: dict[str, float | None] = {"pfa": stamp(obj["metadata"]["creationTimestamp"])}
    clusters = kube.items("daskclusters", "-n", namespace)
    times["daskcluster"] = stamp(clusters[0]["metadata"]["creationTimestamp"]) if clusters else None
    pods = {"scheduler": [], "worker": []}
    for pod in kube.pods(namespace):
        role = (pod["metadata"].get("labels") or {}).get("dask.org/component")
        if role in pods:
            pods[role].append(pod)
    scheduler = min(pods["scheduler"], key=lambda p: p["metadata"]["creationTimestamp"])
    worker = min(pods["worker"], key=lambda p: p["metadata"]["creationTimestamp"])
    times["scheduler_pod"] = stamp(scheduler["metadata"]["creationTimestamp"])
    times["worker_pod"] = stamp(worker["metadata"]["creationTimestamp"])
    state = scheduler["status"]["containerStatuses"][0].get("state", {})
    times["scheduler_started"] = stamp((state.get("running") or {}).get("startedAt"))
    times["scheduler_ready"] = condition(scheduler, "Ready")
    times["worker_joined"] = log_line_time(
        kube, namespace, worker["metadata"]["name"], "Registered to:"
    )
    times.update(operator_phases(kube, namespace, name))
    events = [
        e
        for e in kube.items("events", "-n", namespace)
        if e.get("reason") == "Started" and e["involvedObject"].get("kind") == "PortfolioAnalysis"
    ]
    times["started_event"] = (
        stamp(events[0].get("eventTime") or events[0].get("firstTimestamp")) if events else None
    )
    times["complete"] = condition(obj, "Complete")
    relative = {key: (t - applied if t is not None else None) for key, t in times.items()}
    relative["seen Succeeded (poll, 1 s)"] = seen - applied
    relative["durationSeconds (status)"] = obj["status"].get("durationSeconds")
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return relative


def bench_apply(kube: Kube, runs: int) -> None:
    results = []
    for run in range(runs):
        results.append(one_apply(kube))
        print(f"run {run + 1}: complete at {results[-1]['complete']:.1f} s", flush=True)
    keys = [*(key for _, key in STEPS), "seen Succeeded (poll, 1 s)", "durationSeconds (status)"]
    labels = dict((key, label) for label, key in STEPS)
    print(f"\napply -> Complete, {runs} runs, seconds after `kubectl apply` (+-1 s)")
    print(
        f"{'step':40s}" + "".join(f"{'run ' + str(i + 1):>9s}" for i in range(runs)) + "   median"
    )
    for key in keys:
        values = [r.get(key) for r in results]
        known = [v for v in values if v is not None]
        cells = "".join(f"{v:9.1f}" if v is not None else f"{'-':>9s}" for v in values)
        median = f"{statistics.median(known):9.1f}" if known else f"{'-':>9s}"
        print(f"{labels.get(key, key):40s}{cells}{median}")


# --- 2. a large universe's memory -----------------------------------------------------------


def container_cgroup(pod: dict[str, Any], container: str) -> Path | None:
    uid = pod["metadata"]["uid"]
    for status in pod["status"].get("containerStatuses") or []:
        if status["name"] == container and status.get("containerID"):
            cid = status["containerID"].split("://", 1)[1]
            found = glob.glob(
                str(CGROUP_MEMORY / "kubepods*" / "**" / f"pod{uid}" / cid), recursive=True
            )
            return Path(found[0]) if found else None
    return None


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def working_set(cgroup: Path) -> int | None:
    usage = read_int(cgroup / "memory.usage_in_bytes")
    try:
        stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
    except OSError:
        return None
    inactive = int(stat.get("total_inactive_file", 0))
    return None if usage is None else max(usage - inactive, 0)


class Sampler(threading.Thread):
    """Every second: each operator/Dask container's working set; keeps the peak per container."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        super().__init__(daemon=True)
        self.kube, self.namespace = kube, namespace
        self.cgroups: dict[str, Path] = {}
        self.peaks: dict[str, int] = {}  # working set, sampled
        self.max_usage: dict[str, int] = {}  # the cgroup's own high-water mark
        self.limits: dict[str, str] = {}
        self.stop = threading.Event()

    def discover(self) -> None:
        targets = [(OPERATOR_NAMESPACE, "app.kubernetes.io/component=operator", "operator")]
        targets += [(self.namespace, "dask.org/component", None)]
        for namespace, selector, label in targets:
            for pod in self.kube.pods(namespace, selector):
                for status in pod["status"].get("containerStatuses") or []:
                    # One key per container instance: a restarted container has a new cgroup.
                    key = (
                        f"{label or pod['metadata']['name']}/{status['name']}"
                        f"#{status.get('restartCount', 0)}"
                    )
                    if key not in self.cgroups and (path := container_cgroup(pod, status["name"])):
                        self.cgroups[key] = path
                        spec = next(
                            c for c in pod["spec"]["containers"] if c["name"] == status["name"]
                        )
                        limits = (spec.get("resources") or {}).get("limits") or {}
                        self.limits[key] = limits.get("memory", "none")

    def run(self) -> None:
        tick = 0
        while not self.stop.is_set():
            if tick % 5 == 0:
                self.discover()
            for key, path in list(self.cgroups.items()):
                if (value := working_set(path)) is not None:
                    self.peaks[key] = max(self.peaks.get(key, 0), value)
                if (value := read_int(path / "memory.max_usage_in_bytes")) is not None:
                    self.max_usage[key] = max(self.max_usage.get(key, 0), value)
            tick += 1
            self.stop.wait(1)


def operator_pod(kube: Kube) -> dict[str, Any]:
    return kube.pods(OPERATOR_NAMESPACE, "app.kubernetes.io/component=operator")[0]


def bench_universe(
    kube: Kube, tickers: int, lookback_days: int, timeout: float, worker_limit: str
) -> None:
    namespace = fresh_namespace(kube, f"bench-universe-{tickers}")
    try:
        universe_run(kube, namespace, tickers, lookback_days, timeout, worker_limit)
    finally:
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def universe_run(
    kube: Kube, namespace: str, tickers: int, lookback_days: int, timeout: float, worker_limit: str
) -> None:
    name = f"universe-{tickers}"
    before = operator_pod(kube)
    op_cgroup = container_cgroup(before, before["spec"]["containers"][0]["name"])
    if op_cgroup is not None:  # cgroup v1: writing 0 resets the high-water mark
        (op_cgroup / "memory.max_usage_in_bytes").write_text("0")
    sampler = Sampler(kube, namespace)
    sampler.start()
    manifest = synthetic_universe(namespace, name, tickers, lookback_days=lookback_days)
    # spec.tickers holds at most 2000: the list goes into a ConfigMap (spec.tickersFrom).
    listed = manifest["spec"].pop("tickers")
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-tickers", "namespace": namespace},
            "data": {"tickers": "\n".join(listed)},
        }
    )
    manifest["spec"]["tickersFrom"] = {
        "configMapKeyRef": {"name": f"{name}-tickers", "key": "tickers"}
    }
    manifest["spec"]["activeDeadlineSeconds"] = int(timeout)
    if worker_limit:  # the shipped sample's: requests 256Mi (synthetic_universe), limit 1Gi
        manifest["spec"]["cluster"]["resources"]["limits"] = {"memory": worker_limit}
    applied = time.time()
    kube.apply(manifest)
    try:
        obj = wait_terminal(kube, namespace, name, timeout=timeout + 60)
    finally:
        sampler.discover()
        sampler.stop.set()
        sampler.join()
    elapsed = time.time() - applied
    status = obj["status"]
    ended = [
        c.get("reason")
        for c in status.get("conditions", [])
        if c["type"] in ("Complete", "Failed") and c["status"] == "True"
    ]
    print(
        f"\n{tickers} synthetic tickers x {lookback_days} days: {status['phase']} "
        f"({', '.join(ended) or '-'}) in {elapsed:.0f} s after apply "
        f"(durationSeconds {status.get('durationSeconds')})"
    )
    if status["phase"] != "Succeeded":
        print(json.dumps(status, indent=1)[:4000])
    after = operator_pod(kube)
    print(f"{'container':72s}{'limit':>10s}{'max_usage':>12s}{'peak WS':>10s}  restarts/last")
    pods = {p["metadata"]["name"]: p for p in kube.pods(namespace)}
    pods["operator"] = after
    for key, path in sorted(sampler.cgroups.items()):
        pod_name, container = key.split("#", 1)[0].split("/", 1)
        pod = pods.get(pod_name, {})
        limit = sampler.limits.get(key, "?")
        status_ = next(
            (
                s
                for s in pod.get("status", {}).get("containerStatuses") or []
                if s["name"] == container
            ),
            {},
        )
        last = (status_.get("lastState") or {}).get("terminated") or {}
        max_usage = max(
            read_int(path / "memory.max_usage_in_bytes") or 0, sampler.max_usage.get(key, 0)
        )
        print(f"{key:72s}{limit:>10s}"
              f"{(max_usage or 0) / MiB:>10.0f}Mi{sampler.peaks.get(key, 0) / MiB:>8.0f}Mi"
              f"  {status_.get('restartCount', '?')}/{last.get('reason', '-')}")  # fmt: skip
    for pod_name, pod in pods.items():  # why a container restarted (its previous log)
        for status_ in pod["status"].get("containerStatuses") or []:
            if status_.get("restartCount"):
                out = kube.kubectl(
                    "logs", "-n", pod["metadata"]["namespace"], pod["metadata"]["name"],
                    "-c", status_["name"], "--previous", check=False,
                )  # fmt: skip
                errors = [line for line in out.stdout.splitlines() if "Error" in line]
                print(f"{pod_name} restarted; its previous log's errors: {errors[:6]}")
    restarted = after["metadata"]["uid"] != before["metadata"]["uid"]
    if restarted:
        print("the operator pod was replaced during the run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3, help="applies of the sample (0: none)")
    parser.add_argument("--tickers", type=int, default=0, help="synthetic universe size (0: skip)")
    parser.add_argument("--lookback-days", type=int, default=3650)
    parser.add_argument("--timeout", type=float, default=1500, help="seconds for the universe")
    parser.add_argument(
        "--worker-memory-limit",
        default="1Gi",
        help="memory limit of the Dask pods (the shipped sample's 1Gi; empty: none)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()
    print(f"load average before: {load()}", flush=True)
    cluster = LocalCluster.running()
    started_here = cluster is None
    if cluster is None:
        cluster = LocalCluster.up(Path("/tmp/bench-e2e-cluster-up.log"))
    try:
        kube = Kube(cluster.kubeconfig, e2e_binaries())
        installed = kube.helm("status", RELEASE, "-n", OPERATOR_NAMESPACE, check=False)
        install_chart(kube, cluster.images["product"], upgrade=installed.returncode == 0)
        print(f"product image {cluster.images['product']}", flush=True)
        if args.runs:
            bench_apply(kube, args.runs)
        if args.tickers:
            bench_universe(
                kube, args.tickers, args.lookback_days, args.timeout, args.worker_memory_limit
            )
    finally:
        print(f"load average after: {load()}")
        if started_here and not args.keep:
            LocalCluster.down()


if __name__ == "__main__":
    main()
