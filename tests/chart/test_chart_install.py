"""The chart installed by the pinned helm into a REAL API server, and the operator running with
the chart's ServiceAccount's own credentials.

The tests use a private control plane (the same `ControlPlane` harness as the `control_plane`
fixture, started for this module): Helm must own the cluster-scoped PortfolioAnalysis CRD, which
the operator tests create from manifests/crd.yaml on the shared one, and `helm upgrade` changes
that CRD's defaults, which other tests must not see.

The tests follow a release's life in file order (install, use, upgrade, uninstall); each also
works on its own, since the `release` fixture (re)installs what it needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from portfolio_operator.constants import CRD_NAME, PLURAL

from tests.chart.conftest import CHART, NAMESPACE, RELEASE, ROOT
from tests.support.control_plane import ControlPlane, free_loopback_port
from tests.support.dask_cluster import local_cluster
from tests.support.kube_fixtures import find_binaries, fresh_namespace, running_control_plane
from tests.support.polling import wait_until

pytestmark = [pytest.mark.kube, pytest.mark.timeout(600)]

FULLNAME = f"{RELEASE}-portfolio-operator"
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}"
SAMPLES = ROOT / "manifests" / "samples"
ANALYSIS_TIMEOUT = 240.0


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    """A private etcd + kube-apiserver + kube-controller-manager with the pinned helm."""
    binaries = find_binaries()
    if binaries.helm is None:
        pytest.fail(
            "helm not found: run hack/kube-binaries.sh (it builds the pinned helm), or set "
            "TEST_ASSET_HELM (or KUBEBUILDER_ASSETS)",
            pytrace=False,
        )
    with running_control_plane(binaries) as control_plane:
        yield control_plane


def _installed(plane: ControlPlane) -> bool:
    listed = plane.helm("list", "--namespace", NAMESPACE, "--output", "json").stdout
    return any(r["name"] == RELEASE for r in json.loads(listed or "[]"))


def _install(plane: ControlPlane, *settings: str) -> subprocess.CompletedProcess[str]:
    args = ["install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace"]
    for value in ("image.tag=test", *settings):
        args += ["--set", value]
    return plane.helm(*args)


@pytest.fixture
def release(plane: ControlPlane) -> str:
    """The chart installed with its defaults (left as a previous test left it, if installed)."""
    if not _installed(plane):
        _install(plane)
    return RELEASE


@pytest.fixture
def namespace(plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    with fresh_namespace(plane, request.node.name) as name:
        yield name


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A Dask LocalCluster on 127.0.0.1: the samples' spec.cluster.schedulerAddress points at it."""
    with local_cluster(2, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


# -- helpers ------------------------------------------------------------------------------------


def _get(plane: ControlPlane, *args: str) -> dict:
    return json.loads(plane.kubectl("get", *args, "-o", "json").stdout)


def _service_account_kubeconfig(
    plane: ControlPlane, folder: Path, service_account: str = FULLNAME
) -> Path:
    """A kubeconfig holding a TokenRequest token of one of the chart's ServiceAccounts."""
    token = plane.kubectl(
        "create", "token", service_account, "--namespace", NAMESPACE, "--duration=1h"
    ).stdout.strip()
    assert token.count(".") == 2, "expected a JWT from the TokenRequest API"
    user = f"system:serviceaccount:{NAMESPACE}:{service_account}"
    return plane.write_kubeconfig(folder / f"{service_account}.kubeconfig", user=user, token=token)


def _container(plane: ControlPlane, deployment: str) -> dict:
    """The (only) container of one of the installed Deployments."""
    body = _get(plane, "deployment", deployment, "--namespace", NAMESPACE)
    (container,) = body["spec"]["template"]["spec"]["containers"]
    return container


def _deployment_env(plane: ControlPlane, deployment: str = FULLNAME) -> dict[str, str]:
    """The literal environment variables the installed Deployment gives its container."""
    return {
        e["name"]: e["value"] for e in _container(plane, deployment).get("env", []) if "value" in e
    }


@contextlib.contextmanager
def _process(
    argv: list[str], env: dict[str, str], folder: Path, name: str, ready_url: str
) -> Iterator[Path]:
    """A child process with its log in `folder`; waits for `ready_url`, stops it afterwards."""
    home = folder / "home"
    home.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "PORTFOLIO_"))}
    env = base | {"HOME": str(home), "PREFECT_HOME": str(home / ".prefect")} | env
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=folder, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while _http_status(ready_url) != 200:
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"{name} not ready ({ready_url}) after 60 s:\n{_tail(log)}")
            time.sleep(0.3)
        yield log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@contextlib.contextmanager
