"""The embedded data sets: real values where the packages ship them, sound synthetic data."""

from __future__ import annotations

import gzip
import subprocess
import sys
from datetime import date

import numpy as np
import pandas as pd
import pytest
from portfolio_analysis import corporate_actions, embedded, technicals
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.sources.builtin import EmbeddedSource
from portfolio_analysis.vocabulary import EMBEDDED_DATASETS, OHLCV_COLUMNS, UNIVERSE_DATASET_ORDER


def _raw_bokeh(ticker: str) -> pd.DataFrame:
    """The bokeh file as published, read independently of the loader under test."""
    from bokeh_sampledata import package_path

    with gzip.open(package_path("stocks.csv.gz"), "rt") as handle:
        raw = pd.read_csv(handle)
    raw = raw[raw["Ticker"] == ticker]
    return raw.set_index(pd.to_datetime(raw["Date"]))


def test_sample_prices_are_split_and_dividend_adjusted():
    aapl = embedded.sample_histories()["AAPL"]
    raw = _raw_bokeh("AAPL")
    # Before 2000's and 2005's splits AAPL traded above 100; adjusted, it is about 4.
    assert raw.loc["2000-03-01", "Close"] == pytest.approx(130.31)
    assert aapl.loc["2000-03-01", "close"] == pytest.approx(4.186662803811)
    np.testing.assert_allclose(aapl["close"].to_numpy(), raw["Adj Close"].to_numpy(), rtol=1e-12)
    # The intraday shape is kept: open/close and high/low ratios are those of the raw data.
    np.testing.assert_allclose(
        (aapl["open"] / aapl["close"]).to_numpy(), (raw["Open"] / raw["Close"]).to_numpy()
    )
    np.testing.assert_allclose(
        (aapl["high"] / aapl["low"]).to_numpy(), (raw["High"] / raw["Low"]).to_numpy()
    )
    np.testing.assert_array_equal(aapl["volume"].to_numpy(), raw["Volume"].to_numpy())


def test_sample_covers_the_documented_tickers_and_years():
    sample = embedded.sample_histories()
    assert set(sample) == set(embedded.SAMPLE_TICKERS) == set(embedded.SAMPLE_PORTFOLIO)
    assert sample["AAPL"].index[0] == pd.Timestamp("2000-03-01")
    assert sample["GOOG"].index[0].year == 2004
    assert sample["FB"].index[0].year == 2012
    for frame in sample.values():
        assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
        assert frame.index.name == "date"
        assert frame.index.is_monotonic_increasing and frame.index.is_unique
        assert frame.index[-1] == pd.Timestamp("2013-03-01")
        assert (frame.dtypes == np.float64).all()


def test_sp500_universe_has_521_tickers_over_one_year_with_sectors():
    universe = embedded.sp500_histories()
    # 524 symbols as published; three old symbols fold into the companies' current ones.
    assert len(embedded.sp500_raw_histories()) == 524
    assert len(universe) == 521 and not {"ETFCD", "AOC", "FPL"} & set(universe)
    # NextEra's history runs through its renaming from FPL Group (2010-06-23).
    assert universe["NEE"].index[0] == pd.Timestamp("2009-08-21")
    assert universe["AON"].loc["2009-11-30", "close"] == 38.73  # AOC's last close
    assert min(f.index[0] for f in universe.values()) == pd.Timestamp("2009-08-21")
    assert max(f.index[-1] for f in universe.values()) == pd.Timestamp("2010-08-20")
    # First data row of the package's CSV: 20090821,A,25.6,25.61,25.22,25.55,34758
    first = universe["A"].iloc[0]
    assert first.to_dict() == {
        "open": 25.6,
        "high": 25.61,
        "low": 25.22,
        "close": 25.55,
        "volume": 34758.0,
    }
    sectors = embedded.sp500_sectors()
    assert sectors["AAPL"] == "Information Technology"
    assert sectors["XOM"] == "Energy"
    assert set(sectors) == set(universe)


def test_universe_tickers():
    assert embedded.universe_tickers("sample") == list(embedded.SAMPLE_TICKERS)
    sp500 = embedded.universe_tickers("sp500")
    assert len(sp500) == 521 and sp500 == sorted(sp500) and "XOM" in sp500
    with pytest.raises(ValueError, match="choose from sample, sp500"):
        embedded.universe_tickers("nasdaq")


def test_loaders_parse_once_per_process():
    assert embedded.sp500_histories() is embedded.sp500_histories()
    assert embedded.sample_histories() is embedded.sample_histories()
    assert embedded.sp500_histories()["XOM"] is embedded.sp500_histories()["XOM"]


