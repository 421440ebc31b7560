"""Check what a price source returned before any number is computed from it.

``validate_ohlcv`` turns whatever a source produced into the shared price-history shape (see
docs/architecture.md): a tz-naive ``DatetimeIndex`` named ``date``, sorted and unique, and
float64 columns ``open, high, low, close, volume``. Anything it cannot trust becomes a
``PriceDataError`` naming the ticker and what to fix; it never guesses a number.

Decisions (each tested in tests/analysis/test_validation.py):

* Column names are matched case-insensitively (``Close``, ``CLOSE``, `` close ``); ``adj close``
  and other extra columns are dropped (sources deliver adjusted prices already). A ``date``
  column is used as the index when the index is not already dates. ``volume`` may be missing
  (indices have none): it is then NaN. ``open``, ``high``, ``low`` and ``close`` are required.
* Values must be numbers: numeric strings (``"101.5"``) are accepted, anything else
  (``"n/a"``) is an error that quotes the bad value; it is not silently turned into NaN.
* Rows with no price at all (every OHLC value missing: holidays in a batch download) are
  dropped. Rows with some prices missing are dropped too, as long as they are at most
  ``MAX_MISSING_FRACTION`` (10%) of the rows; more than that is an error, because indicators
  computed over a mostly empty series would be wrong numbers.
* Prices must be finite and positive; a zero or negative price is an error with its date.
  Volume must be non-negative where present.
* Unsorted dates are sorted. Duplicate dates whose rows are identical are kept once (vendors
  overlap pages); duplicate dates with different values are an error (which one is right?).
* Timestamps with a time zone or a time of day (Yahoo's 09:30 New York bars) become the
  exchange-local calendar date, at microsecond resolution (``datetime64[us]``) whatever the
  source's resolution. Text timestamps with a UTC offset (yfinance's CSVs:
  ``2011-12-19 00:00:00-05:00``, then ``-04:00`` once daylight saving starts) are read at
  their own wall-clock time, which is the exchange's local time, so offsets that change
  within a file are fine.
* Fewer than ``min_rows`` rows after cleaning is an error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from portfolio_analysis.vocabulary import OHLCV_COLUMNS, PRICE_COLUMNS

MAX_MISSING_FRACTION = 0.10


class PriceDataError(ValueError):
    """A ticker's price data is unusable; ``reason`` says why and what to do about it."""

    def __init__(self, ticker: str, reason: str) -> None:
        super().__init__(f"{ticker}: {reason}")
        self.ticker = ticker
        self.reason = reason

    def __reduce__(self):  # picklable across Dask workers despite the two-argument init
        return (type(self), (self.ticker, self.reason))


def _normalise_columns(ticker: str, frame: pd.DataFrame) -> pd.DataFrame:
    if isinstance(frame.columns, pd.MultiIndex):
        raise PriceDataError(
            ticker, "expected one column per field, got a multi-level header (one ticker only)"
        )
    renamed = frame.rename(columns=lambda c: str(c).strip().lower().replace("_", " "))
    renamed = renamed.loc[:, ~renamed.columns.duplicated()]
    if not isinstance(renamed.index, pd.DatetimeIndex) and "date" in renamed.columns:
        renamed = renamed.set_index("date")
    missing = [c for c in PRICE_COLUMNS if c not in renamed.columns]
    if missing:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise PriceDataError(
            ticker, f"missing column(s) {', '.join(missing)} (columns found: {found})"
        )
    if "volume" not in renamed.columns:
        renamed = renamed.assign(volume=np.nan)
    return renamed[list(OHLCV_COLUMNS)]


# A text timestamp's UTC offset after its time of day: "... 00:00:00-05:00", "...T14:30Z".
_UTC_OFFSET = r"^(.*\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|[+-]\d{2}:?\d{2})$"


def _local_wall_time(index: pd.Index) -> pd.Index:
    """Text timestamps without their UTC offsets: the wall-clock time each was written in.

    yfinance writes a New York bar as ``2011-12-19 00:00:00-05:00`` in winter and ``-04:00``
    in summer; pandas refuses such a mix ("Mixed timezones detected"), and converting to UTC
    would move midnight bars to the previous day's 04:00/05:00 only by luck of the offset.
    """
    if not (pd.api.types.is_object_dtype(index.dtype) or pd.api.types.is_string_dtype(index)):
        return index
    text = pd.Series(index, dtype="string").str.strip()
    return pd.Index(text.str.replace(_UTC_OFFSET, r"\1", regex=True).to_numpy(dtype=object))


def _dates(ticker: str, index: pd.Index) -> pd.DatetimeIndex:
    if not isinstance(index, pd.DatetimeIndex):
        try:
            index = pd.DatetimeIndex(pd.to_datetime(_local_wall_time(index), format="ISO8601"))
        except (ValueError, TypeError) as error:
            raise PriceDataError(
                ticker, f"dates could not be read ({error}); use ISO dates like 2024-01-31"
            ) from None
    if index.tz is not None:
        index = index.tz_localize(None)
    if index.hasnans:
        raise PriceDataError(ticker, "some rows have no date")
    # One resolution whatever the source delivered (yfinance: s, Parquet: ms, CSV: us), so a
    # history read back from the cache equals the one first downloaded.
    return index.normalize().as_unit("us").rename("date")


