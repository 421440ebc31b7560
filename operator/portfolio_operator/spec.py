"""A PortfolioAnalysis spec, checked and turned into the library's arguments.

`parse_spec()` re-checks everything the API server validates (an object stored under an older
schema still gets a message that says what to fix) and builds the library's `AnalysisConfig`
right away, so that every invalid spec is found when the resource is first observed, before any
cluster exists. The limits, patterns and defaults here are also what schema.py writes into the
CRD: one definition for both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import date
from typing import Any

from portfolio_analysis.config import MAX_LOOKBACK_DAYS, RISK_FREE_RATE_RANGE, AnalysisConfig
from portfolio_analysis.vocabulary import (
    ANALYSES,
    EMBEDDED_DATASETS,
    NEWS_SOURCES,
    PRICE_SOURCES,
    TICKER_PATTERN,
    TICKER_RE,
    UNIVERSE_DATASET_ORDER,
    security,
)

MAX_TICKERS = 2000
MAX_WORKERS = 100
MAX_TICKER_LENGTH = 16
LOOKBACK_DAYS_RANGE = (60, MAX_LOOKBACK_DAYS)
CLUSTER_POLICIES = ("Delete", "Keep")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
# Kubernetes' resource.Quantity, as controller-gen writes it into CRDs.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
SCHEDULER_ADDRESS_PATTERN = r"^(tcp|tls|ws|wss|ucx)://[^\s/]+(:[0-9]{1,5})?$"
_ADDRESS_RE = re.compile(SCHEDULER_ADDRESS_PATTERN)
# Pod placement fields of spec.cluster, copied as given into the scheduler and worker pod specs
# (the API server validated their shape against the schema; the kubelet does the rest).
PLACEMENT_FIELDS = (
    "nodeSelector",
    "tolerations",
    "affinity",
    "imagePullSecrets",
    "serviceAccountName",
)
# Label keys and values as Kubernetes accepts them (prefix optional).
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_LABEL_VALUE_RE = re.compile(LABEL_VALUE_PATTERN)
_LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# dask-kubernetes selects its pods by these; a user's pod label must not change them.
RESERVED_LABEL_PREFIX = "dask.org/"
MAX_DATE_LENGTH = 10  # YYYY-MM-DD
MIN_STARTUP_DEADLINE = 30
# The CLI's --universe choices: each embedded data set is also a universe (vocabulary.py).
UNIVERSES = tuple(UNIVERSE_DATASET_ORDER)
# The ways a spec names its securities; exactly one is given.
SECURITY_FIELDS = ("tickers", "holdings", "universe", "tickersFrom", "holdingsFrom")
# ConfigMap names and keys as Kubernetes accepts them (DNS subdomain; [-._a-zA-Z0-9]+).
CONFIGMAP_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONFIGMAP_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
ONE_SECURITY_FIELD = (
    f"give exactly one of {', '.join(f'spec.{n}' for n in SECURITY_FIELDS[:-1])} "
    f"or spec.{SECURITY_FIELDS[-1]}"
)
_CONFIGMAP_NAME_RE = re.compile(CONFIGMAP_NAME_PATTERN)
_CONFIGMAP_KEY_RE = re.compile(CONFIGMAP_KEY_PATTERN)
MAX_CONFIGMAP_NAME = 253
# How long a missing ConfigMap (or key) of tickersFrom/holdingsFrom is waited for, counted from
# status.startTime, before the analysis fails: `kubectl apply -f dir/` may create the
# PortfolioAnalysis a moment before its ConfigMap. Between looks the wait grows to at most
# INPUT_RETRY_MAX_SECONDS.
INPUT_WAIT_SECONDS = 120
INPUT_RETRY_MAX_SECONDS = 10.0


class SpecError(ValueError):
    """A PortfolioAnalysis spec that cannot run; the message says which field to fix."""


class InputMissing(SpecError):
    """The ConfigMap (or its key) that tickersFrom/holdingsFrom names is not there (yet).

    `request` is the rest of the spec, parsed (no securities), so that the cluster policy, the
    deadline and the TTL still apply while the operator waits or after it gave up.
    """

    request: AnalysisRequest | None = None


@dataclass(frozen=True)
class ConfigMapKeyRef:
    """Where tickersFrom/holdingsFrom points: a key of a ConfigMap in the resource's namespace."""

    field: str  # "tickersFrom" or "holdingsFrom"
    name: str
    key: str

    @property
    def where(self) -> str:
        return f"spec.{self.field}.configMapKeyRef"

    def describe(self) -> str:
        return f"ConfigMap {self.name} (key {self.key})"


