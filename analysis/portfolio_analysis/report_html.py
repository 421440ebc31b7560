"""The HTML report: one self-contained page drawn from the JSON report document alone.

Tables, cards, the monthly-returns and correlation grids and the sentiment bars are plain
HTML; the time-series charts are drawn in the browser by uPlot (MIT, vendored under
``vendor/uplot``, ~50 KB) from the daily series embedded in the page as JSON. Everything,
script and styles included, is inline: opening the file fetches nothing. Each chart
container carries ``data-chart``; the page script sets ``data-drawn`` on it once drawn and
``data-charts-drawn`` on ``<body>`` when all are, which the browser test checks.

Colours are the Okabe-Ito colour-blind-safe palette, and every colour cue (gains/losses,
sentiment) also has a sign or a word, so colour is never the only cue.
"""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from portfolio_analysis.vocabulary import NEGATIVE_SENTIMENT, POSITIVE_SENTIMENT

HERE = Path(__file__).parent
# Large universes: how many rows/bars/cells the page shows (the JSON has them all).
MAX_TABLE_ROWS = 25
MAX_SIGNAL_ROWS_EACH_END = 12
MAX_SENTIMENT_BARS_EACH_END = 15
MAX_HEATMAP_TICKERS = 20
MAX_HEADLINE_TICKERS = 30
CHART_DIGITS = 4  # significant digits of the series embedded for the charts

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MINUS = "\u2212"


@functools.cache
def _asset(relative: str) -> str:
    return (HERE / relative).read_text(encoding="utf-8")


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def fmt(value: Any, kind: str = "num", signed: bool = False) -> str:
    """A figure for a person: ``pct`` fractions as percent, ``money``, or a plain number;
    ``-`` when missing. Negative numbers get a real minus sign."""
    number = _num(value)
    if number is None:
        return "-" if value is None or isinstance(value, float) else _esc(value)
    if kind == "pct":
        text = f"{number:+.2%}" if signed else f"{number:.2%}"
    elif kind == "money":
        text = f"{number:,.2f}"
    elif kind == "int" or (kind == "shares" and number.is_integer()):
        text = f"{number:,.0f}"
    elif kind == "shares":
        text = f"{number:,.4g}"
    else:
        text = f"{number:+,.2f}" if signed else f"{number:,.2f}"
        if abs(number) < 1 and number != 0:
            text = f"{number:+.3f}" if signed else f"{number:.3f}"
    return text.replace("-", _MINUS)


