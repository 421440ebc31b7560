"""``python -m portfolio_operator`` / ``portfolio-operator``: run the operator.

Settings come from PORTFOLIO_OPERATOR_* environment variables (what the Helm chart sets) and
command-line flags, flags winning. Credentials: the pod's service account in a cluster, else
the kubeconfig (``--kubeconfig`` or $KUBECONFIG), for kopf and for the operator's own client.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

try:
    import kopf
except ModuleNotFoundError as missing:  # a laptop install, without the operator's extra
    sys.exit(
        f"portfolio-operator: {missing.name} is not installed. The operator needs the "
        "'operator' extra: pip install 'portfolio-operator[operator]' (the laptop command, "
        "portfolio-analysis, does not)"
    )

from portfolio_operator.config import LOG_LEVELS, OperatorConfig
from portfolio_operator.health import HealthServer
from portfolio_operator.metrics import OperatorMetrics


def parse_args(argv: Sequence[str] | None = None) -> OperatorConfig:
    """Settings from the environment, overridden by flags; a bad value exits with a message."""
    parser = argparse.ArgumentParser(
        prog="portfolio-operator",
        description="Run the PortfolioAnalysis operator (kopf).",
        epilog="Every flag also reads PORTFOLIO_OPERATOR_<FLAG> (upper case, _ for -).",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument("--worker-image", help="default image of Dask schedulers and workers")
    parser.add_argument("--max-concurrent-analyses", type=int, help="runs at once (default 32)")
    parser.add_argument("--health-port", type=int, help="port of /healthz, /readyz, /metrics")
    parser.add_argument("--metrics-port", type=int, help="extra port serving only /metrics")
    parser.add_argument("--kubeconfig", help="kubeconfig file when not running in a cluster")
    parser.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper)
    args = parser.parse_args(argv)
    try:
        config = OperatorConfig.from_env()
        flags = {k: v for k, v in vars(args).items() if v is not None}
        if "namespaces" in flags:
            flags["namespaces"] = tuple(flags["namespaces"])
        return config.with_changes(**flags) if flags else config
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


async def serve(config: OperatorConfig, stop_flag: asyncio.Event | None = None) -> None:
    """kopf's operator plus the health/metrics server, until a signal or ``stop_flag``."""
    import portfolio_operator.main  # noqa: F401  (registers the kopf handlers)

    metrics = OperatorMetrics()
    ready = asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=True,
            ready_flag=ready,
            stop_flag=stop_flag,
            memo=kopf.Memo(config=config, metrics=metrics),
        )
    )
    health = HealthServer(
        metrics,
        ready,
        alive=lambda: not operator.done(),
        host=config.health_host,
        port=config.health_port,
        metrics_port=config.metrics_port,
    )
    await health.start()
    logging.getLogger("portfolio_operator").info(
        "health on :%d (/healthz, /readyz, /metrics)", health.port
    )
    try:
        await operator
    finally:
        await health.stop()


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    if config.kubeconfig:
        os.environ["KUBECONFIG"] = config.kubeconfig  # kopf's login reads it too
    level = getattr(logging, config.log_level.upper())
    kopf.configure(debug=level <= logging.DEBUG, quiet=level >= logging.WARNING)
    logging.getLogger().setLevel(level)
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
