"""Reports of a run: the JSON document, a self-contained HTML page, and terminal lines.

The JSON document (``report.json``) is the run's result dict extended with what a program
or a page needs to redraw the report without the run's frames: ``schema_version``, the
tool's version, the run's settings, the daily series behind every chart, per-position
contributions and stage durations. :func:`render_html` (in ``report_html``) draws the page
from that JSON-able dict alone, so the operator can render a stored report. The fields and
their units are described in docs/report.md and checked by ``schemas/report.schema.json``.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from portfolio_analysis.aggregate import jsonable
from portfolio_analysis.report_html import render_html
from portfolio_analysis.vocabulary import NEGATIVE_SENTIMENT, POSITIVE_SENTIMENT

if TYPE_CHECKING:
    from rich.table import Table

    from portfolio_analysis.config import AnalysisConfig
    from portfolio_analysis.pipeline import AnalysisRun

__all__ = [
    "SCHEMA_VERSION",
    "build_document",
    "chart_tickers",
    "portfolio_lines",
    "render_html",
    "schema_path",
    "summary_table",
    "write_html_report",
    "write_json_report",
    "write_reports",
]

# Bumped when a field changes meaning or disappears; new fields keep the major version.
SCHEMA_VERSION = "1.0"
TOOL_NAME = "portfolio-operator"

# Per-ticker indicator charts: the first MAX_TICKER_CHARTS tickers, holdings first.
MAX_TICKER_CHARTS = 8
MAX_TABLE_ROWS = 25
ROLLING_WINDOW_DAYS = 63  # about one quarter of trading days
PERIODS_PER_YEAR = 252
# Significant digits kept in the JSON's daily series (a price of 404.3412 -> 404.341).
SERIES_DIGITS = 6
# Indicator columns the report keeps per ticker (the rest are derivable or not drawn).
TICKER_SERIES_COLUMNS = (
    "close",
    "sma_20",
    "sma_50",
    "sma_200",
    "bollinger_upper",
    "bollinger_lower",
    "rsi_14",
    "macd",
    "macd_signal",
)

_TABLE_COLUMNS = [
    ("ticker", "Ticker"),
    ("source", "Source"),
    ("close", "Close"),
    ("sma_20", "SMA 20"),
    ("rsi_14", "RSI 14"),
    ("bollinger_lower", "BB lower"),
    ("bollinger_upper", "BB upper"),
    ("macd", "MACD"),
    ("avg_sentiment", "Sentiment"),
    ("article_count", "Articles"),
]

_PORTFOLIO_FIGURES = [
    ("total_return", "Total return", "pct"),
    ("annualized_return", "Annualised return", "pct"),
    ("annualized_volatility", "Annualised volatility", "pct"),
    ("sharpe_ratio", "Sharpe ratio", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("var_95", "1-day VaR 95%", "pct"),
    ("cvar_95", "1-day CVaR 95%", "pct"),
    ("beta", "Beta", "num"),
    ("total_market_value", "Market value", "money"),
]


def schema_path() -> Path:
    """The JSON Schema of ``report.json`` (shipped in the package)."""
    return Path(__file__).with_name("schemas") / "report.schema.json"


def _format(value: Any, kind: str = "num") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, (float, np.floating)):
        if kind == "pct":
            return f"{value:.2%}"
        if kind == "money":
            return f"{value:,.2f}"
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def tool_version() -> str:
    """The installed distribution's version (``0+unknown`` when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(TOOL_NAME)
    except PackageNotFoundError:
        return "0+unknown"


# --- daily series ----------------------------------------------------------------------------


