"""Liveness, readiness and Prometheus metrics on one small HTTP port.

`/healthz` answers while the event loop runs and the operator task is alive (a hung loop
cannot answer at all, so the kubelet restarts the pod). `/readyz` answers 200 once kopf has run
the startup handlers and started watching, and also, with body ``standby: ...``, for a healthy
standby waiting for the leader Lease: a standby that never turned ready would stall every
rolling update (the new pod waits for the old leader, which is only replaced once the new pod is
ready) and keep `kubectl rollout status` and `helm --wait` waiting forever. `/metrics` is the
Prometheus exposition, also served on a port of its own when one is configured (so a metrics
Service need not expose the probes). `/reports/<namespace>/<name>` is an analysis's HTML report
(reports.py), on every replica, leader or standby. aiohttp is the HTTP library kopf itself is
built on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from portfolio_operator.constants import REPORTS_PATH
from portfolio_operator.metrics import OperatorMetrics
from portfolio_operator.reports import CONTENT_SECURITY_POLICY, ReportPages, ReportUnavailable


class HealthServer:
    """The operator's HTTP endpoints; `alive` says whether the operator task still runs."""

    def __init__(
        self,
        metrics: OperatorMetrics,
        ready: asyncio.Event,
        alive: Callable[[], bool],
        host: str,
        port: int,
        metrics_port: int | None = None,
        standby: Callable[[], str | None] | None = None,
        reports: ReportPages | None = None,
    ) -> None:
        self.reports = reports
        self.metrics, self.ready, self.alive = metrics, ready, alive
        self.standby = standby  # with leader election: why this process waits, or None
        self.host, self.port, self.metrics_port = host, port, metrics_port
        self._runners: list[web.AppRunner] = []

    async def _healthz(self, _: web.Request) -> web.Response:
        if not self.alive():
            return web.Response(status=503, text="operator stopped\n")
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        waiting = self.standby() if self.standby is not None else None
        if waiting is not None and self.alive():
            return web.Response(text=f"{waiting}\n")
        if not self.ready.is_set() or not self.alive():
            return web.Response(status=503, text="starting\n")
        return web.Response(text="ready\n")

    async def _metrics(self, _: web.Request) -> web.Response:
        body = self.metrics.exposition()
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _report(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if self.reports is None:
            return web.Response(status=404, text="reports are not served here\n")
        try:
            page = await self.reports.html(namespace, name)
        except ReportUnavailable as exc:
            return web.Response(status=503, text=f"the report cannot be read now: {exc}\n")
        if page is None:
            return web.Response(
                status=404,
                text=f"no report of a PortfolioAnalysis {namespace}/{name} (it does not exist "
                "or has not finished)\n",
            )
        response = web.Response(text=page, content_type="text/html", charset="utf-8")
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def start(self) -> int:
        """Start serving; returns the bound health port (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get(REPORTS_PATH + "/{namespace}/{name}", self._report)
        self.port = await self._serve(app, self.port)
        if self.metrics_port is not None and self.metrics_port != self.port:
            metrics_app = web.Application()
            metrics_app.router.add_get("/metrics", self._metrics)
            self.metrics_port = await self._serve(metrics_app, self.metrics_port)
        return self.port

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.host, port)
        await site.start()
        sockets = site._server.sockets if site._server else ()  # type: ignore[union-attr]
        return sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