def _operator(plane: ControlPlane, folder: Path, namespace: str) -> Iterator[tuple[int, Path]]:
    """`python -m portfolio_operator` out of cluster, configured exactly as the chart's
    Deployment (its environment), authenticated as the chart's ServiceAccount.

    Yields (health port, log file). Waits for /readyz, the readiness probe the chart uses.
    On the way out, deletes the analyses in `namespace` while the operator still runs, so it
    removes its finalizer from them (a stopped operator would leave them, their namespace and
    the CRD stuck terminating).
    """
    health_port, metrics_port = free_loopback_port(), free_loopback_port()
    env = _deployment_env(plane) | {
        "KUBECONFIG": str(_service_account_kubeconfig(plane, folder)),
        "PORTFOLIO_OPERATOR_HEALTH_HOST": "127.0.0.1",
        "PORTFOLIO_OPERATOR_HEALTH_PORT": str(health_port),
        "PORTFOLIO_OPERATOR_METRICS_PORT": str(metrics_port),
    }
    assert _container(plane, FULLNAME)["command"] == ["portfolio-operator"]
    argv = [sys.executable, "-m", "portfolio_operator"]  # what the console script runs
    ready = f"http://127.0.0.1:{health_port}/readyz"
    with _process(argv, env, folder, "operator", ready) as log:
        try:
            yield health_port, log
        finally:
            plane.kubectl("delete", PLURAL, "--all", "--namespace", namespace, "--timeout=60s",
                          check=False)  # fmt: skip


@contextlib.contextmanager
def _dask_kubernetes_controller(plane: ControlPlane, folder: Path) -> Iterator[Path]:
    """The dask-kubernetes controller as the chart's toggle runs it (its Deployment's command),
    out of cluster with its own ServiceAccount's token."""
    deployment = f"{FULLNAME}-dask"
    command = _container(plane, deployment)["command"]
    assert command[0] == "kopf"
    port = free_loopback_port()
    argv = [str(Path(sys.executable).parent / "kopf")]
    for arg in command[1:]:
        argv.append(f"--liveness=http://127.0.0.1:{port}/healthz" if arg.startswith("--liveness")
                    else arg)  # fmt: skip
    kubeconfig = _service_account_kubeconfig(plane, folder, deployment)
    env = _deployment_env(plane, deployment) | {"KUBECONFIG": str(kubeconfig)}
    ready = f"http://127.0.0.1:{port}/healthz"
    with _process(argv, env, folder, "dask-kubernetes-controller", ready) as log:
        yield log


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except OSError as error:
        return getattr(error, "code", None)


def _tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _sample(name: str, namespace: str, **cluster: object) -> str:
    document = yaml.safe_load((SAMPLES / name).read_text())
    document["metadata"]["namespace"] = namespace
    document["spec"].setdefault("cluster", {}).update(cluster)
    return yaml.safe_dump(document)


def _wait_for_terminal_phase(plane: ControlPlane, namespace: str, name: str, log: Path) -> dict:
    def finished() -> dict | None:
        resource = _get(plane, PLURAL, name, "--namespace", namespace)
        phase = resource.get("status", {}).get("phase")
        return resource if phase in ("Succeeded", "Failed") else None

    def detail() -> str:
        status = _get(plane, PLURAL, name, "--namespace", namespace).get("status")
        return f"status {json.dumps(status, indent=1)}\noperator log:\n{_tail(log)}"

    return wait_until(finished, ANALYSIS_TIMEOUT, f"{namespace}/{name} finishes", detail,
                      interval=1)  # fmt: skip


def _run_reuse_scheduler_sample(
    plane: ControlPlane, namespace: str, scheduler: str, log: Path
) -> None:
    """The reuse-scheduler sample on the test's Dask cluster, run to Succeeded by the operator."""
    plane.kubectl(
        "create", "-f", "-",
        input=_sample("reuse-scheduler.yaml", namespace, schedulerAddress=scheduler),
    )  # fmt: skip
    resource = _wait_for_terminal_phase(plane, namespace, "reuse-scheduler", log)
    _assert_succeeded_with_real_figures(plane, resource, log, tickers=3)