def _rounded(values: np.ndarray, digits: int = SERIES_DIGITS) -> list[float | None]:
    """``values`` rounded to ``digits`` significant digits (by the series' largest magnitude),
    NaN as None: the JSON stays small and the charts lose nothing visible."""
    values = np.asarray(values, dtype="float64")
    finite = np.isfinite(values)
    if not finite.any():
        return [None] * len(values)
    largest = float(np.abs(values[finite]).max())
    decimals = digits - 1 - (math.floor(math.log10(largest)) if largest > 0 else 0)
    rounded = np.round(values, max(decimals, 0)) + 0.0  # + 0.0: no -0.0 in the JSON
    return [float(v) if ok else None for v, ok in zip(rounded.tolist(), finite, strict=True)]


def _dates(index: pd.Index) -> list[str]:
    return [d.isoformat() for d in pd.DatetimeIndex(index).date]


def _window_prices(
    close: pd.DataFrame, portfolio: Mapping
) -> tuple[pd.DataFrame, list[str]] | None:
    """(frame, held tickers): ``close`` over the portfolio's window, on the dates where a held
    ticker has a price (holes stay NaN: portfolio.py decides which dates are valued and how a
    missing price is treated). The frame is a view of ``close`` whenever it can be: at
    10,000 tickers one copy of the panel is 400 MB (issue 19)."""
    from portfolio_analysis.portfolio import PositionPrices

    tickers = [t for t in portfolio.get("tickers") or () if t in close.columns]
    if not tickers:
        return None
    start, end = portfolio.get("start"), portfolio.get("end")
    window = close.loc[pd.Timestamp(start) : pd.Timestamp(end)] if start and end else close
    prices = PositionPrices.of(window, pd.Index(tickers))
    priced = np.zeros(prices.shape[0], dtype=bool)
    for _, block in prices.blocks():
        priced |= ~np.isnan(block).all(axis=1)
    if not priced.all():
        window = window.loc[priced, tickers]
    return (window, tickers) if priced.sum() >= 2 else None


def _at(frame: pd.DataFrame, index: pd.Index, columns: Sequence[str]) -> pd.DataFrame:
    """``frame``'s rows at the dates ``index``: a view of all its columns when they are
    consecutive rows (no copy), else a copy of ``columns`` only."""
    rows = frame.index.get_indexer(index)
    if len(rows) and rows[0] >= 0 and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
        return frame.iloc[rows[0] : rows[0] + len(rows)]
    return frame.loc[index, list(columns)]


def _portfolio_values(
    window: pd.DataFrame, tickers: Sequence[str], portfolio: Mapping, holdings: Mapping | None
):
    """(values, positions) of the portfolio, valued by portfolio.py itself, so the series
    and the figures agree."""
    from portfolio_analysis.portfolio import portfolio_value_series

    if portfolio.get("mode") == "holdings" and holdings:
        positions = {t: float(holdings[t]) for t in tickers if t in holdings}
        return portfolio_value_series(window, holdings=positions), positions
    weights = portfolio.get("weights") or {}
    positions = {t: float(weights[t]) for t in tickers if t in weights}
    if not positions or abs(sum(positions.values()) - 1.0) > 1e-6:
        positions = dict.fromkeys(tickers, 1.0 / len(tickers))
    return portfolio_value_series(window, weights=positions), positions


def _consecutive(index: pd.DatetimeIndex) -> np.ndarray:
    """For each move between neighbouring dates of ``index``: does it span one trading
    session (the daily returns the figures use), rather than a gap in the data?"""
    from portfolio_analysis.trading_calendar import session_numbers

    return np.diff(session_numbers(pd.DatetimeIndex(index)).to_numpy()) == 1


