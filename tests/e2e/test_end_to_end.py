"""The product on a real single-node Kubernetes: chart, operators, Dask pods, autoscaling, faults.

Everything here runs for real: the chart installed with helm, both operators as pods from the
project's image, the dask-kubernetes operator turning each DaskCluster into scheduler and
worker pods, the analysis running on those pods, the autoscaler resizing the worker group.
Each test uses its own namespace, so "no orphan" can be checked by listing that namespace.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.harness import OPERATOR_NAMESPACE, REPO, REPORTS_SERVICE, Kube, names, ready
from tests.support.polling import wait_until
from tests.support.report_page import open_and_check

pytestmark = pytest.mark.e2e

SAMPLE = REPO / "manifests" / "samples" / "small-portfolio.yaml"
GROUP = "analysis.portfolio-operator.io"
OWNER_LABEL = f"{GROUP}/name"
DASK_COMPONENT = "dask.org/component"
DASK_CLUSTER_LABEL = "dask.org/cluster-name"
# A run on a fresh Dask cluster: pods start from a 1.3 GB image on 2 cores.
RUN_TIMEOUT = 600


def sample(namespace: str, name: str, **cluster: Any) -> dict[str, Any]:
    """The shipped sample (4 holdings, embedded data), in a test namespace."""
    manifest = yaml.safe_load(SAMPLE.read_text())
    manifest = copy.deepcopy(manifest)
    manifest["metadata"] = {"name": name, "namespace": namespace}
    manifest["spec"]["cluster"].update(cluster)
    return manifest


def synthetic_universe(
    namespace: str, name: str, count: int, lookback_days: int = 1825, **cluster: Any
) -> dict[str, Any]:
    """A large universe of synthetic tickers: enough Dask work for the autoscaler to act on.

    2000 tickers make 20 price and 20 news batches (100 tickers per task), which the Dask
    scheduler's adaptive target (remaining work / 5 s) turns into more than one worker only
    while enough work is left: the autoscaler test uses twenty years (with five, once the
    indicators got faster, a run could end on one worker; with ten, 1 run in 6 did after the
    other tests). They also load the operator pod's memory: it gathers the prices (ten years
    exceeded the chart's 1 GiB limit before 64422b6)."""
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "PortfolioAnalysis",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "tickers": [f"SYN{i:04d}" for i in range(count)],
            "analyses": ["pricing", "technicals", "news", "portfolio"],
            "priceSources": ["synthetic"],
            "newsSources": ["embedded"],
            "lookbackDays": lookback_days,
            "cluster": {
                "minWorkers": 1,
                "maxWorkers": 3,
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                "onCompletion": "Keep",
                **cluster,
            },
            "activeDeadlineSeconds": 1200,
        },
    }


