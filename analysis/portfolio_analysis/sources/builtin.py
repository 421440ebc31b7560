"""Sources built into the package: the embedded data sets and generated synthetic data.

Both come from portfolio_analysis.embedded and need neither network nor files of the user.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pandas as pd

from portfolio_analysis import embedded
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.sources import symbols
from portfolio_analysis.sources.base import network_window, slice_window
from portfolio_analysis.validation import PriceDataError


class EmbeddedSource:
    """The data sets shipped in the package, in ``config.embedded_datasets`` order."""

    name = "embedded"

    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        datasets = [
            (name, embedded.dataset_histories(name)) for name in self.config.embedded_datasets
        ]
        result: dict[str, pd.DataFrame | Exception] = {}
        self.served: dict[str, str] = {}
        for ticker in tickers:
            # BRK-B is the data sets' BRK.B (sources/symbols.py).
            name, frame = next(
                ((n, d[s]) for n, d in datasets for s in symbols.spellings(ticker) if s in d),
                (None, None),
            )
            if frame is None:
                result[ticker] = PriceDataError(
                    ticker,
                    "not in the embedded data (the sample portfolio and the 2009-2010 S&P 500)",
                )
                continue
            try:
                result[ticker] = slice_window(ticker, frame, start, end, self.config)
                self.served[ticker] = name
            except PriceDataError as error:
                result[ticker] = error
        return result

    def adjustments(self, ticker: str, frame: pd.DataFrame) -> list[dict]:
        """The corporate-action adjustments that changed ``frame``, a window this source
        served (corporate_actions.py)."""
        name = getattr(self, "served", {}).get(ticker)
        if name is None or frame.empty:
            return []
        return embedded.adjustments_for(name, ticker, frame.index[0])


class SyntheticSource:
    """Generated, clearly synthetic data for any ticker (see embedded.synthetic_histories)."""

    name = "synthetic"

    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        start, end = network_window(start, end, self.config)
        return dict(
            embedded.synthetic_histories(tickers, start, end, seed=self.config.synthetic_seed)
        )
