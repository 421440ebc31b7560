"""The words a request is written in, each defined once.

The CLI's choices, `AnalysisConfig`'s checks, the operator's CRD schema and spec parser all
read these, so a name added or a pattern changed here is accepted (or refused) everywhere alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

# The analyses a run can do, in the order they run.
ANALYSES = ("pricing", "technicals", "news", "portfolio")

# Price and news sources by name (sources/ and sentiment.py implement them).
PRICE_SOURCES = ("yfinance", "stooq", "local", "embedded", "synthetic")
NEWS_SOURCES = ("yfinance", "rss", "embedded")
# The order a user gets when they ask for "live" prices: real services first, then the data
# that ships inside the package, so a run still finishes offline.
LIVE_PRICE_ORDER = ("yfinance", "stooq", "local", "embedded")

# Embedded price data sets (embedded.py); each is also a universe, the tickers it holds. The
# first one holding a ticker serves it, so a run over the S&P 500 universe puts "sp500" first
# to keep every ticker on the same dates.
EMBEDDED_DATASETS = ("sample", "sp500")

# Which embedded data set serves a ticker first, per universe (a universe is named after its
# data set): a universe's own data set first, so that every ticker of one run shares its dates.
UNIVERSE_DATASET_ORDER: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {name: (name, *(other for other in EMBEDDED_DATASETS if other != name))
     for name in EMBEDDED_DATASETS}
)  # fmt: skip

# A price history's columns (validation.validate_ohlcv guarantees them).
PRICE_COLUMNS = ("open", "high", "low", "close")
OHLCV_COLUMNS = (*PRICE_COLUMNS, "volume")

# Tickers as Yahoo spells them: AAPL, BRK.B, BF-B, EURUSD=X, ^GSPC (an index takes no "=").
# Written as one regular expression that Python and the Kubernetes API server (RE2) both read.
TICKER_PATTERN = r"^([A-Z0-9][A-Z0-9.=-]{0,14}|\^[A-Z0-9.-]{1,14})$"
TICKER_RE = re.compile(TICKER_PATTERN)
# A US share class, written with a dot or a dash: BRK.B = BRK-B, BF.A = BF-A. Only classes
# A to C, so Yahoo's one-letter exchange suffixes (VOD.L, 7203.T, ABC.V, SAP.F) are not one.
CLASS_SHARE_RE = re.compile(r"^([A-Z]{1,6})[.-]([A-C])$")


def security(ticker: str) -> str:
    """One name for the spellings of a security: a share class written with a dash or a dot
    (BRK-B, BRK.B) is one security, so listing both is listing it twice."""
    return CLASS_SHARE_RE.sub(r"\1.\2", ticker)


# VADER's convention: a compound score at or beyond +-0.05 is positive or negative.
POSITIVE_SENTIMENT = 0.05
NEGATIVE_SENTIMENT = -0.05
