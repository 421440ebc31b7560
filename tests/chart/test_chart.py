"""The Helm chart, rendered by the pinned helm (no API server): what a user installs.

Checks that catch real breakage: lint warnings, the chart's CRD drifting from the operator's
schema or from manifests/, values that never reach the operator's settings, RBAC that differs
from manifests/rbac.yaml or grants more than the operator uses, pods that could run as root or
write to their image, values the schema should refuse, and the dask-kubernetes toggle.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml
from portfolio_operator.config import DEFAULT_LEASE_NAME, OperatorConfig
from portfolio_operator.constants import CRD_NAME
from portfolio_operator.schema import crd_manifest, crd_yaml

from tests.chart.conftest import (
    CHART,
    NAMESPACE,
    RELEASE,
    ROOT,
    Helm,
    by_kind,
    one,
)

MANIFESTS = ROOT / "manifests"
DASK_CRDS = CHART / "files" / "dask-kubernetes-crds"
FULLNAME = f"{RELEASE}-portfolio-operator"
ELECTION_ROLE = f"{FULLNAME}-leader-election"


def _cluster_bounds(crd: dict) -> dict:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]["properties"]["cluster"]["properties"]


def _without_release_metadata(crd: dict) -> dict:
    """The CRD minus what Helm adds (release labels, the keep annotation)."""
    crd = json.loads(json.dumps(crd))
    crd["metadata"].pop("annotations", None)
    crd["metadata"]["labels"] = {
        k: v for k, v in crd["metadata"].get("labels", {}).items() if k == "app.kubernetes.io/name"
    }
    return crd


def _operator_env(objects: list[dict], pod: str = "pfo-portfolio-operator-7d9f-x2kq") -> dict:
    """The container's environment, with the downward API's fields as a pod of `pod` sees them."""
    deployment = one(objects, "Deployment", FULLNAME)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    fields = {"metadata.name": pod, "metadata.namespace": NAMESPACE}
    return {
        e["name"]: e["value"] if "value" in e else fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        for e in container["env"]
    }


def _rule_triples(rules: list[dict]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


# -- lint and metadata --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        [],
        ["--set", "daskKubernetesOperator.enabled=true"],
        ["--set-json", 'operator.watchNamespaces=["team-a","team-b"]'],
        ["--set", "crds.install=false", "--set", "metrics.service.enabled=true"],
        ["--set", "replicas=2"],
    ],
    ids=["defaults", "dask-operator", "watch-namespaces", "no-crd-metrics-service", "replicas"],
)
def test_helm_lint_strict_passes_without_warnings(helm: Helm, settings: list[str]) -> None:
    result = helm.run("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *settings)
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_chart_version_matches_the_project_and_the_image_tag() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    import importlib.metadata

    assert chart["annotations"]["portfolio-operator/dask-kubernetes-version"] == (
        importlib.metadata.version("dask-kubernetes")
    ), "the chart's dask-kubernetes CRDs are from another version: run `make chart-sync`"


def test_image_defaults_to_the_app_version_and_can_be_overridden(helm: Helm) -> None:
    env = _operator_env(helm.template())
    deployment = one(helm.template(), "Deployment", FULLNAME)
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "portfolio-operator:0.1.0"
    assert env["PORTFOLIO_OPERATOR_WORKER_IMAGE"] == image  # workers run the same image

    objects = helm.template("image.repository=ghcr.io/acme/pfo", "image.tag=v2")
    (container,) = one(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/acme/pfo:v2"
    assert _operator_env(objects)["PORTFOLIO_OPERATOR_WORKER_IMAGE"] == "ghcr.io/acme/pfo:v2"


def test_pod_defaults_and_the_startup_deadline_become_the_crds_defaults(helm: Helm) -> None:
    from portfolio_operator.spec import CLUSTER_DEFAULTS

    cluster = _cluster_bounds(one(helm.template(), "CustomResourceDefinition", CRD_NAME))
    assert cluster["startupDeadlineSeconds"]["default"] == CLUSTER_DEFAULTS.startup_deadline_seconds
    assert "default" not in cluster["nodeSelector"], "empty pod defaults add nothing"
    pools = {"pool": "analytics"}
    toleration = {"key": "dedicated", "operator": "Equal", "value": "dask"}
    objects = helm.template(
        "analysis.startupDeadlineSeconds=120",
        extra=[
            "--set-json", f"analysis.podDefaults.nodeSelector={json.dumps(pools)}",
            "--set-json", f"analysis.podDefaults.tolerations=[{json.dumps(toleration)}]",
        ],
    )  # fmt: skip
    cluster = _cluster_bounds(one(objects, "CustomResourceDefinition", CRD_NAME))
    assert cluster["startupDeadlineSeconds"]["default"] == 120
    assert cluster["nodeSelector"]["default"] == pools
    assert cluster["tolerations"]["default"] == [toleration]


def test_the_image_policy_reaches_the_operator(helm: Helm) -> None:
    from portfolio_operator.config import OperatorConfig

    assert _operator_env(helm.template())["PORTFOLIO_OPERATOR_ALLOWED_IMAGES"] == ""
    objects = helm.template(
        extra=["--set-json", 'analysis.allowedImages=["reg.example/a/*","b:1"]']
    )
    env = _operator_env(objects)
    config = OperatorConfig.from_env(env)
    assert config.allowed_images == ("reg.example/a/*", "b:1")
    assert config.image_allowed("reg.example/a/pfa:2") and not config.image_allowed("c:1")


# -- the CRD: one source ------------------------------------------------------------------------


def test_chart_crd_is_the_generated_crd_and_the_one_in_manifests(helm: Helm) -> None:
    generated = crd_yaml()
    chart_copy = CHART / "files" / "crds" / "portfolioanalyses.yaml"
    assert chart_copy.read_text() == generated, f"{chart_copy} is stale: run `make chart-sync`"
    manifests_crd = MANIFESTS / "crd.yaml"
    assert manifests_crd.is_file(), f"{manifests_crd} is missing (make chart-sync)"
    assert manifests_crd.read_text() == generated, f"{manifests_crd} is stale"

    rendered = one(helm.template(), "CustomResourceDefinition", CRD_NAME)
    # With default values the chart installs exactly the generated CRD (helm's YAML round trip
    # may turn 0.0 into 0, which compares equal).
    assert _without_release_metadata(rendered) == crd_manifest()
    assert rendered["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_autoscaler_bound_values_become_the_crd_defaults(helm: Helm) -> None:
    rendered = one(
        helm.template("analysis.minWorkers=2", "analysis.maxWorkers=12"),
        "CustomResourceDefinition",
    )
    bounds = _cluster_bounds(rendered)
    assert (bounds["minWorkers"]["default"], bounds["maxWorkers"]["default"]) == (2, 12)
    # Everything else is untouched: the CEL rule still guards the pair.
    expected = crd_manifest()
    _cluster_bounds(expected)["minWorkers"]["default"] = 2
    _cluster_bounds(expected)["maxWorkers"]["default"] = 12
    assert _without_release_metadata(rendered) == expected


def test_crd_can_be_left_to_the_user_and_kept_or_not(helm: Helm) -> None:
    assert not by_kind(helm.template("crds.install=false"), "CustomResourceDefinition")
    rendered = one(helm.template("crds.keep=false"), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in rendered["metadata"].get("annotations", {})


# -- values reach the operator ------------------------------------------------------------------


def test_values_reach_the_operator_settings(helm: Helm) -> None:
    objects = helm.template(
        "operator.logLevel=DEBUG",
        "operator.healthPort=8081",
        "operator.metricsPort=9191",
        "operator.maxConcurrentAnalyses=7",
        "analysis.workerImage=registry.local/dask-worker:1",
        "analysis.prefectApiUrl=http://prefect.prefect:4200/api",
        extra=["--set-json", 'operator.watchNamespaces=["team-a","team-b"]'],
    )
    env = _operator_env(objects)
    # The operator's own parser reads what the chart sets: a renamed variable fails here.
    config = OperatorConfig.from_env(env)
    assert config.namespaces == ("team-a", "team-b")
    assert config.log_level == "DEBUG"
    assert (config.health_port, config.metrics_port) == (8081, 9191)
    assert config.max_concurrent_analyses == 7
    assert config.worker_image == "registry.local/dask-worker:1"
    assert config.worker_env == {"PREFECT_API_URL": "http://prefect.prefect:4200/api"}
    unknown = {k for k in env if k.startswith("PORTFOLIO_OPERATOR_")} - {
        "PORTFOLIO_OPERATOR_" + name
        for name in [
            "NAMESPACES",
            "ALLOWED_IMAGES",
            "LOG_LEVEL",
            "HEALTH_PORT",
            "METRICS_PORT",
            "MAX_CONCURRENT_ANALYSES",
            "WORKER_IMAGE",
            "LEADER_ELECTION",
            "LEADER_ELECTION_NAMESPACE",
            "LEADER_ELECTION_LEASE",
            "LEASE_DURATION_SECONDS",
            "RENEW_DEADLINE_SECONDS",
            "RETRY_PERIOD_SECONDS",
        ]
    }
    assert not unknown

    spec = one(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8081, "metrics": 9191}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["command"] == ["portfolio-operator"]


def test_default_values_give_the_operator_its_defaults(helm: Helm) -> None:
    config = OperatorConfig.from_env(_operator_env(helm.template()))
    assert config.namespaces == ()  # all namespaces
    assert config.log_level == "INFO"
    assert config.worker_env == {}  # no Prefect server unless one is named
    # Leader election on: the release's Lease in the release's namespace, the pod as holder.
    assert config.leader_election is True
    assert config.leader_election_namespace == NAMESPACE
    assert config.leader_election_lease == FULLNAME
    assert config.leader_election_identity == "pfo-portfolio-operator-7d9f-x2kq"
    assert (config.lease_duration_seconds, config.renew_deadline_seconds,
            config.retry_period_seconds) == (15, 10, 2)  # fmt: skip


def test_leader_election_timings_reach_the_operator(helm: Helm) -> None:
    objects = helm.template(
        "operator.leaderElection.leaseDurationSeconds=30",
        "operator.leaderElection.renewDeadlineSeconds=20",
        "operator.leaderElection.retryPeriodSeconds=4",
    )
    config = OperatorConfig.from_env(_operator_env(objects))
    assert (config.lease_duration_seconds, config.renew_deadline_seconds,
            config.retry_period_seconds) == (30, 20, 4)  # fmt: skip


def test_metrics_service_targets_the_metrics_port(helm: Helm) -> None:
    assert not [s for s in by_kind(helm.template(), "Service") if s["metadata"]["name"].endswith(
        "-metrics")]  # fmt: skip
    service = one(helm.template("metrics.service.enabled=true"), "Service", f"{FULLNAME}-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    deployment = one(helm.template(), "Deployment", FULLNAME)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_reports_service_exposes_the_port_that_serves_the_html_reports(helm: Helm) -> None:
    objects = helm.template("operator.healthPort=8181")
    service = one(objects, "Service", f"{FULLNAME}-reports")
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("http", 8080, "health")
    assert service["spec"]["type"] == "ClusterIP"
    deployment = one(objects, "Deployment", FULLNAME)
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "operator"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == 8181
    # The operator serves the reports on that (health) port.
    config = OperatorConfig.from_env(_operator_env(objects))
    assert config.health_port == 8181
    off = helm.template("reports.service.enabled=false")
    assert not [s for s in by_kind(off, "Service") if s["metadata"]["name"].endswith("-reports")]


# -- security -----------------------------------------------------------------------------------


def test_every_pod_runs_non_root_with_a_read_only_root_and_no_escalation(helm: Helm) -> None:
    objects = helm.template("daskKubernetesOperator.enabled=true")
    deployments = by_kind(objects, "Deployment")
    assert len(deployments) == 2  # the operator and the dask-kubernetes controller
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key), f"{name}: {key}"
        writable = {}
        for volume in pod["volumes"]:
            assert set(volume) == {"name", "emptyDir"}, f"{name}: only emptyDir volumes"
            writable[volume["name"]] = volume["emptyDir"]["sizeLimit"]
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["runAsNonRoot"] is True, name
            assert context.get("privileged") is not True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in context["capabilities"], name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            # The only writable places: /tmp and $HOME (Prefect, Dask and kopf state).
            assert mounts == {"/tmp": "tmp", "/home/portfolio": "home"}, name
            assert set(mounts.values()) <= set(writable)
            assert container["resources"]["limits"]["memory"], f"{name}: memory limit"


def test_every_object_carries_the_release_labels(helm: Helm) -> None:
    # `kubectl get all,roles,... -l app.kubernetes.io/instance=RELEASE` finds the whole release.
    objects = helm.template(
        "daskKubernetesOperator.enabled=true", "metrics.service.enabled=true",
        extra=["--set-json", 'operator.watchNamespaces=["team-a"]'],
    )  # fmt: skip
    for o in objects:
        labels = o["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == RELEASE, (o["kind"], o["metadata"])
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", o["kind"]


def test_replicas_with_leader_election_roll_and_without_it_stay_one(helm: Helm) -> None:
    deployment = one(helm.template(), "Deployment", FULLNAME)
    assert deployment["spec"]["replicas"] == 1
    # The new pod waits as a standby; the old leader goes only once it is ready.
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert deployment["spec"]["strategy"] == rolling

    objects = helm.template("replicas=2")
    deployment = one(objects, "Deployment", FULLNAME)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == rolling
    assert OperatorConfig.from_env(_operator_env(objects)).leader_election is True
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    downward = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
                for e in container["env"] if "valueFrom" in e}  # fmt: skip
    assert downward == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    # Two pods with different names are two different holders of the same Lease.
    first, second = (OperatorConfig.from_env(_operator_env(objects, pod)) for pod in ("p-1", "p-2"))
    assert first.leader_election_lease == second.leader_election_lease
    assert first.leader_election_identity != second.leader_election_identity

    # Without election, one replica at a time, as before.
    single = helm.template("operator.leaderElection.enabled=false")
    assert one(single, "Deployment", FULLNAME)["spec"]["strategy"] == {"type": "Recreate"}
    assert OperatorConfig.from_env(_operator_env(single)).leader_election is False
    assert not [r for r in by_kind(single, "Role") if r["metadata"]["name"] == ELECTION_ROLE]


# -- RBAC ---------------------------------------------------------------------------------------


def _manifest_rules(kind: str = "ClusterRole") -> list[dict]:
    """The rules of manifests/rbac.yaml's ClusterRole, or of its (leader-election) Role."""
    path = MANIFESTS / "rbac.yaml"
    assert path.is_file(), f"{path} is missing: the chart's rules are checked against it"
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    roles = [d for d in documents if d["kind"] == kind]
    assert roles, f"no {kind} in {path}"
    return [rule for role in roles for rule in role["rules"]]


