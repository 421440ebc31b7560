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
    # The first date of the lookback: ``frame`` holds the warm-up rows before it, which
    # indicators use and figures and charts do not (docs/data.md).
    window_start: pd.Timestamp | None = None
    # Rows validation dropped (some prices missing) and why; 0 if none.
    dropped_rows: int = 0
    dropped_reason: str = ""
    # Corporate-action adjustments the source applied to these rows (embedded data).
    adjustments: tuple[dict, ...] = ()

    @property
    def window(self) -> pd.DataFrame:
        """The rows of the lookback, without the warm-up."""
        if self.window_start is None:
            return self.frame
        return self.frame.loc[self.window_start :]


class PriceSource(Protocol):
    name: str

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        """A frame or the exception explaining its absence, for every ticker asked."""


def history_days(config: AnalysisConfig) -> int:
    """Calendar days a source is asked for when no start is given: lookback plus warm-up."""
    return config.lookback_days + config.warmup()


def fetch_start(config: AnalysisConfig) -> date | None:
    """The first date to fetch: the configured start less the warm-up (None: no start)."""
    return config.start - timedelta(days=config.warmup()) if config.start else None


def lookback_start(frame: pd.DataFrame, config: AnalysisConfig) -> pd.Timestamp:
    """The first date of a history's lookback: ``config.start``, else ``lookback_days``
    before the configured end or, without one, before the history's newest row."""
    if config.start:
        return pd.Timestamp(config.start)
    last = pd.Timestamp(config.end) if config.end else frame.index[-1]
    return last - pd.Timedelta(days=config.lookback_days)


def network_window(
    start: date | None, end: date | None, config: AnalysisConfig
) -> tuple[date, date]:
    """The concrete range a network source asks for: ``end`` defaults to today."""
    end = end or date.today()
    return start or end - timedelta(days=history_days(config)), end


def slice_window(
    ticker: str, frame: pd.DataFrame, start: date | None, end: date | None, config: AnalysisConfig
) -> pd.DataFrame:
    """Rows of an offline data set in range; with no end, the range ends at its newest row."""
    last = pd.Timestamp(end) if end else frame.index[-1]
    first = pd.Timestamp(start) if start else last - pd.Timedelta(days=history_days(config))
    window = frame.loc[first:last]
    if window.empty:
        raise PriceDataError(
            ticker,
            f"no rows between {first.date()} and {last.date()} (data covers "
            f"{frame.index[0].date()} to {frame.index[-1].date()})",
        )
    return window
