"""The control-plane harness against the real kube-apiserver, etcd and kube-controller-manager."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.kubelocal.binaries import binaries_dir, pinned_versions
from tests.support.control_plane import ControlPlane, ControlPlaneError
from tests.support.polling import wait_until

pytestmark = pytest.mark.kube

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.harness.portfolio.test
spec:
  group: harness.portfolio.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1}
                colour: {type: string}
"""


def widget(name: str, size: object) -> str:
    return json.dumps(
        {
            "apiVersion": "harness.portfolio.test/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"size": size, "colour": "teal"},
        }
    )


def exists(plane: ControlPlane, *args: str) -> bool:
    result = plane.kubectl("get", *args, "-o", "name", check=False)
    if result.returncode == 0:
        return True
    assert "NotFound" in result.stderr, result.stderr
    return False


@pytest.fixture(scope="module")
def widget_crd(control_plane: ControlPlane) -> Iterator[str]:
    """The Widget CRD, applied with kubectl and Established."""
    control_plane.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/widgets.harness.portfolio.test",
        "--timeout=60s",
    )
    yield "widgets.harness.portfolio.test"
    control_plane.kubectl("delete", "crd", "widgets.harness.portfolio.test", "--wait=false")


def test_api_server_is_ready_and_reports_its_release(control_plane: ControlPlane) -> None:
    print(
        f"\ncontrol plane up in {control_plane.startup_seconds:.1f} s "
        f"{ {k: round(v, 1) for k, v in control_plane.startup_breakdown.items()} }"
    )
    # "Up in seconds once the binaries are cached" (typically 5-10 s on 2 cores): a loose bound
    # that catches a harness waiting on something it shouldn't, not a benchmark.
    assert control_plane.startup_seconds < 45, control_plane.startup_breakdown
    versions = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    server, client = versions["serverVersion"], versions["clientVersion"]
    assert server["major"] == "1" and server["gitVersion"].startswith(f"v1.{server['minor']}.")
    assert client["gitVersion"] == server["gitVersion"]
    if control_plane.binaries.kube_apiserver.parent == binaries_dir():
        assert server["gitVersion"] == pinned_versions()["KUBE_VERSION"]
    health = control_plane.kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "readyz check passed" in health


def test_crd_applied_with_kubectl_is_established_and_serves_objects(
    control_plane: ControlPlane, widget_crd: str, kube_namespace: str
) -> None:
    crd = json.loads(control_plane.kubectl("get", "crd", widget_crd, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"

    control_plane.kubectl("apply", "-n", kube_namespace, "-f", "-", input=widget("small", 3))
    stored = json.loads(
        control_plane.kubectl("get", "widget", "small", "-n", kube_namespace, "-o", "json").stdout
    )
    assert stored["spec"] == {"size": 3, "colour": "teal"}


@pytest.mark.parametrize(
    ("size", "complaint"),
    [("three", "spec.size"), (0, "spec.size")],
    ids=["wrong-type", "below-minimum"],
)
def test_api_server_refuses_an_object_that_breaks_the_schema(
    control_plane: ControlPlane, widget_crd: str, kube_namespace: str, size: object, complaint: str
) -> None:
    # --validate=false: the API server, not kubectl, must be the one that refuses.
    result = control_plane.kubectl(
        "apply", "--validate=false", "-n", kube_namespace, "-f", "-",
        input=widget("bad", size),
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Invalid" in result.stderr and complaint in result.stderr, result.stderr
    assert not exists(control_plane, "widget", "bad", "-n", kube_namespace)


def test_api_server_refuses_a_structurally_invalid_core_object(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "broken"},
        "data": ["a list", "where a map of strings belongs"],
    }
    result = control_plane.kubectl(
        "create", "--validate=false", "-n", kube_namespace, "-f", "-",
        input=json.dumps(config_map),
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "data" in result.stderr, result.stderr
    assert not exists(control_plane, "configmap", "broken", "-n", kube_namespace)


def test_dependent_is_garbage_collected_after_its_owner_is_deleted(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    ns = kube_namespace
    control_plane.kubectl("create", "configmap", "owner", "-n", ns, "--from-literal=k=v")
    owner_uid = control_plane.kubectl(
        "get", "configmap", "owner", "-n", ns, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}
            ],
        },
        "data": {"k": "v"},
    }
    control_plane.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(dependent))
    control_plane.kubectl("create", "configmap", "bystander", "-n", ns, "--from-literal=k=v")

    control_plane.kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=background")
    deleted = time.monotonic()
    wait_until(
        lambda: not exists(control_plane, "configmap", "dependent", "-n", ns),
        timeout=60,
        what="the garbage collector deletes the dependent ConfigMap",
        interval=0.2,
    )
    seconds = time.monotonic() - deleted
    print(f"\ndependent garbage-collected {seconds:.1f} s after its owner was deleted")
    assert exists(control_plane, "configmap", "bystander", "-n", ns)