def _election_rules(rules: list[dict], lease: str) -> set[tuple]:
    """(verb, resourceNames) pairs of the Lease rules, with the Lease's name as `LEASE`."""
    assert {(tuple(r["apiGroups"]), tuple(r["resources"])) for r in rules} == {
        (("coordination.k8s.io",), ("leases",))
    }
    return {
        (verb, tuple("LEASE" if n == lease else n for n in rule.get("resourceNames", [])))
        for rule in rules
        for verb in rule["verbs"]
    }


def test_rbac_is_the_same_as_manifests_rbac(helm: Helm) -> None:
    objects = helm.template()
    cluster_role = one(objects, "ClusterRole", FULLNAME)
    assert _rule_triples(cluster_role["rules"]) == _rule_triples(_manifest_rules())
    election = one(objects, "Role", ELECTION_ROLE)
    assert _election_rules(election["rules"], FULLNAME) == _election_rules(
        _manifest_rules("Role"), DEFAULT_LEASE_NAME
    )


def test_leader_election_may_touch_only_its_own_lease_in_the_release_namespace(
    helm: Helm,
) -> None:
    objects = helm.template(extra=["--set-json", 'operator.watchNamespaces=["team-a"]'])
    election = one(objects, "Role", ELECTION_ROLE)
    assert election["metadata"]["namespace"] == NAMESPACE
    # get/update name the Lease; create cannot (the name is not known when it is authorized).
    assert _election_rules(election["rules"], FULLNAME) == {
        ("create", ()), ("get", ("LEASE",)), ("update", ("LEASE",))
    }  # fmt: skip
    binding = one(objects, "RoleBinding", ELECTION_ROLE)
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ELECTION_ROLE
    }  # fmt: skip
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    # Nowhere else: no other Role and no ClusterRole mentions leases.
    others = [r for r in by_kind(objects, "ClusterRole") + by_kind(objects, "Role")
              if r["metadata"]["name"] != ELECTION_ROLE]  # fmt: skip
    assert not {t for r in others for t in _rule_triples(r["rules"]) if t[1] == "leases"}


