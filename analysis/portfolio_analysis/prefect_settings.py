"""Quiet, local Prefect defaults, applied before Prefect is first imported.

Prefect reads its settings from the environment once, when ``prefect`` is imported, so
these defaults are written into ``os.environ`` (never overriding what the user set) by
:func:`configure_prefect_environment`, which ``flows.py`` calls before ``import prefect``.

Why each default:

- ``PREFECT_HOME`` under the user's cache (``~/.cache/portfolio-operator/prefect``): the
  temporary server's SQLite database outlives the process, so only the first flow on a
  machine pays the database migrations (21-24 s measured on 2 cores), not every run.
- ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120``: Prefect's default of 20 s is
  shorter than that first start on a slow machine and fails the run.
- ``PREFECT_SERVER_ANALYTICS_ENABLED=false`` and ``PREFECT_UI_ENABLED=false``: no phone
  home, no UI assets served by a server nobody looks at.
- ``PREFECT_SERVER_EPHEMERAL_ENABLED=true`` only when no ``PREFECT_API_URL`` is set: with
  one set, flows report to that real server (the operator's chart sets it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from portfolio_analysis.config import default_cache_dir

STARTUP_TIMEOUT_SECONDS = 120


def prefect_home(env: Mapping[str, str] | None = None) -> Path:
    """Where Prefect keeps its database and profiles unless the user chose otherwise:
    ``prefect`` under the package's cache folder as ``env`` (default ``os.environ``) names it."""
    if env is None or env is os.environ:
        return default_cache_dir() / "prefect"
    if env.get("PORTFOLIO_CACHE_DIR"):
        return Path(env["PORTFOLIO_CACHE_DIR"]) / "prefect"
    base = env.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "portfolio-operator" / "prefect"


def quiet_local_defaults(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The settings this package prefers, as environment variables."""
    env = os.environ if env is None else env
    defaults = {
        "PREFECT_HOME": str(prefect_home(env)),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(STARTUP_TIMEOUT_SECONDS),
    }
    if not env.get("PREFECT_API_URL"):
        defaults["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "true"
    return defaults


def configure_prefect_environment(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Write the defaults into ``env`` (default ``os.environ``) where the user set nothing.

    Returns the variables that were actually set. Must run before ``import prefect`` to
    take effect in this process.
    """
    env = os.environ if env is None else env
    applied = {}
    for name, value in quiet_local_defaults(env).items():
        if name not in env:
            env[name] = value
            applied[name] = value
    if "PREFECT_HOME" in applied:
        Path(applied["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    return applied


def reports_to_server(env: MutableMapping[str, str] | None = None) -> bool:
    """True when flows report to a real Prefect server (``PREFECT_API_URL`` is set)."""
    env = os.environ if env is None else env
    return bool(env.get("PREFECT_API_URL"))
