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
import signal
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
from portfolio_operator.kube import KubeApi, load_api_client
from portfolio_operator.leader import LeaderElector, exit_on_lost_lease
from portfolio_operator.metrics import OperatorMetrics
from portfolio_operator.reports import ReportPages


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
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        help="act only while holding a coordination.k8s.io Lease, so replicas can run as "
        "hot standbys (default: off; the Helm chart turns it on)",
    )
    parser.add_argument(
        "--leader-election-namespace", help="namespace of the Lease (default: $POD_NAMESPACE)"
    )
    parser.add_argument("--leader-election-lease", help="name of the Lease (portfolio-operator)")
    parser.add_argument(
        "--leader-election-identity", help="holder identity (default: $POD_NAME, else host_pid)"
    )
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
    """kopf's operator plus the health/metrics server, until a signal or ``stop_flag``.

    With leader election, kopf starts only once this process holds the Lease (the health
    server answers meanwhile); losing the Lease exits the process, stopping releases it.
    """
    import portfolio_operator.main  # noqa: F401  (registers the kopf handlers)

    metrics = OperatorMetrics()
    ready = asyncio.Event()
    operator: asyncio.Task[None] | None = None
    elector: LeaderElector | None = None
    if config.leader_election:
        elector = LeaderElector.from_config(config, load_api_client(config.kubeconfig))
    # Its own client: the reports are served by standbys too, before kopf (and its client) runs.
    report_api = KubeApi(load_api_client(config.kubeconfig), threads=2)
    health = HealthServer(
        metrics,
        ready,
        alive=lambda: operator is None or not operator.done(),
        host=config.health_host,
        port=config.health_port,
        metrics_port=config.metrics_port,
        standby=elector.standby_reason if elector is not None else None,
        reports=ReportPages(report_api),
    )
    await health.start()
    logging.getLogger("portfolio_operator").info(
        "health on :%d (/healthz, /readyz, /metrics, /reports/<namespace>/<name>)", health.port
    )
    try:
        if elector is not None:
            if not await _standby(elector, stop_flag):
                return  # stopped while standby: nothing to release
            elector.keep_renewing(on_lost=exit_on_lost_lease)
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
        await operator
    finally:
        if elector is not None:  # after kopf has stopped: the next leader may start at once
            await asyncio.to_thread(elector.release)
        await health.stop()
        report_api.close()


async def _standby(elector: LeaderElector, stop_flag: asyncio.Event | None) -> bool:
    """Wait for the Lease; False if SIGTERM/SIGINT or `stop_flag` came first.

    kopf handles the signals once it runs; until then these handlers do. Once the Lease is
    held they go again: a signal before kopf's handlers then ends the process the default way
    (nothing acts yet; the Lease expires), rather than going unheard.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    waiter = loop.create_task(stop_flag.wait()) if stop_flag is not None else None
    if waiter is not None:
        waiter.add_done_callback(lambda _: stop.set())
    try:
        return await elector.acquire(stop)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        if waiter is not None:
            waiter.cancel()


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
