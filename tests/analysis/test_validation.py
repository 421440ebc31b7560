"""validate_ohlcv: the shared shape out, a clear per-ticker error for anything untrustworthy."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from portfolio_analysis.validation import PriceDataError, validate_ohlcv


def frame(rows: int = 40, start: str = "2024-01-01", **overrides) -> pd.DataFrame:
    dates = pd.bdate_range(start, periods=rows)
    close = np.linspace(100.0, 120.0, rows)
    data = {
        "Open": close - 0.5,
        "High": close + 1.0,
        "Low": close - 1.0,
        "Close": close,
        "Volume": np.full(rows, 1_000_000),
    }
    data.update(overrides)
    return pd.DataFrame(data, index=dates)


def reason(ticker: str, data, **kwargs) -> str:
    with pytest.raises(PriceDataError) as caught:
        validate_ohlcv(ticker, data, **kwargs)
    assert caught.value.ticker == ticker
    assert str(caught.value).startswith(f"{ticker}: ")
    return caught.value.reason


def test_good_frame_comes_out_in_the_shared_shape():
    raw = frame()
    out = validate_ohlcv("AAPL", raw, min_rows=30)
    assert list(out.columns) == ["open", "high", "low", "close", "volume"]
    assert out.index.name == "date" and out.index.tz is None
    assert (out.dtypes == np.float64).all()
    np.testing.assert_array_equal(out["close"].to_numpy(), raw["Close"].to_numpy())


def test_column_names_any_case_extra_columns_dropped_and_date_column_used():
    raw = frame().rename(columns={"Close": " CLOSE ", "Open": "open"})
    raw["Adj Close"] = 1.0
    raw = raw.rename_axis("Date").reset_index()
    out = validate_ohlcv("X", raw)
    assert list(out.columns) == ["open", "high", "low", "close", "volume"]
    assert out.index[0] == pd.Timestamp("2024-01-01")


def test_missing_volume_is_allowed_but_missing_prices_are_not():
    out = validate_ohlcv("^GSPC", frame().drop(columns="Volume"))
    assert out["volume"].isna().all()
    assert "missing column(s) high, low" in reason("X", frame().drop(columns=["High", "Low"]))


def test_yahoo_timestamps_become_exchange_dates():
    raw = frame(5)
    raw.index = (raw.index + pd.Timedelta(hours=9, minutes=30)).tz_localize("America/New_York")
    out = validate_ohlcv("X", raw)
    assert out.index.tz is None
    assert list(out.index) == list(pd.bdate_range("2024-01-01", periods=5))


def test_empty_and_non_frames():
    assert reason("X", pd.DataFrame()) == "no price rows (empty data)"
    assert "got NoneType" in reason("X", None)
    assert "got dict" in reason("X", {"close": [1.0]})


def test_numeric_strings_accepted_garbage_quoted():
    raw = frame(3)
    raw["Close"] = ["101.5", "102", "103.25"]
    assert validate_ohlcv("X", raw)["close"].tolist() == [101.5, 102.0, 103.25]
    raw["Close"] = ["101.5", "n/a", "103.25"]
    message = reason("X", raw)
    assert "non-numeric close value 'n/a'" in message and "2024-01-02" in message


def test_rows_without_any_price_are_dropped():
    raw = frame(20)
    raw.iloc[[3, 7], :] = np.nan
    out = validate_ohlcv("X", raw)
    assert len(out) == 18 and pd.Timestamp("2024-01-04") not in out.index


def test_a_few_partly_missing_rows_are_dropped_many_are_an_error():
    raw = frame(20)
    raw.loc[raw.index[5], "Close"] = np.nan  # 1 of 20 = 5%
    assert len(validate_ohlcv("X", raw)) == 19
    raw.loc[raw.index[6:9], "Close"] = np.nan  # 4 of 20 = 20%
    assert "prices missing on 4 of 20 days" in reason("X", raw)


def test_every_row_missing():
    raw = frame(5)
    raw[["Open", "High", "Low", "Close"]] = np.nan
    assert reason("X", raw) == "every row is missing its prices"


@pytest.mark.parametrize("bad", [0.0, -3.5])
def test_non_positive_prices_are_errors_with_their_date(bad):
    raw = frame(10)
    raw.loc[raw.index[4], "Low"] = bad
    message = reason("X", raw)
    assert f"non-positive low {bad:g} on 2024-01-05" in message


def test_infinite_price_and_negative_volume():
    raw = frame(10)
    raw.loc[raw.index[2], "High"] = np.inf
    assert "infinite price on 2024-01-03" in reason("X", raw)
    raw = frame(10)
    raw.loc[raw.index[1], "Volume"] = -5
    assert "invalid volume -5 on 2024-01-02" in reason("X", raw)


def test_unsorted_dates_are_sorted():
    raw = frame(10).iloc[::-1]
    out = validate_ohlcv("X", raw)
    assert out.index.is_monotonic_increasing
    assert out["close"].iloc[0] == pytest.approx(100.0)


def test_identical_duplicate_rows_are_kept_once_conflicting_ones_are_errors():
    raw = frame(10)
    doubled = pd.concat([raw, raw.iloc[[3]]])
    out = validate_ohlcv("X", doubled)
    assert len(out) == 10 and out.index.is_unique
    conflicting = raw.iloc[[3]].copy()
    conflicting["Close"] += 1
    message = reason("X", pd.concat([raw, conflicting]))
    assert "two different rows for 2024-01-04" in message


def test_too_short_history_says_how_to_fix_it():
    message = reason("X", frame(12), min_rows=30)
    assert "only 12 daily rows, at least 30 needed" in message
    assert "lookback_days" in message


def test_unreadable_dates():
    raw = frame(3)
    raw.index = ["yesterday", "today", "tomorrow"]
    assert "dates could not be read" in reason("X", raw)


def test_boolean_columns_are_not_numbers():
    raw = frame(3)
    raw["Volume"] = [True, False, True]
    assert "true/false" in reason("X", raw)


def test_error_survives_pickling_for_dask():
    error = PriceDataError("AAPL", "no price rows (empty data)")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.ticker, copy.reason, str(copy)) == (error.ticker, error.reason, str(error))