def _can_i(plane: ControlPlane, verb: str, resource: str, namespace: str) -> bool:
    """The API server's authorizer on the ServiceAccount (a SubjectAccessReview, so it also
    answers for resources whose CRD is not installed). `resource` is RESOURCE[.GROUP][/SUB]."""
    resource, _, subresource = resource.partition("/")
    name, _, group = resource.partition(".")
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": SERVICE_ACCOUNT,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"],
            "resourceAttributes": {
                "namespace": namespace, "verb": verb, "group": group,
                "resource": name, "subresource": subresource,
            },
        },
    }  # fmt: skip
    answer = plane.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review))
    return json.loads(answer.stdout)["status"].get("allowed", False)


def _assert_succeeded_with_real_figures(
    plane: ControlPlane, resource: dict, log: Path, tickers: int
) -> None:
    status = resource["status"]
    assert status["phase"] == "Succeeded", (
        f"{json.dumps(status, indent=1)}\noperator log:\n{_tail(log)}"
    )
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Complete"]["status"] == "True"
    assert status["securitiesAnalyzed"] == tickers and status["securitiesFailed"] == 0
    assert 0 < status["summary"]["avgRsi"] < 100
    assert status["summary"]["avgSma20"] > 0
    assert len(status["results"]) == tickers
    namespace = resource["metadata"]["namespace"]
    configmap = _get(plane, "configmap", status["reportConfigMap"], "--namespace", namespace)
    assert configmap["metadata"]["ownerReferences"][0]["uid"] == resource["metadata"]["uid"]
    report = json.loads(configmap["data"]["report.json"])
    assert report["report"]["securities_analyzed"] == tickers
    # Events were posted with the ServiceAccount's rights (a refused event is only logged).
    # kopf posts Events from a background queue: they may trail the status just read.
    wait_until(
        lambda: _get(
            plane, "events", "--namespace", namespace,
            f"--field-selector=involvedObject.name={resource['metadata']['name']}",
        )["items"],
        30, "the analysis has Events", lambda: _tail(log),
    )  # fmt: skip
    # A refusal by RBAC fails the test; a write into a namespace that another test is deleting
    # ("... because it is being terminated") is the API server's, not the role's, refusal.
    refused = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if "orbidden" in line and "because it is being terminated" not in line
    ]
    assert not refused, f"the operator was refused something:\n{_tail(log)}"


# -- tests --------------------------------------------------------------------------------------


def test_install_creates_an_established_crd_service_account_and_rbac(
    plane: ControlPlane, release: str
) -> None:
    plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    crd = _get(plane, "crd", CRD_NAME)
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE

    # The API server publishes the schema: `kubectl explain` teaches the resource.
    # (The OpenAPI document is published a moment after the CRD is Established.)
    def explain() -> str:
        answer = plane.kubectl("explain", "pfa.spec.cluster.maxWorkers", check=False)
        return answer.stdout if answer.returncode == 0 else ""

    explained = wait_until(explain, 30, "kubectl explain knows the resource", interval=0.5)
    assert "<integer>" in explained and "DESCRIPTION" in explained.upper()

    service_account = _get(plane, "serviceaccount", FULLNAME, "--namespace", NAMESPACE)
    assert service_account["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    binding = _get(plane, "clusterrolebinding", FULLNAME)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    _get(plane, "clusterrole", FULLNAME)
    deployment = _get(plane, "deployment", FULLNAME, "--namespace", NAMESPACE)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME

    # What the API server's authorizer makes of the chart's RBAC, in any namespace.
    for verb, resource in [
        ("watch", "portfolioanalyses.analysis.portfolio-operator.io"),
        ("patch", "portfolioanalyses.analysis.portfolio-operator.io/status"),
        ("create", "daskclusters.kubernetes.dask.org"),
        ("create", "daskautoscalers.kubernetes.dask.org"),
        ("update", "configmaps"),
        ("create", "events"),
        ("list", "pods"),
    ]:
        assert _can_i(plane, verb, resource, "anywhere"), f"cannot {verb} {resource}"
    for verb, resource in [
        ("get", "secrets"),
        ("delete", "pods"),
        ("create", "deployments.apps"),
        ("delete", "configmaps"),
        ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ]:
        assert not _can_i(plane, verb, resource, "anywhere"), f"may {verb} {resource}"


def test_notes_tell_the_user_what_to_apply_next(plane: ControlPlane, release: str) -> None:
    notes = plane.helm("get", "notes", RELEASE, "--namespace", NAMESPACE).stdout
    assert f"kubectl --namespace {NAMESPACE} rollout status deployment/{FULLNAME}" in notes
    assert "kubectl explain portfolioanalysis.spec" in notes
    assert "kubectl wait --for=condition=Complete pfa/" in notes
    # Every sample the notes point at exists.
    samples = [
        w for w in notes.split() if w.startswith("manifests/samples/") and w.endswith(".yaml")
    ]
    assert samples
    for sample in samples:
        assert (ROOT / sample).exists(), f"NOTES.txt names {sample}, which does not exist"
    # Without the toggle they say how to get the dask-kubernetes operator; with it, that it is.
    assert "--set daskKubernetesOperator.enabled=true" in notes
    with_dask = plane.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=server",
        "--reuse-values", "--set", "daskKubernetesOperator.enabled=true",
    ).stdout.split("NOTES:", 1)[1]  # fmt: skip
    assert "dask-kubernetes operator: installed by this release" in with_dask
    assert "--set daskKubernetesOperator.enabled=true" not in with_dask