def configmap_ref(spec: Mapping[str, Any]) -> ConfigMapKeyRef | None:
    """The ConfigMap key the spec takes its securities from, or None (also when malformed:
    parse_spec then says what to fix)."""
    for field_name in ("tickersFrom", "holdingsFrom"):
        source = spec.get(field_name)
        ref = source.get("configMapKeyRef") if isinstance(source, Mapping) else None
        if not isinstance(ref, Mapping):
            continue
        name, key = ref.get("name"), ref.get("key")
        if (
            isinstance(name, str)
            and isinstance(key, str)
            and len(name) <= MAX_CONFIGMAP_NAME
            and _CONFIGMAP_NAME_RE.match(name)
            and _CONFIGMAP_KEY_RE.match(key)
        ):
            return ConfigMapKeyRef(field_name, name, key)
    return None


@dataclass(frozen=True)
class ClusterSpec:
    """Where the analysis runs. The field defaults are the CRD's defaults too."""

    scheduler_address: str | None = None
    image: str | None = None
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Mapping[str, str | int]] = field(default_factory=dict)
    min_workers: int = 1
    max_workers: int = 4
    on_completion: str = "Delete"
    # Overrides of `resources` for one role, when given.
    scheduler_resources: Mapping[str, Mapping[str, str | int]] | None = None
    worker_resources: Mapping[str, Mapping[str, str | int]] | None = None
    # nodeSelector, tolerations, affinity, imagePullSecrets, serviceAccountName, as given.
    placement: Mapping[str, Any] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    # How long a created cluster may take to run its scheduler before the analysis fails.
    startup_deadline_seconds: int = 600


CLUSTER_DEFAULTS = ClusterSpec()


def analysis_default(name: str) -> Any:
    """The library's default for one `AnalysisConfig` field (the CRD's default for it too)."""
    (found,) = [f for f in fields(AnalysisConfig) if f.name == name]
    assert found.default is not MISSING, f"AnalysisConfig.{name} has no plain default"
    return found.default


