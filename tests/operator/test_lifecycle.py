"""The whole lifecycle on the real API server, with the operator as a subprocess.

The operator runs as ``python -m portfolio_operator`` with the ServiceAccount of
manifests/rbac.yaml; analyses run on Dask LocalClusters this test starts on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from portfolio_operator.spec import parse_spec

from tests.operator.harness import MANIFESTS, Kube, phase_is, table_row
from tests.support.control_plane import ControlPlane
from tests.support.polling import wait_until

pytestmark = [pytest.mark.kube, pytest.mark.dask]

TICKERS = ["AAPL", "MSFT", "IBM"]


def test_external_scheduler_reaches_succeeded_with_real_figures_events_and_report(
    kube: Kube, dask_cluster, start_operator, control_plane: ControlPlane
) -> None:
    operator = start_operator()
    spec = {"tickers": TICKERS, "cluster": {"schedulerAddress": dask_cluster.scheduler_address}}
    created = kube.apply_pfa("figures", spec)
    # The user's way to wait for success works: a Complete condition.
    control_plane.kubectl("wait", "--for=condition=Complete", "pfa/figures", "-n",
                          kube.namespace, "--timeout=180s", timeout=200)  # fmt: skip
    status = kube.status("figures")
    assert status["phase"] == "Succeeded"
    assert status["observedGeneration"] == 1
    assert status["securitiesAnalyzed"] == 3 and status["tickerCount"] == 3
    assert status["workers"] == "external"
    assert status["durationSeconds"] > 0 and status["completionTime"] >= status["startTime"]
    assert kube.condition("figures", "Failed")["status"] == "False"

    # The figures are the library's own for the same request on the same cluster.
    from distributed import Client
    from portfolio_analysis.pipeline import run_combined_analysis

    with Client(dask_cluster) as client:
        expected = run_combined_analysis(client=client, **parse_spec(spec).run_kwargs())
    summary, portfolio = expected["report"]["summary"], expected["report"]["portfolio"]
    # Shown by `kubectl get pfa`: rounded to 4 decimals (the report keeps every digit).
    assert status["summary"]["avgSentiment"] == pytest.approx(
        summary["avg_news_sentiment"], abs=5e-5
    )
    assert status["summary"]["avgSentiment"] == round(status["summary"]["avgSentiment"], 4)
    assert status["summary"]["avgRsi"] == pytest.approx(summary["avg_rsi"])
    assert status["summary"]["positiveSentiment"] == summary["securities_with_positive_sentiment"]
    assert status["portfolio"]["sharpeRatio"] == pytest.approx(portfolio["sharpe_ratio"])
    assert status["portfolio"]["maxDrawdown"] == pytest.approx(portfolio["max_drawdown"])
    assert sorted(r["ticker"] for r in status["results"]) == sorted(TICKERS)
    assert all(r["close"] > 0 for r in status["results"])

    reasons = kube.wait_for_reasons("figures", "Accepted", "Started", "Completed")
    assert reasons.count("Completed") == 1, reasons

    configmap = kube.configmap(status["reportConfigMap"])
    assert configmap.metadata.owner_references[0].uid == created["metadata"]["uid"]
    report = json.loads(configmap.data["report.json"])
    assert sorted(r["ticker"] for r in report["combined_analysis"]) == sorted(TICKERS)
    assert report["report"]["summary"]["avg_news_sentiment"] == pytest.approx(
        summary["avg_news_sentiment"]
    )

    table = control_plane.kubectl("get", "pfa", "figures", "-n", kube.namespace).stdout
    columns = table_row(table)
    assert (columns["PHASE"], columns["WORKERS"], columns["REASON"]) == (
        "Succeeded",
        "external",
        "Completed",
    ), table
    assert len(columns["SENTIMENT"].partition(".")[2]) <= 4, table  # not 17 digits
    code, metrics = operator.get("/metrics")
    assert code == 200
    assert 'portfolio_analyses_finished_total{phase="Succeeded",reason="Completed"} 1.0' in (
        metrics
    )


def test_without_scheduler_address_an_owned_cluster_and_autoscaler_are_created_and_deleted(
    kube: Kube, start_operator
) -> None:
    # The image policy lets this spec name its own image.
    operator = start_operator(PORTFOLIO_OPERATOR_ALLOWED_IMAGES="example.org/*")
    spec = {
        "tickers": TICKERS,
        "cluster": {"minWorkers": 2, "maxWorkers": 5, "image": "example.org/pfa:1",
                    "resources": {"requests": {"cpu": "250m"}}},
    }  # fmt: skip
    uid = kube.apply_pfa("own-cluster", spec)["metadata"]["uid"]
    cluster = wait_until(lambda: kube.dask("daskclusters", "own-cluster-dask"), 60,
                         "the DaskCluster exists", operator.log)  # fmt: skip
    autoscaler = wait_until(lambda: kube.dask("daskautoscalers", "own-cluster-dask"), 30,
                            "the DaskAutoscaler exists", operator.log)  # fmt: skip
    for child in (cluster, autoscaler):
        (ref,) = child["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"]) == ("PortfolioAnalysis", "own-cluster", uid)
        assert ref["controller"] is True
    worker = cluster["spec"]["worker"]
    assert worker["replicas"] == 2
    assert worker["spec"]["containers"][0]["image"] == "example.org/pfa:1"
    assert worker["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "250m"
    assert autoscaler["spec"] == {"cluster": "own-cluster-dask", "minimum": 2, "maximum": 5}

    def says_waiting() -> bool:
        ready = kube.condition("own-cluster", "ClusterReady")
        return "waiting for DaskCluster" in ready.get("message", "")

    wait_until(says_waiting, 30, "status says it waits for the cluster", operator.log)
    status = kube.status("own-cluster")
    assert status["phase"] == "Provisioning"
    assert status["daskCluster"]["name"] == "own-cluster-dask"
    assert status["workers"] == "2-5"
    kube.wait_for_reasons("own-cluster", "ClusterCreated", detail=operator.log)

    kube.delete_pfa("own-cluster")
    wait_until(lambda: kube.pfa("own-cluster") is None, 60, "the resource is gone", operator.log)
    wait_until(lambda: not kube.dask("daskclusters") and not kube.dask("daskautoscalers"), 60,
               "the garbage collector removed the owned cluster", operator.log)  # fmt: skip


def test_created_cluster_runs_to_succeeded_then_cluster_and_resource_are_deleted(
    kube: Kube, dask_cluster, start_operator
) -> None:
    operator = start_operator(scheduler_address=dask_cluster.scheduler_address)
    kube.apply_pfa("ttl", {"tickers": TICKERS, "ttlSecondsAfterFinished": 4})
    wait_until(lambda: kube.dask("daskclusters", "ttl-dask"), 60, "the cluster exists",
               operator.log)  # fmt: skip
    # The status is written just after the cluster is created; it stays there until it runs.
    wait_until(phase_is(kube, "ttl", "Provisioning"), 30, "the phase says Provisioning",
               operator.log)  # fmt: skip
    kube.mark_cluster_running("ttl-dask")
    wait_until(phase_is(kube, "ttl", "Succeeded", "Failed"), 120, "the analysis ends",
               operator.log)  # fmt: skip
    status = kube.status("ttl")
    assert status["phase"] == "Succeeded", status
    finished = time.monotonic()
    wait_until(lambda: kube.dask("daskclusters", "ttl-dask") is None, 30,
               "onCompletion: Delete removed the cluster", operator.log)  # fmt: skip
    kube.wait_for_reasons("ttl", "ClusterDeleted", detail=operator.log)
    wait_until(lambda: kube.pfa("ttl") is None, 30, "the TTL deleted the resource", operator.log)
    assert time.monotonic() - finished >= 2, "deleted long before ttlSecondsAfterFinished"
    wait_until(lambda: kube.configmap("ttl-report") is None, 30, "the report went with it")


def test_an_expired_deadline_fails_the_resource_and_cancels_the_run(
    kube: Kube, empty_dask_cluster, start_operator
) -> None:
    from distributed import Client

    operator = start_operator()
    spec = {
        "tickers": TICKERS,
        # Long enough for the run to submit its tasks even on a loaded machine.
        "activeDeadlineSeconds": 15,
        "cluster": {"schedulerAddress": empty_dask_cluster.scheduler_address},
    }
    kube.apply_pfa("deadline", spec)
    with Client(empty_dask_cluster) as client:
        tasks = lambda: client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))  # noqa: E731
        wait_until(lambda: tasks() > 0, 15, "the run submitted its tasks", operator.log)
        wait_until(phase_is(kube, "deadline", "Running"), 10, "it says Running", operator.log)
        wait_until(phase_is(kube, "deadline", "Failed"), 45, "the deadline fails it", operator.log)
        failed = kube.condition("deadline", "Failed")
        assert failed["status"] == "True" and failed["reason"] == "DeadlineExceeded"
        assert "activeDeadlineSeconds=15" in failed["message"]
        assert 15 <= kube.status("deadline")["durationSeconds"] < 40
        assert kube.condition("deadline", "Complete")["status"] == "False"
        kube.wait_for_reasons("deadline", "DeadlineExceeded", detail=operator.log)
        # Really cancelled: the run's tasks leave the scheduler (it would wait forever).
        wait_until(lambda: tasks() == 0, 30, "the run's tasks were cancelled", operator.log)


def test_an_operator_killed_mid_run_ends_with_one_terminal_status_and_one_cluster(
    kube: Kube, empty_dask_cluster, start_operator
) -> None:
    first = start_operator(scheduler_address=empty_dask_cluster.scheduler_address)
    kube.apply_pfa("restart", {"tickers": TICKERS, "cluster": {"onCompletion": "Keep"}})
    wait_until(lambda: kube.dask("daskclusters", "restart-dask"), 60, "the cluster exists",
               first.log)  # fmt: skip
    kube.mark_cluster_running("restart-dask")
    wait_until(phase_is(kube, "restart", "Running"), 60, "the run started", first.log)
    first.kill9()

    second = start_operator(scheduler_address=empty_dask_cluster.scheduler_address)
    kube.wait_for_reasons("restart", "RunRestarted", timeout=60, detail=second.log)
    empty_dask_cluster.scale(2)  # workers arrive: the run can finish now
    wait_until(phase_is(kube, "restart", "Succeeded", "Failed"), 180, "the analysis ends",
               second.log)  # fmt: skip
    time.sleep(2)  # would a second terminal transition follow?
    status = kube.status("restart")
    assert status["phase"] == "Succeeded", status
    assert status["attempts"] == 2
    assert kube.condition("restart", "Complete")["status"] == "True"
    assert kube.condition("restart", "Failed")["status"] == "False"
    reasons = kube.wait_for_reasons("restart", "Completed", "ClusterCreated", detail=second.log)
    assert reasons.count("Completed") == 1, reasons
    assert reasons.count("ClusterCreated") == 1, reasons
    clusters = kube.dask("daskclusters")
    assert [c["metadata"]["name"] for c in clusters] == ["restart-dask"]
    assert len(kube.dask("daskautoscalers")) == 1


def test_twenty_resources_applied_at_once_all_finish(
    kube: Kube, dask_cluster, start_operator
) -> None:
    operator = start_operator()
    address = dask_cluster.scheduler_address
    names = [f"batch-{i:02d}" for i in range(20)]
    began = time.monotonic()
    for i, name in enumerate(names):
        tickers = [TICKERS[i % 3], TICKERS[(i + 1) % 3]]
        kube.apply_pfa(name, {"tickers": tickers, "cluster": {"schedulerAddress": address}})
    wait_until(lambda: all(kube.status(n).get("phase") in ("Succeeded", "Failed") for n in names),
               300, "all 20 analyses end", operator.log)  # fmt: skip
    elapsed = time.monotonic() - began
    phases = {n: kube.status(n)["phase"] for n in names}
    assert set(phases.values()) == {"Succeeded"}, phases
    assert all(kube.status(n)["securitiesAnalyzed"] == 2 for n in names)
    print(f"20 concurrent analyses finished in {elapsed:.1f} s")


def test_the_api_server_refuses_the_invalid_sample_saying_what_to_fix(
    control_plane: ControlPlane, operator_config: Path, kube_namespace: str
) -> None:
    samples = MANIFESTS / "samples"
    # The operator's Deployment is valid too (its namespace comes with rbac.yaml).
    control_plane.kubectl("apply", "--dry-run=server", "-f", str(MANIFESTS / "deployment.yaml"))
    for good in ("small-portfolio.yaml", "reuse-scheduler.yaml"):
        control_plane.kubectl("apply", "--dry-run=server", "-n", kube_namespace,
                              "-f", str(samples / good))  # fmt: skip
    refused = control_plane.kubectl(
        "apply", "-n", kube_namespace, "-f", str(samples / "invalid.yaml"), check=False
    )
    assert refused.returncode != 0
    assert "spec.cluster.minWorkers must be less than or equal to spec.cluster.maxWorkers" in (
        refused.stderr
    )
    assert "spec.tickers[1]" in refused.stderr and "should match" in refused.stderr
    explained = control_plane.kubectl("explain", "pfa.spec.cluster.minWorkers").stdout
    assert "Fewest Dask workers the autoscaler keeps" in explained


def test_an_unreachable_scheduler_is_retried_then_fails_saying_what_to_check(
    kube: Kube, start_operator
) -> None:
    from tests.support.control_plane import free_loopback_port

    operator = start_operator(PORTFOLIO_OPERATOR_MAX_ATTEMPTS="2")
    address = f"tcp://127.0.0.1:{free_loopback_port()}"
    kube.apply_pfa("unreachable", {"tickers": TICKERS, "cluster": {"schedulerAddress": address}})
    wait_until(phase_is(kube, "unreachable", "Failed"), 90, "it fails", operator.log)
    failed = kube.condition("unreachable", "Failed")
    assert failed["reason"] == "SchedulerUnreachable"
    assert f"cannot reach the Dask scheduler at {address}" in failed["message"]
    assert kube.status("unreachable")["attempts"] == 2
    reasons = kube.wait_for_reasons("unreachable", "RunRetrying", detail=operator.log)
    assert reasons.count("RunRetrying") == 1, reasons
    assert "Started" not in reasons, "never connected, so never started"


def test_a_spec_change_runs_the_analysis_again_for_the_new_generation(
    kube: Kube, dask_cluster, start_operator
) -> None:
    operator = start_operator()
    cluster = {"schedulerAddress": dask_cluster.scheduler_address}
    kube.apply_pfa("rerun", {"tickers": ["AAPL"], "cluster": cluster})
    wait_until(phase_is(kube, "rerun", "Succeeded"), 120, "the first run ends", operator.log)
    first = kube.status("rerun")
    kube.custom.patch_namespaced_custom_object(
        "analysis.portfolio-operator.io", "v1alpha1", kube.namespace, "portfolioanalyses",
        "rerun", {"spec": {"tickers": ["AAPL", "IBM"]}},
    )  # fmt: skip

    def second_done() -> bool:
        status = kube.status("rerun")
        return status.get("observedGeneration") == 2 and status.get("phase") == "Succeeded"

    wait_until(second_done, 120, "the second generation succeeds", operator.log)
    second = kube.status("rerun")
    assert (first["tickerCount"], second["tickerCount"]) == (1, 2)
    assert sorted(r["ticker"] for r in second["results"]) == ["AAPL", "IBM"]
    assert second["startTime"] >= first["completionTime"]
    assert kube.condition("rerun", "Complete")["observedGeneration"] == 2
    reasons = kube.wait_for_reasons("rerun", "Accepted", "Accepted", detail=operator.log)
    assert reasons.count("Accepted") == 2, reasons


def test_deleting_a_running_analysis_stops_its_dask_work(
    kube: Kube, empty_dask_cluster, start_operator
) -> None:
    from distributed import Client

    operator = start_operator()
    cluster = {"schedulerAddress": empty_dask_cluster.scheduler_address}
    kube.apply_pfa("stop-me", {"tickers": TICKERS, "cluster": cluster})
    with Client(empty_dask_cluster) as client:
        tasks = lambda: client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))  # noqa: E731
        wait_until(lambda: tasks() > 0, 30, "the run submitted its tasks", operator.log)
        kube.delete_pfa("stop-me")
        wait_until(lambda: kube.pfa("stop-me") is None, 60, "the resource is gone", operator.log)
        wait_until(lambda: tasks() == 0, 30, "the run's tasks were cancelled", operator.log)


def test_a_configmap_of_the_report_name_that_is_not_ours_is_never_touched(
    kube: Kube, dask_cluster, start_operator
) -> None:
    from kubernetes import client as k8s

    users = {"settings.ini": "keep me"}
    kube.core.create_namespaced_config_map(
        kube.namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="clash-report"), data=users)
    )
    operator = start_operator()
    spec = {"tickers": ["AAPL"], "cluster": {"schedulerAddress": dask_cluster.scheduler_address}}
    kube.apply_pfa("clash", spec)
    wait_until(phase_is(kube, "clash", "Succeeded", "Failed"), 120, "the analysis ends",
               operator.log)  # fmt: skip
    failed = kube.condition("clash", "Failed")
    assert (kube.status("clash")["phase"], failed["reason"]) == ("Failed", "ReportNameConflict")
    assert f"ConfigMap named {kube.namespace}/clash-report" in failed["message"]
    kube.wait_for_reasons("clash", "ReportNameConflict", detail=operator.log)

    def untouched() -> None:
        configmap = kube.configmap("clash-report")
        assert configmap is not None, "the user's ConfigMap was deleted"
        assert configmap.data == users and not configmap.metadata.owner_references

    untouched()
    kube.delete_pfa("clash")
    wait_until(lambda: kube.pfa("clash") is None, 60, "the resource is gone", operator.log)
    time.sleep(3)  # the garbage collector would have deleted an adopted ConfigMap by now
    untouched()


@pytest.mark.parametrize(
    "name",
    [
        "x" * 62 + "-" + "y" * 8,  # its first 63 characters end in "-": not a label value
        ".".join(["b" * 63] * 3) + "." + "c" * 61,  # 253 characters: <name>-report is too long
    ],
    ids=["dash-at-63", "253-characters"],
)
def test_any_legal_name_runs_to_succeeded_with_its_report(
    kube: Kube, dask_cluster, start_operator, name: str
) -> None:
    operator = start_operator()
    spec = {"tickers": ["AAPL"], "cluster": {"schedulerAddress": dask_cluster.scheduler_address}}
    kube.apply_pfa(name, spec)
    wait_until(phase_is(kube, name, "Succeeded", "Failed"), 120, "the analysis ends", operator.log)
    status = kube.status(name)
    assert status["phase"] == "Succeeded", status.get("conditions")
    assert kube.configmap(status["reportConfigMap"]) is not None


def test_a_long_name_gets_its_dask_cluster(kube: Kube, start_operator) -> None:
    operator = start_operator()
    name = "portfolio-" + "z" * 52 + "-q.rst"  # 68 characters, "-" at 63, a dot
    kube.apply_pfa(name, {"tickers": ["AAPL"]})
    cluster_name = wait_until(lambda: kube.status(name).get("daskCluster", {}).get("name"), 60,
                              "the cluster's name is in status", operator.log)  # fmt: skip
    created = wait_until(lambda: kube.dask("daskclusters", cluster_name), 60,
                         "the DaskCluster is created", operator.log)  # fmt: skip
    assert kube.dask("daskautoscalers", cluster_name) is not None
    assert kube.status(name)["phase"] == "Provisioning", kube.status(name).get("conditions")
    assert created["metadata"]["ownerReferences"][0]["controller"] is True


def test_an_image_outside_the_policy_fails_without_creating_a_cluster(
    kube: Kube, start_operator
) -> None:
    operator = start_operator()  # the default policy: the worker image's repository only
    kube.apply_pfa("miner", {"tickers": ["AAPL"], "cluster": {"image": "evil.example/miner:1"}})
    wait_until(phase_is(kube, "miner", "Failed"), 60, "it fails", operator.log)
    failed = kube.condition("miner", "Failed")
    assert failed["reason"] == "ImageNotAllowed" and "evil.example/miner:1" in failed["message"]
    assert kube.dask("daskclusters") == [] and kube.dask("daskautoscalers") == []
