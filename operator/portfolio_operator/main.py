"""The kopf handlers, and nothing else: each delegates to controller.py (crate-operator layout).

Importing this module registers the handlers with kopf's default registry; ``__main__`` runs
the operator with it, and ``kopf run -m portfolio_operator.main`` works too.
"""

from __future__ import annotations

from typing import Any

import kopf

from portfolio_operator import controller
from portfolio_operator.constants import GROUP, PLURAL, VERSION


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    await controller.start_operator(settings=settings, memo=memo, **kwargs)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **kwargs: Any) -> None:
    await controller.stop_operator(memo=memo, **kwargs)


# One daemon per PortfolioAnalysis: the cancellable background task that reconciles it.
# kopf starts it for every existing resource on operator start (so restarts resume) and stops
# it before the resource is deleted (kopf's finalizer), which also cancels a running analysis.
@kopf.daemon(GROUP, VERSION, PLURAL, id="reconcile", cancellation_timeout=30)
async def reconcile(**kwargs: Any) -> None:
    await controller.run_analysis_daemon(**kwargs)