@dataclass(frozen=True)
class AnalysisRequest:
    """A validated spec: everything one run needs."""

    tickers: tuple[str, ...]
    holdings: Mapping[str, float] | None
    analyses: tuple[str, ...]
    config: AnalysisConfig
    cluster: ClusterSpec
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of run_combined_analysis, except scheduler, cancel and progress."""
        return {
            "tickers": None if self.holdings else list(self.tickers),
            "holdings": dict(self.holdings) if self.holdings else None,
            "analyses": self.analyses,
            "config": self.config,
        }


def _check_ticker(value: object, where: str) -> str:
    if not isinstance(value, str) or not TICKER_RE.match(value):
        raise SpecError(
            f"{where} is {_shown(value)}: use an upper-case ticker symbol such as AAPL or BRK.B "
            f"(pattern {TICKER_PATTERN})"
        )
    return value


def _check_choices(values: object, allowed: Sequence[str], where: str) -> tuple[str, ...]:
    if not isinstance(values, list | tuple) or not values:
        raise SpecError(f"{where} must be a non-empty list chosen from {', '.join(allowed)}")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise SpecError(f"{where} has unknown value(s) {unknown}: choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(values))


def _check_int(value: object, where: str, low: int, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise SpecError(f"{where} is {_shown(value)}: use a whole number of at least {low}")
    if high is not None and value > high:
        raise SpecError(f"{where} is {value}: use at most {high}")
    return value


def _optional_int(spec: Mapping[str, Any], key: str, low: int) -> int | None:
    return None if spec.get(key) is None else _check_int(spec[key], f"spec.{key}", low)


def _securities(
    spec: Mapping[str, Any], configmap_data: Mapping[str, str] | None
) -> tuple[tuple[str, ...], dict[str, float] | None]:
    """The tickers, and the holdings (ticker -> shares) when the spec gives holdings."""
    given = [name for name in SECURITY_FIELDS if spec.get(name) is not None]
    if len(given) != 1:
        raise SpecError(ONE_SECURITY_FIELD + (
            f" (got {' and '.join(f'spec.{g}' for g in given)})" if given else ""
        ))  # fmt: skip
    (chosen,) = given
    if chosen == "universe":
        return _universe(spec["universe"])
    if chosen in ("tickersFrom", "holdingsFrom"):
        return _from_configmap(spec, chosen, configmap_data)
    if chosen == "tickers":
        raw = spec["tickers"]
        if not isinstance(raw, list) or not raw:
            raise SpecError("spec.tickers must be a non-empty list of ticker symbols")
        tickers = tuple(_check_ticker(t, f"spec.tickers[{i}]") for i, t in enumerate(raw))
        if len({security(t) for t in tickers}) != len(tickers):
            raise SpecError("spec.tickers lists a ticker twice: list each ticker once")
        holdings = None
    else:
        raw = spec["holdings"]
        if not isinstance(raw, list) or not raw:
            raise SpecError("spec.holdings must be a non-empty list of {ticker, shares}")
        holdings = {}
        listed: set[str] = set()  # securities, so BRK.B and BRK-B are one
        for i, item in enumerate(raw):
            where = f"spec.holdings[{i}]"
            if not isinstance(item, Mapping):
                raise SpecError(f"{where} must be an object with ticker and shares")
            ticker = _check_ticker(item.get("ticker"), f"{where}.ticker")
            shares = item.get("shares")
            if isinstance(shares, bool) or not isinstance(shares, int | float) or shares <= 0:
                raise SpecError(
                    f"{where}.shares is {_shown(shares)}: use a number greater than zero"
                )
            if security(ticker) in listed:
                raise SpecError(f"{where}: {ticker} is listed twice; merge the positions")
            listed.add(security(ticker))
            holdings[ticker] = float(shares)
        tickers = tuple(holdings)
    if len(tickers) > MAX_TICKERS:
        raise SpecError(
            f"{len(tickers)} securities requested: at most {MAX_TICKERS} in spec.{chosen}; "
            "name more with spec.universe, spec.tickersFrom or spec.holdingsFrom (a ConfigMap)"
        )
    return tickers, holdings


def _universe(name: object) -> tuple[tuple[str, ...], dict[str, float] | None]:
    """A universe as the CLI's ``--universe`` runs it: sample is the sample portfolio's
    holdings, sp500 every ticker of the embedded S&P set at equal weights."""
    from portfolio_analysis import embedded, pipeline

    if name not in UNIVERSES:
        raise SpecError(f"spec.universe is {_shown(name)}: choose from {', '.join(UNIVERSES)}")
    if name == "sample":  # what the CLI runs for --universe sample (and with no request)
        _, holdings = pipeline.resolve_request(None, None)
        assert holdings is not None
        return tuple(holdings), holdings
    return tuple(embedded.universe_tickers(str(name))), None


def _from_configmap(
    spec: Mapping[str, Any], field_name: str, data: Mapping[str, str] | None
) -> tuple[tuple[str, ...], dict[str, float] | None]:
    """Tickers or holdings from the text of a ConfigMap key (data: the ConfigMap's data, None
    when it does not exist). A ConfigMap holds up to 1 MiB, so no count limit applies here."""
    where = f"spec.{field_name}.configMapKeyRef"
    ref = configmap_ref({field_name: spec[field_name]})
    if ref is None or ref.field != field_name:
        raise SpecError(
            f"{where} needs the name of a ConfigMap in this namespace and one of its keys, "
            "e.g. {configMapKeyRef: {name: my-tickers, key: tickers.txt}}"
        )
    if data is None:
        raise InputMissing(
            f"{ref.describe()} named by {where} does not exist in this namespace: create it"
        )
    if ref.key not in data:
        keys = ", ".join(sorted(data)) or "none"
        raise InputMissing(
            f"ConfigMap {ref.name} has no key {ref.key} (its keys: {keys}): add the key or "
            f"fix {where}.key"
        )
    text = data[ref.key]
    if field_name == "tickersFrom":
        return _tickers_from_text(text, ref), None
    holdings = _holdings_from_text(text, ref)
    for ticker in holdings:
        _check_ticker(ticker, f"{ref.describe()}: holding")
    return tuple(holdings), holdings


def _tickers_from_text(text: str, ref: ConfigMapKeyRef) -> tuple[str, ...]:
    """Tickers separated by commas, spaces or newlines, read like the CLI's --tickers
    (upper-cased, duplicates kept once); lines starting with # are comments."""
    from portfolio_analysis.pipeline import normalize_tickers

    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    tickers = normalize_tickers(re.split(r"[,\s]+", "\n".join(lines)))
    if not tickers:
        raise SpecError(
            f"{ref.describe()} lists no tickers: write them like AAPL,MSFT or one a line"
        )
    for i, ticker in enumerate(tickers):
        _check_ticker(ticker, f"{ref.describe()}: ticker {i + 1}")
    return tuple(tickers)


