"""Operator settings (environment and flags) and the health/metrics endpoints."""

from __future__ import annotations

import asyncio

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