def test_samples_apply_and_the_invalid_one_is_refused_with_the_schema_and_cel_messages(
    plane: ControlPlane, release: str, namespace: str
) -> None:
    result = plane.kubectl("apply", "--namespace", namespace, "-f", str(SAMPLES), check=False)
    valid = sorted(p.stem for p in SAMPLES.glob("*.yaml") if p.stem != "invalid")
    assert valid, f"no samples in {SAMPLES}"
    for name in valid:
        assert f"portfolioanalysis.analysis.portfolio-operator.io/{name} created" in result.stdout
    assert result.returncode != 0, "the invalid sample was accepted"
    # The OpenAPI pattern names the bad ticker; the CEL rule says how to fix the bounds.
    assert 'spec.tickers[1]: Invalid value: "msft"' in result.stderr, result.stderr
    assert (
        "spec.cluster.minWorkers must be less than or equal to spec.cluster.maxWorkers"
        in result.stderr
    ), result.stderr
    stored = _get(plane, PLURAL, "--namespace", namespace)["items"]
    assert sorted(item["metadata"]["name"] for item in stored) == valid
    # The API server filled in the schema defaults, the autoscaler bounds from the chart values.
    values = json.loads(
        plane.helm("get", "values", RELEASE, "-n", NAMESPACE, "--all", "-o", "json").stdout
    )
    reuse = next(i for i in stored if i["metadata"]["name"] == "reuse-scheduler")
    assert reuse["spec"]["cluster"]["minWorkers"] == values["analysis"]["minWorkers"]
    assert reuse["spec"]["cluster"]["maxWorkers"] == values["analysis"]["maxWorkers"]
    assert reuse["spec"]["priceSources"] == ["embedded"]


@pytest.mark.dask
def test_operator_with_the_service_accounts_own_token_runs_a_sample_to_succeeded(
    plane: ControlPlane, release: str, namespace: str, scheduler: str, tmp_path: Path
) -> None:
    with _operator(plane, tmp_path, namespace) as (health_port, log):
        _run_reuse_scheduler_sample(plane, namespace, scheduler, log)
        assert _http_status(f"http://127.0.0.1:{health_port}/healthz") == 200

    # Outside its role the same credentials are refused.
    kubeconfig = tmp_path / f"{FULLNAME}.kubeconfig"
    # (It may list pods, to say why a Dask cluster does not start, but not read their logs.)
    for args in (
        ["get", "secrets", "--namespace", namespace],
        ["logs", "no-such-pod", "-n", namespace],
    ):
        refused = plane.kubectl("--kubeconfig", str(kubeconfig), *args, check=False)
        assert refused.returncode != 0
        assert "Forbidden" in refused.stderr and SERVICE_ACCOUNT in refused.stderr, refused.stderr