def _reference(
    close: pd.DataFrame, values: pd.Series, portfolio: Mapping, positions: Mapping[str, float]
) -> tuple[dict, pd.Series | None]:
    """The line the equity curve is compared with: the benchmark when it was priced, else
    the equal-weighted universe of the priced tickers (unless that is the portfolio itself)."""
    name = portfolio.get("benchmark")
    if name:
        if name in close.columns:
            prices = close[name].astype("float64").reindex(values.index).ffill().dropna()
            if len(prices) >= 2:
                line = prices / prices.iloc[0] * values.loc[prices.index[0]]
                return {
                    "kind": "benchmark",
                    "ticker": name,
                    "label": f"Benchmark {name}",
                    "note": f"{name}, rebased to the portfolio's value on {_dates(line.index)[0]}.",
                }, line
        reference = {"kind": "none", "ticker": name, "label": None}
        why = portfolio.get("benchmark_error")
        reference["note"] = f"Benchmark {name} could not be priced over the portfolio's window" + (
            f" ({why})." if why else "."
        )
        return reference, None
    universe = [t for t in close.columns if t in set(portfolio.get("tickers") or ())]
    equal = dict.fromkeys(universe, 1.0 / len(universe)) if universe else {}
    same = portfolio.get("mode") != "holdings" and all(
        abs(positions.get(t, 0.0) - w) < 1e-9 for t, w in equal.items()
    )
    if len(universe) < 2 or same:
        return {
            "kind": "none",
            "ticker": None,
            "label": None,
            "note": "No benchmark was given (--benchmark) and the portfolio is itself equally "
            "weighted, so no reference line is drawn.",
        }, None
    from portfolio_analysis.portfolio import portfolio_value_series

    growth = portfolio_value_series(_at(close, values.index, universe), weights=equal)
    growth = growth.reindex(values.index).ffill().bfill()
    line = growth / growth.iloc[0] * values.iloc[0]
    label = f"Equal-weighted holdings ({len(universe)} tickers)"
    return {
        "kind": "equal_weight",
        "ticker": None,
        "label": label,
        "note": f"No benchmark was given (--benchmark), so the reference line is the same "
        f"{len(universe)} tickers equally weighted and rebalanced daily, rebased to the "
        "portfolio's starting value.",
    }, line


def _rolling(returns: pd.Series, risk_free_rate: float) -> tuple[pd.Series, pd.Series]:
    """Rolling annualised volatility and Sharpe over ROLLING_WINDOW_DAYS daily returns."""
    per_period_rf = (1.0 + risk_free_rate) ** (1.0 / PERIODS_PER_YEAR) - 1.0
    window = returns.rolling(ROLLING_WINDOW_DAYS)
    spread = window.std(ddof=1)
    volatility = spread * math.sqrt(PERIODS_PER_YEAR)
    sharpe = (
        (window.mean() - per_period_rf) / spread.where(spread > 1e-12) * math.sqrt(PERIODS_PER_YEAR)
    )
    return volatility, sharpe


def _monthly_returns(values: pd.Series) -> list[dict]:
    """Return of each calendar month (the first month from the first value)."""
    month_end = values.groupby(values.index.to_period("M")).last()
    previous = month_end.shift(1)
    previous.iloc[0] = values.iloc[0]
    returns = month_end / previous - 1.0
    return [
        {"month": str(period), "return": float(value) + 0.0}
        for period, value in returns.items()
        if np.isfinite(value)
    ]