def _holdings_from_text(text: str, ref: ConfigMapKeyRef) -> dict[str, float]:
    """Holdings read by the CLI's own reader (``--holdings FILE``): a CSV ``ticker,shares``
    when the key ends in .csv, YAML ``TICKER: shares`` when it ends in .yaml/.yml; any other key
    is read as CSV when its first line names a ticker and a shares column, else as YAML."""
    import tempfile
    from pathlib import Path

    from portfolio_analysis.cli import UsageError, read_holdings

    suffix = Path(ref.key).suffix.lower()
    if suffix not in (".csv", ".yaml", ".yml"):
        header = {c.strip().lower() for c in (text.lstrip().splitlines() or [""])[0].split(",")}
        csv_like = header & {"ticker", "symbol"} and header & {"shares", "quantity"}
        suffix = ".csv" if csv_like else ".yaml"
    with tempfile.TemporaryDirectory(prefix="pfa-holdings-") as folder:
        path = Path(folder) / f"holdings{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            return read_holdings(path)
        except UsageError as exc:  # the CLI's message, naming the ConfigMap instead of the file
            message = str(exc).replace(f"holdings file {path}", ref.describe())
            raise SpecError(message.replace(str(path), ref.describe())) from None


def _analysis_config(spec: Mapping[str, Any]) -> AnalysisConfig:
    """The library's settings for the spec's sources, period and portfolio options."""
    low, high = LOOKBACK_DAYS_RANGE
    universe = spec.get("universe")
    datasets = spec.get("embeddedDatasets")
    if datasets is None:  # as the CLI: a universe's own data set serves its tickers first
        datasets = UNIVERSE_DATASET_ORDER.get(universe, analysis_default("embedded_datasets"))
    options: dict[str, Any] = {
        "embedded_datasets": _check_choices(datasets, EMBEDDED_DATASETS, "spec.embeddedDatasets"),
        "price_sources": _check_choices(
            spec.get("priceSources", analysis_default("price_sources")),
            PRICE_SOURCES,
            "spec.priceSources",
        ),
        "news_sources": _check_choices(
            spec.get("newsSources", analysis_default("news_sources")),
            NEWS_SOURCES,
            "spec.newsSources",
        ),
        "lookback_days": _check_int(
            spec.get("lookbackDays", analysis_default("lookback_days")),
            "spec.lookbackDays",
            low,
            high,
        ),
    }
    rate = spec.get("riskFreeRate", analysis_default("risk_free_rate"))
    low_rate, high_rate = RISK_FREE_RATE_RANGE
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int | float)
        or not low_rate < rate <= high_rate
    ):
        raise SpecError(
            f"spec.riskFreeRate is {_shown(rate)}: use an annual rate above {low_rate:g} and at "
            f"most {high_rate:g}, such as 0.03"
        )
    options["risk_free_rate"] = float(rate)
    if spec.get("benchmark") is not None:
        options["benchmark"] = _check_ticker(spec["benchmark"], "spec.benchmark")
    if spec.get("endDate") is not None:
        try:
            options["end"] = date.fromisoformat(str(spec["endDate"]))
        except ValueError:
            raise SpecError(
                f"spec.endDate is {_shown(spec['endDate'])}: use a date as YYYY-MM-DD"
            ) from None
    try:
        return AnalysisConfig(**options)
    except (ValueError, TypeError) as exc:  # the library's own checks, in its words
        raise SpecError(f"spec: {exc}") from None