def test_namespace_with_objects_deletes_fully(control_plane: ControlPlane, widget_crd: str) -> None:
    ns = f"doomed-{time.monotonic_ns() % 10**8}"
    control_plane.kubectl("create", "namespace", ns)
    control_plane.kubectl("create", "configmap", "c", "-n", ns, "--from-literal=k=v")
    control_plane.kubectl("apply", "-n", ns, "-f", "-", input=widget("w", 1))

    start = time.monotonic()
    control_plane.kubectl("delete", "namespace", ns, "--timeout=90s", timeout=120)
    print(f"\nnamespace with a ConfigMap and a Widget deleted in {time.monotonic() - start:.1f} s")
    assert not exists(control_plane, "namespace", ns)
    # The custom resource went with it rather than being orphaned in etcd.
    left = control_plane.kubectl(
        "get", "widgets", "-A", f"--field-selector=metadata.namespace={ns}", "-o", "name"
    )
    assert left.stdout.strip() == ""


def test_kubeconfig_works_for_the_kubernetes_python_client(control_plane: ControlPlane) -> None:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    with api_client:
        names = {ns.metadata.name for ns in client.CoreV1Api(api_client).list_namespace().items}
        version = client.VersionApi(api_client).get_code()
    assert {"default", "kube-system"} <= names
    assert version.git_version.startswith("v1.")