# --- the encoded files (data/<name>.npz) against the source packages ------------------------

REBUILD = "stale encoded data set: run python -m portfolio_analysis.embedded"


@pytest.mark.parametrize("name", EMBEDDED_DATASETS)
def test_encoded_files_hold_exactly_what_the_packages_publish(name):
    """Every row, date and value of the package's file, bit for bit (no rounding)."""
    long = embedded.published(name).sort_values(["ticker", "date"], kind="stable")
    dataset = embedded.encoded(name)
    dates, columns = dataset.rows()
    assert list(dataset.bounds) == sorted(long["ticker"].unique()), REBUILD
    assert len(dates) == len(long), REBUILD
    np.testing.assert_array_equal(dates.to_numpy(), long["date"].to_numpy(), err_msg=REBUILD)
    assert set(columns) == set(embedded.PUBLISHED_COLUMNS[name])
    for column, values in columns.items():
        np.testing.assert_array_equal(
            values, long[column].to_numpy(dtype=np.float64), err_msg=f"{column}: {REBUILD}"
        )
    tickers = long["ticker"].to_numpy()
    for ticker, (start, stop) in dataset.bounds.items():
        assert (tickers[start:stop] == ticker).all(), REBUILD


def _frames_from_package(name):
    """The data set's frames built straight from the package's CSV, without the encoded file."""
    long = embedded.published(name).sort_values(["ticker", "date"], kind="stable")
    if name == "sample":
        factor = long["adj_close"] / long["close"]
        for column in ("open", "high", "low", "close"):
            long[column] = long[column] * factor
    return {
        ticker: pd.DataFrame(
            rows[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64),
            index=pd.DatetimeIndex(rows["date"].to_numpy(), name="date"),
            columns=list(OHLCV_COLUMNS),
        )
        for ticker, rows in long.groupby("ticker", sort=True)
    }


def test_loaded_sets_are_the_packages_after_the_corrections_bit_for_bit():
    sample = _frames_from_package("sample")
    assert list(embedded.sample_histories()) == list(sample)
    for ticker, frame in sample.items():
        pd.testing.assert_frame_equal(embedded.sample_histories()[ticker], frame, check_exact=True)
    # The S&P corrections are applied to the few tickers they name; the same frames as
    # applying them to the whole published set.
    expected, applied = corporate_actions.adjust(
        corporate_actions.merge_symbol_changes(_frames_from_package("sp500"))
    )
    assert list(embedded.sp500_histories()) == list(expected)
    for ticker, frame in expected.items():
        pd.testing.assert_frame_equal(embedded.sp500_histories()[ticker], frame, check_exact=True)
    assert embedded.sp500_adjustments() == applied


@pytest.mark.parametrize("name", EMBEDDED_DATASETS)
def test_the_ticker_index_finds_every_ticker_of_every_set(name):
    """The embedded source serves each ticker from the first set (in the configured order)
    that holds it, reading only the index to decide."""
    frames = _frames_from_package(name)
    if name == "sp500":
        frames = corporate_actions.merge_symbol_changes(frames)
    histories = embedded.dataset_histories(name)
    assert set(histories) == set(frames) and len(histories) == len(frames)
    assert all(ticker in histories for ticker in frames)
    assert "MSFTT" not in histories and "ETFCD" not in embedded.sp500_histories()
    with pytest.raises(KeyError):
        histories["MSFTT"]
    order = UNIVERSE_DATASET_ORDER[name]
    source = EmbeddedSource(AnalysisConfig(embedded_datasets=order))
    fetched = source.fetch(sorted(frames), None, None)
    assert not [t for t, f in fetched.items() if isinstance(f, Exception)]
    assert set(source.served.values()) == {name}


