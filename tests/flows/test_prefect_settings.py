"""Quiet local Prefect settings: written only where the user set nothing, before Prefect loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from portfolio_analysis import prefect_settings


def test_defaults_go_under_the_user_cache_and_silence_the_server(tmp_path: Path) -> None:
    env = {"PORTFOLIO_CACHE_DIR": str(tmp_path / "cache")}
    applied = prefect_settings.configure_prefect_environment(env)
    assert env["PREFECT_HOME"] == str(tmp_path / "cache" / "prefect")
    assert Path(env["PREFECT_HOME"]).is_dir()
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_UI_ENABLED"] == "false"
    # Prefect's own 20 s start-up timeout is shorter than a first start on 2 cores (21-24 s).
    assert int(env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) >= 60
    assert env["PREFECT_SERVER_EPHEMERAL_ENABLED"] == "true"
    assert set(applied) <= set(env)
    assert not prefect_settings.reports_to_server(env)


def test_user_settings_win_and_an_api_url_means_a_real_server(tmp_path: Path) -> None:
    env = {
        "PREFECT_API_URL": "http://prefect.example:4200/api",
        "PREFECT_HOME": str(tmp_path / "mine"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "true",
    }
    applied = prefect_settings.configure_prefect_environment(env)
    assert env["PREFECT_HOME"] == str(tmp_path / "mine")
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"
    assert "PREFECT_HOME" not in applied
    assert "PREFECT_SERVER_EPHEMERAL_ENABLED" not in env
    assert prefect_settings.reports_to_server(env)


def test_importing_the_flows_applies_them_to_prefect_itself(tmp_path: Path) -> None:
    """The settings must be in place before Prefect reads them, at its import."""
    code = (
        "import portfolio_analysis.flows\n"
        "from prefect.settings import get_current_settings\n"
        "s = get_current_settings()\n"
        "print(s.home, s.server.analytics_enabled, s.server.ui.enabled,"
        " s.server.ephemeral.startup_timeout_seconds)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PORTFOLIO_CACHE_DIR": str(tmp_path / "cache"),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    home, analytics, ui, timeout = out.stdout.split()
    assert home == str(tmp_path / "cache" / "prefect")
    assert (analytics, ui) == ("False", "False")
    assert float(timeout) == prefect_settings.STARTUP_TIMEOUT_SECONDS


def test_the_package_import_does_not_import_prefect() -> None:
    """`import portfolio_analysis` (and the CLI's default path) must not pay Prefect's import."""
    code = (
        "import sys, portfolio_analysis\n"
        "from portfolio_analysis import pipeline, cli, report, aggregate\n"
        "portfolio_analysis.setup_dask_client\n"
        "print('prefect' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