def _positions(
    window: pd.DataFrame, values: pd.Series, portfolio: Mapping, positions: Mapping[str, float]
) -> list[dict]:
    """Per position: weight, market value, contribution to total return and to risk.

    Contribution to return is exact: each day's change of the value, ``V_{t-1} x step_t``,
    is split between the positions priced on both days in proportion to their part of that
    step (holdings: shares x price change; weights: w x r, scaled as portfolio.py scales a
    day with a missing price), so the contributions add up to the total return. Contribution
    to risk is each position's share of the portfolio's daily-return variance at current
    weights, ``w_i (Cov w)_i / (w' Cov w)``, over consecutive sessions; the shares add up to 1.

    Computed block by block of positions (portfolio.PositionPrices), so no dates x positions
    array is built whole (issue 19). With no missing return, ``Cov w`` is
    ``X' (X w) / (n - 1)`` over the demeaned daily returns ``X``, never the positions x
    positions matrix (800 MB at 10,000 tickers); with missing returns, pandas' pairwise
    covariance over the days both positions have.
    """
    from portfolio_analysis.portfolio import PositionPrices, filled

    tickers = list(positions)
    frame = _at(window, values.index, tickers)
    prices = PositionPrices.of(frame, pd.Index(tickers))
    amounts = np.array([positions[t] for t in tickers], dtype=np.float64)
    holdings = portfolio.get("mode") == "holdings"

    def moves(columns: slice, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore"):
            growth = levels[1:] / levels[:-1] - 1.0
        have = np.isfinite(growth)
        if holdings:
            sizes = filled(levels)[:-1] * amounts[columns]
        else:
            sizes = np.broadcast_to(amounts[columns], growth.shape)
        return growth, have, np.where(have, sizes, 0.0)

    covered = np.zeros(len(values) - 1)
    complete = True
    for columns, levels in prices.blocks():
        _, have, counted = moves(columns, levels)
        covered += counted.sum(axis=1)
        complete = complete and bool(have.all())
    covered = covered[:, None]
    before = values.to_numpy()[:-1, None] / float(values.iloc[0])
    consecutive = _consecutive(values.index)
    n_daily = int(consecutive.sum())
    weights = portfolio.get("weights") or {}
    current = np.array([float(weights.get(t, 0.0)) for t in tickers])
    contribution = np.empty(len(tickers))
    combined = np.zeros(n_daily)  # complete: the demeaned daily returns times the weights
    every = None if complete else np.empty((n_daily, len(tickers)))
    for columns, levels in prices.blocks():
        growth, have, counted = moves(columns, levels)
        with np.errstate(invalid="ignore", divide="ignore"):
            parts = np.where(covered > 0, counted / covered, 0.0) * np.where(have, growth, 0.0)
        contribution[columns] = (parts * before).sum(axis=0)
        del parts, counted
        daily = np.where(have, growth, np.nan)[consecutive]
        if complete:
            daily -= daily.mean(axis=0)
            combined += daily @ current[columns]
        else:
            every[:, columns] = daily
    risk = np.full(len(tickers), np.nan)
    if n_daily > 2:
        if complete:
            marginal = np.empty(len(tickers))
            for columns, levels in prices.blocks():
                daily = (levels[1:] / levels[:-1] - 1.0)[consecutive]
                daily -= daily.mean(axis=0)
                marginal[columns] = daily.T @ combined / (n_daily - 1)
        else:
            covariance = pd.DataFrame(every).cov().to_numpy()  # pairwise over the days both have
            marginal = np.nan_to_num(covariance) @ current
        variance = float(current @ marginal)
        if variance > 1e-18:
            risk = current * marginal / variance
    market_value = portfolio.get("market_value") or {}
    rows = [
        {
            "ticker": t,
            "shares": positions[t] if holdings else None,
            "weight": float(current[i]),
            "market_value": market_value.get(t),
            "contribution_to_return": float(contribution[i]) + 0.0,
            "contribution_to_risk": float(risk[i]) + 0.0 if np.isfinite(risk[i]) else None,
        }
        for i, t in enumerate(tickers)
    ]
    rows.sort(key=lambda row: -row["weight"])
    return rows


def portfolio_analytics(
    close: pd.DataFrame | None, portfolio: Mapping, holdings: Mapping[str, float] | None
) -> tuple[dict | None, dict | None]:
    """(analytics, daily series) of the portfolio, or (None, None) when there is none."""
    if close is None or not portfolio or portfolio.get("error"):
        return None, None
    held = _window_prices(close, portfolio)
    if held is None:
        return None, None
    window, tickers = held
    from portfolio_analysis.portfolio import drawdown_series

    try:
        values, positions = _portfolio_values(window, tickers, portfolio, holdings)
    except ValueError:
        return None, None
    reference, line = _reference(close, values, portfolio, positions)
    daily = values.pct_change().iloc[1:][_consecutive(values.index)]
    volatility, sharpe = _rolling(daily, float(portfolio.get("risk_free_rate") or 0.0))
    volatility, sharpe = volatility.reindex(values.index), sharpe.reindex(values.index)
    series: dict[str, Any] = {
        "dates": _dates(values.index),
        "value": _rounded(values.to_numpy()),
        "reference": _rounded(line.reindex(values.index).to_numpy()) if line is not None else None,
        "drawdown": _rounded(drawdown_series(values).to_numpy()),
        "rolling_volatility": _rounded(volatility.to_numpy()),
        "rolling_sharpe": _rounded(sharpe.to_numpy()),
        "rolling_window_days": ROLLING_WINDOW_DAYS,
    }
    excess = None
    if reference["kind"] == "benchmark" and line is not None:
        start = line.index[0]
        excess = float(
            values.iloc[-1] / values.loc[start] - line.iloc[-1] / line.iloc[0]
        )  # total return over the dates both have, in fraction points
        reference["total_return"] = float(line.iloc[-1] / line.iloc[0] - 1.0)
    elif line is not None:
        reference["total_return"] = float(line.iloc[-1] / line.iloc[0] - 1.0)
    correlation = portfolio.get("correlation") or {}
    analytics = {
        "reference": reference,
        "excess_return": excess,
        "positions": _positions(window, values, portfolio, positions),
        "monthly_returns": _monthly_returns(values),
        "correlation_note": _correlation_note(correlation, portfolio),
    }
    return analytics, series


def _correlation_note(correlation: Mapping, portfolio: Mapping) -> str | None:
    if not correlation:
        return None
    shown, total = len(correlation), len(portfolio.get("tickers") or ())
    if shown < total:
        return (
            f"Correlation of daily returns between the {shown} largest of {total} positions "
            "by current weight, over the portfolio's window."
        )
    return (
        f"Correlation of daily returns between all {shown} positions, over the portfolio's window."
    )


def ticker_series(series: Mapping[str, pd.DataFrame] | None) -> dict[str, dict]:
    """Per charted ticker: dates and the indicator columns the charts draw."""
    out: dict[str, dict] = {}
    for ticker, frame in (series or {}).items():
        if frame is None or frame.empty or "close" not in frame.columns:
            continue
        entry: dict[str, Any] = {"dates": _dates(frame.index)}
        for column in TICKER_SERIES_COLUMNS:
            if column in frame.columns:
                entry[column] = _rounded(frame[column].to_numpy())
        out[str(ticker)] = entry
    return out


# --- the document ----------------------------------------------------------------------------


# The stages whose tasks run at the same time on the workers.
PARALLEL_STAGES = ("pricing", "technicals", "news")


def stage_durations(report: Mapping[str, Any]) -> dict[str, float]:
    """How long each stage took, in seconds.

    ``dask_setup`` and ``portfolio`` run alone, so their ``timings`` are their durations.
    ``pricing``, ``technicals`` and ``news`` run at the same time, batch by batch, on every
    worker: their duration is the worker time their tasks took, summed (``task_seconds``; it
    can exceed the wall time with several workers), and ``analysis`` is the wall time from
    submitting the tasks to the last one finishing (the latest stage end in ``timings``).
    """
    timings = report.get("timings") or {}
    tasks = report.get("task_seconds") or {}
    durations = {
        str(k): round(float(v), 4)
        for k, v in timings.items()
        if v is not None and k not in PARALLEL_STAGES
    }
    ends = [float(timings[s]) for s in PARALLEL_STAGES if timings.get(s) is not None]
    if ends:
        durations["analysis"] = round(max(ends), 4)
    for stage in PARALLEL_STAGES:
        if tasks.get(stage) is not None:
            durations[stage] = round(float(tasks[stage]), 4)
    return durations


def as_of(result: Mapping) -> str | None:
    """The date of the latest price in the report (the data's as-of date)."""
    report = result.get("report") or {}
    dates = [r.get("as_of") or r.get("end") for r in result.get("combined_analysis") or ()]
    dates.append((report.get("portfolio") or {}).get("end"))
    dates = [d for d in dates if isinstance(d, str)]
    return max(dates) if dates else None


def run_settings(
    result: Mapping, holdings: Mapping[str, float] | None, config: AnalysisConfig | None
) -> dict:
    """What was asked: tickers, holdings as given, sources, dates, lookback, benchmark."""
    report = result.get("report") or {}
    portfolio = report.get("portfolio") or {}
    windows = (report.get("data_notes") or {}).get("windows") or {}
    settings: dict[str, Any] = {
        "tickers": list(report.get("tickers") or ()),
        "holdings": dict(holdings) if holdings else None,
        "price_sources": list(report.get("price_sources") or ()),
        "news_sources": list(report.get("news_sources") or ()),
        "start": None,
        "end": None,
        "lookback_days": windows.get("lookback_days"),
        "benchmark": portfolio.get("benchmark"),
        "risk_free_rate": portfolio.get("risk_free_rate"),
        "workers": report.get("workers"),
    }
    if config is not None:
        settings.update(
            price_sources=list(config.price_sources),
            news_sources=list(config.news_sources),
            start=config.start.isoformat() if config.start else None,
            end=config.end.isoformat() if config.end else None,
            lookback_days=config.lookback_days,
            benchmark=config.benchmark,
            risk_free_rate=config.risk_free_rate,
        )
    return settings


def build_document(
    result: Mapping,
    *,
    close: pd.DataFrame | None = None,
    series: Mapping[str, pd.DataFrame] | None = None,
    holdings: Mapping[str, float] | None = None,
    config: AnalysisConfig | None = None,
) -> dict:
    """The report document: ``result`` plus schema version, tool, settings, daily series,
    position analytics and stage durations (a new dict; ``result`` is not changed)."""
    document = dict(jsonable(result))
    report = dict(document.get("report") or {})
    analytics, portfolio_series = portfolio_analytics(
        close, report.get("portfolio") or {}, holdings
    )
    report["as_of"] = as_of(document)
    report["settings"] = run_settings(document, holdings, config)
    report["stage_durations"] = stage_durations(report)
    if analytics is not None:
        report["analytics"] = analytics
    report["series"] = {"portfolio": portfolio_series, "tickers": ticker_series(series)}
    document["report"] = report
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": TOOL_NAME, "version": tool_version()},
        **document,
    }


