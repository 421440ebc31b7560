"""DaskCluster and DaskAutoscaler manifests built for a PortfolioAnalysis."""

from __future__ import annotations

from portfolio_operator import cluster as clusters
from portfolio_operator.spec import parse_spec

from tests.operator.conftest import make_pfa

SPEC = {
    "tickers": ["AAPL"],
    "cluster": {
        "image": "registry.example/pfa:2",
        "imagePullPolicy": "Always",
        "minWorkers": 2,
        "maxWorkers": 7,
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    },
}


def test_the_cluster_is_owned_sized_and_uses_the_requested_image() -> None:
    owner = make_pfa(SPEC, uid="u-9")
    request = parse_spec(SPEC)
    manifest = clusters.dask_cluster_manifest(owner, "demo-dask", request, "default:1",
                                              {"PREFECT_API_URL": "http://p/api"})  # fmt: skip
    assert manifest["apiVersion"] == "kubernetes.dask.org/v1"
    assert manifest["kind"] == "DaskCluster"
    ref = manifest["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("PortfolioAnalysis", "u-9", True)
    worker = manifest["spec"]["worker"]
    assert worker["replicas"] == 2
    container = worker["spec"]["containers"][0]
    assert container["image"] == "registry.example/pfa:2"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"]["requests"]["cpu"] == "500m"
    assert {"name": "PREFECT_API_URL", "value": "http://p/api"} in container["env"]
    scheduler = manifest["spec"]["scheduler"]["spec"]["containers"][0]
    assert scheduler["image"] == "registry.example/pfa:2"

    autoscaler = clusters.autoscaler_manifest(owner, "demo-dask", request)
    assert autoscaler["spec"] == {"cluster": "demo-dask", "minimum": 2, "maximum": 7}
    assert autoscaler["metadata"]["ownerReferences"][0]["uid"] == "u-9"


def test_cluster_names_are_stable_and_fit_the_scheduler_service_name() -> None:
    assert clusters.cluster_name("demo", "u") == "demo-dask"
    long = clusters.cluster_name("x" * 120, "uid-1")
    assert long == clusters.cluster_name("x" * 120, "uid-1")
    assert long != clusters.cluster_name("x" * 120, "uid-2")
    assert len(long + clusters.SCHEDULER_SUFFIX) <= 63
    assert "." not in clusters.cluster_name("a.b", "u")


def test_observing_a_cluster_reads_ownership_phase_and_deletion() -> None:
    body = {
        "metadata": {"ownerReferences": [{"uid": "me", "controller": True}],
                     "deletionTimestamp": "x", "annotations": {clusters.SPEC_HASH_ANNOTATION: "h"}},
        "status": {"phase": "Running"},
    }  # fmt: skip
    view = clusters.observe_cluster(body, None, "me")
    assert view.owned and view.deleting and view.spec_hash == "h"
    assert not view.running, "a cluster being deleted is not a place to run"
    assert not clusters.observe_cluster(body, {}, "other").owned
    # The dask-kubernetes controller re-parents our DaskAutoscaler to our DaskCluster: still ours;
    # one controlled by someone else's cluster is not.
    ours = {"metadata": {"uid": "c-1", "ownerReferences": [{"uid": "me", "controller": True}]}}
    adopted = {"metadata": {"uid": "a-1", "ownerReferences": [{"uid": "c-1", "controller": True}]}}
    assert clusters.observe_cluster(ours, adopted, "me").autoscaler_owned
    foreign = {"metadata": {"uid": "c-2", "ownerReferences": [{"uid": "x", "controller": True}]}}
    assert not clusters.observe_cluster(foreign, adopted, "me").autoscaler_owned
    # Owned means controlled: a plain (non-controller) reference to us does not make it ours.
    body["metadata"]["ownerReferences"] = [{"uid": "me"}, {"uid": "x", "controller": True}]
    assert not clusters.observe_cluster(body, None, "me").owned


def pods(manifest: dict) -> dict[str, dict]:
    return {part: manifest["spec"][part]["spec"] for part in ("scheduler", "worker")}


def test_scheduler_and_worker_pods_meet_restricted_pod_security() -> None:
    request = parse_spec(SPEC)
    manifest = clusters.dask_cluster_manifest(make_pfa(SPEC), "demo-dask", request, "d:1")
    for part, pod in pods(manifest).items():
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] > 0, part
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, part
        writable = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts["/tmp"] in writable and mounts[clusters.HOME] in writable


