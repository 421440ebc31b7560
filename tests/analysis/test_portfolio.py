"""Portfolio figures against arithmetic written out by hand on tiny series."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from portfolio_analysis import portfolio
from portfolio_analysis.portfolio import (
    drawdown_series,
    portfolio_figures,
    portfolio_value_series,
)

DATES = pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"])


def _close() -> pd.DataFrame:
    return pd.DataFrame({"A": [10.0, 11.0, 9.9, 12.1], "B": [20.0, 20.0, 22.0, 22.0]}, index=DATES)


def _sample_stdev(xs: list[float]) -> float:
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def _covariance(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / (len(xs) - 1)


def test_buy_and_hold_holdings_by_hand():
    # 2 shares of A and 1 of B: values 2*10+20, 2*11+20, 2*9.9+22, 2*12.1+22.
    values = [40.0, 42.0, 41.8, 46.2]
    returns = [42.0 / 40.0 - 1, 41.8 / 42.0 - 1, 46.2 / 41.8 - 1]
    figures = portfolio_figures(_close(), holdings={"A": 2, "B": 1})

    assert figures["mode"] == "holdings"
    assert figures["periods"] == 3
    assert figures["start"] == "2024-01-02" and figures["end"] == "2024-01-05"
    assert figures["market_value"] == pytest.approx({"A": 24.2, "B": 22.0})
    assert figures["total_market_value"] == pytest.approx(46.2)
    assert figures["weights"] == pytest.approx({"A": 24.2 / 46.2, "B": 22.0 / 46.2})
    assert figures["total_return"] == pytest.approx(46.2 / 40.0 - 1)
    assert figures["annualized_return"] == pytest.approx((46.2 / 40.0) ** (252 / 3) - 1)
    assert figures["annualized_volatility"] == pytest.approx(
        _sample_stdev(returns) * math.sqrt(252)
    )
    mean = sum(returns) / 3
    assert figures["sharpe_ratio"] == pytest.approx(mean / _sample_stdev(returns) * math.sqrt(252))
    # Peak 42.0 on the 3rd, trough 41.8 on the 4th.
    assert figures["max_drawdown"] == pytest.approx(0.2 / 42.0)
    assert figures["max_drawdown_peak"] == "2024-01-03"
    assert figures["max_drawdown_trough"] == "2024-01-04"
    # 5 % quantile of 3 sorted returns, linear interpolation: position 0.05 * 2 = 0.1.
    low, mid, _ = sorted(returns)
    quantile = low + 0.1 * (mid - low)
    assert figures["var_95"] == pytest.approx(-quantile)
    assert figures["cvar_95"] == pytest.approx(-low)  # only the lowest return is <= quantile
    assert portfolio_value_series(_close(), holdings={"A": 2, "B": 1}).tolist() == (
        pytest.approx(values)
    )


def test_correlation_matrix_by_hand_and_json_friendly():
    a = [11 / 10 - 1, 9.9 / 11 - 1, 12.1 / 9.9 - 1]
    b = [0.0, 22 / 20 - 1, 0.0]
    expected = _covariance(a, b) / (_sample_stdev(a) * _sample_stdev(b))
    corr = portfolio_figures(_close(), holdings={"A": 1, "B": 1})["correlation"]
    assert corr["A"]["B"] == pytest.approx(expected)
    assert corr["B"]["A"] == pytest.approx(expected)
    assert corr["A"]["A"] == pytest.approx(1.0)
    assert all(type(v) is float for row in corr.values() for v in row.values())


def test_correlation_limit_keeps_the_largest_positions_and_all_other_figures():
    close = _close().assign(C=[5.0, 5.5, 5.0, 6.0])
    holdings = {"A": 1, "B": 10, "C": 100}  # current values: A 12.1, B 220, C 600
    full = portfolio_figures(close, holdings=holdings)
    limited = portfolio_figures(close, holdings=holdings, max_correlation_tickers=2)
    assert list(limited["correlation"]) == ["B", "C"]  # the largest two, in column order
    largest = portfolio_figures(close, holdings=holdings, max_correlation_tickers=1)
    assert list(largest["correlation"]) == ["C"]
    assert limited["correlation"]["C"]["B"] == pytest.approx(full["correlation"]["C"]["B"])
    assert {k: v for k, v in limited.items() if k != "correlation"} == {
        k: v for k, v in full.items() if k != "correlation"
    }


def test_weights_are_rebalanced_daily():
    # Each day the portfolio earns the average of A's and B's returns.
    daily = [0.5 * (0.1 + 0.0), 0.5 * (-0.1 + 0.1), 0.5 * (12.1 / 9.9 - 1 + 0.0)]
    growth = (1 + daily[0]) * (1 + daily[1]) * (1 + daily[2])
    figures = portfolio_figures(_close(), weights={"A": 0.5, "B": 0.5})
    assert figures["mode"] == "weights"
    assert figures["market_value"] is None
    assert figures["weights"] == {"A": 0.5, "B": 0.5}
    assert figures["total_return"] == pytest.approx(growth - 1)
    assert figures["annualized_volatility"] == pytest.approx(_sample_stdev(daily) * math.sqrt(252))
    values = portfolio_value_series(_close(), weights={"A": 0.5, "B": 0.5})
    assert values.tolist() == pytest.approx(
        [1.0, 1 + daily[0], (1 + daily[0]) * (1 + daily[1]), growth]
    )


def test_no_positions_means_equal_weights():
    equal = portfolio_figures(_close())
    explicit = portfolio_figures(_close(), weights={"A": 0.5, "B": 0.5})
    assert equal["total_return"] == pytest.approx(explicit["total_return"])


def test_sharpe_uses_annual_risk_free_rate_compounded_to_daily():
    # An annual rate of 1.01**252 - 1 is exactly 1 % a day.
    annual = 1.01**252 - 1
    returns = [42.0 / 40.0 - 1, 41.8 / 42.0 - 1, 46.2 / 41.8 - 1]
    excess = [r - 0.01 for r in returns]
    expected = (sum(excess) / 3) / _sample_stdev(excess) * math.sqrt(252)
    figures = portfolio_figures(_close(), holdings={"A": 2, "B": 1}, risk_free_rate=annual)
    assert figures["sharpe_ratio"] == pytest.approx(expected)
    assert figures["risk_free_rate"] == pytest.approx(annual)


def test_beta_against_a_benchmark_series_by_hand():
    benchmark = pd.Series([100.0, 102.0, 100.98, 106.029], index=DATES)
    bench = [0.02, 100.98 / 102 - 1, 106.029 / 100.98 - 1]
    port = [0.05, 41.8 / 42 - 1, 46.2 / 41.8 - 1]
    expected = _covariance(port, bench) / _sample_stdev(bench) ** 2
    figures = portfolio_figures(_close(), holdings={"A": 2, "B": 1}, benchmark=benchmark)
    assert figures["beta"] == pytest.approx(expected)


def test_beta_only_uses_sessions_on_which_both_have_a_daily_return():
    # Tue 2 .. Tue 9 Jan 2024 are six consecutive sessions; the benchmark misses Fri 5.
    dates = pd.bdate_range("2024-01-02", periods=6)
    close = pd.DataFrame({"A": [10.0, 10.5, 10.2, 10.8, 10.6, 11.0]}, index=dates)
    benchmark = pd.Series([100.0, 102.0, 101.0, 104.0, 105.0], index=dates[[0, 1, 2, 4, 5]])
    port = close["A"].pct_change().iloc[1:]
    # Its Jan 4 -> Jan 8 move spans two sessions: no daily return, not merged into one.
    bench = {dates[1]: 0.02, dates[2]: 101 / 102 - 1, dates[5]: 105 / 104 - 1}
    xs = [port[d] for d in bench]
    expected = _covariance(xs, list(bench.values())) / _sample_stdev(list(bench.values())) ** 2
    figures = portfolio_figures(close, holdings={"A": 1}, benchmark=benchmark)
    assert figures["beta"] == pytest.approx(expected)


def test_a_missing_session_is_no_daily_return_but_still_moves_the_value():
    # Sessions Tue 2 .. Fri 12 Jan 2024; the data has no row for Mon 8 and Tue 9.
    sessions = pd.bdate_range("2024-01-02", "2024-01-12")
    dates = sessions.delete([4, 5])
    close = pd.DataFrame({"A": [10.0, 10.2, 10.1, 10.3, 11.5, 11.4, 11.6]}, index=dates)
    figures = portfolio_figures(close, holdings={"A": 1})
    daily = [10.2 / 10 - 1, 10.1 / 10.2 - 1, 10.3 / 10.1 - 1, 11.4 / 11.5 - 1, 11.6 / 11.4 - 1]
    assert figures["periods"] == 5  # Fri 5 -> Wed 10 (three sessions) is dropped
    assert figures["dropped_returns"] == ["2024-01-10"]
    assert figures["sessions"] == 8
    assert figures["annualized_volatility"] == pytest.approx(_sample_stdev(daily) * math.sqrt(252))
    assert figures["var_95"] == pytest.approx(-np.quantile(daily, 0.05))
    assert figures["total_return"] == pytest.approx(11.6 / 10 - 1)  # the gap's move counts
    assert figures["annualized_return"] == pytest.approx((11.6 / 10) ** (252 / 8) - 1)


def test_a_position_missing_one_day_leaves_that_days_return_to_the_others():
    dates = pd.bdate_range("2024-01-02", periods=5)
    close = pd.DataFrame(
        {f"T{i}": [10.0, 10.1, 10.2, 10.3, 10.4] for i in range(9)}
        | {"HOLE": [20.0, 22.0, np.nan, 24.2, 26.62]},
        index=dates,
    )
    figures = portfolio_figures(close)  # equal weights, HOLE 1/10: 90% still priced
    # Jan 4 and Jan 5: HOLE has no one-day return, the other nine stand for the whole.
    expected = [
        0.9 * 0.01 + 0.1 * 0.1,
        10.2 / 10.1 - 1,
        10.3 / 10.2 - 1,
        0.9 * (10.4 / 10.3 - 1) + 0.1 * 0.1,
    ]
    assert figures["periods"] == 4 and figures["dropped_returns"] == []
    assert figures["total_return"] == pytest.approx(np.prod(1 + np.array(expected)) - 1)


def test_benchmark_against_itself_has_beta_one():
    rng = np.random.default_rng(7)
    index = pd.bdate_range("2023-01-02", periods=60)
    spy = pd.Series(100 * np.cumprod(1 + rng.normal(0, 0.01, 60)), index=index)
    other = pd.Series(50 * np.cumprod(1 + rng.normal(0, 0.02, 60)), index=index)
    close = pd.DataFrame({"SPY": spy, "XYZ": other})
    assert portfolio_figures(close, holdings={"SPY": 3}, benchmark="SPY")["beta"] == (
        pytest.approx(1.0)
    )
    assert portfolio_figures(close, weights={"SPY": 1.0}, benchmark=spy)["beta"] == (
        pytest.approx(1.0)
    )


def test_constant_prices_have_zero_return_and_risk():
    close = pd.DataFrame(
        {"A": [5.0] * 6, "B": [7.0] * 6}, index=pd.bdate_range("2024-01-01", periods=6)
    )
    figures = portfolio_figures(close, holdings={"A": 3, "B": 2})
    assert figures["total_return"] == 0.0
    assert figures["annualized_return"] == 0.0
    assert figures["annualized_volatility"] == 0.0
    assert figures["max_drawdown"] == 0.0
    assert figures["var_95"] == 0.0 and figures["cvar_95"] == 0.0
    assert figures["sharpe_ratio"] is None  # undefined with no variation, never inf/NaN
    assert figures["correlation"]["A"]["B"] is None


def test_var_and_cvar_on_21_returns_pick_the_second_worst_day():
    # With 21 returns, the 5 % quantile sits exactly on the 2nd smallest (0.05 * 20 = 1).
    returns = [0.01, -0.03, 0.02, 0.0, -0.05, 0.015, 0.005] * 3
    prices = [100.0]
    for r in returns:
        prices.append(prices[-1] * (1 + r))
    close = pd.DataFrame({"A": prices}, index=pd.bdate_range("2024-01-01", periods=22))
    figures = portfolio_figures(close, holdings={"A": 1})
    # Sorted: -0.05, -0.05, -0.05, -0.03, ... -> quantile -0.05, tail = the three -0.05 days.
    assert figures["var_95"] == pytest.approx(0.05)
    assert figures["cvar_95"] == pytest.approx(0.05)
    returns[5] = -0.09  # a single worse day: quantile is now the 2nd smallest, -0.05
    prices = [100.0]
    for r in returns:
        prices.append(prices[-1] * (1 + r))
    close = pd.DataFrame({"A": prices}, index=close.index)
    figures = portfolio_figures(close, holdings={"A": 1})
    assert figures["var_95"] == pytest.approx(0.05)
    assert figures["cvar_95"] == pytest.approx((0.09 + 0.05 + 0.05 + 0.05) / 4)


def test_drawdown_series_tracks_the_running_peak():
    values = pd.Series(
        [100.0, 120.0, 90.0, 130.0, 117.0], index=pd.bdate_range("2024-01-01", periods=5)
    )
    assert drawdown_series(values).tolist() == pytest.approx([0, 0, 90 / 120 - 1, 0, 117 / 130 - 1])
    figures = portfolio_figures(values.to_frame("X"), holdings={"X": 1})
    assert figures["max_drawdown"] == pytest.approx(0.25)
    assert figures["max_drawdown_peak"] == "2024-01-02"
    assert figures["max_drawdown_trough"] == "2024-01-03"


def test_late_listed_ticker_shortens_the_window():
    close = _close()
    close.loc[DATES[0], "B"] = np.nan
    figures = portfolio_figures(close, holdings={"A": 2, "B": 1})
    assert figures["start"] == "2024-01-03"
    assert figures["total_return"] == pytest.approx(46.2 / 42.0 - 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"holdings": {"A": 1, "ZZZ": 2}}, "ZZZ"),
        ({"holdings": {"A": -1, "B": 2}}, "negative"),
        ({"holdings": {"A": 0, "B": 0}}, "total is zero"),
        ({"holdings": {}}, "empty"),
        ({"weights": {"A": 60, "B": 40}}, "sum to 100"),
        ({"weights": {"A": 0.5, "B": 0.4}}, "must sum to 1"),
        ({"holdings": {"A": 1}, "weights": {"A": 1.0}}, "not both"),
        ({"holdings": {"A": float("nan")}}, "finite"),
        ({"holdings": {"A": 1}, "benchmark": "SPY"}, "benchmark 'SPY'"),
        ({"holdings": {"A": 1}, "periods_per_year": 0}, "periods_per_year"),
    ],
)
def test_bad_input_says_what_to_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        portfolio_figures(_close(), **kwargs)


def test_bad_frames_say_what_to_fix():
    with pytest.raises(ValueError, match="empty"):
        portfolio_figures(pd.DataFrame(), holdings={"A": 1})
    with pytest.raises(ValueError, match="sorted"):
        portfolio_figures(_close().iloc[::-1], holdings={"A": 1})
    with pytest.raises(ValueError, match="positive"):
        portfolio_figures(_close().replace(9.9, 0.0), holdings={"A": 1})
    with pytest.raises(ValueError, match="fewer than 2 dates"):
        portfolio_figures(_close().iloc[:1], holdings={"A": 1})
    with pytest.raises(ValueError, match="non-numeric"):
        portfolio_figures(_close().assign(B=list("wxyz")), holdings={"A": 1})


def _random_close(n_dates: int, n_tickers: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    moves = rng.standard_normal((n_dates, n_tickers)) * 0.015 + 0.0003
    dates = pd.bdate_range("2015-01-02", periods=n_dates)
    columns = [f"T{i:04d}" for i in range(n_tickers)]
    return pd.DataFrame(40.0 * np.exp(np.cumsum(moves, axis=0)), index=dates, columns=columns)


def test_filled_is_pandas_forward_then_back_fill():
    close = _random_close(30, 6)
    close.iloc[:4, 1] = np.nan  # a late start
    close.iloc[10:13, 2] = np.nan  # a hole
    close.iloc[25:, 3] = np.nan  # an early end
    close.iloc[:, 4] = np.nan  # no price at all
    expected = close.ffill().bfill().to_numpy()
    np.testing.assert_array_equal(portfolio.filled(close.to_numpy()), expected)


@pytest.mark.parametrize("kind", ["holdings", "weights", "equal"])
def test_figures_do_not_depend_on_how_many_columns_are_summed_at_once(monkeypatch, kind):
    # Sums over positions are taken block by block of columns (issue 19): blocks of one
    # column and one block of everything give the same figures, holes included.
    close = _random_close(300, 23)
    close.iloc[:40, 3] = np.nan
    close.iloc[100:103, 5] = np.nan
    close.iloc[150, 7:] = np.nan
    holdings = {t: float(1 + i % 4) for i, t in enumerate(close.columns)}
    weights = dict.fromkeys(close.columns[:20], 1 / 20)
    args = {"holdings": holdings, "weights": {"weights": weights}, "equal": {}}[kind]
    args = {"holdings": args} if kind == "holdings" else args

    def figures() -> tuple[dict, list[float]]:
        return (
            portfolio_figures(close, benchmark="T0000", max_correlation_tickers=6, **args),
            portfolio_value_series(close, **args).tolist(),
        )

    monkeypatch.setattr(portfolio, "BLOCK_BYTES", 10**12)
    whole, whole_values = figures()
    monkeypatch.setattr(portfolio, "BLOCK_BYTES", 1)
    blocked, blocked_values = figures()
    assert blocked_values == pytest.approx(whole_values, rel=1e-12)
    for key, value in whole.items():
        if isinstance(value, float):
            assert blocked[key] == pytest.approx(value, rel=1e-12), key
        elif key == "correlation":
            for row, cells in value.items():
                assert blocked[key][row] == pytest.approx(cells, rel=1e-12), row
        else:
            assert blocked[key] == value, key
