"""Reports of a run: JSON, a self-contained HTML page with charts, and a terminal table.

The HTML report embeds every chart as a base64 PNG drawn with matplotlib (Agg backend) and
carries its CSS inline, so opening it fetches nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from portfolio_analysis.aggregate import jsonable
from portfolio_analysis.vocabulary import NEGATIVE_SENTIMENT, POSITIVE_SENTIMENT

if TYPE_CHECKING:
    from rich.table import Table

    from portfolio_analysis.pipeline import AnalysisRun

# Charts stay readable and the page small on a 500-ticker universe.
MAX_TICKER_CHARTS = 8
MAX_HEATMAP_TICKERS = 20
MAX_SENTIMENT_BARS = 30
MAX_TABLE_ROWS = 25

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


# --- JSON ----------------------------------------------------------------------------------


def write_json_report(result: Mapping, path: str | Path) -> Path:
    """Write the run's result dict as indented JSON (NaN as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(result), indent=2) + "\n", encoding="utf-8")
    return path


# --- charts --------------------------------------------------------------------------------


def _figure_to_data_uri(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.autolayout": True, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def ticker_chart(ticker: str, frame: pd.DataFrame) -> str:
    """Close with Bollinger bands and SMAs, RSI, and MACD of one ticker, as a data URI."""
    plt = _pyplot()
    figure, (price, rsi, macd) = plt.subplots(
        3, 1, figsize=(9, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.2, 1.4]}
    )
    dates = frame.index
    if {"bollinger_lower", "bollinger_upper"} <= set(frame.columns):
        price.fill_between(
            dates,
            frame["bollinger_lower"],
            frame["bollinger_upper"],
            color="tab:blue",
            alpha=0.12,
            label="Bollinger 20/2",
        )
    price.plot(dates, frame["close"], color="black", linewidth=1.2, label="close")
    for column, colour in (
        ("sma_20", "tab:orange"),
        ("sma_50", "tab:green"),
        ("sma_200", "tab:red"),
    ):
        if column in frame.columns and frame[column].notna().any():
            price.plot(dates, frame[column], color=colour, linewidth=0.9, label=column.upper())
    price.set_title(f"{ticker}: close, Bollinger bands and moving averages")
    price.legend(loc="upper left", fontsize=8, ncols=5)
    if "rsi_14" in frame.columns:
        rsi.plot(dates, frame["rsi_14"], color="tab:purple", linewidth=1)
        rsi.axhline(70, color="tab:red", linewidth=0.8, linestyle="--")
        rsi.axhline(30, color="tab:green", linewidth=0.8, linestyle="--")
        rsi.set_ylim(0, 100)
        rsi.set_ylabel("RSI 14")
    if "macd" in frame.columns:
        if "macd_hist" in frame.columns:
            hist = frame["macd_hist"].fillna(0.0)
            colours = np.where(hist.to_numpy() >= 0, "tab:green", "tab:red")
            macd.bar(dates, hist, color=colours, width=1.0, alpha=0.5, label="histogram")
        macd.plot(dates, frame["macd"], color="tab:blue", linewidth=1, label="MACD")
        if "macd_signal" in frame.columns:
            macd.plot(dates, frame["macd_signal"], color="tab:orange", linewidth=1, label="signal")
        macd.set_ylabel("MACD 12/26/9")
        macd.legend(loc="upper left", fontsize=8, ncols=3)
    figure.autofmt_xdate()
    return _figure_to_data_uri(figure)


def sentiment_chart(combined: Sequence[Mapping]) -> str | None:
    """Mean headline sentiment per ticker as horizontal bars (most extreme first if many)."""
    rows = [
        (r["ticker"], r["avg_sentiment"]) for r in combined if r.get("avg_sentiment") is not None
    ]
    if not rows:
        return None
    rows.sort(key=lambda row: -abs(row[1]))
    rows = sorted(rows[:MAX_SENTIMENT_BARS], key=lambda row: row[1])
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(9, 0.9 + 0.28 * len(rows)))
    values = [v for _, v in rows]
    colours = [
        "tab:green" if v >= POSITIVE_SENTIMENT else "tab:red" if v <= NEGATIVE_SENTIMENT else "grey"
        for v in values
    ]
    axes.barh([t for t, _ in rows], values, color=colours)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlim(-1, 1)
    axes.set_xlabel("mean VADER compound score (finance lexicon)")
    axes.set_title("News sentiment per ticker")
    return _figure_to_data_uri(figure)