def test_a_sample_run_never_decodes_the_sp500_prices():
    """The sample portfolio is found in the sample set's index: the S&P rows (most of a
    fresh worker's time before) are not read. A fresh process, so no other test loaded them."""
    code = (
        "from portfolio_analysis import embedded\n"
        "from portfolio_analysis.config import AnalysisConfig\n"
        "from portfolio_analysis.sources.builtin import EmbeddedSource\n"
        "got = EmbeddedSource(AnalysisConfig()).fetch(list(embedded.SAMPLE_TICKERS), None, None)\n"
        "assert not [t for t, f in got.items() if isinstance(f, Exception)], got\n"
        "print(embedded.encoded('sp500')._rows is None, embedded.encoded('sample')._rows is None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["True", "False"]


def test_encode_keeps_values_that_need_more_decimals_as_floats(tmp_path):
    long = pd.DataFrame(
        {
            "ticker": ["B", "A", "A"],
            "date": pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-02"]),
            "close": [1.5, 2.0 / 3.0, 25.1475],
            "volume": [1e12, 3.0, 4.0],
        }
    )
    embedded.encode(long, ["close", "volume"], tmp_path / "x.npz")
    archive = np.load(tmp_path / "x.npz")
    assert archive["column_close"].dtype == np.float64  # 2/3 has no short decimal form
    assert archive["column_volume"].dtype == np.float64  # beyond int32
    assert archive["tickers"].tolist() == ["A", "B"]
    assert archive["bounds"].tolist() == [0, 2, 3]
    with pytest.raises(ValueError, match="midnights"):
        embedded.encode(
            long.assign(date=long["date"] + pd.Timedelta(hours=1)), ["close"], tmp_path / "y.npz"
        )


def test_synthetic_histories_are_deterministic_and_independent_of_other_tickers():
    start, end = date(2020, 1, 1), date(2020, 12, 31)
    alone = embedded.synthetic_histories(["AAPL"], start, end)["AAPL"]
    together = embedded.synthetic_histories(["MSFT", "AAPL"], start, end)
    pd.testing.assert_frame_equal(alone, together["AAPL"])
    assert not np.allclose(together["AAPL"]["close"], together["MSFT"]["close"])
    other_seed = embedded.synthetic_histories(["AAPL"], start, end, seed=1)["AAPL"]
    assert not np.allclose(alone["close"], other_seed["close"])
    assert alone.attrs["source"] == "synthetic"


def test_synthetic_histories_look_like_daily_ohlcv():
    histories = embedded.synthetic_histories(
        [f"T{i:03d}" for i in range(500)], date(2014, 1, 1), date(2023, 12, 31)
    )
    assert len(histories) == 500
    dates = pd.bdate_range("2014-01-01", "2023-12-31")
    for frame in histories.values():
        assert frame.index.equals(dates)
        assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    panel = {f: pd.concat({t: h[f] for t, h in histories.items()}, axis=1) for f in OHLCV_COLUMNS}
    assert (panel["low"] > 0).all().all()
    assert (panel["high"] >= np.maximum(panel["open"], panel["close"])).all().all()
    assert (panel["low"] <= np.minimum(panel["open"], panel["close"])).all().all()
    assert (panel["volume"] >= 1).all().all()
    assert (panel["volume"] == panel["volume"].round()).all().all()
    # Annualised volatility stays in the documented 15%..60% band (sampling noise aside).
    vol = np.log(panel["close"]).diff().std() * np.sqrt(252)
    assert vol.between(0.13, 0.65).all()
    # Open gaps from the previous close, not from nowhere: small overnight moves.
    gap = (panel["open"] / panel["close"].shift()).iloc[1:]
    assert (np.abs(np.log(gap)) < 0.2).all().all()


def test_synthetic_histories_empty_inputs():
    assert embedded.synthetic_histories([], date(2020, 1, 1), date(2020, 2, 1)) == {}
    assert embedded.synthetic_histories(["A"], date(2020, 1, 5), date(2020, 1, 4)) == {}


# --- corporate actions of the S&P 500 set (corporate_actions.py) ---------------------------

# Day moves beyond 40% that the market really made (checked against the news of the day).
REAL_MOVES = {
    ("ARG", "2010-02-05"): "Air Products' hostile bid for Airgas, +40%",
    ("MFE", "2010-08-19"): "Intel agrees to buy McAfee, +57%",
}


def test_sp500_keeps_no_day_move_beyond_40_percent_but_the_named_real_ones():
    found = {
        (ticker, day.date().isoformat())
        for ticker, frame in embedded.sp500_histories().items()
        for day in corporate_actions.large_moves(frame, 0.40).index
    }
    assert found == set(REAL_MOVES)
    # The raw data had them all: splits, a reverse split, spin-offs, a special dividend.
    raw = {
        (ticker, day.date().isoformat())
        for ticker, frame in embedded.sp500_raw_histories().items()
        for day in corporate_actions.large_moves(frame, 0.40).index
    }
    assert {("DHR", "2010-06-14"), ("GIS", "2010-06-09"), ("STR", "2010-07-01")} <= raw
    assert ("ETFC", "2010-06-30") in raw  # +732%: the reverse split, across a month gap


def test_no_split_like_overnight_move_is_left_unadjusted():
    raw, adjusted = embedded.sp500_raw_histories(), embedded.sp500_histories()
    listed = {(a.ticker, a.date) for a in corporate_actions.SP500_ACTIONS}
    for ticker, frame in raw.items():
        for day in corporate_actions.detect_splits(frame, tolerance=0.05).index:
            assert (ticker, day.date().isoformat()) in listed
    assert all(corporate_actions.detect_splits(f, 0.05).empty for f in adjusted.values())


def test_splits_divide_earlier_prices_and_multiply_earlier_volume_like_auto_adjust():
    raw, adjusted = embedded.sp500_raw_histories(), embedded.sp500_histories()
    before = slice(None, "2010-06-11")
    for column in ("open", "high", "low", "close"):
        np.testing.assert_allclose(
            adjusted["DHR"].loc[before, column], raw["DHR"].loc[before, column] / 2.0
        )
    np.testing.assert_allclose(
        adjusted["DHR"].loc[before, "volume"], raw["DHR"].loc[before, "volume"] * 2.0
    )
    after = slice("2010-06-14", None)
    pd.testing.assert_frame_equal(adjusted["DHR"].loc[after], raw["DHR"].loc[after])
    # E*TRADE: 1-for-10 reverse split, and its 20 sessions as ETFCD back in ETFC.
    etfc = adjusted["ETFC"]
    assert etfc.loc["2010-06-01", "close"] == pytest.approx(14.2)
    assert etfc.loc["2010-06-02", "close"] == pytest.approx(14.99)
    assert len(etfc) == len(raw["ETFC"]) + len(raw["ETFCD"])
    # Spin-off: the ex-date's opening gap is the distribution; its intraday move stays.
    str_ = adjusted["STR"]
    assert str_.loc["2010-06-30", "close"] == pytest.approx(str_.loc["2010-07-01", "open"])


def test_applied_adjustments_are_listed_with_their_ratios():
    applied = {(a["ticker"], a["date"]): a for a in embedded.sp500_adjustments()}
    assert applied[("GIS", "2010-06-09")]["ratio"] == 2.0
    assert applied[("ETFC", "2010-06-02")]["ratio"] == 0.1
    assert applied[("STR", "2010-07-01")]["ratio"] == pytest.approx(45.49 / 15.31)
    assert {a["kind"] for a in applied.values()} == {"split", "spinoff", "special_dividend"}
    # Only what changed a window's rows: DHR's split scales any window that starts before it.
    assert embedded.adjustments_for("sp500", "DHR", pd.Timestamp("2009-08-21")) == [
        {"ticker": "DHR", "date": "2010-06-14", "ratio": 2.0, "kind": "split"}
    ]
    assert embedded.adjustments_for("sp500", "DHR", pd.Timestamp("2010-07-01")) == []
    assert embedded.adjustments_for("sample", "AAPL", pd.Timestamp("2000-01-01")) == []


def test_split_artefacts_no_longer_make_false_signals():
    tickers = ["DHR", "ESRX", "GIS", "ETFC", "STR", "WY"]
    histories = embedded.sp500_histories()
    panel = technicals.build_panel({t: histories[t] for t in tickers})
    summary = technicals.summarize(panel, technicals.compute_indicators(panel))
    # Before: DHR closed at 36.33 "vs SMA200 67.43"; ETFC's SMA200 was 3.64 against 13.62.
    ratio = summary["close"] / summary["sma_200"]
    assert ratio.between(0.85, 1.15).all(), ratio
    crosses = summary["ma_cross"].to_dict()
    assert crosses["DHR"] is None and crosses["ESRX"] is None and crosses["STR"] is None
    # WY's death cross of 2010-07-08 is real: both averages lie wholly before its special
    # dividend of 2010-07-20 (the raw data has the same cross), the stock fell from 49.5 to 35.
    assert crosses["WY"] == "death_cross" and summary.loc["WY", "ma_cross_date"] == "2010-07-08"
    assert summary.loc["STR", "rsi_signal"] != "oversold"  # was RSI 17.5
    assert summary.loc["WY", "rsi_signal"] != "oversold"


def test_the_adjustment_costs_little_at_load():
    import time

    raw = embedded.sp500_raw_histories()
    started = time.perf_counter()
    corporate_actions.adjust(corporate_actions.merge_symbol_changes(raw))
    # Measured: 3-7 ms, against 120-250 ms to parse the package's CSV.
    assert time.perf_counter() - started < 0.1
