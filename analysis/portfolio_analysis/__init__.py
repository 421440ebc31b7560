"""Kubernetes-free portfolio analysis: prices, indicators, sentiment, portfolio figures.

The public names below are imported lazily (PEP 562 ``__getattr__``): ``import
portfolio_analysis`` stays cheap, and Prefect (1.3-2.3 s to import) is only imported when a
flow name is first used. The aggregation names are the plain functions; ``flows.py`` holds
their Prefect-task versions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # seed worker functions (one ticker) and their batch versions
    "fetch_price_from_multiple_sources": "workers",
    "calculate_security_technicals": "workers",
    "fetch_news_for_ticker": "workers",
    "fetch_price_batch": "workers",
    "price_batch_summary": "workers",
    "technicals_batch": "workers",
    "news_batch": "workers",
    # aggregation (plain functions)
    "aggregate_pricing_results": "aggregate",
    "aggregate_technical_results": "aggregate",
    "aggregate_news_results": "aggregate",
    "combine_analysis": "aggregate",
    "summarize_combined": "aggregate",
    "pricing_report": "aggregate",
    "technical_report": "aggregate",
    "news_report": "aggregate",
    "comprehensive_report": "aggregate",
    # plain-Dask pipeline
    "setup_dask_client": "pipeline",
    "plan_batches": "pipeline",
    "run_combined_analysis": "pipeline",
    "run_analysis": "pipeline",
    "SchedulerUnreachableError": "pipeline",
    "AnalysisCancelled": "pipeline",
    # Prefect flows
    "dask_multi_source_pricing_flow": "flows",
    "dask_portfolio_technical_analysis_flow": "flows",
    "dask_news_analysis_flow": "flows",
    "dask_comprehensive_portfolio_analysis_flow": "flows",
    "dask_combined_analysis_flow": "flows",
    # settings
    "AnalysisConfig": "config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'portfolio_analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"portfolio_analysis.{module_name}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # names for type checkers and IDEs
    from portfolio_analysis.aggregate import (  # noqa: F401
        aggregate_news_results,
        aggregate_pricing_results,
        aggregate_technical_results,
        combine_analysis,
        comprehensive_report,
        news_report,
        pricing_report,
        summarize_combined,
        technical_report,
    )
    from portfolio_analysis.config import AnalysisConfig  # noqa: F401
    from portfolio_analysis.flows import (  # noqa: F401
        dask_combined_analysis_flow,
        dask_comprehensive_portfolio_analysis_flow,
        dask_multi_source_pricing_flow,
        dask_news_analysis_flow,
        dask_portfolio_technical_analysis_flow,
    )
    from portfolio_analysis.pipeline import (  # noqa: F401
        AnalysisCancelled,
        SchedulerUnreachableError,
        plan_batches,
        run_analysis,
        run_combined_analysis,
        setup_dask_client,
    )
    from portfolio_analysis.workers import (  # noqa: F401
        calculate_security_technicals,
        fetch_news_for_ticker,
        fetch_price_batch,
        fetch_price_from_multiple_sources,
        news_batch,
        price_batch_summary,
        technicals_batch,
    )
