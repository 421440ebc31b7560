"""Quiet, local Prefect defaults, entered when a flow is run or served.

Prefect reads the environment once, when ``prefect`` is imported; changing ``os.environ``
afterwards changes nothing, and changing it at import would leak into everything else the
process does. So :func:`quiet_prefect_settings` applies these defaults as a Prefect
settings context (never overriding what the user set, in the environment or a profile)
around a flow call: ``flows.QuietLocalFlow`` enters it on every call and ``serve``, and
Prefect hands the context's settings to the temporary server it starts for the run.

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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from portfolio_analysis.config import default_cache_dir

if TYPE_CHECKING:
    from prefect.settings import Settings

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


def quiet_local_defaults(
    env: Mapping[str, str] | None = None, log_level: str | None = None
) -> dict[str, str]:
    """The settings this package prefers, as environment variable names and values.

    ``env`` (default ``os.environ``) is only read: it says where the cache is and whether
    a Prefect server was named. ``log_level`` (e.g. ``"WARNING"``) adds
    ``PREFECT_LOGGING_LEVEL``, which the temporary server's process logs at.
    """
    env = os.environ if env is None else env
    defaults = {
        "PREFECT_HOME": str(prefect_home(env)),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(STARTUP_TIMEOUT_SECONDS),
    }
    if not env.get("PREFECT_API_URL"):
        defaults["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "true"
    if log_level is not None:
        defaults["PREFECT_LOGGING_LEVEL"] = log_level
    return defaults


@contextmanager
def quiet_prefect_settings(log_level: str | None = None) -> Iterator[Settings]:
    """Within this block Prefect uses :func:`quiet_local_defaults` where nothing else was set.

    A Prefect settings context, so ``os.environ`` is untouched and the defaults end with the
    block; a temporary server started inside it gets them too. Nested blocks keep the outer
    block's values. Creates the package's Prefect home when it is the one in use.
    """
    from prefect.settings import temporary_settings

    defaults = quiet_local_defaults(log_level=log_level)
    with temporary_settings(set_defaults=defaults) as settings:
        if settings.home == Path(defaults["PREFECT_HOME"]):
            settings.home.mkdir(parents=True, exist_ok=True)
        yield settings