def test_rbac_is_least_privilege(helm: Helm) -> None:
    objects = helm.template("daskKubernetesOperator.enabled=true")
    for role in by_kind(objects, "ClusterRole") + by_kind(objects, "Role"):
        for group, resource, verb in _rule_triples(role["rules"]):
            assert "*" not in (group, resource, verb), role["metadata"]["name"]
            assert resource not in ("secrets", "pods/exec", "serviceaccounts/token"), (
                f"{role['metadata']['name']} may {verb} {resource}"
            )
            assert verb not in ("escalate", "bind", "impersonate")
    # The portfolio operator itself never changes pods, deployments or services: the
    # dask-kubernetes controller does. It only lists pods, to say why a cluster does not start.
    ours = _rule_triples(one(objects, "ClusterRole", FULLNAME)["rules"])
    assert {verb for _, resource, verb in ours if resource == "pods"} == {"list"}
    assert {resource for _, resource, _ in ours} <= {
        "pods",
        "portfolioanalyses",
        "portfolioanalyses/status",
        "portfolioanalyses/finalizers",
        "daskclusters",
        "daskautoscalers",
        "configmaps",
        "events",
    }


def test_watching_namespaces_grants_roles_only_there(helm: Helm) -> None:
    objects = helm.template(extra=["--set-json", 'operator.watchNamespaces=["team-a","team-b"]'])
    roles = [r for r in by_kind(objects, "Role") if r["metadata"]["name"] != ELECTION_ROLE]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = [b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"] == FULLNAME]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    service_account = one(objects, "ServiceAccount")["metadata"]
    for binding in bindings:
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": service_account["name"],
                "namespace": NAMESPACE,
            }
        ]
        assert binding["roleRef"]["kind"] == "Role"
    cluster_wide = _rule_triples(
        [rule for role in by_kind(objects, "ClusterRole") for rule in role["rules"]]
    )
    assert not {t for t in cluster_wide if t[1].startswith("portfolioanalyses")}, (
        "watching a list of namespaces must not grant PortfolioAnalysis rights everywhere"
    )
    assert _rule_triples(roles[0]["rules"]) == _rule_triples(_manifest_rules())


