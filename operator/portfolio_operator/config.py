"""Operator settings, from command-line flags or PORTFOLIO_OPERATOR_* environment variables.

Environment variables let the same settings reach an operator started by ``kopf run`` (for
example by kopf.testing.KopfRunner) or by the Helm chart's Deployment.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from portfolio_operator.cluster import DEFAULT_ADDRESS_TEMPLATE, DEFAULT_DASHBOARD_TEMPLATE
from portfolio_operator.status import DEFAULT_REPORT_MAX_BYTES

ENV_PREFIX = "PORTFOLIO_OPERATOR_"
# Passed on to the Dask scheduler and workers, so flows report to the same Prefect server.
WORKER_ENV_PASSTHROUGH = ("PREFECT_API_URL", "PREFECT_API_KEY")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_LEASE_NAME = "portfolio-operator"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def boolean(raw: str) -> bool:
    """An environment switch: true/false, 1/0, yes/no, on/off (any case)."""
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ValueError(raw)


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
    # Images a spec.cluster.image may name (shell patterns, e.g. "registry.example/team/*").
    # Empty: only the worker image's own repository, any tag or digest. "*" allows any image.
    allowed_images: tuple[str, ...] = ()
    # Leader election on a coordination.k8s.io/v1 Lease (portfolio_operator.leader): off by
    # default, so a single process (tests, a laptop) needs no namespace; the chart turns it on.
    leader_election: bool = False
    leader_election_namespace: str | None = None  # default: $POD_NAMESPACE (downward API)
    leader_election_lease: str = DEFAULT_LEASE_NAME
    leader_election_identity: str | None = None  # default: $POD_NAME, else hostname_pid
    # client-go's defaults: a standby takes a lease unrenewed for lease_duration; the leader
    # exits when it could not renew within renew_deadline; both try every retry_period.
    lease_duration_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0

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
        if self.leader_election and not self.leader_election_namespace:
            raise ValueError(
                "leader election needs the Lease's namespace: set --leader-election-namespace "
                "(or POD_NAMESPACE from the downward API), or turn it off (--no-leader-election)"
            )
        # client-go's checks: the old leader must have stopped before a standby may take over.
        if not (
            self.lease_duration_seconds
            > self.renew_deadline_seconds
            > 1.2 * self.retry_period_seconds
            > 0
        ):
            raise ValueError(
                "lease timing must satisfy lease duration > renew deadline > 1.2 x retry period "
                f"> 0, got {self.lease_duration_seconds}, {self.renew_deadline_seconds}, "
                f"{self.retry_period_seconds}"
            )

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
            "LEADER_ELECTION": ("leader_election", boolean),
            "LEADER_ELECTION_NAMESPACE": ("leader_election_namespace", str),
            "LEADER_ELECTION_LEASE": ("leader_election_lease", str),
            "LEADER_ELECTION_IDENTITY": ("leader_election_identity", str),
            "LEASE_DURATION_SECONDS": ("lease_duration_seconds", float),
            "RENEW_DEADLINE_SECONDS": ("renew_deadline_seconds", float),
            "RETRY_PERIOD_SECONDS": ("retry_period_seconds", float),
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
        for attr, var in (("namespaces", "NAMESPACES"), ("allowed_images", "ALLOWED_IMAGES")):
            listed = get(var)
            if listed:
                changes[attr] = tuple(n.strip() for n in listed.split(",") if n.strip())
        # The pod's own namespace and name, from the downward API (the chart sets both).
        for attr, var in (
            ("leader_election_namespace", "POD_NAMESPACE"),
            ("leader_election_identity", "POD_NAME"),
        ):
            if attr not in changes and env.get(var):
                changes[attr] = env[var]
        changes["worker_env"] = {k: env[k] for k in WORKER_ENV_PASSTHROUGH if env.get(k)}
        return cls(**changes)  # type: ignore[arg-type]

    def image_allowed(self, image: str) -> bool:
        """Whether a spec may run its Dask pods from `image` (the image policy): a tenant who
        may create a PortfolioAnalysis must not make the operator run any image at all."""
        patterns = self.allowed_images or _repository_patterns(self.worker_image)
        return any(fnmatch.fnmatchcase(image, pattern) for pattern in patterns)

    def with_changes(self, **changes: object) -> OperatorConfig:
        """A copy with some settings changed (validated again), e.g. from command-line flags."""
        return replace(self, **changes)  # type: ignore[arg-type]


def _repository_patterns(image: str) -> tuple[str, ...]:
    """The image's repository with any tag or digest: "repo/x:1" -> "repo/x", "repo/x:*", ..."""
    repository = image.split("@", 1)[0]
    if ":" in repository.rpartition("/")[2]:  # a tag, not a registry's port
        repository = repository.rpartition(":")[0]
    return (repository, f"{repository}:*", f"{repository}@*")
