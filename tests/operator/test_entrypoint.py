"""Operator settings (environment and flags) and the health/metrics endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from portfolio_operator.__main__ import parse_args
from portfolio_operator.config import OperatorConfig
from portfolio_operator.health import HealthServer
from portfolio_operator.metrics import OperatorMetrics


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTFOLIO_OPERATOR_WORKER_IMAGE", "env/image:1")
    monkeypatch.setenv("PORTFOLIO_OPERATOR_MAX_CONCURRENT_ANALYSES", "8")
    monkeypatch.setenv("PORTFOLIO_OPERATOR_NAMESPACES", "team-a, team-b")
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect:4200/api")
    config = parse_args(["--worker-image", "flag/image:2", "--log-level", "debug"])
    assert config.worker_image == "flag/image:2"
    assert config.max_concurrent_analyses == 8
    assert config.namespaces == ("team-a", "team-b")
    assert config.log_level == "DEBUG"
    assert config.worker_env == {"PREFECT_API_URL": "http://prefect:4200/api"}
    assert parse_args(["--namespace", "x", "--namespace", "y"]).namespaces == ("x", "y")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORTFOLIO_OPERATOR_HEALTH_PORT": "eighty"}, "PORTFOLIO_OPERATOR_HEALTH_PORT='eighty'"),
        ({"PORTFOLIO_OPERATOR_MAX_CONCURRENT_ANALYSES": "0"}, "must be at least 1"),
        ({"PORTFOLIO_OPERATOR_SCHEDULER_ADDRESS_TEMPLATE": "tcp://{host}:1"}, "{cluster}"),
    ],
)
def test_bad_settings_exit_with_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env, message
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exited:
        parse_args([])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_health_readiness_and_metrics_endpoints() -> None:
    async def scenario() -> None:
        metrics = OperatorMetrics()
        metrics.set_phase("uid-1", "Running")
        metrics.record_finish("Succeeded", "Completed", 12.0)
        ready, alive = asyncio.Event(), [True]
        server = HealthServer(metrics, ready, lambda: alive[0], "127.0.0.1", 0, metrics_port=0)
        port = await server.start()
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:

                async def get(url: str) -> tuple[int, str]:
                    async with http.get(url) as response:
                        return response.status, await response.text()

                assert (await get(f"{base}/healthz"))[0] == 200
                assert (await get(f"{base}/readyz"))[0] == 503, "not ready before kopf is"
                ready.set()
                assert (await get(f"{base}/readyz"))[0] == 200
                code, text = await get(f"http://127.0.0.1:{server.metrics_port}/metrics")
                assert code == 200
                assert 'portfolio_analyses{phase="Running"} 1.0' in text
                assert 'portfolio_analysis_duration_seconds_count{phase="Succeeded"} 1.0' in text
                alive[0] = False
                assert (await get(f"{base}/healthz"))[0] == 503
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_config_defaults_suit_an_in_cluster_deployment() -> None:
    config = OperatorConfig()
    assert config.namespaces == () and config.kubeconfig is None
    assert config.health_port == 8080 and config.max_concurrent_analyses == 32


def test_leader_election_is_off_unless_asked_and_then_needs_a_namespace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("POD_NAME", "POD_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    assert parse_args([]).leader_election is False  # a laptop or a test: no Lease, no namespace
    with pytest.raises(SystemExit) as exited:
        parse_args(["--leader-election"])
    assert exited.value.code == 2
    assert "leader election needs the Lease's namespace" in capsys.readouterr().err

    # In a pod the downward API gives the namespace and the holder identity.
    monkeypatch.setenv("PORTFOLIO_OPERATOR_LEADER_ELECTION", "true")
    monkeypatch.setenv("POD_NAMESPACE", "portfolio-system")
    monkeypatch.setenv("POD_NAME", "portfolio-operator-7d9f-abcde")
    config = parse_args([])
    assert config.leader_election is True
    assert config.leader_election_namespace == "portfolio-system"
    assert config.leader_election_identity == "portfolio-operator-7d9f-abcde"
    assert config.leader_election_lease == "portfolio-operator"
    assert (config.lease_duration_seconds, config.renew_deadline_seconds,
            config.retry_period_seconds) == (15, 10, 2)  # client-go's defaults  # fmt: skip
    flagged = parse_args(["--no-leader-election", "--leader-election-lease", "other"])
    assert flagged.leader_election is False and flagged.leader_election_lease == "other"
    explicit = parse_args(["--leader-election-namespace", "ops"])
    assert explicit.leader_election_namespace == "ops"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORTFOLIO_OPERATOR_LEADER_ELECTION": "maybe"}, "LEADER_ELECTION='maybe'"),
        ({"PORTFOLIO_OPERATOR_RENEW_DEADLINE_SECONDS": "20"}, "lease duration > renew deadline"),
        ({"PORTFOLIO_OPERATOR_RETRY_PERIOD_SECONDS": "9"}, "1.2 x retry period"),
    ],
)
def test_bad_leader_election_settings_say_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        OperatorConfig.from_env({"POD_NAMESPACE": "ns", **env})


def test_a_standby_is_alive_and_ready_saying_it_waits_for_the_lease() -> None:
    """Ready, so that a rolling update can replace the old leader (see health.py)."""

    async def scenario() -> None:
        waiting: list[str | None] = ["standby: waiting for Lease ns/pfo (held by pod-a)"]
        server = HealthServer(OperatorMetrics(), asyncio.Event(), lambda: True, "127.0.0.1", 0,
                              standby=lambda: waiting[0])  # fmt: skip
        port = await server.start()
        try:
            async with aiohttp.ClientSession() as http:

                async def get(path: str) -> tuple[int, str]:
                    async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                        return response.status, await response.text()

                assert (await get("/healthz"))[0] == 200
                assert await get("/readyz") == (200, "standby: waiting for Lease ns/pfo "
                                                     "(held by pod-a)\n")  # fmt: skip
                waiting[0] = None  # leader now; kopf still starting
                assert await get("/readyz") == (503, "starting\n")
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_reports_are_served_with_a_strict_policy_and_404_or_503_say_why_not() -> None:
    """The report pages (reports.py) through the HTTP server; the lookup is faked here and run
    on the real API server in test_requests.py."""
    from portfolio_operator.reports import ReportUnavailable

    class Pages:
        async def html(self, namespace: str, name: str) -> str | None:
            if name == "down":
                raise ReportUnavailable("the API server did not answer")
            return "<!DOCTYPE html><p>ok</p>" if (namespace, name) == ("team", "done") else None

    async def scenario() -> None:
        server = HealthServer(OperatorMetrics(), asyncio.Event(), lambda: True, "127.0.0.1", 0,
                              reports=Pages())  # type: ignore[arg-type]  # fmt: skip
        port = await server.start()
        try:
            async with aiohttp.ClientSession() as http:

                async def get(path: str) -> tuple[int, str, Any]:
                    async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                        return response.status, await response.text(), response.headers

                code, page, headers = await get("/reports/team/done")
                assert (code, page) == (200, "<!DOCTYPE html><p>ok</p>")
                assert headers["Content-Type"] == "text/html; charset=utf-8"
                assert "default-src 'none'" in headers["Content-Security-Policy"]
                code, text, _ = await get("/reports/team/other")
                assert code == 404 and "no report of a PortfolioAnalysis team/other" in text
                code, text, _ = await get("/reports/team/down")
                assert code == 503 and "the API server did not answer" in text
                assert (await get("/reports/team"))[0] == 404
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_the_page_is_drawn_from_the_gzipped_document_else_from_the_readable_json() -> None:
    """reports.py reads what status.report_configmap stores: the document when it is there,
    the readable result otherwise (a ConfigMap an earlier operator wrote), and a damaged
    document is a 503 saying so, never a page of something else."""
    import base64

    from portfolio_operator.reports import ReportPages, ReportUnavailable
    from portfolio_operator.status import DOCUMENT_KEY, report_configmap

    from tests.operator.conftest import make_pfa

    owner = make_pfa(name="done", namespace="team", uid="u-1")
    result = {"status": "partial", "report": {"warnings": ["from the readable result"]},
              "combined_analysis": [], "failed": []}  # fmt: skip
    document = {**result, "report": {"warnings": ["from the whole document"]}}
    stored = report_configmap(owner, result, document=document)
    stored["metadata"].update(uid="cm-1", resourceVersion="1")

    class Api:
        configmap = stored

        async def get_analysis(self, namespace: str, name: str) -> dict | None:
            return owner if (namespace, name) == ("team", "done") else None

        async def get_configmap(self, namespace: str, name: str) -> dict | None:
            return self.configmap

    async def scenario() -> None:
        api = Api()
        page = await ReportPages(api).html("team", "done")  # type: ignore[arg-type]
        assert "from the whole document" in page and "from the readable result" not in page
        api.configmap = {**stored, "binaryData": {}}
        page = await ReportPages(api).html("team", "done")  # type: ignore[arg-type]
        assert "from the readable result" in page
        damaged = base64.b64encode(b"not gzip").decode()
        api.configmap = {**stored, "binaryData": {DOCUMENT_KEY: damaged}}
        with pytest.raises(ReportUnavailable, match="cannot be read"):
            await ReportPages(api).html("team", "done")  # type: ignore[arg-type]

    asyncio.run(scenario())