# --- writing ---------------------------------------------------------------------------------


def _write_atomically(path: Path, text: str) -> Path:
    """Write ``text`` next to ``path`` and rename it over: a reader never sees half a file.
    (The temporary name is per process and thread; the file gets the usual umask mode.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


# A list of scalars over several lines as json.dumps(indent=...) writes it: no brackets or
# braces inside (JSON strings never hold a raw newline, so joining lines leaves them intact).
_SCALAR_LIST = re.compile(r"\[\n\s+([^\[\]{}]*?)\n\s*\]")


def to_json(result: Mapping) -> str:
    """``result`` as JSON text: indented objects, lists of numbers or strings on one line
    (the daily series would otherwise take one line per number), NaN as null."""
    text = json.dumps(jsonable(result), indent=2, allow_nan=False)
    return _SCALAR_LIST.sub(lambda m: "[" + re.sub(r",\n\s+", ", ", m.group(1)) + "]", text) + "\n"


def write_json_report(result: Mapping, path: str | Path) -> Path:
    """Write ``result`` (a document or a plain result) as JSON (see :func:`to_json`)."""
    return _write_atomically(Path(path), to_json(result))


def write_html_report(result: Mapping, path: str | Path) -> Path:
    """Write :func:`render_html`'s page of ``result`` to ``path``."""
    return _write_atomically(Path(path), render_html(result))