@pytest.mark.dask
def test_upgrade_with_changed_values(
    plane: ControlPlane, release: str, namespace: str, scheduler: str, tmp_path: Path
) -> None:
    other = f"{namespace}-other"
    plane.kubectl("create", "namespace", other)
    try:
        before = int(
            json.loads(plane.helm("status", RELEASE, "-n", NAMESPACE, "-o", "json").stdout)[
                "version"
            ]
        )
        plane.helm(
            "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--reuse-values",
            "--set", "operator.logLevel=DEBUG",
            "--set", "analysis.minWorkers=2",
            "--set", "analysis.maxWorkers=8",
            "--set", "analysis.workerImage=registry.local/dask:2",
            "--set", "metrics.service.enabled=true",
            "--set-json", f'operator.watchNamespaces=["{namespace}"]',
        )  # fmt: skip
        status = json.loads(plane.helm("status", RELEASE, "-n", NAMESPACE, "-o", "json").stdout)
        assert int(status["version"]) == before + 1 and status["info"]["status"] == "deployed"

        env = _deployment_env(plane)
        assert env["PORTFOLIO_OPERATOR_LOG_LEVEL"] == "DEBUG"
        assert env["PORTFOLIO_OPERATOR_NAMESPACES"] == namespace
        assert env["PORTFOLIO_OPERATOR_WORKER_IMAGE"] == "registry.local/dask:2"
        service = _get(plane, "service", f"{FULLNAME}-metrics", "--namespace", NAMESPACE)
        assert service["spec"]["ports"][0]["targetPort"] == "metrics"

        # The new autoscaler bounds are the CRD's defaults now: the API server applies them.
        plane.kubectl(
            "create", "-f", "-",
            input=yaml.safe_dump({
                "apiVersion": "analysis.portfolio-operator.io/v1alpha1",
                "kind": "PortfolioAnalysis",
                "metadata": {"name": "defaults", "namespace": other},
                "spec": {"tickers": ["AAPL"]},
            }),
        )  # fmt: skip
        stored = _get(plane, PLURAL, "defaults", "--namespace", other)
        assert stored["spec"]["cluster"]["minWorkers"] == 2
        assert stored["spec"]["cluster"]["maxWorkers"] == 8

        # Watching one namespace: a Role there, no cluster-wide rights any more.
        assert _get(plane, "role", FULLNAME, "--namespace", namespace)["rules"]
        gone = plane.kubectl("get", "clusterrole", FULLNAME, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
        analyses = "portfolioanalyses.analysis.portfolio-operator.io"
        assert _can_i(plane, "watch", analyses, namespace)
        assert not _can_i(plane, "watch", analyses, other)

        # And the operator, configured as the upgraded Deployment, works with just that Role.
        with _operator(plane, tmp_path, namespace) as (_, log):
            _run_reuse_scheduler_sample(plane, namespace, scheduler, log)
            # The resource outside the watched namespace is left alone.
            assert "phase" not in _get(plane, PLURAL, "defaults", "-n", other).get("status", {})
    finally:
        plane.kubectl("delete", "namespace", other, "--wait=false", check=False)


def _eventually(check, what: str, logs: list[Path], timeout: float = 120.0):
    """The first truthy value of `check()`; fails with the controllers' logs after `timeout`."""

    def tails() -> str:
        return "\n".join(f"--- {log.name}\n{_tail(log, 30)}" for log in logs)

    return wait_until(check, timeout, what, tails, interval=0.5)


def _named(plane: ControlPlane, kind: str, namespace: str, **selector: str) -> dict[str, dict]:
    args = ["--namespace", namespace]
    if selector:
        args += ["-l", ",".join(f"{k}={v}" for k, v in selector.items())]
    return {o["metadata"]["name"]: o for o in _get(plane, kind, *args)["items"]}


def test_dask_kubernetes_toggle_turns_an_analysis_into_a_dask_cluster_with_chart_rbac(
    plane: ControlPlane, release: str, namespace: str, tmp_path: Path
) -> None:
    """Both controllers out of cluster, each with its own chart ServiceAccount's token: a
    PortfolioAnalysis without schedulerAddress becomes a DaskCluster and DaskAutoscaler (our
    operator), then a scheduler Deployment and Service and a worker group with its worker
    Deployment (the dask-kubernetes controller). No kubelet runs here, so no pod ever starts."""
    plane.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE,  # default values, and:
        "--set", "image.tag=test", "--set", "daskKubernetesOperator.enabled=true",
    )  # fmt: skip
    dask_crds = ["daskclusters", "daskworkergroups", "daskjobs", "daskautoscalers"]
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                  *[f"crd/{n}.kubernetes.dask.org" for n in dask_crds])  # fmt: skip

    with (
        _dask_kubernetes_controller(plane, tmp_path) as dask_log,
        _operator(plane, tmp_path, namespace) as (_, operator_log),
    ):
        logs = [operator_log, dask_log]
        plane.kubectl("create", "-f", "-", input=_sample("small-portfolio.yaml", namespace))
        analysis = _get(plane, PLURAL, "small-portfolio", "--namespace", namespace)

        clusters = _eventually(lambda: _named(plane, "daskclusters", namespace),
                               "a DaskCluster", logs)  # fmt: skip
        (cluster_name, cluster) = next(iter(clusters.items()))
        assert cluster["metadata"]["ownerReferences"][0]["uid"] == analysis["metadata"]["uid"]
        autoscaler = _get(plane, "daskautoscalers", cluster_name, "--namespace", namespace)
        assert (autoscaler["spec"]["minimum"], autoscaler["spec"]["maximum"]) == (1, 3)

        scheduler = _eventually(
            lambda: _named(plane, "deployments", namespace, **{"dask.org/component": "scheduler"}),
            "the scheduler Deployment", logs,
        )  # fmt: skip
        (deployment,) = scheduler.values()
        assert deployment["metadata"]["ownerReferences"][0]["name"] == cluster_name
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "portfolio-operator:test"  # the chart's image by default
        _get(plane, "service", f"{cluster_name}-scheduler", "--namespace", namespace)
        _eventually(
            lambda: _named(plane, "deployments", namespace, **{"dask.org/component": "worker"}),
            "a worker Deployment", logs,
        )  # fmt: skip
        _get(plane, "daskworkergroups", f"{cluster_name}-default", "--namespace", namespace)
        status = _get(plane, PLURAL, "small-portfolio", "--namespace", namespace)["status"]
        assert status["daskCluster"]["name"] == cluster_name

        plane.kubectl("delete", PLURAL, "small-portfolio", "--namespace", namespace,
                      "--timeout=60s")  # fmt: skip
        # Owned all the way down: the garbage collector removes the cluster with the analysis.
        _eventually(lambda: not _named(plane, "daskclusters", namespace), "cluster deletion", logs)
        for log in logs:
            text = log.read_text(errors="replace")
            assert "Forbidden" not in text and "forbidden" not in text, _tail(log)


