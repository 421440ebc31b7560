"""The user's own price files: ``<TICKER>.csv`` or ``<TICKER>.parquet`` in a folder.

Files that yfinance wrote are read as they are: ``yf.download(...).to_csv()``'s two extra
header rows (``Ticker``, ``Date``) are skipped, and an ``Adj Close`` column (downloads with
``auto_adjust=False``) adjusts open, high, low and close by ``adj_close / close``, as
``auto_adjust`` would; the report's data notes list that adjustment (kind ``adj_close``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pandas as pd

from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.sources.base import slice_window
from portfolio_analysis.sources.symbols import spellings
from portfolio_analysis.validation import PriceDataError, validate_ohlcv_counting

_ADJ_CLOSE = {"adj close", "adj_close", "adjclose", "adjusted close"}


def _yfinance_layout(raw: pd.DataFrame) -> tuple[pd.DataFrame, float | None]:
    """``raw`` without yf.download's extra header rows and adjusted by its ``Adj Close``;
    the divisor of the first row's prices if it was adjusted (else None)."""
    first = str(raw.columns[0]).strip().lower() if len(raw.columns) else ""
    if first == "price" and len(raw) >= 2 and str(raw.iloc[0, 0]).strip().lower() == "ticker":
        raw = raw.iloc[2:] if str(raw.iloc[1, 0]).strip().lower() == "date" else raw.iloc[1:]
        raw = raw.rename(columns={raw.columns[0]: "date"})
    names = {str(c).strip().lower(): c for c in raw.columns}
    adj = next((names[n] for n in _ADJ_CLOSE if n in names), None)
    if adj is None or "close" not in names:
        return raw, None
    close = pd.to_numeric(raw[names["close"]], errors="coerce")
    factor = pd.to_numeric(raw[adj], errors="coerce") / close
    if factor.isna().any() or not (factor > 0).all():
        return raw, None  # validation names the bad values
    raw = raw.drop(columns=[adj])
    for field in ("open", "high", "low", "close"):
        if field in names:
            raw[names[field]] = pd.to_numeric(raw[names[field]], errors="coerce") * factor
    return raw, float(1.0 / factor.iloc[0])


class LocalFolderSource:
    """The user's own files: ``<TICKER>.csv`` or ``<TICKER>.parquet`` in a folder."""

    name = "local"

    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config

    def _file(self, folder: Path, ticker: str) -> Path | None:
        names = [n for s in spellings(ticker) for n in (s, s.upper(), s.lower())]
        for stem in dict.fromkeys(names):  # BRK-B may be saved as BRK.B.csv
            for suffix in (".parquet", ".csv"):
                path = folder / f"{stem}{suffix}"
                if path.is_file():
                    return path
        return None

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        folder = self.config.local_data_dir
        if folder is None:
            reason = "no folder configured (set local_data_dir)"
            return {t: PriceDataError(t, reason) for t in tickers}
        folder = Path(folder)
        if not folder.is_dir():
            reason = f"folder {folder} does not exist"
            return {t: PriceDataError(t, reason) for t in tickers}
        result: dict[str, pd.DataFrame | Exception] = {}
        self.dropped_rows: dict[str, int] = {}
        self.adj_close: dict[str, float] = {}
        for ticker in tickers:
            path = self._file(folder, ticker)
            if path is None:
                result[ticker] = PriceDataError(
                    ticker, f"no file {ticker}.csv or {ticker}.parquet in {folder}"
                )
                continue
            try:
                raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
                raw, divisor = _yfinance_layout(raw)
                frame, dropped = validate_ohlcv_counting(ticker, raw)
                result[ticker] = slice_window(ticker, frame, start, end, self.config)
                if dropped:  # counted over the whole file, before the window is cut
                    self.dropped_rows[ticker] = dropped
                if divisor is not None:
                    self.adj_close[ticker] = divisor
            except PriceDataError as error:
                result[ticker] = PriceDataError(ticker, f"{path.name}: {error.reason}")
            except Exception as error:  # unreadable file: say which and why
                result[ticker] = PriceDataError(ticker, f"cannot read {path}: {error}")
        return result

    def adjustments(self, ticker: str, frame: pd.DataFrame) -> list[dict]:
        """The file's ``Adj Close`` adjustment, if it had one (``ratio``: the first row's)."""
        if ticker not in self.adj_close or frame.empty:
            return []
        day = frame.index[0].date().isoformat()
        return [
            {"ticker": ticker, "date": day, "ratio": self.adj_close[ticker], "kind": "adj_close"}
        ]
