"""The PortfolioAnalysis CustomResourceDefinition, generated from Python.

`crd_manifest()` is the CRD that `manifests/crd.yaml` (and the Helm chart's copy) is generated
from: ``python -m portfolio_operator.schema > manifests/crd.yaml`` (``make chart-sync``). Its
limits, patterns, choices and defaults come from where the parser (spec.py) and the library
(``portfolio_analysis.vocabulary``, ``AnalysisConfig``) define them, so the API server and the
operator accept the same specs.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from portfolio_analysis.config import RISK_FREE_RATE_RANGE
from portfolio_analysis.vocabulary import (
    ANALYSES,
    EMBEDDED_DATASETS,
    NEWS_SOURCES,
    PRICE_SOURCES,
    TICKER_PATTERN,
)

from portfolio_operator.constants import (
    APP_NAME_LABEL,
    COMPONENT,
    CONDITION_TYPES,
    CRD_NAME,
    GROUP,
    KIND,
    PHASES,
    PLURAL,
    REPORTS_PATH,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
)
from portfolio_operator.spec import (
    CLUSTER_DEFAULTS,
    CLUSTER_POLICIES,
    CONFIGMAP_KEY_PATTERN,
    CONFIGMAP_NAME_PATTERN,
    LOOKBACK_DAYS_RANGE,
    MAX_CONFIGMAP_NAME,
    MAX_DATE_LENGTH,
    MAX_TICKER_LENGTH,
    MAX_TICKERS,
    MAX_WORKERS,
    MIN_STARTUP_DEADLINE,
    ONE_SECURITY_FIELD,
    PULL_POLICIES,
    QUANTITY_PATTERN,
    SCHEDULER_ADDRESS_PATTERN,
    SECURITY_FIELDS,
    UNIVERSES,
    analysis_default,
)
from portfolio_operator.status import MAX_COVERAGE_EXAMPLES, MAX_STATUS_ROWS

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
    return _string(description, pattern=TICKER_PATTERN, maxLength=MAX_TICKER_LENGTH)


def _quantity(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
        "pattern": QUANTITY_PATTERN,
        "maxLength": 64,
    }


def _resources_schema(pods: str = "each Dask worker and of the scheduler pod") -> dict[str, Any]:
    def amounts(what: str) -> dict[str, Any]:
        return _object(
            f"{what} of {pods}.",
            {
                "cpu": _quantity(f"CPU {what.lower()}, e.g. 500m or 2."),
                "memory": _quantity(f"Memory {what.lower()}, e.g. 2Gi."),
            },
        )

    return _object(
        f"Compute resources of {pods}.",
        {"requests": amounts("Requests"), "limits": amounts("Limits")},
    )


def _string_map(description: str, **values: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {"type": "string", **values},
    }


def _placement_schema() -> dict[str, Any]:
    """Where the scheduler and worker pods may run; copied as given into both pod specs."""
    toleration = _object(
        "A toleration, as in a pod spec.",
        {
            "key": _string(
                "Taint key; empty with operator Exists matches every key.", maxLength=317
            ),
            "operator": _string("Exists or Equal (the default).", enum=["Exists", "Equal"]),
            "value": _string("Taint value, with operator Equal.", maxLength=63),
            "effect": _string(
                "Taint effect to tolerate; empty means all.",
                enum=["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ),
            "tolerationSeconds": _integer(
                "How long a NoExecute taint is tolerated.", format="int64"
            ),
        },
    )
    return {
        "nodeSelector": _string_map(
            "Node labels the scheduler and worker pods must run on, as in a pod spec.",
            maxLength=63,
        ),
        "tolerations": {
            "type": "array",
            "description": "Taints the scheduler and worker pods tolerate, as in a pod spec.",
            "items": toleration,
            "maxItems": 32,
        },
        "affinity": {
            "type": "object",
            "description": "Node and pod (anti-)affinity of the scheduler and worker pods, as in "
            "a pod spec (nodeAffinity, podAffinity, podAntiAffinity).",
            "x-kubernetes-preserve-unknown-fields": True,
        },
        "imagePullSecrets": {
            "type": "array",
            "description": "Secrets in this namespace for pulling the image, as in a pod spec.",
            "items": _object(
                "A Secret of type kubernetes.io/dockerconfigjson.",
                {"name": _string("Name of the Secret.", maxLength=253)},
            ),
            "maxItems": 16,
        },
        "serviceAccountName": _string(
            "ServiceAccount of the scheduler and worker pods (default: the namespace's default).",
            maxLength=253,
            pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        ),
        "podLabels": _string_map(
            "Labels added to the scheduler and worker pods (dask.org/ keys are refused).",
            maxLength=63,
        ),
        "podAnnotations": _string_map(
            "Annotations added to the scheduler and worker pods.", maxLength=4096
        ),
    }


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
                enum=list(PULL_POLICIES),
                default=CLUSTER_DEFAULTS.image_pull_policy,
            ),
            "resources": _resources_schema(),
            "schedulerResources": _resources_schema("the scheduler pod (instead of resources)"),
            "workerResources": _resources_schema("each Dask worker (instead of resources)"),
            **_placement_schema(),
            "minWorkers": _integer(
                "Fewest Dask workers the autoscaler keeps; also the initial worker count.",
                minimum=0,
                maximum=MAX_WORKERS,
                default=CLUSTER_DEFAULTS.min_workers,
            ),
            "maxWorkers": _integer(
                "Most Dask workers the autoscaler may start.",
                minimum=1,
                maximum=MAX_WORKERS,
                default=CLUSTER_DEFAULTS.max_workers,
            ),
            "startupDeadlineSeconds": _integer(
                "Seconds a created Dask cluster may take to run its scheduler (pods pulled, "
                "scheduled and started) before the analysis fails with reason "
                "StartupDeadlineExceeded and the last pod problem.",
                minimum=MIN_STARTUP_DEADLINE,
                default=CLUSTER_DEFAULTS.startup_deadline_seconds,
                format="int64",
            ),
            "onCompletion": _string(
                "What happens to the created Dask cluster when the analysis has finished: "
                "Delete it (the default) or Keep it for inspection.",
                enum=list(CLUSTER_POLICIES),
                default=CLUSTER_DEFAULTS.on_completion,
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

    def configmap_source(what: str) -> dict[str, Any]:
        return _object(
            f"{what} from a key of a ConfigMap in this namespace (no 2000-entry limit; a "
            "ConfigMap holds up to 1 MiB). The operator reads it when the analysis starts.",
            {
                "configMapKeyRef": _object(
                    "The ConfigMap and key.",
                    {
                        "name": _string(
                            "Name of the ConfigMap (in this resource's namespace).",
                            pattern=CONFIGMAP_NAME_PATTERN,
                            maxLength=MAX_CONFIGMAP_NAME,
                        ),
                        "key": _string(
                            "Key in the ConfigMap's data.",
                            pattern=CONFIGMAP_KEY_PATTERN,
                            maxLength=MAX_CONFIGMAP_NAME,
                        ),
                    },
                    required=["name", "key"],
                )
            },
            required=["configMapKeyRef"],
        )

    return _object(
        "What to analyse and where. Give exactly one of "
        + ", ".join(SECURITY_FIELDS[:-1])
        + f" or {SECURITY_FIELDS[-1]}.",
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
            "universe": _string(
                "A named universe, as the CLI's --universe: sample (the sample portfolio's "
                "holdings) or sp500 (every ticker of the embedded S&P 500 set, 2009-2010, equal "
                "weights). Its own embedded data set then serves its tickers first.",
                enum=list(UNIVERSES),
            ),
            "tickersFrom": configmap_source(
                "Ticker symbols separated by commas, spaces or newlines (lines starting with # "
                "are comments), read like the CLI's --tickers,"
            ),
            "holdingsFrom": configmap_source(
                "Holdings as the CLI's --holdings file: CSV (header ticker,shares) when the key "
                "ends in .csv, YAML (TICKER: shares) when it ends in .yaml or .yml,"
            ),
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
                "default": list(analysis_default("price_sources")),
                "x-kubernetes-list-type": "set",
            },
            "embeddedDatasets": {
                "type": "array",
                "description": "Embedded data sets the 'embedded' price source reads, in this "
                "order; the first holding a ticker serves it. Default: the universe's own set "
                f"first, else {', '.join(analysis_default('embedded_datasets'))}. Put sp500 "
                "first to price a list of S&P tickers on the same dates as universe sp500.",
                "items": _string("One embedded data set.", enum=list(EMBEDDED_DATASETS)),
                "minItems": 1,
                "x-kubernetes-list-type": "set",
            },
            "newsSources": {
                "type": "array",
                "description": "Headline sources tried in this order.",
                "items": _string("One news source.", enum=list(NEWS_SOURCES)),
                "minItems": 1,
                "default": list(analysis_default("news_sources")),
                "x-kubernetes-list-type": "set",
            },
            "lookbackDays": _integer(
                "Calendar days of price history to analyse, counted back from endDate "
                "(or from the newest data a source has).",
                minimum=LOOKBACK_DAYS_RANGE[0],
                maximum=LOOKBACK_DAYS_RANGE[1],
                default=analysis_default("lookback_days"),
            ),
            "endDate": _string(
                "Last date of the analysed period (YYYY-MM-DD); omit for the newest data.",
                format="date",
                maxLength=MAX_DATE_LENGTH,
            ),
            "riskFreeRate": _number(
                "Annual risk-free rate for the Sharpe ratio, e.g. 0.03 for 3%.",
                minimum=RISK_FREE_RATE_RANGE[0],
                exclusiveMinimum=True,
                maximum=RISK_FREE_RATE_RANGE[1],
                default=analysis_default("risk_free_rate"),
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
                    "rule": "["
                    + ", ".join(f"has(self.{name})" for name in SECURITY_FIELDS)
                    + "].filter(given, given).size() == 1",
                    "message": ONE_SECURITY_FIELD,
                }
            ]
        },
    )


def _status_schema() -> dict[str, Any]:
    condition = _object(
        "One condition in Kubernetes convention.",
        {
            "type": _string(
                f"Condition type: {', '.join(CONDITION_TYPES[:-1])} or {CONDITION_TYPES[-1]}. "
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
            "nextAttemptTime": _string(
                "When a run that failed for a reason that may heal is started again (the "
                "retry backoff); empty otherwise.",
                format="date-time",
                nullable=True,
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
                    "coverage": _object(
                        "Which securities the portfolio figures cover, over which window "
                        "(empty when the analysis library reports no coverage).",
                        {
                            "tickers": _string(
                                "Tickers used / asked, e.g. 492/523.", nullable=True
                            ),
                            "tickersAsked": _integer("Tickers requested.", nullable=True),
                            "tickersUsed": _integer(
                                "Tickers the portfolio figures use.", nullable=True
                            ),
                            "start": _string("First date of the window.", nullable=True),
                            "end": _string("Last date of the window.", nullable=True),
                            "returns": _integer("Daily returns in the window.", nullable=True),
                            "rule": _string(
                                "How the window was chosen and gaps handled.", nullable=True
                            ),
                            "excluded": _integer("Tickers left out of the portfolio figures."),
                            "excludedExamples": {
                                "type": "array",
                                "description": f"The first {MAX_COVERAGE_EXAMPLES} tickers left "
                                "out, with the reason (the report ConfigMap lists all).",
                                "items": _object(
                                    "A ticker left out.",
                                    {
                                        "ticker": _string("Ticker symbol."),
                                        "reason": _string("Why it was left out."),
                                    },
                                ),
                            },
                        },
                        nullable=True,
                    ),
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
            "reportURL": _string(
                f"Path of the HTML report on the operator's HTTP server ({REPORTS_PATH}/"
                "<namespace>/<name>, relative to the operator's Service; "
                "`kubectl port-forward` to it, see docs/operator.md).",
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
            "name": "Coverage",
            "type": "string",
            "jsonPath": ".status.portfolio.coverage.tickers",
            "description": "Tickers the portfolio figures use / tickers asked",
        },
        {
            "name": "Duration",
            "type": "number",
            "jsonPath": ".status.durationSeconds",
            "description": "Seconds from start to completion",
        },
        {
            "name": "Reason",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Failed")].reason',
            "description": "Why it failed (Completed once it succeeded)",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {APP_NAME_LABEL: COMPONENT},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
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
        "# Generated by `python -m portfolio_operator.schema` from "
        "operator/portfolio_operator/schema.py; do not edit.\n"
    )
    return header + yaml.safe_dump(crd_manifest(), sort_keys=False, width=100)


def main() -> None:
    """Print the CRD YAML (``python -m portfolio_operator.schema > manifests/crd.yaml``)."""
    sys.stdout.write(crd_yaml())


if __name__ == "__main__":
    main()