def test_placement_labels_and_per_role_resources_reach_the_pods() -> None:
    placement = {
        "nodeSelector": {"pool": "analytics"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "dask"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "imagePullSecrets": [{"name": "registry"}],
        "serviceAccountName": "dask-runner",
    }
    spec = {
        "tickers": ["AAPL"],
        "cluster": {
            **placement,
            "resources": {"requests": {"cpu": "1"}},
            "schedulerResources": {"requests": {"cpu": "250m"}},
            "podLabels": {"team": "quant", "example.com/cost-centre": "42"},
            "podAnnotations": {"owner": "desk-7"},
        },
    }
    manifest = clusters.dask_cluster_manifest(make_pfa(spec), "c", parse_spec(spec), "d:1")
    for part, pod in pods(manifest).items():
        for key, value in placement.items():
            assert pod[key] == value, (part, key)
        metadata = manifest["spec"][part]["metadata"]
        assert metadata["labels"] == {"team": "quant", "example.com/cost-centre": "42"}
        assert metadata["annotations"] == {"owner": "desk-7"}
    cpu = {
        p: pod["containers"][0]["resources"]["requests"]["cpu"] for p, pod in pods(manifest).items()
    }
    assert cpu == {"scheduler": "250m", "worker": "1"}


def test_new_cluster_fields_change_the_hash_only_when_used() -> None:
    plain = clusters.desired_cluster(parse_spec(SPEC).cluster, "d:1")
    assert set(plain) == {"image", "imagePullPolicy", "resources", "minWorkers", "maxWorkers"}
    placed = {**SPEC, "cluster": {**SPEC["cluster"], "nodeSelector": {"pool": "a"}}}
    assert clusters.spec_hash(clusters.desired_cluster(parse_spec(placed).cluster, "d:1")) != (
        clusters.spec_hash(plain)
    )


def pod(name: str, role: str, **status: object) -> dict:
    return {
        "metadata": {"name": name, "labels": {clusters.COMPONENT_LABEL: role}},
        "status": status,
    }


def test_pods_that_will_not_start_are_described_scheduler_first() -> None:
    pods = [
        pod("c-default-worker-1", "worker", phase="Running", containerStatuses=[
            {"name": "worker", "state": {"running": {}},
             "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}},
        ]),
        pod("c-scheduler-abc", "scheduler", phase="Pending", containerStatuses=[
            {"name": "scheduler", "state": {"waiting": {
                "reason": "ImagePullBackOff",
                "message": 'Back-off pulling image "nope/none:1"'}}},
        ]),
        pod("c-default-worker-2", "worker", phase="Pending", conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node selector."},
        ]),
        pod("c-default-worker-3", "worker", phase="Running", containerStatuses=[
            {"name": "worker", "state": {"waiting": {"reason": "ContainerCreating"}}},
        ]),
    ]  # fmt: skip
    problems = clusters.pod_problems(pods)
    assert problems[0] == (
        'scheduler pod c-scheduler-abc: ImagePullBackOff: Back-off pulling image "nope/none:1"'
    )
    assert any("Unschedulable: 0/1 nodes are available" in p for p in problems)
    assert any("OOMKilled" in p for p in problems)
    assert not any("ContainerCreating" in p for p in problems), "starting is not a problem"
    assert clusters.pod_problems([pod("ok", "worker", phase="Running")]) == ()


def test_a_running_daskcluster_whose_scheduler_pod_is_not_ready_is_not_running() -> None:
    # dask-kubernetes says Running as soon as the scheduler's Service exists, pods or not.
    cluster = {"metadata": {"uid": "c", "ownerReferences": [{"uid": "me", "controller": True}]},
               "status": {"phase": "Running"}}  # fmt: skip
    pulling = pod("c-scheduler-1", "scheduler", conditions=[{"type": "Ready", "status": "False"}])
    ready = pod("c-scheduler-1", "scheduler", conditions=[{"type": "Ready", "status": "True"}])
    assert not clusters.observe_cluster(cluster, None, "me", [pulling]).running
    assert clusters.observe_cluster(cluster, None, "me", [ready]).running
    assert clusters.observe_cluster(cluster, None, "me", None).running, "pods not listed"
