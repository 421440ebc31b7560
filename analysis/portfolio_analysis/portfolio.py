"""Portfolio figures from a close-price panel and holdings (shares) or weights.

Conventions, chosen once and used everywhere (reports, CLI, operator status):

* **Returns** are simple daily returns, ``r_t = V_t / V_{t-1} - 1``.
* **Holdings** (ticker -> shares) are *buy and hold*: the share counts never change, so the
  portfolio value is ``sum(shares * close)`` on each date and weights drift with prices.
  Market values and weights are taken at the last close.
* **Weights** (ticker -> fraction) are *rebalanced daily* back to the given weights, so the
  portfolio return is ``sum(w_i * r_i)`` on each date; the value series starts at 1.0.
  Weights must be non-negative and sum to 1 (within 1e-6): they are never normalised
  silently, because weights summing to 100 or 0.6 usually mean a mistake worth reporting.
* With neither holdings nor weights, every column of ``close`` gets an equal weight.
* **Daily returns run between consecutive trading sessions** (trading_calendar.py: NYSE
  sessions plus any date the data has). A move across a missing session (a hole in the
  data) is not a daily return: it is dropped from every daily statistic (volatility,
  Sharpe, VaR, CVaR, beta, correlation), never merged into one "day". It still moves the
  value series and the total return, because it really happened.
* A portfolio is valued on the dates where positions holding at least
  ``MIN_DAY_COVERAGE`` (90%) of it have a price (never on invented prices). On a date where
  a position has no price, the day's return is the weighted mean of the positions that
  have one (their weights scaled up); a position's own move across its missing day is left
  out. With complete data this is exactly buy-and-hold (holdings) or daily rebalancing
  (weights).
* **Annualised return** is geometric: ``(1 + total_return) ** (periods_per_year / n) - 1``
  over the ``n`` sessions the window spans (the daily returns counted plus those dropped).
  **Volatility** is the sample standard deviation (ddof=1) of daily returns times
  ``sqrt(periods_per_year)``.
* **Sharpe ratio**: the annual risk-free rate becomes a per-period rate
  ``(1 + rf) ** (1 / periods_per_year) - 1``; Sharpe is ``mean(excess) / std(excess) *
  sqrt(periods_per_year)``; ``None`` when returns do not vary.
* **Max drawdown**, **VaR** and **CVaR** are reported as *positive loss fractions*
  (0.25 = a 25 % loss). ``drawdown_series`` itself is <= 0, as charts show it.
  Historical 1-day 95 % VaR is ``-Q(0.05)`` of the daily returns (numpy's linear
  interpolation); CVaR (expected shortfall) is minus the mean of the returns at or below that
  quantile. A negative VaR means even the worst 5 % of days gained.
* **Beta** is ``cov(r_p, r_b) / var(r_b)`` over the sessions on which both have a daily
  return.

``choose_members`` picks which tickers and which window a portfolio covers when their
histories differ (``coverage`` in the report says what it chose and why).

Memory: a panel of 10,000 tickers x 20 years is 400 MB, so nothing here builds a dates x
positions array whole. Prices are read through ``PositionPrices`` (a view of the caller's
panel) and every per-position quantity is computed block by block of columns
(``BLOCK_BYTES``); sums over positions are added block by block, which can change only the
last bits of a figure (issue 19; docs/benchmarks.md).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from portfolio_analysis.trading_calendar import session_numbers

WEIGHT_SUM_TOLERANCE = 1e-6
VAR_LEVEL = 0.95
# A date counts for the portfolio when positions holding this share of it have a price.
MIN_DAY_COVERAGE = 0.9
# The per-position passes work on blocks of columns of about this many bytes (dates x
# columns of float64), so a 10,000-ticker panel never gets whole-panel temporaries (issue 19).
BLOCK_BYTES = 8 * 2**20


def _json_float(value: float) -> float | None:
    """A plain float for JSON, or None for NaN/inf (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _check_close(close: pd.DataFrame) -> None:
    if not isinstance(close, pd.DataFrame):
        raise TypeError(f"close must be a pandas DataFrame (dates x tickers), got {type(close)}")
    if close.empty or close.shape[1] == 0:
        raise ValueError("close is empty: pass a dates x tickers frame of close prices")
    if not isinstance(close.index, pd.DatetimeIndex):
        raise ValueError("close must be indexed by dates (a DatetimeIndex)")
    if not close.index.is_unique or not close.index.is_monotonic_increasing:
        raise ValueError("close's dates must be sorted and unique")
    non_numeric = [c for c, t in close.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
    if non_numeric:
        raise ValueError(f"close has non-numeric columns {non_numeric}: pass prices as numbers")


def _check_positions(close: pd.DataFrame, positions: Mapping[str, float], what: str) -> pd.Series:
    """Positions as a float Series over known tickers, or a ValueError saying what to fix."""
    if not positions:
        raise ValueError(f"{what} is empty: name at least one ticker")
    missing = sorted(set(positions) - set(close.columns))
    if missing:
        raise ValueError(
            f"{what} name tickers with no prices: {', '.join(map(str, missing))} "
            f"(prices exist for {', '.join(map(str, close.columns))})"
        )
    series = pd.Series({t: positions[t] for t in positions}, dtype="float64")
    bad = series[~np.isfinite(series.to_numpy())]
    if len(bad):
        raise ValueError(f"{what} must be finite numbers; check {', '.join(bad.index)}")
    negative = series[series < 0]
    if len(negative):
        raise ValueError(
            f"{what} must not be negative (short positions are not supported): "
            + ", ".join(f"{t}={v:g}" for t, v in negative.items())
        )
    if series.sum() <= 0:
        raise ValueError(f"{what} total is zero: give at least one ticker a positive amount")
    return series


def _resolve_positions(
    close: pd.DataFrame,
    holdings: Mapping[str, float] | None,
    weights: Mapping[str, float] | None,
) -> tuple[str, pd.Series]:
    """("holdings", shares) or ("weights", weights) after validation."""
    if holdings is not None and weights is not None:
        raise ValueError("pass holdings (shares) or weights, not both")
    if holdings is not None:
        return "holdings", _check_positions(close, holdings, "holdings")
    if weights is None:
        weights = dict.fromkeys(close.columns, 1.0 / close.shape[1])
    series = _check_positions(close, weights, "weights")
    total = float(series.sum())
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise ValueError(
            f"weights sum to {total:g}; they must sum to 1 (divide percentages by 100, "
            "or pass holdings as share counts instead)"
        )
    return "weights", series


def column_blocks(n_rows: int, n_columns: int) -> Iterator[slice]:
    """Slices of about ``BLOCK_BYTES`` of float64 columns each, covering ``n_columns``."""
    width = max(1, BLOCK_BYTES // (8 * max(n_rows, 1)))
    for start in range(0, n_columns, width):
        yield slice(start, min(start + width, n_columns))


def filled(levels: np.ndarray) -> np.ndarray:
    """``levels`` (dates x columns) forward- then back-filled along the dates, as pandas'
    ``ffill().bfill()`` does, without building a DataFrame."""
    valid = ~np.isnan(levels)
    rows = np.where(valid, np.arange(len(levels))[:, None], 0)
    np.maximum.accumulate(rows, axis=0, out=rows)
    np.maximum(rows, valid.argmax(axis=0), out=rows)  # before the first price: the first price
    return np.take_along_axis(levels, rows, axis=0)


@dataclass
class PositionPrices:
    """Close prices of the positions, read from the caller's panel without copying it.

    ``matrix`` is the panel's array (a view when it is one float64 block), ``columns`` the
    matrix column of each position and ``rows`` the dates kept (a slice or row numbers), so
    only blocks of columns are ever copied (:meth:`block`).
    """

    matrix: np.ndarray
    columns: np.ndarray | slice
    rows: np.ndarray | slice
    index: pd.DatetimeIndex
    tickers: pd.Index

    @classmethod
    def of(cls, close: pd.DataFrame, tickers: pd.Index) -> PositionPrices:
        matrix = close.to_numpy(dtype=np.float64, copy=False)
        columns = close.columns.get_indexer(tickers)
        if len(columns) and np.array_equal(columns, np.arange(columns[0], columns[-1] + 1)):
            columns = slice(int(columns[0]), int(columns[-1]) + 1)
        return cls(matrix, columns, slice(None), pd.DatetimeIndex(close.index), tickers)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.index), len(self.tickers)

    def block(self, columns: slice) -> np.ndarray:
        """Prices of the positions in ``columns`` on the kept dates (dates x block)."""
        picked = self.columns[columns] if isinstance(self.columns, np.ndarray) else None
        if picked is None:
            part = self.matrix[:, self.columns][:, columns]
            return part[self.rows]
        if isinstance(self.rows, slice):
            return self.matrix[self.rows][:, picked]
        return self.matrix[np.ix_(self.rows, picked)]

    def blocks(self) -> Iterator[tuple[slice, np.ndarray]]:
        for columns in column_blocks(*self.shape):
            yield columns, self.block(columns)

    def keep(self, mask: np.ndarray) -> PositionPrices:
        """The same positions on the dates where ``mask`` is true."""
        if mask.all():
            return self
        base = np.arange(len(self.matrix))[self.rows]
        return PositionPrices(self.matrix, self.columns, base[mask], self.index[mask], self.tickers)


def _held_prices(close: pd.DataFrame, positions: pd.Series, mode: str) -> PositionPrices:
    """Close prices of the held tickers on the dates the portfolio is valued (positions
    holding at least ``MIN_DAY_COVERAGE`` of it have a price); holes stay NaN.

    Each position's share of the portfolio decides which dates are valued: the weights,
    or each holding's value at its median price. Computed block by block of columns.
    """
    prices = PositionPrices.of(close, positions.index)
    amounts = positions.to_numpy(dtype=np.float64)
    n_rows, n_columns = prices.shape
    nonpositive = np.zeros(n_columns, dtype=bool)
    counts = np.zeros(n_columns, dtype=np.int64)
    medians = np.empty(n_columns)
    for columns, block in prices.blocks():
        with np.errstate(invalid="ignore"):
            nonpositive[columns] = (block <= 0).any(axis=0)
        present = ~np.isnan(block)
        counts[columns] = present.sum(axis=0)
        if mode == "holdings":
            with warnings.catch_warnings():  # a column with no price at all: NaN, as pandas
                warnings.simplefilter("ignore", RuntimeWarning)
                medians[columns] = np.nanmedian(block, axis=0)
    if nonpositive.any():
        bad = prices.tickers[nonpositive]
        raise ValueError(f"close prices must be positive; check {', '.join(map(str, bad))}")
    weights = amounts if mode == "weights" else amounts * medians
    weights = weights / weights.sum()
    share = np.zeros(n_rows)
    for columns, block in prices.blocks():
        share += (~np.isnan(block)) @ weights[columns]
    valued = share >= MIN_DAY_COVERAGE - 1e-12
    if valued.sum() < 2:
        ordered = pd.Series(counts, index=prices.tickers).sort_values()
        raise ValueError(
            f"fewer than 2 dates on which every held ticker has a price "
            f"(shortest history: {ordered.index[0]} with {int(ordered.iloc[0])} prices)"
        )
    return prices.keep(valued)


def member_returns(prices: PositionPrices, columns: np.ndarray, daily: np.ndarray) -> np.ndarray:
    """Daily returns of the positions ``columns`` (NaN where one has no price at either
    end) on the moves ``daily`` selects: only these columns are ever materialised."""
    out = np.empty((int(daily.sum()), len(columns)))
    for part in column_blocks(*prices.shape):
        chosen = columns[(columns >= part.start) & (columns < part.stop)]
        if not len(chosen):
            continue
        spot = np.searchsorted(columns, chosen)
        levels = prices.block(part)[:, chosen - part.start]
        with np.errstate(invalid="ignore"):
            growth = levels[1:] / levels[:-1] - 1.0
        out[:, spot] = growth[daily]  # NaN where a price is missing at either end
    return out


@dataclass
class _Steps:
    """The portfolio's moves from one valued date to the next."""

    values: pd.Series  # portfolio value on each valued date
    returns: pd.Series  # the daily returns (consecutive sessions), by their end date
    daily: np.ndarray  # which moves between valued dates are daily returns
    last_prices: np.ndarray  # each position's last price on the valued dates
    sessions: int  # trading sessions the window spans
    dropped: list[str] = field(default_factory=list)  # end dates of dropped moves


def _steps(mode: str, positions: pd.Series, prices: PositionPrices, calendar: pd.Series) -> _Steps:
    """Value series and daily returns over ``prices`` (valued dates x positions, NaN holes).

    ``calendar`` numbers the trading sessions (trading_calendar.session_numbers). Sums over
    positions are taken block by block of columns, so memory stays a few blocks.
    """
    amounts = positions.to_numpy(dtype=np.float64)
    n_rows, n_columns = prices.shape
    moves = n_rows - 1
    covered = np.zeros(moves)  # weight of the positions priced at both ends of each move
    total = np.zeros(moves)  # weight of all positions
    spread = np.zeros(moves)  # sum over priced positions of weight x return
    dot = np.zeros(n_rows if mode == "holdings" else moves)  # sum(shares x close) / w . r
    last = np.empty(n_columns)
    complete = True
    for columns, levels in prices.blocks():
        amount = amounts[columns]
        with np.errstate(invalid="ignore"):
            growth = levels[1:] / levels[:-1] - 1.0
        have = np.isfinite(growth)
        complete = complete and bool(have.all())
        if mode == "holdings":
            full = filled(levels)
            last[columns] = full[-1] if np.isnan(levels).any() else levels[-1]
            weights = full[:-1] * amount
            dot += full @ amount
            del full
        else:
            weights = np.broadcast_to(amount, growth.shape)
            dot += growth @ amount
        total += weights.sum(axis=1)
        counted = np.where(have, weights, 0.0)
        del weights
        covered += counted.sum(axis=1)
        growth[~have] = 0.0
        counted *= growth
        spread += counted.sum(axis=1)
        del counted, growth, have
    if complete and mode == "holdings":
        values = dot  # exactly sum(shares * close)
        step = values[1:] / values[:-1] - 1.0
    elif complete:
        step = dot
    else:  # the positions priced at both ends, their weights scaled up to the whole
        with np.errstate(invalid="ignore", divide="ignore"):
            step = spread / covered
        step = np.nan_to_num(step, nan=0.0)
    numbers = calendar.reindex(prices.index).to_numpy()
    consecutive = np.diff(numbers) == 1
    with np.errstate(invalid="ignore", divide="ignore"):
        share = covered / total
    daily = consecutive & (share >= MIN_DAY_COVERAGE - 1e-12)
    if not (complete and mode == "holdings"):
        start = float(dot[0]) if mode == "holdings" else 1.0
        values = start * np.concatenate([[1.0], np.cumprod(1.0 + step)])
    ends = prices.index[1:]
    return _Steps(
        values=pd.Series(values, index=prices.index, name="portfolio_value"),
        returns=pd.Series(step[daily], index=ends[daily]),
        daily=daily,
        last_prices=last,
        sessions=int(numbers[-1] - numbers[0]),
        dropped=[d.date().isoformat() for d in ends[~daily]],
    )


def _calendar(close: pd.DataFrame, extra: pd.Index | None = None) -> pd.Series:
    dates = close.index if extra is None else close.index.union(extra)
    return session_numbers(pd.DatetimeIndex(dates))


def portfolio_value_series(
    close: pd.DataFrame,
    holdings: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
) -> pd.Series:
    """Portfolio value per date, for charts.

    Holdings: market value ``sum(shares * close)``. Weights: growth of 1.0 with daily
    rebalancing (see the module docstring).
    """
    _check_close(close)
    mode, positions = _resolve_positions(close, holdings, weights)
    prices = _held_prices(close, positions, mode)
    return _steps(mode, positions, prices, _calendar(close)).values


def drawdown_series(values: pd.Series) -> pd.Series:
    """Fall from the running peak at each date, as a fraction <= 0 (-0.2 = 20 % below peak)."""
    if len(values) == 0:
        raise ValueError("drawdown_series needs a non-empty value series")
    return (values / values.cummax() - 1.0).rename("drawdown")


def _annualized_return(total_return: float, periods: int, periods_per_year: int) -> float:
    growth = 1.0 + total_return
    if growth <= 0:
        return -1.0
    return growth ** (periods_per_year / periods) - 1.0


def _sharpe(returns: np.ndarray, risk_free_rate: float, periods_per_year: int) -> float | None:
    if len(returns) < 2:
        return None
    per_period_rf = (1.0 + risk_free_rate) ** (1.0 / periods_per_year) - 1.0
    excess = returns - per_period_rf
    spread = excess.std(ddof=1)
    # Float noise on a constant series leaves a spread around 1e-18, not exactly 0.
    if not spread > 1e-12:
        return None
    return float(excess.mean() / spread * math.sqrt(periods_per_year))


def _value_at_risk(returns: np.ndarray) -> tuple[float, float]:
    """Historical (VaR, CVaR) at VAR_LEVEL as positive loss fractions."""
    cutoff = np.quantile(returns, 1.0 - VAR_LEVEL)
    tail = returns[returns <= cutoff]
    return float(-cutoff), float(-tail.mean())


def _daily_returns(prices: pd.Series, calendar: pd.Series) -> pd.Series:
    """One-session returns of a price series, by end date (moves across holes dropped)."""
    prices = prices.dropna().astype("float64")
    numbers = calendar.reindex(prices.index).to_numpy()
    returns = prices.to_numpy()[1:] / prices.to_numpy()[:-1] - 1.0
    daily = np.diff(numbers) == 1
    return pd.Series(returns[daily], index=prices.index[1:][daily])


def _beta(returns: pd.Series, benchmark_returns: pd.Series) -> float | None:
    """Beta from the daily returns of the sessions both series have one for."""
    joined = pd.concat([returns, benchmark_returns], axis=1, join="inner")
    if len(joined) < 2:
        return None
    variance = joined.iloc[:, 1].var(ddof=1)
    if not variance > 1e-18:
        return None
    return float(joined.iloc[:, 0].cov(joined.iloc[:, 1], ddof=1) / variance)


def _correlation(
    prices: PositionPrices, steps: _Steps, weights: pd.Series, limit: int | None
) -> dict[str, dict[str, float | None]]:
    """Daily-return correlations of the ``limit`` largest positions (by current weight).

    Chosen before the matrix is built: the full matrix of 2,000 tickers is 4 million
    Python floats (~450 MB), which once took an operator pod past its memory limit; and
    only the chosen positions' daily returns are ever built.
    """
    columns = np.arange(prices.shape[1])
    if limit is not None and len(columns) > limit:
        order = np.argsort(-np.abs(weights.reindex(prices.tickers).to_numpy()), kind="stable")
        columns = np.sort(order[:limit])  # the largest, in position order
    returns = pd.DataFrame(
        member_returns(prices, columns, steps.daily),
        index=steps.returns.index,
        columns=prices.tickers[columns],
    )
    matrix = returns.corr()
    return {
        str(row): {str(col): _json_float(v) for col, v in matrix.loc[row].items()}
        for row in matrix.index
    }


def _benchmark_prices(close: pd.DataFrame, benchmark: pd.Series | str | None) -> pd.Series | None:
    if benchmark is None:
        return None
    if isinstance(benchmark, str):
        if benchmark not in close.columns:
            raise ValueError(
                f"benchmark {benchmark!r} is not a column of close: add its prices or pass "
                "the benchmark's close prices as a Series"
            )
        return close[benchmark]
    if not isinstance(benchmark, pd.Series) or not isinstance(benchmark.index, pd.DatetimeIndex):
        raise ValueError("benchmark must be a ticker in close or a Series of prices by date")
    if (benchmark.dropna() <= 0).any():
        raise ValueError("benchmark prices must be positive")
    return benchmark


def portfolio_figures(
    close: pd.DataFrame,
    holdings: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
    *,
    risk_free_rate: float = 0.0,
    benchmark: pd.Series | str | None = None,
    periods_per_year: int = 252,
    max_correlation_tickers: int | None = None,
) -> dict:
    """Return, risk and allocation figures of one portfolio, as a JSON-friendly dict.

    ``close`` is a dates x tickers frame of adjusted close prices. Pass ``holdings``
    (ticker -> shares, buy and hold) or ``weights`` (ticker -> fraction, rebalanced daily);
    with neither, all columns are weighted equally. ``benchmark`` is a price Series, or the
    name of a column of ``close``, for beta. ``risk_free_rate`` is an annual rate (0.04 = 4 %).
    ``max_correlation_tickers`` limits the correlation matrix to that many of the largest
    positions (all other figures still cover every position).
    Conventions are in the module docstring. Raises ValueError with what to fix.
    """
    _check_close(close)
    if periods_per_year <= 0:
        raise ValueError(f"periods_per_year must be positive, got {periods_per_year}")
    if not math.isfinite(risk_free_rate) or risk_free_rate <= -1:
        raise ValueError(f"risk_free_rate is an annual rate above -1, got {risk_free_rate}")
    benchmark_prices = _benchmark_prices(close, benchmark)
    mode, positions = _resolve_positions(close, holdings, weights)
    prices = _held_prices(close, positions, mode)
    calendar = _calendar(close, None if benchmark_prices is None else benchmark_prices.index)
    steps = _steps(mode, positions, prices, calendar)
    values = steps.values
    returns_array = steps.returns.to_numpy()
    periods = len(returns_array)
    if periods == 0:
        raise ValueError(
            "no daily returns: the dates with prices are never consecutive trading sessions"
        )

    total_return = float(values.iloc[-1] / values.iloc[0] - 1.0)
    volatility = (
        float(returns_array.std(ddof=1) * math.sqrt(periods_per_year)) if periods > 1 else None
    )
    drawdown = drawdown_series(values)
    trough = drawdown.idxmin()
    peak = values.loc[:trough].idxmax()
    var_95, cvar_95 = _value_at_risk(returns_array)

    if mode == "holdings":
        last_values = pd.Series(steps.last_prices, index=positions.index) * positions
        market_value = {str(t): float(v) for t, v in last_values.items()}
        total_market_value = float(last_values.sum())
        current_weights = last_values / total_market_value
    else:
        market_value, total_market_value = None, None
        current_weights = positions

    return {
        "mode": mode,
        "tickers": [str(t) for t in positions.index],
        "start": prices.index[0].date().isoformat(),
        "end": prices.index[-1].date().isoformat(),
        "periods": periods,
        "sessions": steps.sessions,
        "dropped_returns": steps.dropped,
        "market_value": market_value,
        "total_market_value": total_market_value,
        "weights": {str(t): float(w) for t, w in current_weights.items()},
        "total_return": total_return,
        "annualized_return": _annualized_return(
            total_return, max(steps.sessions, 1), periods_per_year
        ),
        "annualized_volatility": volatility,
        "sharpe_ratio": _sharpe(returns_array, risk_free_rate, periods_per_year),
        "risk_free_rate": float(risk_free_rate),
        "max_drawdown": float(-drawdown.loc[trough]) + 0.0,  # + 0.0 turns -0.0 into 0.0
        "max_drawdown_peak": peak.date().isoformat(),
        "max_drawdown_trough": trough.date().isoformat(),
        "var_95": var_95,
        "cvar_95": cvar_95,
        "beta": None
        if benchmark_prices is None
        else _beta(steps.returns, _daily_returns(benchmark_prices, calendar)),
        "correlation": _correlation(prices, steps, current_weights, max_correlation_tickers),
    }


# --- which tickers and which window a portfolio covers ------------------------------------

# Holdings keep a position unless the positions' common window would fall below this share
# of the longest position's daily returns.
MIN_COMMON_WINDOW = 0.5
# A member must have a price on at least this share of the chosen window's dates.
MIN_PRESENT = 0.9

TICKERS_RULE = (
    "equal weights: the window and tickers that use the most ticker-days (tickers x daily "
    "returns) within the lookback; daily returns run between consecutive NYSE sessions, a "
    "move across a missing session is dropped (not merged into one day), and a ticker "
    "missing a day is left out of that day's average"
)
HOLDINGS_RULE = (
    "holdings: every position is kept and the window shortened to their common dates, "
    "unless that leaves less than half of the longest position's daily returns; daily "
    "returns run between consecutive NYSE sessions, a move across a missing session is "
    "dropped (not merged into one day), and a position missing a day is left out of that "
    "day's return"
)


@dataclass
class Coverage:
    """What ``choose_members`` chose: members, window (inclusive) and why others are out."""

    members: list[str]
    start: pd.Timestamp
    end: pd.Timestamp
    excluded: dict[str, str]
    rule: str


def _span(index: pd.DatetimeIndex, first: int, last: int) -> str:
    return f"{index[first].date()} to {index[last].date()}"


def choose_members(close: pd.DataFrame, holdings: bool) -> Coverage:
    """The tickers (columns of ``close``, which all have prices) and the window a portfolio
    covers, by ``HOLDINGS_RULE`` or ``TICKERS_RULE``.

    Vectorised over candidate windows: an optimal window starts on some ticker's first
    date and ends on some ticker's last one, so only those pairs are scored.
    """
    dates = pd.DatetimeIndex(close.index)
    valid = close.notna().to_numpy()
    n = len(dates)
    first = valid.argmax(axis=0)
    last = n - 1 - valid[::-1].argmax(axis=0)
    numbers = session_numbers(dates).to_numpy()
    daily = np.concatenate([[0], np.cumsum(np.diff(numbers) == 1)])  # daily steps up to row

    def returns(start: np.ndarray | int, end: np.ndarray | int) -> np.ndarray:
        return np.where(end > start, daily[end] - daily[np.minimum(start, end)], 0)

    tickers = list(close.columns)
    excluded: dict[str, str] = {}
    if holdings:
        order = np.argsort(-(last - first), kind="stable")
        start, end = int(first[order[0]]), int(last[order[0]])
        needed = MIN_COMMON_WINDOW * returns(start, end)
        kept = np.zeros(len(tickers), dtype=bool)
        kept[order[0]] = True
        for column in order[1:]:
            s, e = max(start, int(first[column])), min(end, int(last[column]))
            if returns(s, e) >= needed and returns(s, e) > 0:
                start, end, kept[column] = s, e, True
        for column in np.flatnonzero(~kept):
            excluded[tickers[column]] = (
                f"its prices ({_span(dates, first[column], last[column])}) overlap the other "
                "positions' on less than half of the longest position's daily returns"
            )
        rule = HOLDINGS_RULE
    else:
        # A ticker counts for a window when it has prices on MIN_PRESENT of its dates, so
        # one missing day (common in this data) does not cost a whole ticker.
        # Prices per ticker up to each row, in the smallest integer type that holds the
        # count (int16 up to 32,767 dates: a quarter of a float64 panel), filled in place.
        counted = np.zeros((n + 1, len(tickers)), dtype=np.min_scalar_type(-(n + 1)))
        np.cumsum(valid, axis=0, dtype=counted.dtype, out=counted[1:])
        ends = np.unique(last)
        best = (-1, 0, 0)
        for s in np.unique(first):  # a loop over start dates, vectorised over ends x tickers
            width = ends - s + 1
            present = counted[ends + 1] - counted[s]
            members = (present >= MIN_PRESENT * width[:, None]) & (width[:, None] > 0)
            score = members.sum(axis=1) * returns(int(s), ends)
            j = len(ends) - 1 - int(score[::-1].argmax())  # ties: the latest end
            if score[j] >= best[0]:  # ties: the latest start
                best = (int(score[j]), int(s), int(ends[j]))
        _, start, end = best
        width = end - start + 1
        present = counted[end + 1] - counted[start]
        kept = present >= MIN_PRESENT * width
        for column in np.flatnonzero(~kept):
            spans = first[column] <= start and last[column] >= end
            excluded[tickers[column]] = (
                f"prices on only {int(present[column])} of the {width} dates of the window "
                f"chosen, {_span(dates, start, end)}"
                if spans
                else f"its prices ({_span(dates, first[column], last[column])}) do not span "
                f"the window chosen, {_span(dates, start, end)}"
            ) + ", which uses the most ticker-days"
        rule = TICKERS_RULE
    window = valid[start : end + 1]
    present = window.sum(axis=0)
    width = int(window.any(axis=1).sum())
    for column in np.flatnonzero(kept & (present < MIN_PRESENT * width)):
        kept[column] = False
        excluded[tickers[column]] = (
            f"prices on only {int(present[column])} of the window's {width} dates"
        )
    return Coverage(
        members=[t for t, k in zip(tickers, kept, strict=True) if k],
        start=dates[start],
        end=dates[end],
        excluded=excluded,
        rule=rule,
    )
