"""The reference guide's aggregation step: gathered per-ticker results -> frames -> flow
reports.

Plain functions (``flows.py`` wraps them as Prefect tasks with the reference guide's
names), so the CLI and the operator aggregate exactly as the flows do without paying for
Prefect. Every aggregation skips ``None`` results (the "no data" answer of the reference
guide's worker functions) and anything that is not a per-ticker result dict.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from portfolio_analysis.vocabulary import NEGATIVE_SENTIMENT, POSITIVE_SENTIMENT

PRICING_COLUMNS = ["ticker", "source", "close", "start", "end", "days"]


def utc_timestamp() -> str:
    """Now, as the ISO 8601 UTC timestamp every report carries."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def jsonable(value: Any) -> Any:
    """``value`` with numpy/pandas scalars made plain and NaN/inf made None (JSON has no NaN)."""
    # The plain types first, by exact type: a 2,000-ticker report has ~60,000 leaves, and
    # the isinstance chain below cost 0.3 s of the client's time on them (issue 19).
    kind = type(value)
    if kind is str or value is None or kind is int or kind is bool:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {k if type(k) is str else str(k): jsonable(v) for k, v in value.items()}
    if kind is list:
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return jsonable(value.to_dict(orient="records"))
    if isinstance(value, pd.Series):
        return jsonable(value.to_dict())
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _results(results: Iterable[Any]) -> list[dict]:
    return [r for r in results if isinstance(r, Mapping) and r.get("ticker")]


def _frame(rows: list[dict], first: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(first))
    frame = frame.drop_duplicates(subset="ticker", keep="first")
    ordered = [c for c in first if c in frame.columns]
    return frame[ordered + [c for c in frame.columns if c not in ordered]].reset_index(drop=True)


def aggregate_pricing_results(pricing_results: Iterable[dict | None]) -> pd.DataFrame:
    """One row per priced ticker: ticker, source, close, start, end, days."""
    rows = []
    for result in _results(pricing_results):
        price_data = result.get("price_data") or {}
        rows.append(
            {
                "ticker": result["ticker"],
                "source": result.get("source"),
                "close": price_data.get("close"),
                "start": price_data.get("start"),
                "end": price_data.get("end"),
                "days": price_data.get("days"),
            }
        )
    return _frame(rows, PRICING_COLUMNS)


def aggregate_technical_results(technical_results: Iterable[dict | None]) -> pd.DataFrame:
    """One row per ticker with its indicator summary (``sma_20``, ``rsi_14``, ... signals)."""
    rows = [
        {"ticker": r["ticker"], **dict(r.get("summary") or {})} for r in _results(technical_results)
    ]
    return _frame(rows, ["ticker"])


def aggregate_news_results(news_results: Iterable[dict | None]) -> pd.DataFrame:
    """One row per ticker with its sentiment figures (the article list itself is left out).

    A result's ``illustrative`` flag becomes the column ``news_illustrative``, so that next to
    prices in the combined rows it cannot be read as a remark about the prices.
    """
    rows = []
    for result in _results(news_results):
        scalars = {
            k: v
            for k, v in result.items()
            if k != "articles" and not isinstance(v, (list, dict, tuple))
        }
        if "illustrative" in scalars:
            scalars["news_illustrative"] = bool(scalars.pop("illustrative"))
        rows.append(scalars)
    return _frame(rows, ["ticker", "article_count", "avg_sentiment"])


def illustrative_note(tickers: Sequence[str], total: int) -> str | None:
    """The sentence every report shows when some headlines are invented sample data."""
    if not tickers:
        return None
    which = (
        "All headlines"
        if len(tickers) == total
        else (f"The headlines of {len(tickers)} of {total} tickers ({_listed(tickers)})")
    )
    return (
        f"{which} are invented sample data (the embedded news source), not real news: "
        "their sentiment only illustrates the method."
    )


def _listed(tickers: Sequence[str], at_most: int = 10) -> str:
    shown = ", ".join(tickers[:at_most])
    return shown if len(tickers) <= at_most else f"{shown} and {len(tickers) - at_most} more"