def test_rbac_and_service_account_can_be_brought_by_the_user(helm: Helm) -> None:
    objects = helm.template("rbac.create=false", "serviceAccount.create=false",
                            "serviceAccount.name=platform-sa")  # fmt: skip
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "Role", "ServiceAccount")]
    pod = one(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-sa"


# -- values.schema.json and cross-field checks --------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["operator.logLevel=LOUD"], "logLevel"),
        (["image.repository="], "repository"),
        (["analysis.maxWorkers=500"], "maxWorkers"),
        (["analysis.minWorkers=-1"], "minWorkers"),
        (["operator.watchNamespace=team-a"], "watchNamespace"),  # a typo of watchNamespaces
        (["analysis.prefectApiUrl=prefect:4200"], "prefectApiUrl"),
        (["tmpSizeLimit=lots"], "tmpSizeLimit"),
        (["daskKubernetesOperator.enabeld=true"], "enabeld"),
        (["replicas=0"], "replicas"),
        (["operator.leaderElection.retryPeriodSeconds=0"], "retryPeriodSeconds"),
    ],
)
def test_schema_refuses_bad_values_naming_the_key(
    helm: Helm, settings: list[str], message: str
) -> None:
    error = helm.template_error(*settings)
    assert "values don't meet the specifications of the schema" in error, error
    assert message in error, error


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            ["analysis.minWorkers=5", "analysis.maxWorkers=2"],
            "analysis.minWorkers (5) must not exceed analysis.maxWorkers (2)",
        ),
        (
            ["operator.healthPort=9000", "operator.metricsPort=9000"],
            "give them different ports",
        ),
        (
            ["serviceAccount.create=false"],
            "set serviceAccount.name to the existing ServiceAccount",
        ),
        (
            ["replicas=2", "operator.leaderElection.enabled=false"],
            "every replica would run every analysis; enable leader election or set replicas=1",
        ),
        (
            ["operator.leaderElection.renewDeadlineSeconds=20"],
            "leaseDurationSeconds (15) > renewDeadlineSeconds (20) > 1.2 x retryPeriodSeconds (2)",
        ),
    ],
)
def test_cross_field_mistakes_fail_with_what_to_change(
    helm: Helm, settings: list[str], message: str
) -> None:
    assert message in helm.template_error(*settings)


