"""Prefect 3 flows with the reference guide's names, arguments and result shapes, wrapping
pipeline.py.

How Prefect is used (see docs/flows.md):

* The per-ticker work is plain Dask (``pipeline.run_stages``): Dask workers in other
  processes cannot reach a temporary Prefect server, so they never run Prefect tasks.
* Each flow gathers the Dask results in one Prefect task (``gather_on_dask``), then the
  reference guide's aggregation functions run as Prefect tasks with the guide's names.
* Each flow takes the run's settings explicitly: its parameters, plus ``options``
  (:class:`pipeline.RunOptions`) for what cannot be a flow parameter (progress callback,
  cancel event, chart tickers, the embedded cluster's log level).
* With ``PREFECT_API_URL`` set, flows report to that server; without it, Prefect starts a
  temporary local server in this process. Either way, calling (or serving) a flow runs it
  under the quiet settings of ``prefect_settings`` (a Prefect settings context, entered
  by the call: importing this module changes no setting and no environment variable).

Importing this module imports Prefect (1.3-2.3 s); ``import portfolio_analysis`` does not
until a flow name is first used.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from prefect import Flow, task
from prefect.cache_policies import NONE as NO_CACHE
from prefect.utilities.annotations import quote

from portfolio_analysis import aggregate, pipeline, prefect_settings
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.pipeline import RunOptions
from portfolio_analysis.vocabulary import ANALYSES


class QuietLocalFlow(Flow):
    """A Prefect flow that runs and serves under the package's quiet Prefect settings.

    The settings are entered when the flow is called or served, as a Prefect settings
    context (never ``os.environ``), so they reach the temporary server Prefect starts for
    the run, and the user's own settings still win. The ``options`` parameter (callbacks,
    an event, maybe a client) is recorded on the server by type name only.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with prefect_settings.quiet_prefect_settings():
            return super().__call__(*args, **kwargs)

    def serve(self, *args: Any, **kwargs: Any) -> Any:
        with prefect_settings.quiet_prefect_settings():
            return super().serve(*args, **kwargs)

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        # Prefect would deep-copy a dataclass to encode it, and a Dask client must not be
        # copied.
        plain = {name: value for name, value in parameters.items() if name != "options"}
        serialized = super().serialize_parameters(plain)
        if "options" in parameters:
            options = parameters["options"]
            serialized["options"] = None if options is None else f"<{type(options).__name__}>"
        return serialized


def _flow(name: str) -> Callable[[Callable[..., dict]], QuietLocalFlow]:
    """``@flow(name=...)`` for our flows: no parameter validation, results in memory."""

    def wrap(function: Callable[..., dict]) -> QuietLocalFlow:
        return QuietLocalFlow(function, name=name, validate_parameters=False, persist_result=False)

    return wrap


def _as_task(function, name: str):
    """A Prefect task around a plain function: no caching (inputs are frames), no result
    persistence (results live in memory, as the reference guide has it)."""
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


def _run_options(
    options: RunOptions | None,
    analyses: Collection[str],
    config: AnalysisConfig | None,
    dask_scheduler: str | None,
    n_workers: int | None,
) -> RunOptions:
    """The run's options: ``options`` with the flow's parameters, where given, over them."""
    given = {"config": config, "dask_scheduler": dask_scheduler, "n_workers": n_workers}
    return dataclasses.replace(
        options or RunOptions(),
        analyses=tuple(analyses),
        **{name: value for name, value in given.items() if value is not None},
    )


def _gather(tickers: Sequence[str] | None, options: RunOptions) -> pipeline.StageResults:
    chosen, _ = pipeline.resolve_request(tickers, None)
    return _quoted(gather_on_dask)(chosen, options)


@_flow("dask_multi_source_pricing_flow")
def dask_multi_source_pricing_flow(
    tickers: Sequence[str] | None = None,
    dask_scheduler: str | None = None,
    config: AnalysisConfig | None = None,
    n_workers: int | None = None,
    options: RunOptions | None = None,
) -> dict:
    """Prices of ``tickers`` from the configured sources in order, on Dask.

    Returns ``{"status", "securities_fetched", "prices": {ticker: close}, "sources":
    {ticker: source}, "failed": [...], "timestamp"}``.
    """
    run = _run_options(options, ["pricing"], config, dask_scheduler, n_workers)
    gathered = _gather(tickers, run)
    pricing = _quoted(aggregate_pricing_results)(gathered.pricing)
    return _quoted(build_pricing_report)(pricing, gathered.failed)


