"""Prefect 3 flows with the seed's names, arguments and result shapes, wrapping pipeline.py.

How Prefect is used (see docs/flows.md):

* The per-ticker work is plain Dask (``pipeline.run_stages``): Dask workers in other
  processes cannot reach a temporary Prefect server, so they never run Prefect tasks.
* Each flow gathers the Dask results in one Prefect task (``gather_on_dask``), then the
  seed's aggregation functions run as Prefect tasks with the seed's names.
* With ``PREFECT_API_URL`` set, flows report to that server; without it, Prefect starts a
  temporary local server in this process (slow the first time: see docs/flows.md), with
  the quiet settings of ``prefect_settings``.

Importing this module imports Prefect (1.3-2.3 s); ``import portfolio_analysis`` does not
until a flow name is first used.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence

from portfolio_analysis.prefect_settings import configure_prefect_environment

configure_prefect_environment()

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NONE as NO_CACHE  # noqa: E402
from prefect.utilities.annotations import quote  # noqa: E402

from portfolio_analysis import aggregate, pipeline  # noqa: E402
from portfolio_analysis.config import AnalysisConfig  # noqa: E402
from portfolio_analysis.vocabulary import ANALYSES  # noqa: E402


def _as_task(function, name: str):
    """A Prefect task around a plain function: no caching (inputs are frames), no result
    persistence (results live in memory, as the seed has it)."""
    return task(name=name, cache_policy=NO_CACHE, persist_result=False)(function)


gather_on_dask = _as_task(pipeline.run_stages, "gather_on_dask")
aggregate_pricing_results = _as_task(
    aggregate.aggregate_pricing_results, "aggregate_pricing_results"
)
aggregate_technical_results = _as_task(
    aggregate.aggregate_technical_results, "aggregate_technical_results"
)
aggregate_news_results = _as_task(aggregate.aggregate_news_results, "aggregate_news_results")
combine_analysis = _as_task(aggregate.combine_analysis, "combine_analysis")
compute_portfolio_figures = _as_task(pipeline.portfolio_section, "compute_portfolio_figures")
build_pricing_report = _as_task(aggregate.pricing_report, "build_pricing_report")
build_technical_report = _as_task(aggregate.technical_report, "build_technical_report")
build_news_report = _as_task(aggregate.news_report, "build_news_report")
build_comprehensive_report = _as_task(aggregate.comprehensive_report, "build_comprehensive_report")


def _quoted(prefect_task):
    """Call ``prefect_task`` with every argument wrapped in ``quote``.

    Without it Prefect walks every argument element by element (to find futures and to
    record task inputs): hundreds of per-ticker dicts and frames cost seconds per run on a
    500-ticker universe. The price: the Prefect UI draws no data edges between these tasks.
    """

    def call(*args, **kwargs):
        return prefect_task(*(quote(a) for a in args), **{k: quote(v) for k, v in kwargs.items()})

    call.__name__ = call.__qualname__ = prefect_task.name
    call.__doc__ = prefect_task.fn.__doc__
    return call


PREFECT_STEPS = pipeline.ReportSteps(
    _quoted(aggregate_pricing_results),
    _quoted(aggregate_technical_results),
    _quoted(aggregate_news_results),
    _quoted(combine_analysis),
    _quoted(compute_portfolio_figures),
    _quoted(build_comprehensive_report),
)

_FLOW_OPTIONS = {"validate_parameters": False, "persist_result": False}


def _gather(
    tickers: Sequence[str] | None,
    stages: Collection[str],
    config: AnalysisConfig | None,
    dask_scheduler: str | None,
    n_workers: int | None,
) -> pipeline.StageResults:
    chosen, _ = pipeline.resolve_request(tickers, None)
    return _quoted(gather_on_dask)(
        chosen,
        stages=stages,
        config=config,
        dask_scheduler=dask_scheduler,
        n_workers=n_workers,
    )


@flow(name="dask_multi_source_pricing_flow", **_FLOW_OPTIONS)
def dask_multi_source_pricing_flow(
    tickers: Sequence[str] | None = None,
    dask_scheduler: str | None = None,
    config: AnalysisConfig | None = None,
    n_workers: int | None = None,
) -> dict:
    """Prices of ``tickers`` from the configured sources in order, on Dask.

    Returns ``{"status", "securities_fetched", "prices": {ticker: close}, "sources":
    {ticker: source}, "failed": [...], "timestamp"}``.
    """
    gathered = _gather(tickers, ["pricing"], config, dask_scheduler, n_workers)
    pricing = _quoted(aggregate_pricing_results)(gathered.pricing)
    return _quoted(build_pricing_report)(pricing, gathered.failed)


@flow(name="dask_portfolio_technical_analysis_flow", **_FLOW_OPTIONS)
def dask_portfolio_technical_analysis_flow(
    tickers: Sequence[str] | None = None,
    dask_scheduler: str | None = None,
    config: AnalysisConfig | None = None,
    n_workers: int | None = None,
) -> dict:
    """Indicators of ``tickers``, computed on the workers that fetched their prices.

    Returns ``{"status", "securities_analyzed", "technical_summary": [{"ticker", "sma_20",
    "rsi_14", "bollinger_upper", ...}], "failed": [...], "timestamp"}``.
    """
    gathered = _gather(tickers, ["technicals"], config, dask_scheduler, n_workers)
    technicals = _quoted(aggregate_technical_results)(gathered.technicals)
    return _quoted(build_technical_report)(technicals, gathered.failed)


@flow(name="dask_news_analysis_flow", **_FLOW_OPTIONS)
def dask_news_analysis_flow(
    tickers: Sequence[str] | None = None,
    dask_scheduler: str | None = None,
    config: AnalysisConfig | None = None,
    n_workers: int | None = None,
) -> dict:
    """Headline sentiment of ``tickers`` on Dask.

    Returns ``{"status", "total_articles", "securities_with_news", "sentiment_by_ticker",
    "positive_sentiment", "negative_sentiment", "failed": [...], "timestamp"}``.
    """
    gathered = _gather(tickers, ["news"], config, dask_scheduler, n_workers)
    news = _quoted(aggregate_news_results)(gathered.news)
    return _quoted(build_news_report)(news, gathered.failed)


def _analysis_flow_body(
    tickers: Sequence[str] | None,
    holdings: Mapping[str, float] | None,
    stages: Collection[str],
    config: AnalysisConfig | None,
    dask_scheduler: str | None,
    n_workers: int | None,
) -> dict:
    started = time.perf_counter()
    config = config or AnalysisConfig()
    chosen, holdings = pipeline.resolve_request(tickers, holdings)
    gathered = _quoted(gather_on_dask)(
        pipeline.fetch_list(chosen, stages, config),
        stages=stages,
        config=config,
        dask_scheduler=dask_scheduler,
        n_workers=n_workers,
    )
    return pipeline.assemble_report(
        gathered,
        chosen,
        holdings,
        stages=stages,
        config=config,
        started=started,
        steps=PREFECT_STEPS,
    )


@flow(name="dask_comprehensive_portfolio_analysis_flow", **_FLOW_OPTIONS)
def dask_comprehensive_portfolio_analysis_flow(
    tickers: Sequence[str] | None = None,
    dask_scheduler: str | None = None,
    holdings: Mapping[str, float] | None = None,
    config: AnalysisConfig | None = None,
    n_workers: int | None = None,
) -> dict:
    """Prices, indicators and news of ``tickers`` on one Dask client (no portfolio figures).

    Returns the seed's ``{"status", "report": {"timestamp", "execution_time_seconds",
    "securities_analyzed", "summary", "timings", ...}, "combined_analysis": [...],
    "failed": [...]}``.
    """
    return _analysis_flow_body(
        tickers, holdings, ("pricing", "technicals", "news"), config, dask_scheduler, n_workers
    )


@flow(name="dask_combined_analysis_flow", **_FLOW_OPTIONS)
def dask_combined_analysis_flow(
    tickers: Sequence[str] | None = None,
    dask_scheduler: str | None = None,
    holdings: Mapping[str, float] | None = None,
    config: AnalysisConfig | None = None,
    n_workers: int | None = None,
    analyses: Collection[str] = ANALYSES,
) -> dict:
    """Everything in one pass on one client: news alongside prices, indicators from the
    prices already fetched, portfolio figures from their closes.

    Same shape as :func:`dask_comprehensive_portfolio_analysis_flow`, with
    ``report["portfolio"]``; this is :func:`pipeline.run_combined_analysis` as a flow.
    """
    return _analysis_flow_body(
        tickers, holdings, tuple(analyses), config, dask_scheduler, n_workers
    )


FLOWS = {
    "dask_multi_source_pricing_flow": dask_multi_source_pricing_flow,
    "dask_portfolio_technical_analysis_flow": dask_portfolio_technical_analysis_flow,
    "dask_news_analysis_flow": dask_news_analysis_flow,
    "dask_comprehensive_portfolio_analysis_flow": dask_comprehensive_portfolio_analysis_flow,
    "dask_combined_analysis_flow": dask_combined_analysis_flow,
}