def test_schema_documents_every_default_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: object, node: dict, path: str) -> None:
        assert node.get("description") or path.count(".") > 1, f"{path}: no description"
        if isinstance(value, dict) and "properties" in node:
            for key, child in value.items():
                assert key in node["properties"], f"{path}.{key} is not in values.schema.json"
                walk(child, node["properties"][key], f"{path}.{key}")

    for key, value in values.items():
        assert key in schema["properties"], f"{key} is not in values.schema.json"
        walk(value, schema["properties"][key], key)
    # The schema's worker bounds are the CRD's, so a value the API server would refuse is
    # refused at `helm install` already.
    crd_bounds = _cluster_bounds(crd_manifest())
    analysis = schema["properties"]["analysis"]["properties"]
    for key in ("minWorkers", "maxWorkers"):
        assert analysis[key]["minimum"] == crd_bounds[key]["minimum"]
        assert analysis[key]["maximum"] == crd_bounds[key]["maximum"]


# -- the dask-kubernetes operator toggle --------------------------------------------------------


def test_dask_kubernetes_operator_is_off_by_default(helm: Helm) -> None:
    objects = helm.template()
    assert all("dask" not in o["metadata"]["name"] for o in objects)
    assert [o["metadata"]["name"] for o in by_kind(objects, "CustomResourceDefinition")] == [
        CRD_NAME
    ]