def portfolio_chart(values: pd.Series) -> str:
    """Portfolio value and its drawdown from the running peak."""
    from portfolio_analysis.portfolio import drawdown_series

    plt = _pyplot()
    figure, (value_axes, drawdown_axes) = plt.subplots(
        2, 1, figsize=(9, 4.8), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    value_axes.plot(values.index, values, color="tab:blue", linewidth=1.2)
    value_axes.set_title("Portfolio value")
    drawdown = drawdown_series(values)
    drawdown_axes.fill_between(drawdown.index, drawdown * 100, 0, color="tab:red", alpha=0.4)
    drawdown_axes.set_ylabel("drawdown %")
    figure.autofmt_xdate()
    return _figure_to_data_uri(figure)


def correlation_chart(correlation: Mapping[str, Mapping[str, float | None]]) -> str | None:
    """Heat map of the daily-return correlation matrix."""
    matrix = pd.DataFrame(correlation).astype("float64")
    if matrix.empty:
        return None
    matrix = matrix.iloc[:MAX_HEATMAP_TICKERS, :MAX_HEATMAP_TICKERS]
    plt = _pyplot()
    size = 2.5 + 0.45 * len(matrix)
    figure, axes = plt.subplots(figsize=(size + 1.2, size))
    image = axes.imshow(matrix.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    axes.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=90)
    axes.set_yticks(range(len(matrix.index)), matrix.index)
    axes.grid(False)
    if len(matrix) <= 12:
        for (row, col), value in np.ndenumerate(matrix.to_numpy()):
            if np.isfinite(value):
                colour = "white" if abs(value) > 0.6 else "black"
                axes.text(
                    col, row, f"{value:.2f}", ha="center", va="center", fontsize=8, color=colour
                )
    figure.colorbar(image, ax=axes, shrink=0.8, label="correlation of daily returns")
    axes.set_title("Correlation of daily returns")
    return _figure_to_data_uri(figure)


# --- HTML ----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1000px;color:#1d2733;padding:0 1rem}
h1{margin-bottom:.2rem}.muted{color:#66707a}
table{border-collapse:collapse;margin:.6rem 0 1.4rem;font-size:.9rem}
th,td{padding:.28rem .6rem;border-bottom:1px solid #e2e6ea;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f6f8}
.status-success{color:#1a7f37}.status-partial{color:#b35900}.status-failed{color:#c62828}
img{max-width:100%;margin:.4rem 0 1.2rem}
.cards{display:flex;flex-wrap:wrap;gap:.6rem;margin:1rem 0}
.card{background:#f4f6f8;border-radius:6px;padding:.5rem .8rem;min-width:8rem}
.card b{display:block;font-size:1.15rem}
"""


def _table(rows: Sequence[Mapping], columns: Sequence[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(_format(row.get(key)))}</td>" for key, _ in columns)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(uri: str | None, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">' if uri else ""


def chart_tickers(tickers: Sequence[str], holdings: Mapping[str, float] | None) -> list[str]:
    """Which tickers get their own chart: the first MAX_TICKER_CHARTS, holdings first."""
    ordered = list(holdings) + [t for t in tickers if t not in holdings] if holdings else tickers
    return list(ordered)[:MAX_TICKER_CHARTS]


def render_html(
    result: Mapping,
    *,
    close: pd.DataFrame | None = None,
    series: Mapping[str, pd.DataFrame] | None = None,
    holdings: Mapping[str, float] | None = None,
) -> str:
    """The whole HTML report as one string (charts inline, no external resources)."""
    report = result.get("report", {})
    combined = result.get("combined_analysis", [])
    portfolio = report.get("portfolio") or {}
    status = str(result.get("status", "unknown"))
    summary = report.get("summary", {})
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Portfolio analysis report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Portfolio analysis</h1>",
        f"<p class='muted'>{html.escape(str(report.get('timestamp', '')))} &middot; "
        f"status <b class='status-{html.escape(status)}'>{html.escape(status)}</b> &middot; "
        f"{report.get('securities_analyzed', 0)} securities analysed in "
        f"{_format(report.get('execution_time_seconds'))} s on {report.get('workers', '?')} "
        f"Dask worker(s) &middot; price sources: "
        f"{html.escape(', '.join(report.get('price_sources', [])))}</p>",
        "<div class='cards'>",
    ]
    cards = [
        ("Avg RSI 14", summary.get("avg_rsi"), "num"),
        ("Avg SMA 20", summary.get("avg_sma_20"), "num"),
        ("Avg sentiment", summary.get("avg_news_sentiment"), "num"),
        ("Positive / negative", None, "num"),
    ]
    for label, value, kind in cards[:3]:
        parts.append(f"<div class='card'>{label}<b>{html.escape(_format(value, kind))}</b></div>")
    parts.append(
        f"<div class='card'>{cards[3][0]}<b>{summary.get('securities_with_positive_sentiment', 0)}"
        f" / {summary.get('securities_with_negative_sentiment', 0)}</b></div></div>"
    )
    if portfolio and "error" not in portfolio:
        parts.append("<h2>Portfolio</h2>")
        parts.append(
            f"<p class='muted'>{html.escape(str(portfolio.get('start')))} to "
            f"{html.escape(str(portfolio.get('end')))}, {portfolio.get('periods')} daily "
            f"returns, {html.escape(str(portfolio.get('mode')))}"
            + (
                f", benchmark {html.escape(portfolio['benchmark'])}"
                if portfolio.get("benchmark")
                else ""
            )
            + "</p>"
        )
        figure_rows = [
            {"figure": label, "value": _format(portfolio.get(key), kind)}
            for key, label, kind in _PORTFOLIO_FIGURES
            if portfolio.get(key) is not None
        ]
        parts.append(_table(figure_rows, [("figure", "Figure"), ("value", "Value")]))
        if close is not None:
            from portfolio_analysis.portfolio import portfolio_value_series

            tickers = [t for t in portfolio.get("tickers", []) if t in close.columns]
            positions = {t: holdings[t] for t in tickers if t in holdings} if holdings else None
            try:
                values = portfolio_value_series(close[tickers], holdings=positions)
            except ValueError:
                values = None
            if values is not None:
                parts.append(_image(portfolio_chart(values), "portfolio value and drawdown"))
        if portfolio.get("correlation"):
            parts.append(
                _image(correlation_chart(portfolio["correlation"]), "correlation heat map")
            )
    elif portfolio.get("error"):
        parts.append(f"<h2>Portfolio</h2><p>{html.escape(portfolio['error'])}</p>")
    parts.append("<h2>Securities</h2>")
    parts.append(_table(combined, _TABLE_COLUMNS))
    parts.append(_image(sentiment_chart(combined), "sentiment per ticker"))
    if series:
        parts.append("<h2>Indicators</h2>")
        for ticker, frame in series.items():
            if frame is not None and not frame.empty and "close" in frame.columns:
                parts.append(_image(ticker_chart(ticker, frame), f"{ticker} indicators"))
    failed = result.get("failed", [])
    if failed:
        parts.append("<h2>Failed</h2>")
        parts.append(
            _table(failed, [("ticker", "Ticker"), ("stage", "Stage"), ("reason", "Reason")])
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html_report(
    result: Mapping,
    path: str | Path,
    *,
    close: pd.DataFrame | None = None,
    series: Mapping[str, pd.DataFrame] | None = None,
    holdings: Mapping[str, float] | None = None,
) -> Path:
    """Write :func:`render_html`'s page to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        render_html(result, close=close, series=series, holdings=holdings), encoding="utf-8"
    )
    return path


def write_reports(run: AnalysisRun, output_dir: str | Path) -> dict[str, Path]:
    """``report.json`` and ``report.html`` of a run in ``output_dir`` (created if missing)."""
    output_dir = Path(output_dir)
    return {
        "json": write_json_report(run.result, output_dir / "report.json"),
        "html": write_html_report(
            run.result,
            output_dir / "report.html",
            close=run.close,
            series=run.series,
            holdings=run.holdings,
        ),
    }


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
    return [f"Portfolio ({period}): " + ", ".join(figures)]