@_flow("dask_portfolio_technical_analysis_flow")
def dask_portfolio_technical_analysis_flow(
    tickers: Sequence[str] | None = None,
    dask_scheduler: str | None = None,
    config: AnalysisConfig | None = None,
    n_workers: int | None = None,
    options: RunOptions | None = None,
) -> dict:
    """Indicators of ``tickers``, computed on the workers that fetched their prices.

    Returns ``{"status", "securities_analyzed", "technical_summary": [{"ticker", "sma_20",
    "rsi_14", "bollinger_upper", ...}], "failed": [...], "timestamp"}``.
    """
    run = _run_options(options, ["technicals"], config, dask_scheduler, n_workers)
    gathered = _gather(tickers, run)
    technicals = _quoted(aggregate_technical_results)(gathered.technicals)
    return _quoted(build_technical_report)(technicals, gathered.failed)


@_flow("dask_news_analysis_flow")
def dask_news_analysis_flow(
    tickers: Sequence[str] | None = None,
    dask_scheduler: str | None = None,
    config: AnalysisConfig | None = None,
    n_workers: int | None = None,
    options: RunOptions | None = None,
) -> dict:
    """Headline sentiment of ``tickers`` on Dask.

    Returns ``{"status", "total_articles", "securities_with_news", "sentiment_by_ticker",
    "positive_sentiment", "negative_sentiment", "failed": [...], "timestamp"}``.
    """
    run = _run_options(options, ["news"], config, dask_scheduler, n_workers)
    gathered = _gather(tickers, run)
    news = _quoted(aggregate_news_results)(gathered.news)
    return _quoted(build_news_report)(news, gathered.failed)


def _analysis_flow_body(
    tickers: Sequence[str] | None, holdings: Mapping[str, float] | None, options: RunOptions
) -> dict:
    """:func:`pipeline.run_analysis` with the aggregation steps as Prefect tasks."""
    started = time.perf_counter()
    chosen, holdings = pipeline.resolve_request(tickers, holdings)
    gathered = _quoted(gather_on_dask)(
        pipeline.fetch_list(chosen, options.analyses, options.config), options
    )
    return pipeline.assemble_report(
        gathered, chosen, holdings, options, started=started, steps=PREFECT_STEPS
    )


@_flow("dask_comprehensive_portfolio_analysis_flow")
def dask_comprehensive_portfolio_analysis_flow(
    tickers: Sequence[str] | None = None,
    dask_scheduler: str | None = None,
    holdings: Mapping[str, float] | None = None,
    config: AnalysisConfig | None = None,
    n_workers: int | None = None,
    options: RunOptions | None = None,
) -> dict:
    """Prices, indicators and news of ``tickers`` on one Dask client (no portfolio figures).

    Returns the reference guide's ``{"status", "report": {"timestamp",
    "execution_time_seconds", "securities_analyzed", "summary", "timings", ...},
    "combined_analysis": [...], "failed": [...]}``.
    """
    run = _run_options(
        options, ("pricing", "technicals", "news"), config, dask_scheduler, n_workers
    )
    return _analysis_flow_body(tickers, holdings, run)


@_flow("dask_combined_analysis_flow")
def dask_combined_analysis_flow(
    tickers: Sequence[str] | None = None,
    dask_scheduler: str | None = None,
    holdings: Mapping[str, float] | None = None,
    config: AnalysisConfig | None = None,
    n_workers: int | None = None,
    analyses: Collection[str] = ANALYSES,
    options: RunOptions | None = None,
) -> dict:
    """Everything in one pass on one client: news alongside prices, indicators from the
    prices already fetched, portfolio figures from their closes.

    Same shape as :func:`dask_comprehensive_portfolio_analysis_flow`, with
    ``report["portfolio"]``; this is :func:`pipeline.run_combined_analysis` as a flow.
    """
    run = _run_options(options, analyses, config, dask_scheduler, n_workers)
    return _analysis_flow_body(tickers, holdings, run)