def pfa(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    found = kube.get("pfa", name, "-n", namespace)
    assert found is not None, f"PortfolioAnalysis {namespace}/{name} vanished"
    return found


def phase(kube: Kube, namespace: str, name: str) -> str | None:
    return (pfa(kube, namespace, name).get("status") or {}).get("phase")


def wait_phase(kube: Kube, namespace: str, name: str, wanted: str, timeout: float = RUN_TIMEOUT):
    def reached() -> dict[str, Any] | None:
        obj = pfa(kube, namespace, name)
        got = (obj.get("status") or {}).get("phase")
        if got == "Failed" and wanted != "Failed":
            raise AssertionError(
                f"{name} Failed: {json.dumps(obj['status'], indent=1)[:3000]}\n"
                + kube.describe(namespace)
            )
        return obj if got == wanted else None

    return wait_until(
        reached,
        timeout,
        f"{namespace}/{name} reaches {wanted}",
        lambda: kube.describe(namespace),
        interval=2,
    )


def dask_pods(kube: Kube, namespace: str, component: str) -> list[dict[str, Any]]:
    return kube.pods(namespace, f"{DASK_COMPONENT}={component}")


def running_workers(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    return [
        p
        for p in dask_pods(kube, namespace, "worker")
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def assert_one_cluster_no_orphans(kube: Kube, namespace: str, name: str) -> str:
    """Exactly one DaskCluster for the resource; every pod and Service belongs to it."""
    clusters = kube.items("daskclusters", "-n", namespace)
    assert len(clusters) == 1, f"expected one DaskCluster, found {names(clusters)}"
    cluster = clusters[0]
    assert cluster["metadata"]["labels"][OWNER_LABEL] == name
    owners = [ref["uid"] for ref in cluster["metadata"].get("ownerReferences", [])]
    assert owners == [pfa(kube, namespace, name)["metadata"]["uid"]]
    cluster_name = cluster["metadata"]["name"]
    for pod in kube.pods(namespace):
        labels = pod["metadata"].get("labels") or {}
        assert labels.get(DASK_CLUSTER_LABEL) == cluster_name, (
            f"pod {pod['metadata']['name']} belongs to no current cluster"
        )
    for service in kube.items("services", "-n", namespace):
        assert service["metadata"]["name"].startswith(cluster_name), (
            f"service {service['metadata']['name']} belongs to no current cluster"
        )
    return cluster_name


# --- the tests -------------------------------------------------------------------------------


def test_chart_runs_both_operators_from_the_project_image(
    kube: Kube, chart_release: str, product_image: str
) -> None:
    deployments = kube.items("deployments", "-n", chart_release)
    assert len(deployments) == 2, f"expected the operator and dask-kubernetes: {names(deployments)}"
    for deployment in deployments:
        status = deployment.get("status") or {}
        assert status.get("readyReplicas") == 1, f"{deployment['metadata']['name']} not ready"
        images = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
        assert images == {product_image}
    pods = kube.pods(chart_release)
    assert pods and all(ready(p) for p in pods), [p["metadata"]["name"] for p in pods]
    # The CRDs both operators serve are installed.
    crds = names(kube.items("crd"))
    assert f"portfolioanalyses.{GROUP}" in crds
    assert {"daskclusters.kubernetes.dask.org", "daskautoscalers.kubernetes.dask.org"} <= set(crds)


def test_sample_runs_on_dask_pods_and_reports(kube: Kube, namespace: str, tmp_path: Path) -> None:
    name = "small-portfolio"
    # A namespace that enforces the restricted Pod Security Standard: the Dask pods meet it.
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    refused = kube.kubectl(
        "run", "plain-pod", "-n", namespace, "--image=pause", "--dry-run=server", check=False
    )
    assert "violates PodSecurity" in refused.stderr, "the namespace does not enforce restricted"
    kube.apply(sample(namespace, name, onCompletion="Keep"))

    # The operator creates one DaskCluster; dask-kubernetes runs its scheduler and a worker.
    wait_until(
        lambda: (
            any(ready(p) for p in dask_pods(kube, namespace, "scheduler"))
            and running_workers(kube, namespace)
        ),
        300,
        "the scheduler and a worker pod run",
        lambda: kube.describe(namespace),
        interval=2,
    )
    done = wait_phase(kube, namespace, name, "Succeeded")
    status = done["status"]

    # Real figures for the four holdings.
    assert status["tickerCount"] == 4
    assert status["securitiesAnalyzed"] == 4, status
    assert status["securitiesFailed"] == 0, status["failures"]
    assert {row["ticker"] for row in status["results"]} == {"AAPL", "MSFT", "IBM", "GOOG"}
    for row in status["results"]:
        assert row["close"] > 0 and 0 <= row["rsi14"] <= 100, row
    figures = status["portfolio"]
    assert figures["annualizedVolatility"] > 0
    assert 0 < figures["maxDrawdown"] < 1  # a loss, as a positive fraction
    assert 0 < figures["var95"] <= figures["cvar95"]
    for key in ("totalReturn", "annualizedReturn", "sharpeRatio", "marketValue"):
        assert isinstance(figures.get(key), float), (key, figures)
    complete = {c["type"]: c for c in status["conditions"]}["Complete"]
    assert complete["status"] == "True"

    # `kubectl get pfa` shows the outcome in its columns.
    table = kube.kubectl("get", "pfa", "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "PHASE", "TICKERS"]
    assert row.split()[:3] == [name, "Succeeded", "4"]

    # The report ConfigMap holds the full report.
    configmap = kube.get("configmap", f"{name}-report", "-n", namespace)
    assert configmap is not None, "no report ConfigMap"
    report = json.loads(configmap["data"]["report.json"])
    assert {r["ticker"] for r in report["combined_analysis"]} == {"AAPL", "MSFT", "IBM", "GOOG"}
    portfolio = report["report"]["portfolio"]
    assert portfolio["total_market_value"] == pytest.approx(figures["marketValue"])
    assert sum(portfolio["market_value"].values()) == pytest.approx(figures["marketValue"])
    assert portfolio["var_95"] == pytest.approx(figures["var95"])

    # The HTML report, served by the operator through its Service at status.reportURL, opens
    # in a real browser with every chart drawn (kubectl port-forward, as docs/operator.md says).
    assert status["reportURL"] == f"/reports/{namespace}/{name}", status
    with kube.port_forward(OPERATOR_NAMESPACE, f"service/{REPORTS_SERVICE}", 8080) as port:
        base = f"http://127.0.0.1:{port}"
        page = httpx.get(base + status["reportURL"], timeout=30)
        assert page.status_code == 200, page.text[:500]
        assert page.headers["content-type"].startswith("text/html")
        assert "content-security-policy" in page.headers
        assert page.text.lstrip().lower().startswith("<!doctype html>")
        seen = open_and_check(base + status["reportURL"], tmp_path, "e2e-sample")
        assert {"equity", "drawdown"} <= set(seen["charts"]), seen
        assert httpx.get(f"{base}/reports/{namespace}/nope", timeout=30).status_code == 404

    # The workers reached the scheduler through its Service's DNS name.
    cluster_name = assert_one_cluster_no_orphans(kube, namespace, name)
    service = f"{cluster_name}-scheduler"
    assert kube.get("service", service, "-n", namespace) is not None
    worker = running_workers(kube, namespace)[0]["metadata"]["name"]
    env = {
        e["name"]: e.get("value")
        for c in kube.get("pod", worker, "-n", namespace)["spec"]["containers"]
        for e in c.get("env", [])
    }
    assert service in env["DASK_SCHEDULER_ADDRESS"], env
    logs = kube.kubectl("logs", "-n", namespace, worker).stdout
    assert "Registered to:" in logs, logs[-2000:]

    # Deleting the resource removes the cluster's pods and Services (owner references).
    kube.kubectl("delete", "pfa", name, "-n", namespace, "--wait=true", timeout=300)
    wait_until(
        lambda: (
            not kube.pods(namespace)
            and not kube.items("services", "-n", namespace)
            and not kube.items("daskclusters", "-n", namespace)
            and kube.get("configmap", f"{name}-report", "-n", namespace) is None
        ),
        180,
        "the Dask pods, Services and DaskCluster are gone",
        lambda: kube.describe(namespace),
        interval=2,
    )


def test_autoscaler_adds_workers_under_load_and_removes_them_after(
    kube: Kube, namespace: str
) -> None:
    name = "universe"
    kube.apply(synthetic_universe(namespace, name, count=2000, lookback_days=7300))
    seen: list[tuple[float, str | None, int]] = []
    started = time.monotonic()

    def observe() -> str | None:
        current = phase(kube, namespace, name)
        workers = len(running_workers(kube, namespace))
        seen.append((round(time.monotonic() - started), current, workers))
        if current == "Failed":
            raise AssertionError(kube.describe(namespace))
        return current

    wait_until(lambda: observe() == "Succeeded", RUN_TIMEOUT, "the analysis succeeds",
               lambda: f"{seen}\n{kube.describe(namespace)}", interval=2)  # fmt: skip
    peak = max(count for _, _, count in seen)
    assert peak >= 2, f"the worker count never rose above {peak}: {seen}"
    assert peak <= 3, f"more workers than maxWorkers: {seen}"

    # Afterwards the idle cluster shrinks back to minWorkers.
    wait_until(
        lambda: (
            observe()
            and len(running_workers(kube, namespace)) == 1
            and len(dask_pods(kube, namespace, "worker")) == 1
        ),
        300,
        "the worker group shrinks back to 1",
        lambda: f"{seen}\n{kube.describe(namespace)}",
        interval=3,
    )
    status = pfa(kube, namespace, name)["status"]
    assert status["securitiesAnalyzed"] == 2000
    assert_one_cluster_no_orphans(kube, namespace, name)


def test_worker_pod_deleted_mid_run(kube: Kube, namespace: str) -> None:
    name = "lose-a-worker"
    kube.apply(synthetic_universe(namespace, name, count=1500, maxWorkers=1))
    wait_until(
        lambda: phase(kube, namespace, name) == "Running" and running_workers(kube, namespace),
        300,
        "the analysis runs on a worker",
        lambda: kube.describe(namespace),
        interval=1,
    )
    victim = running_workers(kube, namespace)[0]["metadata"]["name"]
    kube.kubectl("delete", "pod", victim, "-n", namespace, "--wait=false")

    done = wait_phase(kube, namespace, name, "Succeeded")
    assert done["status"]["securitiesAnalyzed"] == 1500
    assert_one_cluster_no_orphans(kube, namespace, name)
    assert victim not in names(kube.pods(namespace))


def test_operator_pod_deleted_mid_run(kube: Kube, namespace: str, chart_release: str) -> None:
    name = "lose-the-operator"
    kube.apply(synthetic_universe(namespace, name, count=1500, maxWorkers=1))
    wait_until(
        lambda: phase(kube, namespace, name) == "Running",
        300,
        "the analysis runs",
        lambda: kube.describe(namespace),
        interval=1,
    )
    operator = kube.pods(chart_release, "app.kubernetes.io/component=operator")
    assert len(operator) == 1, names(operator)
    kube.kubectl("delete", "pod", operator[0]["metadata"]["name"], "-n", chart_release)

    done = wait_phase(kube, namespace, name, "Succeeded")
    assert done["status"]["securitiesAnalyzed"] == 1500
    assert_one_cluster_no_orphans(kube, namespace, name)
    # A new operator pod took over. It can finish the run before the kubelet's first readiness
    # probe (every 10 s) marks it Ready, so wait for that rather than expect it at once.
    selector = "app.kubernetes.io/component=operator"
    replacement = wait_until(
        lambda: [p for p in kube.pods(chart_release, selector) if ready(p)],
        60,
        "one replacement operator pod is Ready",
        lambda: kube.describe(chart_release, kinds=["deploy"]),
        interval=2,
    )
    assert len(kube.pods(chart_release, selector)) == 1
    assert names(replacement) != names(operator)


@pytest.mark.parametrize(
    ("cluster", "reasons"),
    [
        ({"image": "{repository}:no-such-tag"}, ("ErrImagePull", "ImagePullBackOff")),
        ({"nodeSelector": {"portfolio-operator.test/no-such-node": "x"}}, ("Unschedulable",)),
    ],
    ids=["missing-image", "unsatisfiable-node-selector"],
)
def test_a_cluster_whose_pods_cannot_start_says_why_then_fails(
    kube: Kube, namespace: str, product_image: str, cluster: dict, reasons: tuple[str, ...]
) -> None:
    name = "cannot-start"
    repository = product_image.rsplit(":", 1)[0]
    cluster = {k: v.format(repository=repository) if isinstance(v, str) else v
               for k, v in cluster.items()}  # fmt: skip
    kube.apply(sample(namespace, name, startupDeadlineSeconds=90, **cluster))

    def ready_message() -> str:
        status = pfa(kube, namespace, name).get("status") or {}
        ready = {c["type"]: c for c in status.get("conditions") or []}.get("ClusterReady", {})
        return (
            ready.get("message", "") if any(r in ready.get("message", "") for r in reasons) else ""
        )

    # The pods' reason reaches the status within a minute of the cluster being created.
    message = wait_until(ready_message, 90, f"ClusterReady names {reasons}",
                         lambda: kube.describe(namespace), interval=2)  # fmt: skip
    assert "scheduler pod" in message, message
    failed = wait_phase(kube, namespace, name, "Failed", timeout=240)
    condition = {c["type"]: c for c in failed["status"]["conditions"]}["Failed"]
    assert condition["reason"] == "StartupDeadlineExceeded", condition
    assert "startupDeadlineSeconds=90" in condition["message"]
    assert any(r in condition["message"] for r in reasons), condition["message"]