def _table(
    rows: Iterable[Sequence[str]],
    headers: Sequence[str],
    *,
    cls: str = "",
    caption: str | None = None,
) -> str:
    """A table of already-escaped cells (first column left-aligned)."""
    head = "".join(f"<th scope='col'>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{caption}</caption>" if caption else ""
    return (
        f"<div class='scroll'><table class='{cls}'>{cap}<thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )


def _sentence(text: Any) -> str:
    """``text`` as a sentence: capital first letter, final full stop."""
    text = str(text or "").strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _note(text: str | None) -> str:
    return f"<p class='note'>{_esc(text)}</p>" if text else ""


def _chart(name: str, label: str, height: int = 260) -> str:
    return (
        f"<figure class='chart' data-chart='{_esc(name)}' role='img' aria-label='{_esc(label)}' "
        f"style='min-height:{height}px'></figure>"
    )


# --- chart data ------------------------------------------------------------------------------


def _short(values: Sequence | None, digits: int = CHART_DIGITS, scale: float = 1.0) -> list | None:
    """A JSON series again rounded to ``digits`` significant digits for the page."""
    if values is None:
        return None
    array = np.array([np.nan if v is None else v for v in values], dtype="float64") * scale
    finite = np.isfinite(array)
    if not finite.any():
        return [None] * len(array)
    largest = float(np.abs(array[finite]).max())
    decimals = max(digits - 1 - (int(np.floor(np.log10(largest))) if largest > 0 else 0), 0)
    rounded = np.round(array, decimals) + 0.0
    return [
        (int(v) if decimals == 0 else v) if ok else None
        for v, ok in zip(rounded.tolist(), finite.tolist(), strict=True)
    ]


def chart_data(document: Mapping) -> dict:
    """What the page script draws, from the document's ``report.series``."""
    report = document.get("report") or {}
    series = report.get("series") or {}
    analytics = report.get("analytics") or {}
    data: dict[str, Any] = {"portfolio": None, "tickers": []}
    portfolio = series.get("portfolio")
    if portfolio and portfolio.get("dates"):
        reference = analytics.get("reference") or {}
        data["portfolio"] = {
            "dates": portfolio["dates"],
            "value": _short(portfolio.get("value"), 5),
            "reference": _short(portfolio.get("reference"), 5),
            "reference_label": reference.get("label"),
            "drawdown": _short(portfolio.get("drawdown"), 3, 100.0),
            "volatility": _short(portfolio.get("rolling_volatility"), 3, 100.0),
            "sharpe": _short(portfolio.get("rolling_sharpe"), 3),
            "window": portfolio.get("rolling_window_days"),
        }
    for ticker, entry in (series.get("tickers") or {}).items():
        if not entry.get("dates"):
            continue
        item = {"ticker": ticker, "dates": entry["dates"]}
        for key, value in entry.items():
            if key != "dates":
                item[key] = _short(value)
        data["tickers"].append(item)
    return data


def _json_script(data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    # "</" would end the script element; "<!--" would start a comment in it.
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


# --- sections --------------------------------------------------------------------------------


def _header(document: Mapping) -> str:
    report = document.get("report") or {}
    status = str(document.get("status", "unknown"))
    as_of = report.get("as_of")
    tool = document.get("tool") or {}
    sources = ", ".join(report.get("price_sources") or ()) or "-"
    return (
        "<header><div><h1>Portfolio analysis</h1>"
        f"<p class='muted'>Run {_esc(report.get('timestamp'))} &middot; "
        f"{_esc(report.get('securities_analyzed', 0))} securities &middot; "
        f"{fmt(report.get('execution_time_seconds'))} s on {_esc(report.get('workers', '?'))} "
        f"Dask worker(s) &middot; price sources: {_esc(sources)} &middot; "
        f"{_esc(tool.get('name', 'portfolio-operator'))} {_esc(tool.get('version', ''))}</p>"
        "</div>"
        f"<div class='asof'><span>Data as of</span><b>{_esc(as_of or 'unknown')}</b>"
        f"<span class='status status-{_esc(status)}'>status: {_esc(status)}</span></div>"
        "</header>"
    )


def _banners(document: Mapping) -> str:
    report = document.get("report") or {}
    status = str(document.get("status", ""))
    parts: list[str] = []
    news = report.get("news") or {}
    # The illustrative-news warning has its own banner below.
    note = news.get("note") if news.get("illustrative") else None
    warnings = [w for w in report.get("warnings") or () if w and not (note and note in w)]
    failed = document.get("failed") or []
    if status in ("partial", "failed") or warnings:
        title = {
            "partial": "Partial result: some of what was asked for is missing",
            "failed": "Failed: no ticker could be analysed",
        }.get(status, "Warnings")
        items = "".join(f"<li>{_esc(w)}</li>" for w in warnings[:20])
        if len(warnings) > 20:
            items += f"<li>... and {len(warnings) - 20} more in report.json</li>"
        if not warnings and failed:
            items = f"<li>{len(failed)} failed ticker/stage(s): see Failed below.</li>"
        parts.append(
            f"<div class='banner banner-{_esc(status or 'warn')}' role='alert'>"
            f"<b>{_esc(title)}</b><ul>{items}</ul></div>"
        )
    portfolio = report.get("portfolio") or {}
    coverage = portfolio.get("coverage")
    if coverage:
        excluded = coverage.get("excluded") or {}
        text = (
            f"Portfolio figures cover <b>{_esc(coverage.get('tickers_used'))} of "
            f"{_esc(coverage.get('tickers_asked'))}</b> tickers from "
            f"<b>{_esc(coverage.get('start'))}</b> to <b>{_esc(coverage.get('end'))}</b> "
            f"({_esc(coverage.get('returns'))} daily returns). "
            f"{_esc(_sentence(coverage.get('rule')))}"
        )
        if excluded:
            names = ", ".join(list(excluded)[:12]) + (" ..." if len(excluded) > 12 else "")
            text += f" Excluded: {len(excluded)} ({_esc(names)}); reasons under Data notes."
        cls = "banner-info" if not excluded else "banner-partial"
        parts.append(f"<div class='banner {cls}'>{text}</div>")
    elif portfolio.get("excluded"):
        excluded = portfolio["excluded"]
        parts.append(
            "<div class='banner banner-partial'>Portfolio figures leave out "
            f"{len(excluded)} ticker(s): {_esc(', '.join(excluded[:12]))}"
            f"{' ...' if len(excluded) > 12 else ''}; reasons under Data notes.</div>"
        )
    if news.get("illustrative"):
        parts.append(
            "<div class='banner banner-info'><b>Illustrative headlines.</b> "
            f"{_esc(news.get('note') or 'Some headlines are invented sample data, not news.')}"
            "</div>"
        )
    return "".join(parts)


def _card(label: str, value: str, hint: str = "") -> str:
    title = f" title='{_esc(hint)}'" if hint else ""
    return f"<div class='card'{title}><span>{_esc(label)}</span><b>{value}</b></div>"


def _cards(document: Mapping) -> str:
    report = document.get("report") or {}
    portfolio = report.get("portfolio") or {}
    analytics = report.get("analytics") or {}
    summary = report.get("summary") or {}
    cards: list[str] = []
    if portfolio and not portfolio.get("error"):
        cards += [
            _card("Total return", fmt(portfolio.get("total_return"), "pct", True)),
            _card("Annualised return", fmt(portfolio.get("annualized_return"), "pct", True)),
            _card("Volatility (ann.)", fmt(portfolio.get("annualized_volatility"), "pct")),
            _card("Sharpe ratio", fmt(portfolio.get("sharpe_ratio")), "annualised"),
            _card(
                "Max drawdown",
                fmt(portfolio.get("max_drawdown"), "pct"),
                f"peak {portfolio.get('max_drawdown_peak')}, "
                f"trough {portfolio.get('max_drawdown_trough')}",
            ),
        ]
        reference = analytics.get("reference") or {}
        if reference.get("kind") == "benchmark":
            cards.append(
                _card(
                    f"Excess vs {reference.get('ticker')}",
                    fmt(analytics.get("excess_return"), "pct", True),
                    "total return minus the benchmark's over the same dates",
                )
            )
        if portfolio.get("benchmark"):
            cards.append(_card(f"Beta vs {portfolio['benchmark']}", fmt(portfolio.get("beta"))))
        cards.append(_card("1-day VaR 95%", fmt(portfolio.get("var_95"), "pct"), "a loss"))
        if portfolio.get("total_market_value") is not None:
            cards.append(_card("Market value", fmt(portfolio.get("total_market_value"), "money")))
    if summary.get("avg_news_sentiment") is not None:
        cards.append(
            _card(
                "News sentiment",
                f"{fmt(summary.get('avg_news_sentiment'), signed=True)} "
                f"<small>({_esc(summary.get('securities_with_positive_sentiment', 0))} pos / "
                f"{_esc(summary.get('securities_with_negative_sentiment', 0))} neg)</small>",
            )
        )
    return f"<section class='cards'>{''.join(cards)}</section>"


def _portfolio_section(document: Mapping) -> str:
    report = document.get("report") or {}
    portfolio = report.get("portfolio") or {}
    if not portfolio:
        return ""
    if portfolio.get("error"):
        return f"<h2>Portfolio</h2><p class='banner banner-failed'>{_esc(portfolio['error'])}</p>"
    analytics = report.get("analytics") or {}
    series = (report.get("series") or {}).get("portfolio")
    mode = (
        "buy and hold of the given share counts"
        if portfolio.get("mode") == "holdings"
        else "weights rebalanced daily"
    )
    parts = [
        "<h2 id='portfolio'>Portfolio</h2>",
        f"<p class='muted'>{_esc(portfolio.get('start'))} to {_esc(portfolio.get('end'))}, "
        f"{_esc(portfolio.get('periods'))} daily returns, {_esc(mode)}; risk-free rate "
        f"{fmt(portfolio.get('risk_free_rate') or 0.0, 'pct')} a year.</p>",
    ]
    if series:
        reference = analytics.get("reference") or {}
        parts.append(_chart("equity", "portfolio value against the reference line", 300))
        parts.append(_note(reference.get("note")))
        parts.append(_chart("drawdown", "drawdown from the running peak, percent", 200))
        parts.append("<div class='pair'>")
        parts.append(_chart("volatility", "rolling annualised volatility, percent", 200))
        parts.append(_chart("sharpe", "rolling annualised Sharpe ratio", 200))
        parts.append("</div>")
        window = series.get("rolling_window_days")
        parts.append(
            _note(
                f"Rolling figures use the last {window} daily returns (about a quarter), "
                "annualised with 252 trading days."
            )
        )
    parts.append(_figures_table(portfolio))
    parts.append(_monthly_table(analytics.get("monthly_returns") or []))
    parts.append(_positions_table(portfolio, analytics.get("positions") or []))
    parts.append(_heatmap(portfolio, analytics))
    return "".join(parts)


def _figures_table(portfolio: Mapping) -> str:
    rows = [
        ("Total return", fmt(portfolio.get("total_return"), "pct", True)),
        ("Annualised return (geometric)", fmt(portfolio.get("annualized_return"), "pct", True)),
        ("Annualised volatility", fmt(portfolio.get("annualized_volatility"), "pct")),
        ("Sharpe ratio (annualised)", fmt(portfolio.get("sharpe_ratio"))),
        (
            "Max drawdown (loss from peak)",
            f"{fmt(portfolio.get('max_drawdown'), 'pct')} "
            f"({_esc(portfolio.get('max_drawdown_peak'))} to "
            f"{_esc(portfolio.get('max_drawdown_trough'))})",
        ),
        ("1-day VaR 95% (loss)", fmt(portfolio.get("var_95"), "pct")),
        ("1-day CVaR 95% (loss)", fmt(portfolio.get("cvar_95"), "pct")),
    ]
    if portfolio.get("benchmark"):
        rows.append((f"Beta vs {_esc(portfolio['benchmark'])}", fmt(portfolio.get("beta"))))
    return _table(rows, ("Figure", "Value"), cls="figures")


def _shade(value: float | None, scale: float, positive: str, negative: str) -> str:
    """An inline background whose strength grows with |value| / scale (white text on the
    darkest cells, so the figure stays readable)."""
    if value is None or scale <= 0:
        return ""
    alpha = min(abs(value) / scale, 1.0) * 0.75 + 0.08
    colour = positive if value >= 0 else negative
    text = ";color:#fff" if alpha > 0.55 else ""
    return f" style='background:rgba({colour},{alpha:.2f}){text}'"


_BLUE, _ORANGE = "0,114,178", "213,94,0"  # Okabe-Ito blue and vermillion


def _monthly_table(monthly: Sequence[Mapping]) -> str:
    if not monthly:
        return ""
    by_year: dict[str, dict[int, float]] = {}
    for item in monthly:
        year, month = str(item["month"]).split("-")
        by_year.setdefault(year, {})[int(month)] = item["return"]
    scale = max((abs(v) for months in by_year.values() for v in months.values()), default=0)
    rows = []
    for year, months in by_year.items():
        cells = [f"<th scope='row'>{_esc(year)}</th>"]
        for month in range(1, 13):
            value = months.get(month)
            text = fmt(value, "pct", True) if value is not None else ""
            cells.append(f"<td{_shade(value, scale, _BLUE, _ORANGE)}>{text}</td>")
        total = float(np.prod([1 + v for v in months.values()]) - 1)
        cells.append(f"<td class='total'>{fmt(total, 'pct', True)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th scope='col'>{m}</th>" for m in ("Year", *MONTHS, "Year (in window)"))
    return (
        "<h3>Monthly returns</h3><div class='scroll'><table class='monthly'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        + _note(
            "Return of the portfolio in each calendar month (the first and last months are "
            "partial: they start or end with the window). Blue: gain, vermillion: loss."
        )
    )


def _equal(weights: Iterable[Any]) -> bool:
    values = [float(w) for w in weights if _num(w) is not None]
    return bool(values) and max(values) - min(values) < 1e-12


def _positions_table(portfolio: Mapping, positions: Sequence[Mapping]) -> str:
    """Holdings: the largest positions; with equal weights (where size says nothing) the
    largest contributors and detractors."""
    if not positions:
        return ""
    holdings = portfolio.get("mode") == "holdings"
    headers = ["Ticker", *(["Shares"] if holdings else []), "Weight"]
    headers += [*(["Market value"] if holdings else []), "Contribution to return"]
    headers += ["Share of risk"]
    note = (
        "Weights at the last close. Contribution to return: each position's part of the "
        "total return (they add up to it). Share of risk: each position's part of the "
        "portfolio's daily-return variance at current weights (they add up to 100%)."
    )
    if _equal(p.get("weight") for p in positions):
        ordered = sorted(positions, key=lambda p: -float(p.get("contribution_to_return") or 0))
        shown, hidden = _ends(ordered, MAX_SIGNAL_ROWS_EACH_END)
        if hidden:
            note += (
                f" All weights are equal: the {MAX_SIGNAL_ROWS_EACH_END} largest contributors "
                f"and the {MAX_SIGNAL_ROWS_EACH_END} largest detractors are shown; the "
                f"{hidden} between them are in report.json."
            )
    else:
        shown = list(positions[:MAX_TABLE_ROWS])
        hidden = len(positions) - len(shown)
        if hidden:
            note += (
                f" Largest {MAX_TABLE_ROWS} positions shown; {hidden} smaller ones are in "
                "report.json."
            )
    rows = []
    for p in shown:
        if p is None:
            rows.append([f"<i>{hidden} positions not shown</i>", *[""] * (len(headers) - 1)])
            continue
        row = [_esc(p["ticker"])]
        if holdings:
            row.append(fmt(p.get("shares"), "shares"))
        row.append(fmt(p.get("weight"), "pct"))
        if holdings:
            row.append(fmt(p.get("market_value"), "money"))
        row += [fmt(p.get("contribution_to_return"), "pct", True)]
        row += [fmt(p.get("contribution_to_risk"), "pct")]
        rows.append(row)
    return "<h3>Holdings</h3>" + _table(rows, headers, cls="positions") + _note(note)


def _heatmap(portfolio: Mapping, analytics: Mapping) -> str:
    correlation = portfolio.get("correlation") or {}
    if not correlation:
        return ""
    weights = portfolio.get("weights") or {}
    tickers = sorted(correlation, key=lambda t: -float(weights.get(t) or 0.0))
    shown = tickers[:MAX_HEATMAP_TICKERS]
    head = "".join(f"<th scope='col' class='rot'><span>{_esc(t)}</span></th>" for t in shown)
    rows = []
    for row in shown:
        cells = [f"<th scope='row'>{_esc(row)}</th>"]
        for col in shown:
            value = _num((correlation.get(row) or {}).get(col))
            shown_value = round(value, 2) + 0.0 if value is not None else None  # no "-0.00"
            text = f"{shown_value:.2f}".replace("-", _MINUS) if shown_value is not None else ""
            cells.append(f"<td{_shade(value, 1.0, _BLUE, _ORANGE)}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = analytics.get("correlation_note") or portfolio.get("correlation_note") or ""
    if len(tickers) > len(shown):
        note += (
            f" The page shows the {len(shown)} largest by weight of the {len(tickers)} in "
            "report.json."
        )
    if _equal(weights.get(t) for t in tickers):
        note += " All weights are equal, so these are the first in the order asked."
    note += " Blue: moving together, vermillion: moving apart; ordered by weight."
    return (
        "<h3>Correlation of daily returns</h3><div class='scroll'><table class='heat'>"
        f"<thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        + _note(note.strip())
    )


_SIGNAL_WORDS = {
    "overbought": "overbought",
    "oversold": "oversold",
    "neutral": "neutral",
    "bullish": "bullish",
    "bearish": "bearish",
    "above_upper": "above upper band",
    "below_lower": "below lower band",
    "inside": "inside bands",
    "golden_cross": "golden cross",
    "death_cross": "death cross",
}


def _signal(value: Any) -> str:
    if value is None:
        return "-"
    text = _SIGNAL_WORDS.get(str(value), str(value).replace("_", " "))
    cls = ""
    if value in ("bullish", "golden_cross", "oversold"):
        cls = "up"
    elif value in ("bearish", "death_cross", "overbought"):
        cls = "down"
    return f"<span class='sig {cls}'>{_esc(text)}</span>"


def _ends(rows: list, each: int) -> tuple[list, int]:
    """The first and last ``each`` rows, and how many are left out between them."""
    if len(rows) <= 2 * each:
        return rows, 0
    return rows[:each] + [None] + rows[-each:], len(rows) - 2 * each


def _signals_section(document: Mapping) -> str:
    combined = list(document.get("combined_analysis") or [])
    if not combined:
        return ""
    report = document.get("report") or {}
    portfolio = report.get("portfolio") or {}
    weights = portfolio.get("weights") or {}
    if portfolio.get("mode") == "holdings" or len(combined) <= 2 * MAX_SIGNAL_ROWS_EACH_END:
        ordered = sorted(combined, key=lambda r: -float(weights.get(r["ticker"]) or 0.0))
        shown, hidden = ordered[: 2 * MAX_SIGNAL_ROWS_EACH_END], 0
        hidden = len(ordered) - len(shown)
        order_note = "Ordered by portfolio weight."
    else:
        ordered = sorted(
            combined, key=lambda r: -(_num(r.get("rsi_14")) if _num(r.get("rsi_14")) else -1.0)
        )
        shown, hidden = _ends(ordered, MAX_SIGNAL_ROWS_EACH_END)
        order_note = (
            f"Ordered by RSI 14: the {MAX_SIGNAL_ROWS_EACH_END} highest and the "
            f"{MAX_SIGNAL_ROWS_EACH_END} lowest."
        )
    headers = (
        "Ticker",
        "Close",
        "RSI 14",
        "RSI signal",
        "MACD trend",
        "MA trend",
        "Bollinger",
        "%B",
        "SMA 50/200 cross",
        "Sentiment",
        "Source",
    )
    rows = []
    for r in shown:
        if r is None:
            rows.append([f"<i>{hidden} tickers not shown</i>", *[""] * (len(headers) - 1)])
            continue
        cross = _signal(r.get("ma_cross"))
        if r.get("ma_cross_date"):
            cross += f" <small>{_esc(r['ma_cross_date'])}</small>"
        rows.append(
            [
                _esc(r.get("ticker")),
                fmt(r.get("close"), "money"),
                fmt(r.get("rsi_14")),
                _signal(r.get("rsi_signal")),
                _signal(r.get("macd_trend")),
                _signal(r.get("ma_trend")),
                _signal(r.get("bollinger_signal")),
                fmt(r.get("bollinger_pct_b")),
                cross,
                fmt(r.get("avg_sentiment"), signed=True),
                _esc(r.get("source")),
            ]
        )
    note = order_note
    if hidden and portfolio.get("mode") == "holdings":
        note += f" {hidden} more tickers are in report.json."
    elif hidden:
        note += f" {hidden} tickers between them are in report.json."
    note += (
        " RSI above 70 overbought, below 30 oversold; MACD trend from MACD against its "
        "signal line; MA trend from the close against SMA 50 and SMA 200; %B is the close's "
        "place between the Bollinger bands (0 lower, 1 upper)."
    )
    return "<h2 id='signals'>Signals</h2>" + _table(rows, headers, cls="signals") + _note(note)


def _sentiment_section(document: Mapping) -> str:
    combined = document.get("combined_analysis") or []
    scored = [
        (r["ticker"], float(r["avg_sentiment"]), r.get("article_count"))
        for r in combined
        if _num(r.get("avg_sentiment")) is not None
    ]
    if not scored:
        return ""
    scored.sort(key=lambda item: -item[1])
    shown, hidden = _ends(scored, MAX_SENTIMENT_BARS_EACH_END)
    bars = []
    for item in shown:
        if item is None:
            bars.append(f"<li class='gap'>... {hidden} tickers in between not shown ...</li>")
            continue
        ticker, value, count = item
        if value >= POSITIVE_SENTIMENT:
            cls, word = "pos", "positive"
        elif value <= NEGATIVE_SENTIMENT:
            cls, word = "neg", "negative"
        else:
            cls, word = "neu", "neutral"
        width = abs(value) * 50  # percent of the track: -1 .. 1 spans it
        side = "left:50%" if value >= 0 else "right:50%"
        bars.append(
            f"<li><span class='tk'>{_esc(ticker)}</span><span class='track'>"
            f"<span class='bar {cls}' style='{side};width:calc({width:.2f}% + 3px)'></span>"
            f"</span><span class='val'>{fmt(value, signed=True)} {word}"
            f" <small>({_esc(count)} headlines)</small></span></li>"
        )
    news = (document.get("report") or {}).get("news") or {}
    note = (
        "Mean VADER compound score of each ticker's headlines (finance lexicon), from "
        f"{_MINUS}1 to +1; positive at {POSITIVE_SENTIMENT:+.2f} or more, negative at "
        f"{NEGATIVE_SENTIMENT:+.2f} or less."
    ).replace("-", _MINUS)
    if hidden:
        note += (
            f" The {MAX_SENTIMENT_BARS_EACH_END} most positive and the "
            f"{MAX_SENTIMENT_BARS_EACH_END} most negative of {len(scored)} are shown."
        )
    if news.get("illustrative"):
        note += " These headlines are illustrative sample data, not real news."
    return (
        "<h2 id='sentiment'>News sentiment</h2>"
        f"<ul class='sentiment'>{''.join(bars)}</ul>" + _note(note) + _headlines(document)
    )


def _headlines(document: Mapping) -> str:
    news = (document.get("report") or {}).get("news") or {}
    headlines = news.get("headlines") or {}
    if not headlines:
        return ""
    tickers = list(headlines)
    blocks = []
    for ticker in tickers[:MAX_HEADLINE_TICKERS]:
        items = []
        for h in headlines[ticker] or ():
            tag = " <span class='tag'>illustrative</span>" if h.get("illustrative") else ""
            items.append(
                f"<li><span class='score'>{fmt(h.get('score'), signed=True)}</span> "
                f"{_esc(h.get('title'))} <small>{_esc(h.get('source'))}</small>{tag}</li>"
            )
        blocks.append(
            f"<details><summary>{_esc(ticker)} <small>({len(items)} headlines)</small>"
            f"</summary><ul class='headlines'>{''.join(items)}</ul></details>"
        )
    more = len(tickers) - min(len(tickers), MAX_HEADLINE_TICKERS)
    note = (
        f"Headlines of {len(tickers) - more} tickers; {more} more in report.json." if more else ""
    )
    return "<h3>Headlines</h3>" + "".join(blocks) + _note(note)


def _indicators_section(document: Mapping) -> str:
    tickers = ((document.get("report") or {}).get("series") or {}).get("tickers") or {}
    if not tickers:
        return ""
    parts = ["<h2 id='indicators'>Indicators</h2>"]
    for ticker, entry in tickers.items():
        if not entry.get("dates"):
            continue  # nothing to draw (chart_data leaves it out too)
        parts.append(f"<h3>{_esc(ticker)}</h3>")
        parts.append(_chart(f"price:{ticker}", f"{ticker} close, moving averages, Bollinger", 260))
        if entry.get("rsi_14"):
            parts.append(_chart(f"rsi:{ticker}", f"{ticker} RSI 14", 140))
        if entry.get("macd") and entry.get("macd_signal"):
            parts.append(_chart(f"macd:{ticker}", f"{ticker} MACD 12/26/9", 160))
    parts.append(
        _note(
            "Close with SMA 20/50/200 and Bollinger bands (20 days, 2 standard deviations); "
            "RSI 14 with the 30 and 70 lines; MACD 12/26/9 with its signal line and histogram. "
            "Hover for values; the three panels of a ticker share the cursor."
        )
    )
    return "".join(parts)


def _data_notes(document: Mapping) -> str:
    report = document.get("report") or {}
    portfolio = report.get("portfolio") or {}
    notes = report.get("data_notes") or {}
    parts: list[str] = []
    coverage = portfolio.get("coverage") or {}
    excluded = coverage.get("excluded") or portfolio.get("excluded_reasons") or {}
    if coverage.get("rule"):
        parts.append(f"<p><b>Portfolio window.</b> {_esc(_sentence(coverage['rule']))}</p>")
    if excluded:
        parts.append(
            "<h3>Left out of the portfolio figures</h3>"
            + _table(
                ([_esc(t), _esc(r)] for t, r in list(excluded.items())[: MAX_TABLE_ROWS * 2]),
                ("Ticker", "Reason"),
                cls="text",
            )
            + (
                _note(f"{len(excluded) - MAX_TABLE_ROWS * 2} more in report.json.")
                if len(excluded) > MAX_TABLE_ROWS * 2
                else ""
            )
        )
    combined = document.get("combined_analysis") or []
    used: dict[str, int] = {}
    for r in combined:
        if r.get("source"):
            used[r["source"]] = used.get(r["source"], 0) + 1
    if used:
        parts.append(
            "<p><b>Price sources used.</b> "
            + ", ".join(f"{_esc(s)}: {n} ticker(s)" for s, n in used.items())
            + "</p>"
        )
    fallbacks = notes.get("price_fallbacks") or {}
    if fallbacks:
        rows = [
            [_esc(t), _esc(source), _esc(reason)]
            for t, skipped in fallbacks.items()
            for source, reason in (skipped or {}).items()
        ]
        parts.append(
            "<h3>Price sources skipped before the one used</h3>"
            + _table(rows[: MAX_TABLE_ROWS * 2], ("Ticker", "Source skipped", "Reason"), cls="text")
        )
    dropped = notes.get("dropped_rows") or {}
    if dropped:
        rows = [
            [_esc(t), fmt(d.get("rows"), "int"), _esc(d.get("reason"))] for t, d in dropped.items()
        ]
        parts.append(
            "<h3>Rows dropped from price histories</h3>"
            + _table(rows[: MAX_TABLE_ROWS * 2], ("Ticker", "Rows", "Reason"), cls="text")
        )
    adjustments = notes.get("adjustments") or []
    if adjustments:
        rows = [
            [
                _esc(a.get("ticker")),
                _esc(a.get("date")),
                fmt(a.get("ratio")),
                _esc(str(a.get("kind") or "").replace("_", " ")),
            ]
            for a in adjustments
        ]
        parts.append(
            "<h3>Corporate-action adjustments applied</h3>"
            + _table(rows[: MAX_TABLE_ROWS * 2], ("Ticker", "Date", "Ratio", "Kind"))
            + _note(
                "Prices before each date were divided by the ratio (as yfinance's auto_adjust)."
            )
        )
    windows = notes.get("windows") or {}
    if windows:
        parts.append(
            f"<p><b>Windows.</b> Lookback {_esc(windows.get('lookback_days'))} days, indicator "
            f"warm-up {_esc(windows.get('warmup_days'))} days. "
            f"{_esc(_sentence(windows.get('rule')))}</p>"
        )
    failed = document.get("failed") or []
    if failed:
        rows = [
            [_esc(r.get("ticker")), _esc(r.get("stage")), _esc(r.get("reason"))] for r in failed
        ]
        parts.append(
            "<h3 id='failed'>Failed</h3>"
            + _table(rows[: MAX_TABLE_ROWS * 2], ("Ticker", "Stage", "Reason"), cls="text")
            + (
                _note(f"{len(failed) - MAX_TABLE_ROWS * 2} more in report.json.")
                if len(failed) > MAX_TABLE_ROWS * 2
                else ""
            )
        )
    if not parts:
        return ""
    return "<h2 id='notes'>Data notes</h2>" + "".join(parts)


def _run_details(document: Mapping) -> str:
    report = document.get("report") or {}
    settings = report.get("settings") or {}
    durations = report.get("stage_durations") or {}
    rows = []
    for key, value in settings.items():
        if key == "holdings" and value:
            text = ", ".join(f"{t} {fmt(s)}" for t, s in list(value.items())[:40])
            text += " ..." if len(value) > 40 else ""
        elif key == "tickers" and value:
            text = ", ".join(value[:40]) + (
                f" ... ({len(value)} in all)" if len(value) > 40 else ""
            )
        elif isinstance(value, list):
            text = ", ".join(map(str, value))
        else:
            text = "-" if value is None else str(value)
        rows.append([_esc(key.replace("_", " ")), _esc(text)])
    timing_rows = [[_esc(k.replace("_", " ")), f"{fmt(v)} s"] for k, v in durations.items()]
    return (
        "<details class='run'><summary>Run settings and timings</summary>"
        + _table(rows, ("Setting", "Value"), cls="text")
        + _table(timing_rows, ("Stage", "Duration"))
        + _note(
            "Prices, indicators and news run at the same time on the Dask workers: each "
            "duration runs from the tasks' submission to the stage's last batch, so they overlap."
        )
        + f"<p class='muted'>report.json schema {_esc(document.get('schema_version', '-'))}</p>"
        + "</details>"
    )


def render_html(result: Mapping) -> str:
    """The whole HTML report of a report document (or a plain run result, with fewer
    charts) as one string; scripts, styles and data inline, nothing fetched."""
    sections = [
        _header(result),
        _banners(result),
        _cards(result),
        _portfolio_section(result),
        _signals_section(result),
        _sentiment_section(result),
        _indicators_section(result),
        _data_notes(result),
        _run_details(result),
    ]
    return "".join(
        [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width,initial-scale=1'>",
            "<title>Portfolio analysis report</title>",
            f"<style>{_asset('vendor/uplot/uPlot.min.css')}\n{_asset('report_assets/report.css')}"
            "</style></head><body><main>",
            *sections,
            "</main>",
            f"<script type='application/json' id='report-data'>{_json_script(chart_data(result))}"
            "</script>",
            f"<script>{_asset('vendor/uplot/uPlot.iife.min.js')}</script>",
            f"<script>{_asset('report_assets/report.js')}</script>",
            "</body></html>",
        ]
    )
