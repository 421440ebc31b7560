"""Quiet local Prefect settings: used only where the user set nothing, entered when a flow
runs, never written into the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from portfolio_analysis import prefect_settings


def test_defaults_go_under_the_user_cache_and_silence_the_server(tmp_path: Path) -> None:
    env = {"PORTFOLIO_CACHE_DIR": str(tmp_path / "cache")}
    defaults = prefect_settings.quiet_local_defaults(env)
    assert env == {"PORTFOLIO_CACHE_DIR": str(tmp_path / "cache")}  # only read
    assert defaults["PREFECT_HOME"] == str(tmp_path / "cache" / "prefect")
    assert defaults["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert defaults["PREFECT_UI_ENABLED"] == "false"
    # Prefect's own 20 s start-up timeout is shorter than a first start on 2 cores (21-24 s).
    assert int(defaults["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) >= 60
    assert defaults["PREFECT_SERVER_EPHEMERAL_ENABLED"] == "true"
    assert "PREFECT_LOGGING_LEVEL" not in defaults
    assert (
        prefect_settings.quiet_local_defaults(env, log_level="WARNING")["PREFECT_LOGGING_LEVEL"]
        == "WARNING"
    )


def test_an_api_url_means_a_real_server() -> None:
    env = {"PREFECT_API_URL": "http://prefect.example:4200/api"}
    assert "PREFECT_SERVER_EPHEMERAL_ENABLED" not in prefect_settings.quiet_local_defaults(env)


def _python(code: str, env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


SETTINGS = (
    "s = get_current_settings()\n"
    "print(s.home, s.server.analytics_enabled, s.server.ui.enabled,"
    " s.server.ephemeral.startup_timeout_seconds, s.logging.level)\n"
)


def test_importing_the_flows_changes_neither_the_environment_nor_prefects_settings(
    tmp_path: Path,
) -> None:
    """Importing is no configuration step: the settings are entered by a flow call."""
    code = (
        "import os\n"
        "before = dict(os.environ)\n"
        "import portfolio_analysis.flows\n"
        "print(dict(os.environ) == before)\n"
        "from prefect.settings import get_current_settings\n" + SETTINGS
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PORTFOLIO_CACHE_DIR": str(tmp_path / "cache"),
    }
    unchanged, home, *_ = _python(code, env)
    assert unchanged == "True"
    assert home == str(tmp_path / ".prefect")  # Prefect's own default
    assert not (tmp_path / "cache" / "prefect").exists()


def test_the_quiet_settings_reach_prefect_itself_and_user_settings_win(tmp_path: Path) -> None:
    """What a flow call enters: Prefect's settings (which it hands to its temporary server),
    not the environment, and only where the user set nothing."""
    code = (
        "import os\n"
        "from portfolio_analysis import prefect_settings\n"
        "from prefect.settings import get_current_settings\n"
        "before = dict(os.environ)\n"
        "with prefect_settings.quiet_prefect_settings(log_level='WARNING'):\n"
        "    " + SETTINGS.replace("\n", "\n    ", 1) + "print(dict(os.environ) == before)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PORTFOLIO_CACHE_DIR": str(tmp_path / "cache"),
    }
    home, analytics, ui, timeout, level, unchanged = _python(code, env)
    assert home == str(tmp_path / "cache" / "prefect")
    assert Path(home).is_dir()
    assert (analytics, ui, level) == ("False", "False", "WARNING")
    assert float(timeout) == prefect_settings.STARTUP_TIMEOUT_SECONDS
    assert unchanged == "True"

    mine = {
        **env,
        "PREFECT_HOME": str(tmp_path / "mine"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "true",
        "PREFECT_LOGGING_LEVEL": "DEBUG",
    }
    home, analytics, ui, timeout, level, unchanged = _python(code, mine)
    assert home == str(tmp_path / "mine")
    assert (analytics, ui, level) == ("True", "False", "DEBUG")


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
