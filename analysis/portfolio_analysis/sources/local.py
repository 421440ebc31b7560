"""The user's own price files: ``<TICKER>.csv`` or ``<TICKER>.parquet`` in a folder."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pandas as pd

from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.sources.base import slice_window
from portfolio_analysis.sources.symbols import spellings
from portfolio_analysis.validation import PriceDataError, validate_ohlcv_counting


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
        for ticker in tickers:
            path = self._file(folder, ticker)
            if path is None:
                result[ticker] = PriceDataError(
                    ticker, f"no file {ticker}.csv or {ticker}.parquet in {folder}"
                )
                continue
            try:
                raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
                frame, dropped = validate_ohlcv_counting(ticker, raw)
                result[ticker] = slice_window(ticker, frame, start, end, self.config)
                if dropped:  # counted over the whole file, before the window is cut
                    self.dropped_rows[ticker] = dropped
            except PriceDataError as error:
                result[ticker] = PriceDataError(ticker, f"{path.name}: {error.reason}")
            except Exception as error:  # unreadable file: say which and why
                result[ticker] = PriceDataError(ticker, f"cannot read {path}: {error}")
        return result
