"""Indicators against TA-Lib on real price series, short and ragged histories, and signals.

TA-Lib is the reference: every indicator must agree with it to 1e-8 relative from TA-Lib's
first output on (``docs/indicators.md`` lists where our conventions differ: MACD is defined
8 rows earlier than TA-Lib prints it, and RSI of a window without any move is 50).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import talib  # a dev dependency (uv sync installs it): the reference, so no skip without it
from portfolio_analysis import technicals
from portfolio_analysis.embedded import sample_histories, sp500_histories

RTOL = 1e-8
# MACD and its histogram cross zero, where a relative error is meaningless: they are
# compared relative to the price level they are differences of.
PRICE_SCALED = {"macd", "macd_signal", "macd_hist"}


def talib_indicators(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """TA-Lib's values for every indicator of ``technicals.INDICATORS`` on one history."""
    close = frame["close"].to_numpy()
    high, low = frame["high"].to_numpy(), frame["low"].to_numpy()
    macd, signal, hist = talib.MACD(close, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0, 0)
    return {
        "sma_20": talib.SMA(close, 20),
        "sma_50": talib.SMA(close, 50),
        "sma_200": talib.SMA(close, 200),
        "ema_12": talib.EMA(close, 12),
        "ema_26": talib.EMA(close, 26),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "rsi_14": talib.RSI(close, 14),
        "bollinger_upper": upper,
        "bollinger_middle": middle,
        "bollinger_lower": lower,
        "atr_14": talib.ATR(high, low, close, 14),
    }


def assert_matches_talib(
    histories: dict[str, pd.DataFrame], indicators: dict[str, pd.DataFrame]
) -> None:
    problems = []
    for ticker, frame in histories.items():
        reference = talib_indicators(frame)
        close = frame["close"].to_numpy()
        for name, expected in reference.items():
            ours = indicators[name][ticker].reindex(frame.index).to_numpy()
            defined = np.isfinite(expected)
            if name == "macd":
                # TA-Lib prints MACD from its signal's first row (33); ours from the slow
                # EMA's first row (25), as the MACD line is defined there.
                own = np.arange(len(frame)) >= technicals.MACD_SLOW - 1
                if not np.array_equal(np.isfinite(ours), own):
                    problems.append(f"{ticker} {name}: not defined exactly from row 25")
            elif not np.array_equal(np.isfinite(ours), defined):
                problems.append(
                    f"{ticker} {name}: {np.isfinite(ours).sum()} values where TA-Lib has "
                    f"{defined.sum()}"
                )
                continue
            scale = close if name in PRICE_SCALED else np.abs(expected)
            error = np.abs(ours[defined] - expected[defined]) / scale[defined]
            if error.size and error.max() > RTOL:
                problems.append(f"{ticker} {name}: max relative error {error.max():.2e}")
    assert not problems, "\n".join(problems[:20])


def test_every_indicator_matches_talib_on_the_bokeh_sample_stocks():
    histories = dict(sample_histories())  # 2000-2013, FB only from 2012
    panel = technicals.build_panel(histories)
    indicators = technicals.compute_indicators(panel)
    assert set(indicators) == set(technicals.INDICATORS)
    assert_matches_talib(histories, indicators)


def test_every_indicator_matches_talib_on_the_sp500_universe():
    histories = dict(sp500_histories())  # 521 real series, one year each
    indicators = technicals.compute_indicators(technicals.build_panel(histories))  # ragged
    assert_matches_talib(histories, indicators)
    dense = {"AAPL": histories["AAPL"]}
    assert_matches_talib(dense, technicals.compute_indicators(technicals.build_panel(dense)))


def test_long_histories_stay_within_tolerance_despite_cumulative_sums():
    """78 years of rows, up 200-fold and back down: running sums must not drift.

    Window sums come from running sums; their rounding grows with the size of the running
    sum, which here is large while the price at the end is small again. Checked against
    TA-Lib and against an exact two-pass computation of the Bollinger bands.
    """
    frame = sample_histories()["AAPL"]
    rise = np.concatenate([frame["close"].to_numpy() * s for s in (0.3, 1.0, 3.0)])
    close = np.concatenate([rise, rise[::-1]])
    dates = pd.bdate_range("1950-01-02", periods=len(close))
    long = pd.DataFrame(
        {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close},
        index=dates,
    )
    histories = {"LONG": long}
    indicators = technicals.compute_indicators(technicals.build_panel(histories))
    assert_matches_talib(histories, indicators)
    windows = np.lib.stride_tricks.sliding_window_view(close, 20)
    deviation = np.sqrt(((windows - windows.mean(axis=1, keepdims=True)) ** 2).mean(axis=1))
    exact_upper = windows.mean(axis=1) + 2 * deviation
    ours = indicators["bollinger_upper"]["LONG"].to_numpy()[19:]
    assert np.max(np.abs(ours - exact_upper) / exact_upper) < 1e-10


