"""Status in Kubernetes convention: phase, conditions, the figures of a run, the report ConfigMap.

Pure functions only: they turn observations and results into the dicts the operator patches,
so they are tested without an API server. Every field written here is declared in the CRD's
status schema (schema.py); the API server would silently prune anything else.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from portfolio_analysis.aggregate import jsonable

from portfolio_operator.constants import (
    CONDITION_TYPES,
    FAILED,
    GENERATION_ANNOTATION,
    REPORTS_PATH,
    SUCCEEDED,
    TRUNCATED_ANNOTATION,
)
from portfolio_operator.owners import MAX_OBJECT_NAME, child_metadata, fitted_name

# Per-security rows kept in status (the full list is in the report ConfigMap).
MAX_STATUS_ROWS = 20
# The readable report.json key is kept under this (as before the compressed document).
DEFAULT_REPORT_MAX_BYTES = 900_000
# The API server refuses a ConfigMap whose data and binaryData values add up to more than
# 1 MiB (1,048,576 bytes); both keys together stay under this, a little below it.
REPORT_CONFIGMAP_MAX_BYTES = 1_000_000
REPORT_KEY = "report.json"
# binaryData key: the whole report document (what the CLI writes as report.json), gzipped.
DOCUMENT_KEY = "report.json.gz"


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 with second precision, as Kubernetes writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def get_condition(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> dict | None:
    for item in conditions or ():
        if item.get("type") == type_:
            return dict(item)
    return None


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """A new conditions list with one condition set.

    lastTransitionTime moves only when the status value changes, as the Kubernetes API
    conventions require; the list keeps the CRD's order of condition types.
    """
    value = status if isinstance(status, str) else ("True" if status else "False")
    by_type = {c["type"]: dict(c) for c in conditions or () if c.get("type")}
    previous = by_type.get(type_)
    changed = previous is None or previous.get("status") != value
    by_type[type_] = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": format_time(now)
        if changed
        else previous.get("lastTransitionTime") or format_time(now),
        "observedGeneration": generation,
    }
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    return sorted(by_type.values(), key=lambda c: (order.get(c["type"], len(order)), c["type"]))


def set_conditions(
    conditions: Sequence[Mapping[str, Any]] | None,
    updates: Mapping[str, tuple[bool | str, str, str]],
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Apply several ``type -> (status, reason, message)`` updates at once."""
    result = [dict(c) for c in conditions or ()]
    for type_, (status, reason, message) in updates.items():
        result = set_condition(result, type_, status, reason, message, generation, now)
    return result