def test_uninstall_removes_the_operator_and_keeps_the_crd_and_the_analyses(
    plane: ControlPlane, release: str, namespace: str
) -> None:
    plane.kubectl("apply", "--namespace", namespace, "-f", str(SAMPLES / "small-portfolio.yaml"))
    plane.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout=60s")
    assert not _installed(plane)
    for kind, extra in [
        ("deployment", ["--namespace", NAMESPACE]),
        ("serviceaccount", ["--namespace", NAMESPACE]),
        ("clusterrole", []),
        ("clusterrolebinding", []),
    ]:
        result = plane.kubectl("get", kind, FULLNAME, *extra, check=False)
        assert result.returncode != 0 and "NotFound" in result.stderr, (kind, result.stdout)
    roles = _get(plane, "roles,rolebindings", "-A", "-l", f"app.kubernetes.io/instance={RELEASE}")
    assert roles["items"] == []
    # crds.keep (the default): the CRD and every PortfolioAnalysis survive...
    plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=10s")
    _get(plane, PLURAL, "small-portfolio", "--namespace", namespace)

    # ...and installing the same release again adopts the kept CRD.
    _install(plane)
    crd = _get(plane, "crd", CRD_NAME)
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    # Without crds.keep, uninstall deletes the CRD and, with it, the analyses.
    plane.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--reuse-values",
        "--set", "crds.keep=false",
    )  # fmt: skip
    annotations = _get(plane, "crd", CRD_NAME)["metadata"]["annotations"]
    assert "helm.sh/resource-policy" not in annotations
    plane.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout=60s")
    wait_until(lambda: plane.kubectl("get", "crd", CRD_NAME, check=False).returncode != 0, 60,
               "uninstall deleted the CRD", interval=0.5)  # fmt: skip