def test_bollinger_bands_stay_exact_after_the_price_falls_a_thousandfold():
    """A price that ends 2000x below where it started, with a 20-fold crash in 60 rows.

    The band width is a difference of two averages of squares; centred far from where the
    price is now, it loses every digit to cancellation (an earlier version, centred on the
    first close, was 6e-7 off here).
    """
    frame = sample_histories()["MSFT"]
    rows = len(frame)
    decline = np.geomspace(1.0, 1 / 2000, rows)
    decline[rows // 2 : rows // 2 + 60] *= np.geomspace(1.0, 1 / 20, 60)
    decline[rows // 2 + 60 :] /= 20
    close = frame["close"].to_numpy() * decline
    falling = pd.DataFrame(
        {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close},
        index=frame.index,
    )
    indicators = technicals.compute_indicators(technicals.build_panel({"FALL": falling}))
    assert_matches_talib({"FALL": falling}, indicators)
    windows = np.lib.stride_tricks.sliding_window_view(close, 20)
    deviation = np.sqrt(((windows - windows.mean(axis=1, keepdims=True)) ** 2).mean(axis=1))
    for name, sign in (("bollinger_upper", 1), ("bollinger_lower", -1)):
        exact = windows.mean(axis=1) + sign * 2 * deviation
        ours = indicators[name]["FALL"].to_numpy()[19:]
        assert np.max(np.abs(ours - exact) / np.abs(exact)) < 1e-10, name


def test_non_finite_prices_count_as_missing_rows():
    """An inf or NaN high, low or close is a missing row, not a number that spreads."""
    frame = sample_histories()["IBM"].loc["2010":"2012"].copy()
    bad_rows = [40, 41, 300]
    frame.iloc[40, frame.columns.get_loc("close")] = np.inf
    frame.iloc[41, frame.columns.get_loc("high")] = np.nan
    frame.iloc[300, frame.columns.get_loc("low")] = -np.inf
    indicators = technicals.compute_indicators(technicals.build_panel({"IBM": frame}))
    clean = frame.drop(frame.index[bad_rows])
    assert_matches_talib({"IBM": clean}, indicators)
    for name in technicals.INDICATORS:
        assert indicators[name]["IBM"].iloc[bad_rows].isna().all(), name


def test_every_kind_of_panel_runs_one_compiled_kernel():
    """A panel built here, one a caller assembled (writable, C order), a ragged one: each
    compiled version costs a new worker ~1.5 s, so all must share the one compile_kernels
    makes (and the image ships)."""
    technicals.compile_kernels()
    sample = sample_histories()
    frame = pd.DataFrame(index=sample["IBM"].index)
    for ticker in ("IBM", "MSFT"):  # column by column: one block each, so values are a copy
        frame[ticker] = sample[ticker]["close"].reindex(frame.index)
    assert frame.to_numpy().flags.writeable  # not a read-only view like build_panel's
    assembled = {"high": frame * 1.01, "low": frame * 0.99, "close": frame}
    ragged = technicals.build_panel({"IBM": sample["IBM"], "FB": sample["FB"]})
    for panel in (assembled, ragged):
        technicals.compute_indicators(panel)
    assert len(technicals._panel_indicators.signatures) == 1


def test_without_a_writable_cache_directory_indicators_still_work_and_say_so():
    """numba refuses ``cache=True`` where it can write no cache (a read-only file system
    without a writable HOME); the library must still import and compute, and tell the user
    how to avoid compiling in every process. No locator that finds a directory simulates it."""
    probe = (
        "from portfolio_analysis import technicals\n"
        "from portfolio_analysis.embedded import sample_histories\n"
        "panel = technicals.build_panel(dict(sample_histories()))\n"
        "print(technicals.compute_indicators(panel)['rsi_14']['IBM'].iloc[-1])\n"
    )
    env = os.environ | {"NUMBA_CACHE_LOCATOR_CLASSES": "IPythonCacheLocator"}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("RuntimeWarning") == 1, result.stderr
    assert "set NUMBA_CACHE_DIR to a writable directory" in result.stderr
    panel = technicals.build_panel(dict(sample_histories()))
    expected = technicals.compute_indicators(panel)["rsi_14"]["IBM"].iloc[-1]
    assert float(result.stdout.split()[-1]) == pytest.approx(expected, rel=1e-12)


# --- tickers with different dates -------------------------------------------------------------


@pytest.mark.parametrize("with_full_span", [False, True], ids=["none-full", "one-full"])
def test_ragged_panel_computes_each_ticker_on_its_own_dates(with_full_span):
    sample = sample_histories()
    aapl = sample["AAPL"].loc["2005":"2012"]
    ibm = sample["IBM"].loc["2008":]  # starts later, ends later
    msft = sample["MSFT"].loc["2004":"2010"]
    msft = msft.drop(msft.index[[100, 101, 500]])  # three dates missing mid-history
    histories = {"AAPL": aapl, "IBM": ibm, "MSFT": msft}
    if with_full_span:  # a ticker with a row on every panel date (computed in place)
        histories["FULL"] = sample["IBM"]
        histories["MSFT"] = sample["MSFT"].drop(sample["MSFT"].index[[100, 101, 3000]])
    panel = technicals.build_panel(histories)
    assert panel["close"].notna().all().any() == with_full_span
    indicators = technicals.compute_indicators(panel)

    assert_matches_talib(histories, indicators)
    for ticker, frame in histories.items():
        # NaN on panel dates the ticker has no row for, whatever the indicator
        absent = ~panel["close"].index.isin(frame.index)
        for name in technicals.INDICATORS:
            assert indicators[name][ticker][absent].isna().all(), (ticker, name)
        # the same numbers and signals as when the ticker is computed alone
        own_panel = technicals.build_panel({ticker: frame})
        alone = technicals.compute_indicators(own_panel)
        for name in technicals.INDICATORS:
            pd.testing.assert_series_equal(
                indicators[name][ticker].reindex(frame.index), alone[name][ticker], rtol=1e-12
            )
        pd.testing.assert_series_equal(
            technicals.summarize(panel, indicators).loc[ticker],
            technicals.summarize(own_panel, alone).loc[ticker],
            rtol=1e-12,
        )


def test_summary_uses_each_tickers_last_own_date():
    sample = sample_histories()
    histories = {"AAPL": sample["AAPL"], "OLD": sample["IBM"].loc[:"2010-06-30"]}
    panel = technicals.build_panel(histories)
    summary = technicals.summarize(panel, technicals.compute_indicators(panel))
    old = summary.loc["OLD"]
    assert old["as_of"] == histories["OLD"].index[-1].date().isoformat()
    assert old["close"] == histories["OLD"]["close"].iloc[-1]
    expected = talib.SMA(histories["OLD"]["close"].to_numpy(), 200)[-1]
    assert old["sma_200"] == pytest.approx(expected, rel=RTOL)


# --- short histories ------------------------------------------------------------------------


def _history(close: np.ndarray, start: str = "2024-01-01") -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    dates = pd.bdate_range(start, periods=len(close), name="date")
    return pd.DataFrame(
        {
            "open": close,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": 1e6,
        },
        index=dates,
    )


@pytest.mark.parametrize(
    ("rows", "defined", "undefined"),
    [
        (10, [], list(technicals.INDICATORS)),
        (20, ["sma_20", "bollinger_middle", "rsi_14", "atr_14", "ema_12"], ["sma_50", "ema_26"]),
        (30, ["ema_26", "macd"], ["macd_signal", "macd_hist", "sma_50", "sma_200"]),
        (120, ["sma_50", "macd_signal", "macd_hist"], ["sma_200"]),
    ],
)
def test_short_history_gets_nan_not_a_partial_window(rows, defined, undefined):
    close = 100 + np.cumsum(np.random.default_rng(rows).normal(0, 1, rows))
    history = _history(close)
    panel = technicals.build_panel(
        {"NEW": history, "OLD": _history(close[0] + np.arange(400.0), "2022-06-01")}
    )
    indicators = technicals.compute_indicators(panel)
    summary = technicals.summarize(panel, indicators).loc["NEW"]
    for name in defined:
        assert np.isfinite(summary[name]), name
    for name in undefined:
        assert np.isnan(summary[name]), name
        assert indicators[name]["NEW"].isna().all(), name
    if "sma_200" in undefined:
        assert summary["ma_trend"] is None and summary["ma_cross"] is None


def test_single_row_history_gives_all_nan_summary():
    panel = technicals.build_panel({"ONE": _history([10.0])})
    summary = technicals.summarize(panel, technicals.compute_indicators(panel)).loc["ONE"]
    assert summary["close"] == 10.0
    assert all(np.isnan(summary[name]) for name in technicals.INDICATORS)
    assert summary["rsi_signal"] is None and summary["bollinger_signal"] is None


# --- signals on constructed series --------------------------------------------------------


def _summary(histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    panel = technicals.build_panel(histories)
    return technicals.summarize(panel, technicals.compute_indicators(panel))


def test_rsi_signals_overbought_oversold_and_neutral():
    rng = np.random.default_rng(7)
    summary = _summary(
        {
            "UP": _history(100 * 1.01 ** np.arange(60)),
            "DOWN": _history(100 * 0.99 ** np.arange(60)),
            "SIDE": _history(100 + np.tile([1.0, -1.0], 30) + rng.normal(0, 0.01, 60)),
        }
    )
    assert summary.loc["UP", "rsi_14"] == pytest.approx(100.0)
    assert summary.loc["UP", "rsi_signal"] == "overbought"
    assert summary.loc["DOWN", "rsi_14"] == pytest.approx(0.0)
    assert summary.loc["DOWN", "rsi_signal"] == "oversold"
    assert 30 < summary.loc["SIDE", "rsi_14"] < 70
    assert summary.loc["SIDE", "rsi_signal"] == "neutral"


def test_rsi_of_a_price_that_never_moves_is_neutral_50():
    summary = _summary({"FLAT": _history(np.full(40, 25.0))})
    assert summary.loc["FLAT", "rsi_14"] == 50.0
    assert summary.loc["FLAT", "rsi_signal"] == "neutral"


def test_price_vs_bollinger_bands():
    calm = 100 + np.tile([0.5, -0.5], 20)
    summary = _summary(
        {
            "JUMP": _history(np.append(calm, 110.0)),
            "DROP": _history(np.append(calm, 90.0)),
            "CALM": _history(np.append(calm, 100.2)),
        }
    )
    assert summary.loc["JUMP", "bollinger_signal"] == "above_upper"
    assert summary.loc["JUMP", "bollinger_pct_b"] > 1
    assert summary.loc["DROP", "bollinger_signal"] == "below_lower"
    assert summary.loc["DROP", "bollinger_pct_b"] < 0
    assert summary.loc["CALM", "bollinger_signal"] == "inside"
    assert 0 < summary.loc["CALM", "bollinger_pct_b"] < 1
    row = summary.loc["JUMP"]
    assert row["bollinger_lower"] < row["bollinger_middle"] < row["bollinger_upper"]


def test_golden_and_death_cross_are_found_with_their_dates():
    down_then_up = np.concatenate([np.linspace(200, 100, 300), np.linspace(100, 250, 200)])
    up_then_down = np.concatenate([np.linspace(100, 200, 300), np.linspace(200, 50, 200)])
    histories = {"GOLD": _history(down_then_up), "DEATH": _history(up_then_down)}
    panel = technicals.build_panel(histories)
    indicators = technicals.compute_indicators(panel)
    summary = technicals.summarize(panel, indicators)

    for ticker, kind, trend in (
        ("GOLD", "golden_cross", "bullish"),
        ("DEATH", "death_cross", "bearish"),
    ):
        row = summary.loc[ticker]
        assert row["ma_cross"] == kind
        assert row["ma_trend"] == trend
        spread = (indicators["sma_50"][ticker] - indicators["sma_200"][ticker]).dropna()
        flips = spread.index[1:][np.sign(spread.to_numpy()[1:]) != np.sign(spread.to_numpy()[:-1])]
        assert row["ma_cross_date"] == flips[-1].date().isoformat()
    assert summary.loc["GOLD", "macd_trend"] in {"bullish", "bearish"}


def test_no_cross_when_the_averages_never_swap():
    summary = _summary({"TREND": _history(100 * 1.001 ** np.arange(400))})
    assert summary.loc["TREND", "ma_trend"] == "bullish"
    assert summary.loc["TREND", "ma_cross"] is None
    assert summary.loc["TREND", "ma_cross_date"] is None


# --- input errors -------------------------------------------------------------------------


def test_build_panel_names_the_ticker_and_what_to_fix():
    with pytest.raises(ValueError, match="no price histories"):
        technicals.build_panel({})
    bad = _history(np.arange(1.0, 30.0)).drop(columns=["high"])
    with pytest.raises(ValueError, match=r"BAD: .*high.*validate_ohlcv"):
        technicals.build_panel({"OK": _history(np.arange(1.0, 30.0)), "BAD": bad})
    unsorted = _history(np.arange(1.0, 30.0)).iloc[::-1]
    with pytest.raises(ValueError, match="REV: dates must be sorted"):
        technicals.build_panel({"REV": unsorted})
    text = _history(np.arange(1.0, 30.0)).astype({"close": object})
    text.iloc[3, text.columns.get_loc("close")] = "n/a"
    with pytest.raises(ValueError, match="TXT: column 'close' is not numeric"):
        technicals.build_panel({"TXT": text})


def test_indicator_history_gives_one_tickers_own_dates():
    sample = sample_histories()
    histories = {"AAPL": sample["AAPL"], "FB": sample["FB"]}
    panel = technicals.build_panel(histories)
    history = technicals.indicator_history(panel, technicals.compute_indicators(panel), "FB")
    assert history.index.equals(histories["FB"].index)
    assert {"close", *technicals.INDICATORS} <= set(history.columns)
    with pytest.raises(KeyError, match="XYZ"):
        technicals.indicator_history(panel, {}, "XYZ")


def test_macd_line_becomes_ema_12_minus_ema_26_once_talibs_reseed_decays():
    """Documented convention: the fast EMA inside MACD is TA-Lib's (re-seeded at row 25)."""
    frame = sample_histories()["IBM"]
    panel = technicals.build_panel({"IBM": frame})
    indicators = technicals.compute_indicators(panel)
    difference = (indicators["ema_12"] - indicators["ema_26"])["IBM"].to_numpy()
    macd = indicators["macd"]["IBM"].to_numpy()
    close = frame["close"].to_numpy()
    gap = np.abs(macd - difference) / close
    assert gap[25] > 1e-6  # the re-seed shows at first ...
    assert gap[300:].max() < 1e-12  # ... and has decayed below float noise later


def test_seed_worker_returns_history_and_summary_or_none():
    from portfolio_analysis import calculate_security_technicals

    frame = sample_histories()["MSFT"].loc["2012"]
    result = calculate_security_technicals("MSFT", frame)
    assert result["ticker"] == "MSFT"
    assert len(result["technical_indicators"]) == len(frame)
    last = result["technical_indicators"][-1]
    summary = result["summary"]
    for field in ("sma_20", "rsi_14", "bollinger_upper", "bollinger_lower", "macd", "atr_14"):
        assert summary[field] == pytest.approx(last[field], rel=1e-12), field
    assert summary["sma_200"] is not None and summary["rsi_signal"] in {
        "overbought",
        "oversold",
        "neutral",
    }
    assert calculate_security_technicals("MSFT", {"ohlcv": "not a list"}) is None


@pytest.mark.parametrize("rows", [15, 26, 34, 35, 97, 127, 128, 129, 251, 263, 1009])
def test_any_history_length_matches_talib(rows):
    """Lengths at and around each warm-up and the running sums' re-summing interval."""
    sample = sample_histories()
    histories = {
        "AAPL": sample["AAPL"].iloc[-rows:],
        "IBM": sample["IBM"].iloc[:rows],
    }
    indicators = technicals.compute_indicators(technicals.build_panel(histories))  # ragged
    assert_matches_talib(histories, indicators)
    dense = {"AAPL": histories["AAPL"]}
    assert_matches_talib(dense, technicals.compute_indicators(technicals.build_panel(dense)))