def clean_number(value: Any) -> float | None:
    """A JSON-safe float: NaN, infinities and non-numbers become None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def shown_number(value: Any) -> float | None:
    """clean_number to 4 decimals, for figures `kubectl get` prints (the report keeps them all)."""
    number = clean_number(value)
    return None if number is None else round(number, 4)


def clean_count(value: Any) -> int | None:
    number = clean_number(value)
    return None if number is None else int(number)


# Status field -> (result key, cleaner): the report's snake_case figures under the CRD's names.
_ROW_FIELDS = {
    "close": ("close", clean_number),
    "sma20": ("sma_20", clean_number),
    "rsi14": ("rsi_14", clean_number),
    "macd": ("macd", clean_number),
    "sentiment": ("avg_sentiment", clean_number),
    "articles": ("article_count", clean_count),
}
_SUMMARY_FIELDS = {
    "avgRsi": ("avg_rsi", clean_number),
    "avgSma20": ("avg_sma_20", clean_number),
    "avgSentiment": ("avg_news_sentiment", shown_number),  # a printer column
    "positiveSentiment": ("securities_with_positive_sentiment", clean_count),
    "negativeSentiment": ("securities_with_negative_sentiment", clean_count),
}
_PORTFOLIO_FIELDS = {
    "totalReturn": ("total_return", clean_number),
    "annualizedReturn": ("annualized_return", clean_number),
    "annualizedVolatility": ("annualized_volatility", clean_number),
    "sharpeRatio": ("sharpe_ratio", clean_number),
    "maxDrawdown": ("max_drawdown", clean_number),
    "var95": ("var_95", clean_number),
    "cvar95": ("cvar_95", clean_number),
    "beta": ("beta", clean_number),
    # market_value is per ticker; the status column is the portfolio total.
    "marketValue": ("total_market_value", clean_number),
}


def _figures(
    item: Mapping[str, Any], fields: Mapping[str, tuple[str, Callable[[Any], Any]]]
) -> dict[str, Any]:
    """The status figures of ``fields``, JSON-safe (NaN and non-numbers become None)."""
    return {name: clean(item.get(key)) for name, (key, clean) in fields.items()}


def _row(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ticker": str(item.get("ticker", "")),
        "source": item.get("source"),
        **_figures(item, _ROW_FIELDS),
    }


def _failure(item: Mapping[str, Any]) -> dict[str, str]:
    return {
        "ticker": str(item.get("ticker", "")),
        "stage": str(item.get("stage", "")),
        "reason": str(item.get("reason", ""))[:512],
    }


# Excluded tickers named in status.portfolio.coverage (the report ConfigMap lists all).
MAX_COVERAGE_EXAMPLES = 5


def coverage_fields(coverage: Any) -> dict[str, Any] | None:
    """status.portfolio.coverage from the report's portfolio coverage (None when the library
    gave none): tickers used of asked, the window, how many were left out and why."""
    if not isinstance(coverage, Mapping):
        return None
    asked, used = (
        clean_count(coverage.get("tickers_asked")),
        clean_count(coverage.get("tickers_used")),
    )
    excluded = coverage.get("excluded")
    excluded = excluded if isinstance(excluded, Mapping) else {}
    return {
        "tickers": f"{used}/{asked}" if used is not None and asked is not None else None,
        "tickersAsked": asked,
        "tickersUsed": used,
        "start": str(coverage["start"]) if coverage.get("start") else None,
        "end": str(coverage["end"]) if coverage.get("end") else None,
        "returns": clean_count(coverage.get("returns")),
        "rule": str(coverage["rule"])[:512] if coverage.get("rule") else None,
        "excluded": len(excluded),
        "excludedExamples": [
            {"ticker": str(ticker), "reason": str(reason)[:256]}
            for ticker, reason in list(excluded.items())[:MAX_COVERAGE_EXAMPLES]
        ],
    }


def report_url(namespace: str, name: str) -> str:
    """Where the operator's HTTP server serves this analysis's HTML report."""
    return f"{REPORTS_PATH}/{namespace}/{name}"


def result_fields(result: Mapping[str, Any], max_rows: int = MAX_STATUS_ROWS) -> dict[str, Any]:
    """Status fields from a run_combined_analysis result: summary, portfolio, short tables."""
    report = result.get("report") or {}
    rows = list(result.get("combined_analysis") or [])
    failures = list(result.get("failed") or [])
    analyzed = report.get("securities_analyzed")
    portfolio = report.get("portfolio") or {}
    return {
        "securitiesAnalyzed": clean_count(analyzed) if analyzed is not None else len(rows),
        "securitiesFailed": len({f.get("ticker") for f in failures}),
        "failures": [_failure(f) for f in failures[:max_rows]],
        "summary": _figures(report.get("summary") or {}, _SUMMARY_FIELDS),
        "portfolio": {
            **_figures(portfolio, _PORTFOLIO_FIELDS),
            "coverage": coverage_fields(portfolio.get("coverage")),
        },
        "results": [_row(r) for r in rows[:max_rows]],
        "resultsTruncated": len(rows) > max_rows or len(failures) > max_rows,
    }


# A partial run's condition message names its first warnings (coverage, benchmark), bounded.
MAX_OUTCOME_WARNINGS = 2
MAX_OUTCOME_MESSAGE = 600


def outcome(result: Mapping[str, Any]) -> tuple[str, str, str]:
    """(phase, reason, message) for a finished run."""
    analyzed = result_fields(result)
    failed = analyzed["securitiesFailed"]
    done = analyzed["securitiesAnalyzed"]
    state = result.get("status")
    if state == "failed" or not done:
        reasons = (
            "; ".join(f"{f['ticker']}: {f['reason']}" for f in analyzed["failures"][:3])
            or "no security could be analysed"
        )
        return FAILED, "AnalysisFailed", f"no security was analysed ({reasons})"
    if failed:
        return (
            SUCCEEDED,
            "CompletedWithFailures",
            f"analysed {done} securities; {failed} failed (see status.failures)",
        )
    if state == "partial":  # nothing failed, yet the figures leave something out
        report = result.get("report") if isinstance(result.get("report"), Mapping) else {}
        why = "; ".join(str(w) for w in (report.get("warnings") or ())[:MAX_OUTCOME_WARNINGS])
        return (
            SUCCEEDED,
            "CompletedPartially",
            f"analysed {done} securities; the results are partial: {why or 'see the report'}"[
                :MAX_OUTCOME_MESSAGE
            ],
        )
    return SUCCEEDED, "Completed", f"analysed {done} securities"


# --------------------------------------------------------------------------------------------
# The report ConfigMap.


def _dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


# The lists that grow with the portfolio; everything else in a report is small.
ROW_LISTS = ("combined_analysis", "failed")


def _utf8_size(text: str) -> int:
    return len(text.encode())


def gzipped(text: str) -> bytes:
    """``text`` gzipped (mtime 0, so the same report gives the same bytes)."""
    return gzip.compress(text.encode(), compresslevel=6, mtime=0)


def _trim_note(max_bytes: int, omitted: Mapping[str, Mapping[str, int]]) -> str:
    kept = ", ".join(f"{k} keeps {v['kept']} of {v['total']} rows" for k, v in omitted.items())
    return (
        f"This stored report was trimmed to fit the Kubernetes ConfigMap size limit "
        f"({max_bytes} bytes): {kept or 'rows were left out'}."
    )


def bounded_report(
    result: Mapping[str, Any],
    max_bytes: int = DEFAULT_REPORT_MAX_BYTES,
    *,
    measure: Callable[[str], int] = _utf8_size,
) -> tuple[str, bool]:
    """The report as JSON whose ``measure`` (bytes of UTF-8, or of its gzip) is at most
    max_bytes, and whether it had to be truncated.

    Only the per-security lists grow with the portfolio, so truncation keeps their first rows
    (as many as fit, found by bisection) and adds a top-level ``truncated`` marker saying how
    many were kept of how many, and the same sentence first in ``report.warnings`` (so the
    HTML page says it too); the document stays valid JSON.
    """
    doc = jsonable(result)
    text = _dumps(doc)
    if not isinstance(doc, dict) or measure(text) <= max_bytes:
        return text, False
    lists = {k: doc[k] for k in ROW_LISTS if isinstance(doc.get(k), list)}

    def attempt(keep: int) -> str:
        omitted = {k: {"total": len(v), "kept": min(keep, len(v))} for k, v in lists.items()}
        note = _trim_note(max_bytes, omitted)
        trimmed = {**doc, **{k: v[:keep] for k, v in lists.items()}}
        marker = {
            "maxBytes": max_bytes,
            "note": "the report exceeded the ConfigMap size limit; rows were left out",
            "omitted": omitted,
        }
        report = doc.get("report")
        if isinstance(report, dict):
            trimmed["report"] = {**report, "warnings": [note, *(report.get("warnings") or [])]}
        return _dumps({**trimmed, "truncated": marker})

    low, high = 0, max((len(v) for v in lists.values()), default=0)
    if measure(attempt(0)) > max_bytes:
        minimal = {
            "status": doc.get("status"),
            "truncated": {"maxBytes": max_bytes, "note": "the report was too large to keep"},
        }
        return _dumps(minimal), True
    while low < high:  # largest row count that fits
        middle = (low + high + 1) // 2
        if measure(attempt(middle)) <= max_bytes:
            low = middle
        else:
            high = middle - 1
    return attempt(low), True


def compressed_document(document: Mapping[str, Any], max_bytes: int) -> tuple[bytes | None, bool]:
    """The report document gzipped in at most max_bytes, and whether it was trimmed.

    Whole when it fits; else its per-security lists trimmed as :func:`bounded_report` does
    (its page then says so); None when not even that fits (the page is then drawn from the
    readable ``report.json`` key alone).
    """
    if max_bytes <= 0:
        return None, True
    text, trimmed = bounded_report(document, max_bytes, measure=lambda t: len(gzipped(t)))
    if trimmed and "omitted" not in json.loads(text)["truncated"]:  # not even the summary fits
        return None, True
    return gzipped(text), trimmed


def report_configmap_name(resource_name: str) -> str:
    """``<name>-report``, cut and made unique with a hash when the name is near the limit."""
    return fitted_name(resource_name, MAX_OBJECT_NAME, "-report")


def report_configmap(
    owner: Mapping[str, Any],
    result: Mapping[str, Any],
    max_bytes: int = DEFAULT_REPORT_MAX_BYTES,
    document: Mapping[str, Any] | None = None,
    total_max_bytes: int = REPORT_CONFIGMAP_MAX_BYTES,
) -> dict[str, Any]:
    """The report ConfigMap, owned by the PortfolioAnalysis.

    ``data["report.json"]``: the run's result as readable JSON, bounded by max_bytes (what
    ``kubectl get cm -o jsonpath`` users read). ``binaryData["report.json.gz"]``: the report
    document (the CLI's report.json, daily series included) gzipped, in what is left of
    total_max_bytes, trimmed when it must be; the annotation says whether either was trimmed.
    """
    meta = owner["metadata"]
    text, truncated = bounded_report(result, max_bytes)
    binary: dict[str, str] = {}
    if document is not None:
        room = total_max_bytes - len(text.encode())
        data, trimmed = compressed_document(document, room)
        truncated = truncated or trimmed
        if data is not None:
            binary[DOCUMENT_KEY] = base64.b64encode(data).decode("ascii")
    metadata = child_metadata(owner, report_configmap_name(meta["name"]))
    metadata["annotations"] = {
        TRUNCATED_ANNOTATION: "true" if truncated else "false",
        GENERATION_ANNOTATION: str(meta.get("generation", "")),
    }
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {REPORT_KEY: text},
    }
    if binary:
        manifest["binaryData"] = binary
    return manifest