def _parse_cluster(cluster: Mapping[str, Any]) -> ClusterSpec:
    where = "spec.cluster"
    address = cluster.get("schedulerAddress")
    if address is not None and (not isinstance(address, str) or not _ADDRESS_RE.match(address)):
        raise SpecError(
            f"{where}.schedulerAddress is {_shown(address)}: use a Dask address such as "
            "tcp://my-dask-scheduler.my-namespace:8786"
        )
    low = _check_int(
        cluster.get("minWorkers", CLUSTER_DEFAULTS.min_workers),
        f"{where}.minWorkers",
        0,
        MAX_WORKERS,
    )
    high = _check_int(
        cluster.get("maxWorkers", CLUSTER_DEFAULTS.max_workers),
        f"{where}.maxWorkers",
        1,
        MAX_WORKERS,
    )
    if low > high:
        raise SpecError(
            f"{where}.minWorkers must be less than or equal to {where}.maxWorkers "
            f"(got {low} > {high})"
        )
    labels = _check_string_map(cluster.get("podLabels"), f"{where}.podLabels", labels=True)
    annotations = _check_string_map(cluster.get("podAnnotations"), f"{where}.podAnnotations")
    policy = cluster.get("onCompletion", CLUSTER_DEFAULTS.on_completion)
    if policy not in CLUSTER_POLICIES:
        raise SpecError(
            f"{where}.onCompletion is {_shown(policy)}: use {' or '.join(CLUSTER_POLICIES)}"
        )
    pull = cluster.get("imagePullPolicy", CLUSTER_DEFAULTS.image_pull_policy)
    if pull not in PULL_POLICIES:
        raise SpecError(
            f"{where}.imagePullPolicy is {_shown(pull)}: use {', '.join(PULL_POLICIES)}"
        )
    return ClusterSpec(
        scheduler_address=address,
        image=cluster.get("image") or None,
        image_pull_policy=pull,
        resources=_resources(cluster.get("resources")) or {},
        min_workers=low,
        max_workers=high,
        on_completion=policy,
        scheduler_resources=_resources(cluster.get("schedulerResources")),
        worker_resources=_resources(cluster.get("workerResources")),
        placement={k: cluster[k] for k in PLACEMENT_FIELDS if cluster.get(k)},
        pod_labels=labels,
        pod_annotations=annotations,
        startup_deadline_seconds=_check_int(
            cluster.get("startupDeadlineSeconds", CLUSTER_DEFAULTS.startup_deadline_seconds),
            f"{where}.startupDeadlineSeconds",
            MIN_STARTUP_DEADLINE,
        ),
    )


def _resources(value: Mapping[str, Any] | None) -> dict[str, dict[str, Any]] | None:
    """requests/limits with their amounts; None when nothing is given."""
    return {k: dict(v) for k, v in (value or {}).items() if v} or None


def _check_string_map(value: object, where: str, *, labels: bool = False) -> dict[str, str]:
    """A map of strings; with `labels`, keys and values Kubernetes accepts as pod labels."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SpecError(f"{where} must map names to strings")
    if labels:
        for key, item in value.items():
            if not _LABEL_KEY_RE.match(key) or len(key.rpartition("/")[0]) > 253:
                raise SpecError(f"{where} has the invalid label key {_shown(key)}")
            if key.startswith(RESERVED_LABEL_PREFIX):
                raise SpecError(
                    f"{where}.{key}: labels under {RESERVED_LABEL_PREFIX} are dask-kubernetes' own"
                )
            if len(item) > 63 or not _LABEL_VALUE_RE.match(item):
                raise SpecError(
                    f"{where}.{key} is {_shown(item)}: a label value has at most 63 letters, "
                    "digits, - _ or ., starting and ending with a letter or digit"
                )
    return dict(value)


def _shown(value: object, limit: int = 80) -> str:
    """repr(value), cut: an error message echoes what the user wrote, not a megabyte of it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def parse_spec(
    spec: Mapping[str, Any], configmap_data: Mapping[str, str] | None = None
) -> AnalysisRequest:
    """Validate a PortfolioAnalysis spec and turn it into an AnalysisRequest.

    Fills the same defaults as the CRD, so objects stored under an older schema behave the
    same. `configmap_data` is the data of the ConfigMap that spec.tickersFrom/holdingsFrom
    names (None: it does not exist). Raises SpecError naming the field to fix, InputMissing
    when that ConfigMap or key is not there.
    """
    missing: InputMissing | None = None
    try:
        tickers, holdings = _securities(spec, configmap_data)
    except InputMissing as exc:  # the rest is still checked (and a bad rest reported first)
        missing, tickers, holdings = exc, (), None
    analyses = _check_choices(spec.get("analyses", list(ANALYSES)), ANALYSES, "spec.analyses")
    if {"technicals", "portfolio"} & set(analyses) and "pricing" not in analyses:
        analyses = ("pricing", *analyses)
    request = AnalysisRequest(
        tickers=tickers,
        holdings=holdings,
        analyses=analyses,
        config=_analysis_config(spec),
        cluster=_parse_cluster(spec.get("cluster") or {}),
        active_deadline_seconds=_optional_int(spec, "activeDeadlineSeconds", 1),
        ttl_seconds_after_finished=_optional_int(spec, "ttlSecondsAfterFinished", 0),
    )
    if missing is not None:
        missing.request = request
        raise missing
    return request