def test_dask_kubernetes_toggle_runs_its_controller_from_our_image(helm: Helm) -> None:
    objects = helm.template("daskKubernetesOperator.enabled=true", "image.tag=v9")
    controller = one(objects, "Deployment", f"{FULLNAME}-dask")
    pod = controller["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "portfolio-operator:v9"
    command = container["command"]
    assert command[:3] == ["kopf", "run", "--standalone"]
    assert command[-2:] == ["-m", "dask_kubernetes.operator.controller"]
    assert "--all-namespaces" in command
    assert pod["serviceAccountName"] == f"{FULLNAME}-dask"
    binding = one(objects, "ClusterRoleBinding", f"{FULLNAME}-dask")
    assert binding["subjects"][0]["name"] == f"{FULLNAME}-dask"
    # What its handlers create and watch (dask_kubernetes/operator/controller/controller.py).
    granted = _rule_triples(one(objects, "ClusterRole", f"{FULLNAME}-dask")["rules"])
    for needed in [
        ("kubernetes.dask.org", "daskclusters", "watch"),
        ("kubernetes.dask.org", "daskworkergroups", "create"),
        ("kubernetes.dask.org", "daskautoscalers", "watch"),
        ("", "pods", "create"),
        ("", "services", "watch"),
        ("apps", "deployments", "create"),
        ("apps", "deployments", "delete"),
    ]:
        assert needed in granted, needed


def test_dask_kubernetes_crds_are_the_installed_packages_crds(helm: Helm) -> None:
    import dask_kubernetes

    package_crds = Path(dask_kubernetes.__file__).parent.joinpath(
        "operator", "deployment", "helm", "dask-kubernetes-operator", "crds"
    )
    shipped = {p.name: p.read_text() for p in sorted(package_crds.glob("*.yaml"))}
    copied = {p.name: p.read_text() for p in sorted(DASK_CRDS.glob("*.yaml"))}
    assert shipped and copied == shipped, "chart's dask-kubernetes CRDs are stale: make chart-sync"

    objects = helm.template("daskKubernetesOperator.enabled=true")
    rendered = {
        o["metadata"]["name"]: o
        for o in by_kind(objects, "CustomResourceDefinition")
        if o["metadata"]["name"] != CRD_NAME
    }
    expected = {}
    for text in shipped.values():
        crd = yaml.safe_load(text)
        expected[crd["metadata"]["name"]] = crd
    assert (
        set(rendered)
        == set(expected)
        == {
            "daskclusters.kubernetes.dask.org",
            "daskworkergroups.kubernetes.dask.org",
            "daskjobs.kubernetes.dask.org",
            "daskautoscalers.kubernetes.dask.org",
        }
    )
    for name, crd in rendered.items():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["spec"] == expected[name]["spec"], name

    no_crds = helm.template("daskKubernetesOperator.enabled=true",
                            "daskKubernetesOperator.installCRDs=false")  # fmt: skip
    assert [o["metadata"]["name"] for o in by_kind(no_crds, "CustomResourceDefinition")] == [
        CRD_NAME
    ]


def test_packaged_chart_renders_the_same(helm: Helm, tmp_path: Path) -> None:
    # What `helm package` ships (after .helmignore) must still hold the CRD copies in files/.
    helm.run("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("portfolio-operator-*.tgz")
    args = ["template", RELEASE, str(archive), "--namespace", NAMESPACE,
            "--set", "daskKubernetesOperator.enabled=true"]  # fmt: skip
    packaged = [d for d in yaml.safe_load_all(helm.run(*args).stdout) if d]
    assert packaged == helm.template("daskKubernetesOperator.enabled=true")