def write_reports(
    run: AnalysisRun, output_dir: str | Path, *, config: AnalysisConfig | None = None
) -> dict[str, Path]:
    """``report.json`` and ``report.html`` of a run in ``output_dir`` (created if missing).

    ``run.result`` becomes the full document (what report.json holds), so a caller that
    prints the result prints the same thing. The durations of building, rendering and
    writing go into ``report.stage_durations``.
    """
    output_dir = Path(output_dir)
    started = time.perf_counter()
    document = build_document(
        run.result, close=run.close, series=run.series, holdings=run.holdings, config=config
    )
    built = time.perf_counter()
    page = render_html(document)
    rendered = time.perf_counter()
    html_path = _write_atomically(output_dir / "report.html", page)
    written = time.perf_counter()
    durations = document["report"]["stage_durations"]
    durations["report_build"] = round(built - started, 4)
    durations["report_render"] = round(rendered - built, 4)
    durations["report_write_html"] = round(written - rendered, 4)
    json_path = write_json_report(document, output_dir / "report.json")
    run.result = document
    return {"json": json_path, "html": html_path}


def chart_tickers(tickers: Sequence[str], holdings: Mapping[str, float] | None) -> list[str]:
    """Which tickers get their own chart: the first MAX_TICKER_CHARTS, holdings first."""
    ordered = list(holdings) + [t for t in tickers if t not in holdings] if holdings else tickers
    return list(ordered)[:MAX_TICKER_CHARTS]


