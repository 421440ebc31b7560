"""The PortfolioAnalysis resource: one Python source for its schema and its meaning.

`crd_manifest()` is the CustomResourceDefinition that `manifests/crd.yaml` (and the Helm chart)
is generated from: ``python -m portfolio_operator.crd > manifests/crd.yaml``. `parse_spec()` turns
a resource's spec into the arguments of ``portfolio_analysis.pipeline.run_combined_analysis``, and
re-checks what the API server validates so that a resource stored under an older schema still
gets a message that says what to fix.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import yaml

GROUP = "analysis.portfolio-operator.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "PortfolioAnalysis"
PLURAL = "portfolioanalyses"
SINGULAR = "portfolioanalysis"
SHORT_NAMES = ["pfa"]
CRD_NAME = f"{PLURAL}.{GROUP}"

# Upper-case symbols with the punctuation real tickers use: BRK.B, BRK-B, ^GSPC, EURUSD=X.
TICKER_PATTERN = r"^\^?[A-Z0-9][A-Z0-9.=-]{0,14}$"
# Kubernetes' resource.Quantity, as controller-gen writes it into CRDs.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
SCHEDULER_ADDRESS_PATTERN = r"^(tcp|tls|ws|wss|ucx)://[^\s/]+(:[0-9]{1,5})?$"
ANALYSES = ("pricing", "technicals", "news", "portfolio")
PRICE_SOURCES = ("yfinance", "stooq", "local", "embedded", "synthetic")
NEWS_SOURCES = ("yfinance", "rss", "embedded")
CLUSTER_POLICIES = ("Delete", "Keep")
PHASES = ("Pending", "Provisioning", "Running", "Succeeded", "Failed")
CONDITION_TYPES = ("ClusterReady", "Running", "Complete", "Failed")
MAX_TICKERS = 2000
MAX_WORKERS = 100
MAX_STATUS_ROWS = 20

_TICKER_RE = re.compile(TICKER_PATTERN)
_ADDRESS_RE = re.compile(SCHEDULER_ADDRESS_PATTERN)


class SpecError(ValueError):
    """A PortfolioAnalysis spec that cannot run; the message says which field to fix."""


# --------------------------------------------------------------------------------------------
# Schema helpers: every property carries a description so `kubectl explain` teaches the resource.


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _integer(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "description": description, **extra}


def _number(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "number", "description": description, **extra}


def _figure(description: str) -> dict[str, Any]:
    """A number the analysis may not be able to compute (then null)."""
    return {"type": "number", "nullable": True, "description": description}


def _object(description: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": properties, **extra}


def _ticker(description: str) -> dict[str, Any]:
    return _string(description, pattern=TICKER_PATTERN, maxLength=16)


def _quantity(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
        "pattern": QUANTITY_PATTERN,
    }


def _resources_schema() -> dict[str, Any]:
    def amounts(what: str) -> dict[str, Any]:
        return _object(
            f"{what} per Dask worker and scheduler pod.",
            {
                "cpu": _quantity(f"CPU {what.lower()}, e.g. 500m or 2."),
                "memory": _quantity(f"Memory {what.lower()}, e.g. 2Gi."),
            },
        )

    return _object(
        "Compute resources of each Dask worker and of the scheduler pod.",
        {"requests": amounts("Requests"), "limits": amounts("Limits")},
    )


def _spec_schema() -> dict[str, Any]:
    cluster = _object(
        "Where the analysis runs: a Dask cluster the operator creates (a DaskCluster plus a "
        "DaskAutoscaler of the dask-kubernetes operator), or an existing scheduler.",
        {
            "schedulerAddress": _string(
                "Address of an existing Dask scheduler to reuse, e.g. "
                "tcp://shared-dask-scheduler.analytics:8786. When set, no cluster is created "
                "and image, resources, worker bounds and onCompletion are ignored.",
                pattern=SCHEDULER_ADDRESS_PATTERN,
                maxLength=253,
            ),
            "image": _string(
                "Container image of the Dask scheduler and workers; it must contain the "
                "portfolio-analysis package. Defaults to the operator's --worker-image.",
                maxLength=512,
                minLength=1,
            ),
            "imagePullPolicy": _string(
                "When the kubelet pulls the image.",
                enum=["Always", "IfNotPresent", "Never"],
                default="IfNotPresent",
            ),
            "resources": _resources_schema(),
            "minWorkers": _integer(
                "Fewest Dask workers the autoscaler keeps; also the initial worker count.",
                minimum=0,
                maximum=MAX_WORKERS,
                default=1,
            ),
            "maxWorkers": _integer(
                "Most Dask workers the autoscaler may start.",
                minimum=1,
                maximum=MAX_WORKERS,
                default=4,
            ),
            "onCompletion": _string(
                "What happens to the created Dask cluster when the analysis has finished: "
                "Delete it (the default) or Keep it for inspection.",
                enum=list(CLUSTER_POLICIES),
                default="Delete",
            ),
        },
        default={},
        **{
            "x-kubernetes-validations": [
                {
                    # has(): the rule also checks the schema's own default ({}), before the
                    # nested defaults fill both fields.
                    "rule": "!has(self.minWorkers) || !has(self.maxWorkers) || "
                    "self.minWorkers <= self.maxWorkers",
                    "message": "spec.cluster.minWorkers must be less than or equal to "
                    "spec.cluster.maxWorkers",
                    "fieldPath": ".minWorkers",
                }
            ]
        },
    )
    holding = _object(
        "One position of the portfolio.",
        {
            "ticker": _ticker("Ticker symbol in upper case, e.g. AAPL or BRK.B."),
            "shares": _number(
                "Number of shares held; must be greater than zero.",
                minimum=0,
                exclusiveMinimum=True,
            ),
        },
        required=["ticker", "shares"],
    )
    return _object(
        "What to analyse and where. Give exactly one of tickers or holdings.",
        {
            "tickers": {
                "type": "array",
                "description": "Ticker symbols to analyse (equal weights for the portfolio "
                "figures). Upper case, unique, at least one.",
                "items": _ticker("Ticker symbol in upper case, e.g. AAPL."),
                "minItems": 1,
                "maxItems": MAX_TICKERS,
                "x-kubernetes-list-type": "set",
            },
            "holdings": {
                "type": "array",
                "description": "Portfolio positions (ticker and shares); the portfolio "
                "figures use their market values as weights. Tickers unique, at least one.",
                "items": holding,
                "minItems": 1,
                "maxItems": MAX_TICKERS,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["ticker"],
            },
            "analyses": {
                "type": "array",
                "description": "Which analyses to run. Indicators need prices, and the "
                "portfolio figures need prices; the operator adds pricing when needed.",
                "items": _string("One analysis.", enum=list(ANALYSES)),
                "minItems": 1,
                "default": list(ANALYSES),
                "x-kubernetes-list-type": "set",
            },
            "priceSources": {
                "type": "array",
                "description": "Price sources tried in this order; the first good answer "
                "wins. 'embedded' is the data shipped in the image and needs no network.",
                "items": _string("One price source.", enum=list(PRICE_SOURCES)),
                "minItems": 1,
                "default": ["embedded"],
                "x-kubernetes-list-type": "set",
            },
            "newsSources": {
                "type": "array",
                "description": "Headline sources tried in this order.",
                "items": _string("One news source.", enum=list(NEWS_SOURCES)),
                "minItems": 1,
                "default": ["embedded"],
                "x-kubernetes-list-type": "set",
            },
            "lookbackDays": _integer(
                "Calendar days of price history to analyse, counted back from endDate "
                "(or from the newest data a source has).",
                minimum=60,
                maximum=36500,
                default=365,
            ),
            "endDate": _string(
                "Last date of the analysed period (YYYY-MM-DD); omit for the newest data.",
                format="date",
            ),
            "riskFreeRate": _number(
                "Annual risk-free rate for the Sharpe ratio, e.g. 0.03 for 3%.",
                minimum=-1,
                maximum=1,
                default=0.0,
            ),
            "benchmark": _ticker("Ticker the portfolio beta is measured against, e.g. SPY."),
            "cluster": cluster,
            "activeDeadlineSeconds": _integer(
                "Seconds the analysis may take from its start (provisioning included) before "
                "it is cancelled and marked Failed with reason DeadlineExceeded.",
                minimum=1,
                format="int64",
            ),
            "ttlSecondsAfterFinished": _integer(
                "Seconds after completion before the resource (with its report ConfigMap "
                "and any kept cluster) is deleted. Omit to keep it.",
                minimum=0,
                format="int64",
            ),
        },
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.tickers) != has(self.holdings)",
                    "message": "give exactly one of spec.tickers or spec.holdings",
                }
            ]
        },
    )


def _status_schema() -> dict[str, Any]:
    condition = _object(
        "One condition in Kubernetes convention.",
        {
            "type": _string(
                "Condition type: ClusterReady, Running, Complete or Failed. "
                "`kubectl wait --for=condition=Complete` waits for success."
            ),
            "status": _string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": _string("One-word CamelCase reason for the last transition."),
            "message": _string("Human-readable details."),
            "lastTransitionTime": _string(
                "When the status last changed.", format="date-time", nullable=True
            ),
            "observedGeneration": _integer(
                "metadata.generation this condition was set for.", format="int64"
            ),
        },
        required=["type", "status"],
    )
    failure = _object(
        "A security that could not be analysed.",
        {
            "ticker": _string("Ticker symbol."),
            "stage": _string("Stage that failed: pricing, technicals, news or portfolio."),
            "reason": _string("Why it failed, in words that say what to fix."),
        },
    )
    row = _object(
        "Key figures of one security.",
        {
            "ticker": _string("Ticker symbol."),
            "source": _string("Price source that served the data.", nullable=True),
            "close": _figure("Last close."),
            "sma20": _figure("20-day simple moving average."),
            "rsi14": _figure("14-day RSI (Wilder)."),
            "macd": _figure("MACD line (12/26)."),
            "sentiment": _figure("Mean VADER compound score of the headlines."),
            "articles": _integer("Headlines scored.", nullable=True),
        },
    )
    return _object(
        "Observed state, written by the operator only.",
        {
            "phase": _string(
                "Pending, Provisioning (creating or waiting for the Dask cluster), "
                "Running, Succeeded or Failed.",
                enum=list(PHASES),
            ),
            "observedGeneration": _integer(
                "metadata.generation the phase refers to.", format="int64"
            ),
            "conditions": {
                "type": "array",
                "description": "Conditions: ClusterReady, Running, Complete, Failed.",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "startTime": _string(
                "When the operator started on this generation; the deadline counts from here.",
                format="date-time",
                nullable=True,
            ),
            "completionTime": _string(
                "When the analysis reached Succeeded or Failed; the TTL counts from here.",
                format="date-time",
                nullable=True,
            ),
            "durationSeconds": _figure("Seconds from startTime to completionTime."),
            "attempts": _integer(
                "How often the run was started for this generation (more than one after a "
                "lost scheduler connection or an operator restart).",
            ),
            "tickerCount": _integer("Number of securities requested."),
            "workers": _string(
                "Worker bounds of the created cluster (min-max), or 'external' when an "
                "existing scheduler is reused."
            ),
            "daskCluster": _object(
                "The Dask cluster the analysis runs on.",
                {
                    "name": _string(
                        "Name of the DaskCluster, recorded before it is created so that a "
                        "restarted operator never creates a second one.",
                        nullable=True,
                    ),
                    "owned": {
                        "type": "boolean",
                        "description": "True when the operator created the cluster.",
                    },
                    "phase": _string("Last observed DaskCluster status.phase.", nullable=True),
                    "schedulerAddress": _string("Address the analysis connects to.", nullable=True),
                    "dashboardURL": _string("Dask dashboard URL.", nullable=True),
                    "image": _string("Image of the created cluster.", nullable=True),
                },
            ),
            "progress": _object(
                "Progress of the running analysis.",
                {
                    "stage": _string("Current stage."),
                    "done": _integer("Units finished in this stage."),
                    "total": _integer("Units in this stage."),
                },
                nullable=True,
            ),
            "securitiesAnalyzed": _integer("Securities analysed successfully."),
            "securitiesFailed": _integer("Securities that failed."),
            "failures": {
                "type": "array",
                "description": f"Failed securities with reasons (first {MAX_STATUS_ROWS}; "
                "the report ConfigMap lists all).",
                "items": failure,
            },
            "summary": _object(
                "Summary of the comprehensive report.",
                {
                    "avgRsi": _figure("Average 14-day RSI."),
                    "avgSma20": _figure("Average 20-day SMA."),
                    "avgSentiment": _figure("Average news sentiment (VADER compound)."),
                    "positiveSentiment": _integer(
                        "Securities with positive sentiment.", nullable=True
                    ),
                    "negativeSentiment": _integer(
                        "Securities with negative sentiment.", nullable=True
                    ),
                },
            ),
            "portfolio": _object(
                "Portfolio figures over the analysed period.",
                {
                    "totalReturn": _figure("Total return, 0.1 = 10%."),
                    "annualizedReturn": _figure("Annualised return."),
                    "annualizedVolatility": _figure("Annualised volatility."),
                    "sharpeRatio": _figure("Annualised Sharpe ratio."),
                    "maxDrawdown": _figure("Largest peak-to-trough fall (0.2 = 20%)."),
                    "var95": _figure("Historical one-day 95% value at risk."),
                    "cvar95": _figure("Historical one-day 95% conditional VaR."),
                    "beta": _figure("Beta against spec.benchmark."),
                    "marketValue": _figure("Market value of the holdings."),
                },
            ),
            "results": {
                "type": "array",
                "description": f"Per-security key figures (first {MAX_STATUS_ROWS}; the report "
                "ConfigMap holds all).",
                "items": row,
            },
            "resultsTruncated": {
                "type": "boolean",
                "description": "True when results or failures list only the first rows.",
            },
            "reportConfigMap": _string(
                "ConfigMap (owned by this resource) holding the full JSON report.",
                nullable=True,
            ),
        },
    )


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition of PortfolioAnalysis, as applied to the API server."""
    printer_columns = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Tickers",
            "type": "integer",
            "jsonPath": ".status.tickerCount",
            "description": "Number of securities requested",
        },
        {
            "name": "Workers",
            "type": "string",
            "jsonPath": ".status.workers",
            "description": "Autoscaler bounds, or external",
        },
        {
            "name": "Sentiment",
            "type": "number",
            "jsonPath": ".status.summary.avgSentiment",
            "description": "Average news sentiment",
        },
        {
            "name": "Duration",
            "type": "number",
            "jsonPath": ".status.durationSeconds",
            "description": "Seconds from start to completion",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "portfolio-operator"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["all", "portfolio"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer_columns,
                    "schema": {
                        "openAPIV3Schema": _object(
                            "A portfolio analysis run on Dask: prices, technical indicators, "
                            "news sentiment and portfolio figures for a list of securities.",
                            {
                                "apiVersion": _string("API version of this object."),
                                "kind": _string("Kind of this object."),
                                "metadata": {"type": "object"},
                                "spec": _spec_schema(),
                                "status": _status_schema(),
                            },
                            required=["spec"],
                        )
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as YAML text, exactly as committed in manifests/crd.yaml."""
    header = (
        "# Generated by `python -m portfolio_operator.crd` from operator/portfolio_operator/crd.py;"
        " do not edit.\n"
    )
    return header + yaml.safe_dump(crd_manifest(), sort_keys=False, width=100)


# --------------------------------------------------------------------------------------------
# Spec parsing: from the stored object to the library's arguments.


@dataclass(frozen=True)
class ClusterSpec:
    """Where the analysis runs."""

    scheduler_address: str | None = None
    image: str | None = None
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Mapping[str, str | int]] = field(default_factory=dict)
    min_workers: int = 1
    max_workers: int = 4
    on_completion: str = "Delete"


@dataclass(frozen=True)
class AnalysisRequest:
    """A validated spec: everything one run needs."""

    tickers: tuple[str, ...]
    holdings: Mapping[str, float] | None
    analyses: tuple[str, ...]
    config_options: Mapping[str, Any]
    cluster: ClusterSpec
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of run_combined_analysis, except scheduler, cancel and progress."""
        from portfolio_analysis.config import AnalysisConfig

        return {
            "tickers": None if self.holdings else list(self.tickers),
            "holdings": dict(self.holdings) if self.holdings else None,
            "analyses": self.analyses,
            "config": AnalysisConfig(**self.config_options),
        }


def _check_ticker(value: object, where: str) -> str:
    if not isinstance(value, str) or not _TICKER_RE.match(value):
        raise SpecError(
            f"{where} is {value!r}: use an upper-case ticker symbol such as AAPL or BRK.B "
            f"(pattern {TICKER_PATTERN})"
        )
    return value


def _check_choices(values: object, allowed: Sequence[str], where: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not values:
        raise SpecError(f"{where} must be a non-empty list chosen from {', '.join(allowed)}")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise SpecError(f"{where} has unknown value(s) {unknown}: choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(values))


def _check_int(spec: Mapping[str, Any], key: str, where: str, low: int, high: int | None) -> int:
    value = spec[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise SpecError(f"{where}.{key} is {value!r}: use a whole number of at least {low}")
    if high is not None and value > high:
        raise SpecError(f"{where}.{key} is {value}: use at most {high}")
    return value


def parse_spec(spec: Mapping[str, Any]) -> AnalysisRequest:
    """Validate a PortfolioAnalysis spec and turn it into an AnalysisRequest.

    Mirrors the CRD's validation (the API server normally refuses bad specs first) and fills
    the same defaults, so objects stored under an older schema behave the same.
    """
    has_tickers, has_holdings = spec.get("tickers") is not None, spec.get("holdings") is not None
    if has_tickers == has_holdings:
        raise SpecError("give exactly one of spec.tickers or spec.holdings")
    holdings: dict[str, float] | None = None
    if has_tickers:
        raw = spec["tickers"]
        if not isinstance(raw, list) or not raw:
            raise SpecError("spec.tickers must be a non-empty list of ticker symbols")
        tickers = tuple(_check_ticker(t, f"spec.tickers[{i}]") for i, t in enumerate(raw))
        if len(set(tickers)) != len(tickers):
            raise SpecError("spec.tickers lists a ticker twice: list each ticker once")
    else:
        raw = spec["holdings"]
        if not isinstance(raw, list) or not raw:
            raise SpecError("spec.holdings must be a non-empty list of {ticker, shares}")
        holdings = {}
        for i, item in enumerate(raw):
            where = f"spec.holdings[{i}]"
            if not isinstance(item, Mapping):
                raise SpecError(f"{where} must be an object with ticker and shares")
            ticker = _check_ticker(item.get("ticker"), f"{where}.ticker")
            shares = item.get("shares")
            if isinstance(shares, bool) or not isinstance(shares, int | float) or shares <= 0:
                raise SpecError(f"{where}.shares is {shares!r}: use a number greater than zero")
            if ticker in holdings:
                raise SpecError(f"{where}: {ticker} is listed twice; merge the positions")
            holdings[ticker] = float(shares)
        tickers = tuple(holdings)
    if len(tickers) > MAX_TICKERS:
        raise SpecError(f"{len(tickers)} securities requested: at most {MAX_TICKERS} per resource")

    analyses = _check_choices(spec.get("analyses", list(ANALYSES)), ANALYSES, "spec.analyses")
    if {"technicals", "portfolio"} & set(analyses) and "pricing" not in analyses:
        analyses = ("pricing", *analyses)
    options: dict[str, Any] = {
        "price_sources": _check_choices(
            spec.get("priceSources", ["embedded"]), PRICE_SOURCES, "spec.priceSources"
        ),
        "news_sources": _check_choices(
            spec.get("newsSources", ["embedded"]), NEWS_SOURCES, "spec.newsSources"
        ),
        "lookback_days": _check_int(
            {"lookbackDays": 365, **spec}, "lookbackDays", "spec", 60, 36500
        ),
    }
    rate = spec.get("riskFreeRate", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not -1 <= rate <= 1:
        raise SpecError(f"spec.riskFreeRate is {rate!r}: use an annual rate such as 0.03")
    options["risk_free_rate"] = float(rate)
    if spec.get("benchmark") is not None:
        options["benchmark"] = _check_ticker(spec["benchmark"], "spec.benchmark")
    if spec.get("endDate") is not None:
        try:
            options["end"] = date.fromisoformat(str(spec["endDate"]))
        except ValueError:
            raise SpecError(
                f"spec.endDate is {spec['endDate']!r}: use a date as YYYY-MM-DD"
            ) from None

    return AnalysisRequest(
        tickers=tickers,
        holdings=holdings,
        analyses=analyses,
        config_options=options,
        cluster=_parse_cluster(spec.get("cluster") or {}),
        active_deadline_seconds=_optional_int(spec, "activeDeadlineSeconds", 1),
        ttl_seconds_after_finished=_optional_int(spec, "ttlSecondsAfterFinished", 0),
    )


def _optional_int(spec: Mapping[str, Any], key: str, low: int) -> int | None:
    return None if spec.get(key) is None else _check_int(spec, key, "spec", low, None)


def _parse_cluster(cluster: Mapping[str, Any]) -> ClusterSpec:
    where = "spec.cluster"
    address = cluster.get("schedulerAddress")
    if address is not None and (not isinstance(address, str) or not _ADDRESS_RE.match(address)):
        raise SpecError(
            f"{where}.schedulerAddress is {address!r}: use a Dask address such as "
            "tcp://my-dask-scheduler.my-namespace:8786"
        )
    values = {"minWorkers": 1, "maxWorkers": 4, **cluster}
    low = _check_int(values, "minWorkers", where, 0, MAX_WORKERS)
    high = _check_int(values, "maxWorkers", where, 1, MAX_WORKERS)
    if low > high:
        raise SpecError(
            f"{where}.minWorkers must be less than or equal to {where}.maxWorkers "
            f"(got {low} > {high})"
        )
    policy = cluster.get("onCompletion", "Delete")
    if policy not in CLUSTER_POLICIES:
        raise SpecError(f"{where}.onCompletion is {policy!r}: use Delete or Keep")
    return ClusterSpec(
        scheduler_address=address,
        image=cluster.get("image") or None,
        image_pull_policy=cluster.get("imagePullPolicy", "IfNotPresent"),
        resources={k: dict(v) for k, v in (cluster.get("resources") or {}).items() if v},
        min_workers=low,
        max_workers=high,
        on_completion=policy,
    )


def main() -> None:
    """Print the CRD YAML (``python -m portfolio_operator.crd > manifests/crd.yaml``)."""
    sys.stdout.write(crd_yaml())


if __name__ == "__main__":
    main()