def _numeric(ticker: str, frame: pd.DataFrame) -> pd.DataFrame:
    columns = {}
    for name in OHLCV_COLUMNS:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column.dtype):
            raise PriceDataError(ticker, f"column {name} holds true/false values, not numbers")
        if not pd.api.types.is_numeric_dtype(column.dtype):
            converted = pd.to_numeric(column, errors="coerce")
            bad = column[converted.isna() & column.notna()]
            if len(bad):
                raise PriceDataError(
                    ticker,
                    f"non-numeric {name} value {bad.iloc[0]!r} on {bad.index[0]} "
                    f"({len(bad)} such rows); fix or remove them in the source data",
                )
            column = converted
        columns[name] = column.astype(np.float64)
    return pd.DataFrame(columns, index=frame.index)


def _drop_missing(ticker: str, frame: pd.DataFrame) -> pd.DataFrame:
    prices = frame[list(PRICE_COLUMNS)].to_numpy()
    nothing = np.isnan(prices).all(axis=1)
    frame = frame[~nothing]
    if frame.empty:
        raise PriceDataError(ticker, "every row is missing its prices")
    partial = np.isnan(frame[list(PRICE_COLUMNS)].to_numpy()).any(axis=1)
    if partial.mean() > MAX_MISSING_FRACTION:
        raise PriceDataError(
            ticker,
            f"prices missing on {int(partial.sum())} of {len(frame)} days "
            f"(more than {MAX_MISSING_FRACTION:.0%}); the series is too incomplete to analyse",
        )
    return frame[~partial]


# Why ``validate_ohlcv`` drops a row it keeps the rest of the history for.
PARTIAL_ROW_REASON = "some of open/high/low/close missing on the day"


def _check_values(ticker: str, frame: pd.DataFrame) -> None:
    prices = frame[list(PRICE_COLUMNS)]
    finite = np.isfinite(prices.to_numpy())
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise PriceDataError(ticker, f"infinite price on {frame.index[row].date()}")
    positive = prices.to_numpy() > 0
    if not positive.all():
        bad_rows = np.flatnonzero(~positive.all(axis=1))
        row = int(bad_rows[0])
        column = PRICE_COLUMNS[int(np.flatnonzero(~positive[row])[0])]
        raise PriceDataError(
            ticker,
            f"non-positive {column} {prices.iloc[row][column]:g} on {frame.index[row].date()} "
            f"({len(bad_rows)} such rows); prices must be above zero",
        )
    volume = frame["volume"].to_numpy()
    if (volume < 0).any() or np.isinf(volume).any():
        row = int(np.flatnonzero((volume < 0) | np.isinf(volume))[0])
        raise PriceDataError(ticker, f"invalid volume {volume[row]:g} on {frame.index[row].date()}")


def _sorted_unique(ticker: str, frame: pd.DataFrame) -> pd.DataFrame:
    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index(kind="stable")
    if frame.index.has_duplicates:
        identical = frame.reset_index().duplicated(keep="first").to_numpy()
        frame = frame[~identical]
        if frame.index.has_duplicates:
            day = frame.index[frame.index.duplicated()][0]
            raise PriceDataError(
                ticker,
                f"two different rows for {day.date()}; the source has conflicting duplicate "
                "dates (remove one)",
            )
    return frame


def validate_ohlcv(ticker: str, frame: pd.DataFrame | None, min_rows: int = 1) -> pd.DataFrame:
    """The frame in the shared price-history shape, or ``PriceDataError`` saying what's wrong."""
    return validate_ohlcv_counting(ticker, frame, min_rows)[0]


def validate_ohlcv_counting(
    ticker: str, frame: pd.DataFrame | None, min_rows: int = 1
) -> tuple[pd.DataFrame, int]:
    """``validate_ohlcv``, and how many dated rows it dropped for missing prices
    (``PARTIAL_ROW_REASON``; rows with no price at all are no trading day, not counted)."""
    if frame is None or not isinstance(frame, pd.DataFrame):
        raise PriceDataError(ticker, f"expected a table of prices, got {type(frame).__name__}")
    if frame.empty:
        raise PriceDataError(ticker, "no price rows (empty data)")
    frame = _normalise_columns(ticker, frame)
    frame = frame.set_axis(_dates(ticker, frame.index), axis=0)
    frame = _numeric(ticker, frame)
    priced = int((~np.isnan(frame[list(PRICE_COLUMNS)].to_numpy()).all(axis=1)).sum())
    frame = _drop_missing(ticker, frame)
    dropped = priced - len(frame)
    _check_values(ticker, frame)
    frame = _sorted_unique(ticker, frame)
    if len(frame) < min_rows:
        raise PriceDataError(
            ticker,
            f"only {len(frame)} daily rows, at least {min_rows} needed; widen the date range "
            "(start/lookback_days) or lower min_history_days",
        )
    return frame, dropped