# --- terminal ------------------------------------------------------------------------------


def summary_table(result: Mapping, max_rows: int = MAX_TABLE_ROWS) -> Table:
    """A rich table of the per-ticker results (the first ``max_rows`` rows)."""
    from rich.table import Table

    report = result.get("report", {})
    table = Table(
        title=f"Portfolio analysis: {result.get('status')} "
        f"({report.get('securities_analyzed', 0)} securities, "
        f"{_format(report.get('execution_time_seconds'))} s)",
        title_justify="left",
    )
    for key, label in _TABLE_COLUMNS:
        table.add_column(label, justify="left" if key in ("ticker", "source") else "right")
    rows = result.get("combined_analysis", [])
    for row in rows[:max_rows]:
        cells = []
        for key, _ in _TABLE_COLUMNS:
            text = _format(row.get(key))
            if key == "avg_sentiment" and isinstance(row.get(key), float):
                value = row[key]
                style = (
                    "green"
                    if value >= POSITIVE_SENTIMENT
                    else "red"
                    if value <= NEGATIVE_SENTIMENT
                    else ""
                )
                text = f"[{style}]{text}[/]" if style else text
            if key == "rsi_14" and isinstance(row.get(key), float):
                style = "red" if row[key] >= 70 else "green" if row[key] <= 30 else ""
                text = f"[{style}]{text}[/]" if style else text
            cells.append(text)
        table.add_row(*cells)
    if len(rows) > max_rows:
        table.caption = f"... and {len(rows) - max_rows} more in the JSON/HTML report"
    return table


def portfolio_lines(result: Mapping) -> list[str]:
    """Short text lines with the portfolio figures, for the terminal."""
    portfolio = (result.get("report") or {}).get("portfolio") or {}
    if not portfolio:
        return []
    if "error" in portfolio:
        return [f"Portfolio: {portfolio['error']}"]
    figures = [
        f"{label} {_format(portfolio.get(key), kind)}"
        for key, label, kind in _PORTFOLIO_FIGURES
        if portfolio.get(key) is not None
    ]
    period = f"{portfolio.get('start')} to {portfolio.get('end')}"
    coverage = portfolio.get("coverage") or {}
    if coverage.get("tickers_asked"):  # what the figures cover, wherever they are shown
        period = (
            f"{coverage.get('tickers_used')} of {coverage['tickers_asked']} tickers, {period}, "
            f"{coverage.get('returns')} daily returns"
        )
    return [f"Portfolio ({period}): " + ", ".join(figures)]