def news_section(news_results: Iterable[dict | None]) -> dict:
    """``report["news"]``: each ticker's headlines with score and source, and whether any are
    invented sample data (with the sentence saying so), for the terminal, HTML and JSON."""
    results = _results(news_results)
    headlines = {
        r["ticker"]: [
            {
                "title": a.get("title"),
                "score": a.get("sentiment"),
                "source": a.get("source"),
                "illustrative": bool(a.get("illustrative", False)),
            }
            for a in r.get("articles") or ()
        ]
        for r in results
    }
    invented = [t for t, items in headlines.items() if any(i["illustrative"] for i in items)]
    return jsonable(
        {
            "illustrative": bool(invented),
            "note": illustrative_note(invented, len(headlines)),
            "headlines": headlines,
        }
    )


def combine_analysis(
    pricing: pd.DataFrame | None,
    technicals: pd.DataFrame | None,
    news: pd.DataFrame | None,
    tickers: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per ticker joining price, indicators and sentiment, in the requested order.

    Pass None for a stage that was not run. The first stage that was run decides which
    tickers appear, even when it is empty: with prices requested, a ticker that could not
    be priced is not "analysed", even if it has headlines.
    """
    frames = [f for f in (pricing, technicals, news) if f is not None]
    if not frames:
        return pd.DataFrame(columns=["ticker"])
    combined = frames[0]
    if "ticker" not in combined.columns:
        combined = pd.DataFrame(columns=["ticker"])
    for frame in frames[1:]:
        extra = [c for c in frame.columns if c == "ticker" or c not in combined.columns]
        if "ticker" in frame.columns:
            combined = combined.merge(frame[extra], on="ticker", how="left")
    if tickers is not None:
        order = {t: i for i, t in enumerate(tickers)}
        combined = combined.sort_values("ticker", key=lambda s: s.map(order).fillna(len(order)))
    return combined.reset_index(drop=True)


def _mean(frame: pd.DataFrame, column: str) -> float | None:
    if column not in frame.columns:
        return None
    values = pd.to_numeric(frame[column], errors="coerce")
    return jsonable(values.mean()) if values.notna().any() else None


def summarize_combined(combined: pd.DataFrame) -> dict:
    """The reference guide's comprehensive summary: averages and sentiment counts."""
    sentiment = (
        pd.to_numeric(combined["avg_sentiment"], errors="coerce")
        if "avg_sentiment" in combined.columns
        else pd.Series(dtype="float64")
    )
    return {
        "avg_rsi": _mean(combined, "rsi_14"),
        "avg_sma_20": _mean(combined, "sma_20"),
        "avg_news_sentiment": jsonable(sentiment.mean()) if sentiment.notna().any() else None,
        "securities_with_positive_sentiment": int((sentiment >= POSITIVE_SENTIMENT).sum()),
        "securities_with_negative_sentiment": int((sentiment <= NEGATIVE_SENTIMENT).sum()),
    }


def run_status(succeeded: int, failed: Sequence[Mapping], *, incomplete: bool = False) -> str:
    """``failed`` when nothing worked; ``partial`` with some failures or when ``incomplete``
    (a result that lacks something that was asked for, see :func:`run_warnings`);
    else ``success``."""
    if succeeded == 0:
        return "failed"
    return "partial" if failed or incomplete else "success"


# report["warnings"] names at most this many failed tickers one by one; the rest are counted
# (every failure stays listed under result["failed"]).
MAX_FAILURE_WARNINGS = 10
# Close names suggested for a ticker no embedded data set holds (difflib's ratio).
SUGGESTION_CUTOFF = 0.75


def ticker_suggestions(ticker: str, limit: int = 3) -> list[str]:
    """Embedded tickers spelled like ``ticker`` (a typo such as MSFTT -> MSFT); none when the
    embedded data holds ``ticker`` itself."""
    import difflib

    from portfolio_analysis import embedded
    from portfolio_analysis.vocabulary import EMBEDDED_DATASETS

    known = sorted({t for name in EMBEDDED_DATASETS for t in embedded.universe_tickers(name)})
    if ticker in known:
        return []
    return difflib.get_close_matches(ticker, known, n=limit, cutoff=SUGGESTION_CUTOFF)


def _did_you_mean(ticker: str, price_sources: Sequence[str]) -> str:
    if "embedded" not in price_sources:
        return ""
    close = ticker_suggestions(ticker)
    if not close:
        return ""
    names = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
    return f"; did you mean {names}?"


def _failure_warnings(failed: Sequence[Mapping], price_sources: Sequence[str]) -> list[str]:
    lines = []
    for record in failed[:MAX_FAILURE_WARNINGS]:
        ticker, stage = str(record.get("ticker")), record.get("stage")
        hint = _did_you_mean(ticker, price_sources) if stage == "pricing" else ""
        lines.append(f"{ticker}: {stage} failed: {record.get('reason')}{hint}")
    if len(failed) > MAX_FAILURE_WARNINGS:
        lines.append(
            f"... and {len(failed) - MAX_FAILURE_WARNINGS} more failures, each listed under "
            "failed in report.json"
        )
    return lines


def _left_out(excluded: Mapping[str, Any], with_reasons: int = 3, names: int = 8) -> str:
    """A few tickers with their reasons, or, when there are more, their names only (every
    reason is in the report's portfolio section)."""
    if len(excluded) <= with_reasons:
        return "; ".join(f"{t} ({reason})" for t, reason in excluded.items())
    shown = ", ".join(list(excluded)[:names])
    more = f" and {len(excluded) - names} more" if len(excluded) > names else ""
    return f"{shown}{more} (each with its reason in the report's portfolio section)"


def _coverage_warning(portfolio: Mapping[str, Any]) -> str | None:
    """One line when the portfolio figures leave out tickers that were asked for; from
    ``portfolio["coverage"]`` when the report has it, else from ``excluded_reasons``."""
    coverage = portfolio.get("coverage")
    if isinstance(coverage, Mapping) and coverage.get("tickers_asked") is not None:
        asked, used = int(coverage["tickers_asked"]), int(coverage.get("tickers_used") or 0)
        excluded = coverage.get("excluded") or {}
        window = f" from {coverage.get('start')} to {coverage.get('end')}"
    else:
        excluded = portfolio.get("excluded_reasons") or {
            t: "left out" for t in portfolio.get("excluded") or ()
        }
        used = len(portfolio.get("tickers") or ())
        asked = used + len(excluded)
        window = f" from {portfolio.get('start')} to {portfolio.get('end')}"
    if used >= asked:
        return None
    return f"portfolio figures cover {used} of {asked} tickers{window}; left out: " + (
        _left_out(excluded) if excluded else "see report.json"
    )


def beta_reason(portfolio: Mapping[str, Any], price_sources: Sequence[str] = ()) -> str | None:
    """Why a benchmark was asked for but the portfolio has no beta (None when it has one):
    the producer's ``beta_reason`` if it gave one, else the benchmark's pricing failure
    (``benchmark_error``, from the pipeline) or what the report shows, with close names."""
    benchmark = portfolio.get("benchmark")
    if not benchmark or portfolio.get("beta") is not None or portfolio.get("error"):
        return None
    if portfolio.get("beta_reason"):
        return str(portfolio["beta_reason"])
    why = (
        f"could not be priced ({portfolio['benchmark_error']})"
        if portfolio.get("benchmark_error")
        else "has no prices on the portfolio's dates (check the ticker and the price sources)"
    )
    return (
        f"benchmark {benchmark} {why}, so the portfolio has no beta"
        f"{_did_you_mean(str(benchmark), price_sources)}"
    )


def run_warnings(report: Mapping[str, Any], failed: Sequence[Mapping]) -> tuple[list[str], bool]:
    """One-line warnings built from the report's facts, and whether they make the run
    ``partial``: failed tickers (with close names for unknown ones), tickers the portfolio
    figures leave out, a benchmark without prices, no portfolio figures at all. Invented
    sample headlines are a warning that leaves the status alone (the run did all it was
    asked)."""
    price_sources = list(report.get("price_sources") or ())
    warnings = _failure_warnings(failed, price_sources)
    incomplete = False
    portfolio = report.get("portfolio")
    if isinstance(portfolio, Mapping):
        if portfolio.get("error"):
            warnings.append(f"no portfolio figures: {portfolio['error']}")
            incomplete = True
        coverage = _coverage_warning(portfolio) if not portfolio.get("error") else None
        if coverage:
            warnings.append(coverage)
            incomplete = True
        reason = beta_reason(portfolio, price_sources)
        if reason:
            warnings.append(reason)
            incomplete = True
    news = report.get("news")
    if isinstance(news, Mapping) and news.get("illustrative"):
        warnings.append(
            str(news.get("note") or "some headlines are invented sample data, not real news")
        )
    return warnings, incomplete


def _failed(failed: Iterable[Mapping] | None) -> list[dict]:
    return [dict(f) for f in failed or ()]


def pricing_report(pricing: pd.DataFrame, failed: Iterable[Mapping] | None = None) -> dict:
    """The reference guide's multi-source pricing flow result, plus ``sources`` and ``failed``."""
    failed = _failed(failed)
    return jsonable(
        {
            "status": run_status(len(pricing), failed),
            "securities_fetched": len(pricing),
            "prices": dict(zip(pricing["ticker"], pricing["close"], strict=True)),
            "sources": dict(zip(pricing["ticker"], pricing["source"], strict=True)),
            "failed": failed,
            "timestamp": utc_timestamp(),
        }
    )


def technical_report(technicals: pd.DataFrame, failed: Iterable[Mapping] | None = None) -> dict:
    """The reference guide's technical analysis flow result, plus ``failed``."""
    failed = _failed(failed)
    return jsonable(
        {
            "status": run_status(len(technicals), failed),
            "securities_analyzed": len(technicals),
            "technical_summary": technicals,
            "failed": failed,
            "timestamp": utc_timestamp(),
        }
    )


def news_report(news: pd.DataFrame, failed: Iterable[Mapping] | None = None) -> dict:
    """The reference guide's news analysis flow result, plus ``failed``, and ``illustrative``
    and ``note`` saying whether any headline was invented sample data."""
    failed = _failed(failed)
    sentiment = (
        pd.to_numeric(news["avg_sentiment"], errors="coerce")
        if "avg_sentiment" in news.columns
        else pd.Series(dtype="float64")
    )
    counts = (
        pd.to_numeric(news["article_count"], errors="coerce").fillna(0)
        if "article_count" in news.columns
        else pd.Series(dtype="float64")
    )
    with_news = news[counts.to_numpy() > 0] if len(news) else news
    invented = (
        list(news.loc[news["news_illustrative"].fillna(False).astype(bool), "ticker"])
        if "news_illustrative" in news.columns
        else []
    )
    return jsonable(
        {
            "status": run_status(len(news), failed),
            "total_articles": int(counts.sum()),
            "securities_with_news": len(with_news),
            "sentiment_by_ticker": dict(zip(news.get("ticker", []), sentiment, strict=True)),
            "positive_sentiment": int((sentiment >= POSITIVE_SENTIMENT).sum()),
            "negative_sentiment": int((sentiment <= NEGATIVE_SENTIMENT).sum()),
            "illustrative": bool(invented),
            "note": illustrative_note(invented, len(news)),
            "failed": failed,
            "timestamp": utc_timestamp(),
        }
    )


def comprehensive_report(
    combined: pd.DataFrame,
    *,
    failed: Iterable[Mapping] | None = None,
    execution_time_seconds: float,
    timings: Mapping[str, float] | None = None,
    portfolio: Mapping | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """The reference guide's comprehensive result shape, extended with portfolio, timings
    and failures.

    ``securities_analyzed`` counts tickers with a result in ``combined_analysis``; a ticker
    that failed one stage but not another appears in both ``combined_analysis`` and
    ``failed`` (with the failed stage), and the status is then ``partial``; so it is when
    the portfolio figures leave out asked tickers or lack the asked benchmark's beta.
    ``report["warnings"]`` says each of these in one line (:func:`run_warnings`).
    """
    failed = _failed(failed)
    report: dict[str, Any] = {
        "timestamp": utc_timestamp(),
        "execution_time_seconds": round(float(execution_time_seconds), 4),
        "securities_analyzed": len(combined),
        "summary": summarize_combined(combined),
    }
    if portfolio is not None:
        report["portfolio"] = dict(portfolio)
    report["timings"] = {k: round(float(v), 4) for k, v in (timings or {}).items()}
    if extra:
        report.update(extra)
    warnings, incomplete = run_warnings(report, failed)
    reason = beta_reason(report.get("portfolio") or {}, report.get("price_sources") or ())
    if reason:
        report["portfolio"]["beta_reason"] = reason
    report["warnings"] = warnings
    return jsonable(
        {
            "status": run_status(len(combined), failed, incomplete=incomplete),
            "report": report,
            "combined_analysis": combined,
            "failed": failed,
        }
    )
