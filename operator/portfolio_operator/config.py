"""Operator settings, from command-line flags or PORTFOLIO_OPERATOR_* environment variables.

Environment variables let the same settings reach an operator started by ``kopf run`` (for
example by kopf.testing.KopfRunner) or by the Helm chart's Deployment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from portfolio_operator.cluster import DEFAULT_ADDRESS_TEMPLATE, DEFAULT_DASHBOARD_TEMPLATE
from portfolio_operator.status import DEFAULT_REPORT_MAX_BYTES

ENV_PREFIX = "PORTFOLIO_OPERATOR_"
# Passed on to the Dask scheduler and workers, so flows report to the same Prefect server.
WORKER_ENV_PASSTHROUGH = ("PREFECT_API_URL", "PREFECT_API_KEY")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class OperatorConfig:
    """Every knob of the operator; defaults suit an in-cluster Deployment."""

    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    worker_image: str = "portfolio-operator:latest"
    max_concurrent_analyses: int = 32
    scheduler_address_template: str = DEFAULT_ADDRESS_TEMPLATE
    dashboard_url_template: str = DEFAULT_DASHBOARD_TEMPLATE
    poll_seconds: float = 2.0
    progress_seconds: float = 5.0
    max_attempts: int = 3
    retry_backoff_seconds: float = 5.0
    report_max_bytes: int = DEFAULT_REPORT_MAX_BYTES
    health_host: str = "0.0.0.0"
    health_port: int = 8080
    metrics_port: int | None = None  # None: /metrics on the health port
    log_level: str = "INFO"
    kubeconfig: str | None = None  # None: in-cluster credentials, else $KUBECONFIG
    worker_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_concurrent_analyses < 1:
            raise ValueError(
                f"max concurrent analyses must be at least 1, got {self.max_concurrent_analyses}"
            )
        if self.max_attempts < 1:
            raise ValueError(f"max attempts must be at least 1, got {self.max_attempts}")
        for template in (self.scheduler_address_template, self.dashboard_url_template):
            try:
                template.format(cluster="c", namespace="n")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"template {template!r} may only use {{cluster}} and {{namespace}}: {exc}"
                ) from None
        if self.poll_seconds <= 0 or self.progress_seconds <= 0:
            raise ValueError("poll and progress intervals must be positive")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(f"log level {self.log_level!r}: use one of {', '.join(LOG_LEVELS)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        """Settings from PORTFOLIO_OPERATOR_* variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name)
            return value if value not in (None, "") else None

        changes: dict[str, object] = {}
        converters = {
            "WORKER_IMAGE": ("worker_image", str),
            "MAX_CONCURRENT_ANALYSES": ("max_concurrent_analyses", int),
            "SCHEDULER_ADDRESS_TEMPLATE": ("scheduler_address_template", str),
            "DASHBOARD_URL_TEMPLATE": ("dashboard_url_template", str),
            "POLL_SECONDS": ("poll_seconds", float),
            "PROGRESS_SECONDS": ("progress_seconds", float),
            "MAX_ATTEMPTS": ("max_attempts", int),
            "RETRY_BACKOFF_SECONDS": ("retry_backoff_seconds", float),
            "REPORT_MAX_BYTES": ("report_max_bytes", int),
            "HEALTH_HOST": ("health_host", str),
            "HEALTH_PORT": ("health_port", int),
            "METRICS_PORT": ("metrics_port", int),
            "LOG_LEVEL": ("log_level", str),
        }
        for var, (attr, convert) in converters.items():
            raw = get(var)
            if raw is None:
                continue
            try:
                changes[attr] = convert(raw)
            except ValueError:
                raise ValueError(
                    f"{ENV_PREFIX}{var}={raw!r} is not a valid {convert.__name__}"
                ) from None
        namespaces = get("NAMESPACES")
        if namespaces:
            changes["namespaces"] = tuple(n.strip() for n in namespaces.split(",") if n.strip())
        changes["worker_env"] = {k: env[k] for k in WORKER_ENV_PASSTHROUGH if env.get(k)}
        return cls(**changes)  # type: ignore[arg-type]

    def with_changes(self, **changes: object) -> OperatorConfig:
        """A copy with some settings changed (validated again), e.g. from command-line flags."""
        return replace(self, **changes)  # type: ignore[arg-type]
