"""What every price source shares: the interface, the result type and the date window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

import pandas as pd

from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.validation import PriceDataError


@dataclass(frozen=True)
class PriceHistory:
    """One ticker's validated daily history and the source that served it."""

    ticker: str
    frame: pd.DataFrame  # the shared price-history shape (validation.validate_ohlcv)
    source: str
    # Why earlier sources in the order didn't serve it ("yfinance: ... (gave up after 5
    # attempts)"), so a fallback is visible, not silent.
    fallback_reasons: tuple[str, ...] = ()


class PriceSource(Protocol):
    name: str

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        """A frame or the exception explaining its absence, for every ticker asked."""


def network_window(
    start: date | None, end: date | None, config: AnalysisConfig
) -> tuple[date, date]:
    """The concrete range a network source asks for: ``end`` defaults to today."""
    end = end or date.today()
    return start or end - timedelta(days=config.lookback_days), end


def slice_window(
    ticker: str, frame: pd.DataFrame, start: date | None, end: date | None, config: AnalysisConfig
) -> pd.DataFrame:
    """Rows of an offline data set in range; with no end, the range ends at its newest row."""
    last = pd.Timestamp(end) if end else frame.index[-1]
    first = pd.Timestamp(start) if start else last - pd.Timedelta(days=config.lookback_days)
    window = frame.loc[first:last]
    if window.empty:
        raise PriceDataError(
            ticker,
            f"no rows between {first.date()} and {last.date()} (data covers "
            f"{frame.index[0].date()} to {frame.index[-1].date()})",
        )
    return window