def test_kubeconfig_works_for_a_kopf_operator(
    control_plane: ControlPlane,
    kube_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kopf.testing import KopfRunner

    operator = tmp_path / "tiny_operator.py"
    operator.write_text(
        "import kopf\n\n"
        "@kopf.on.create('configmaps', labels={'harness': 'kopf'})\n"
        "def mark(patch, **_):\n"
        "    patch.metadata.annotations['harness/seen-by'] = 'kopf'\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    args = ["run", "--standalone", "--namespace", kube_namespace, str(operator)]
    with KopfRunner(args, timeout=60):
        control_plane.kubectl(
            "create", "configmap", "watched", "-n", kube_namespace, "--from-literal=k=v"
        )
        control_plane.kubectl("label", "configmap", "watched", "-n", kube_namespace, "harness=kopf")

        def annotated() -> bool:
            annotation = control_plane.kubectl(
                "get", "configmap", "watched", "-n", kube_namespace,
                "-o", "jsonpath={.metadata.annotations.harness/seen-by}",
            ).stdout  # fmt: skip
            return annotation == "kopf"

        wait_until(
            annotated, timeout=45, what="the kopf operator annotates the ConfigMap", interval=0.2
        )


def test_service_account_token_kubeconfig_is_bound_by_rbac(
    control_plane: ControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    control_plane.kubectl("create", "serviceaccount", "reader", "-n", ns)
    token = control_plane.kubectl("create", "token", "reader", "-n", ns).stdout.strip()
    kubeconfig = control_plane.write_kubeconfig(
        tmp_path / "reader.kubeconfig", user="reader", token=token, namespace=ns
    )

    def as_reader(*args: str):
        return control_plane.kubectl("--kubeconfig", str(kubeconfig), *args, check=False)

    whoami = json.loads(as_reader("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:reader"
    assert "Forbidden" in as_reader("get", "configmaps").stderr

    control_plane.kubectl(
        "create", "role", "read-configmaps", "-n", ns, "--verb=get,list", "--resource=configmaps"
    )
    control_plane.kubectl(
        "create", "rolebinding", "reader-reads", "-n", ns,
        "--role=read-configmaps", f"--serviceaccount={ns}:reader",
    )  # fmt: skip
    assert as_reader("get", "configmaps").returncode == 0
    assert "Forbidden" in as_reader("get", "secrets").stderr


def test_client_certificate_kubeconfig_authenticates_as_admin(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    kubeconfig = control_plane.write_kubeconfig(
        tmp_path / "cert.kubeconfig",
        user="admin-cert",
        client_cert=control_plane.admin_client_cert,
        client_key=control_plane.admin_client_key,
    )
    result = control_plane.kubectl("--kubeconfig", str(kubeconfig), "auth", "whoami", "-o", "json")
    user = json.loads(result.stdout)["status"]["userInfo"]
    assert user["username"] == "admin" and "system:masters" in user["groups"]


def test_helm_talks_to_the_api_server(control_plane: ControlPlane) -> None:
    if control_plane.binaries.helm is None:
        pytest.fail("helm not found: run hack/kube-binaries.sh or set TEST_ASSET_HELM")
    version = control_plane.helm("version", "--short").stdout.strip()
    assert version.startswith("v3.")
    if control_plane.binaries.helm.parent == binaries_dir():
        assert version.startswith(pinned_versions()["HELM_VERSION"])
    assert json.loads(control_plane.helm("list", "--all-namespaces", "-o", "json").stdout) == []


def write_chart(folder: Path, kube_version: str) -> Path:
    """A one-ConfigMap chart whose Chart.yaml carries a `kubeVersion` constraint."""
    (folder / "templates").mkdir(parents=True)
    (folder / "Chart.yaml").write_text(
        f"apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: '{kube_version}'\n"
    )
    (folder / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: '{{ .Release.Name }}-probe'}\n"
        "data: {kube: '{{ .Capabilities.KubeVersion.Version }}'}\n"
    )
    return folder


def test_helm_kube_version_constraints_see_the_real_release(
    control_plane: ControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    # A /version of v0.0.0 (unstamped build) would make every `>=1.x` chart uninstallable.
    minor = json.loads(control_plane.kubectl("version", "-o", "json").stdout)["serverVersion"][
        "minor"
    ]
    fits = write_chart(tmp_path / "fits", f">=1.{minor}.0-0")
    control_plane.helm("install", "fits", str(fits), "-n", kube_namespace, "--wait")
    seen = control_plane.kubectl(
        "get", "configmap", "fits-probe", "-n", kube_namespace, "-o", "jsonpath={.data.kube}"
    ).stdout
    assert seen.startswith(f"v1.{minor}.")

    too_new = write_chart(tmp_path / "too-new", f">=1.{int(minor) + 1}.0-0")
    refused = control_plane.helm(
        "install", "too-new", str(too_new), "-n", kube_namespace, check=False
    )
    assert refused.returncode != 0
    assert "incompatible with Kubernetes" in refused.stderr, refused.stderr
    assert not exists(control_plane, "configmap", "too-new-probe", "-n", kube_namespace)


def test_kubectl_helper_raises_with_kubectls_message(control_plane: ControlPlane) -> None:
    with pytest.raises(ControlPlaneError, match="NotFound"):
        control_plane.kubectl("get", "namespace", "no-such-namespace-here")
