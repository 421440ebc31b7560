"""Price sources behind one small interface, tried in order until each ticker has a history.

``fetch_histories(tickers, config)`` asks the sources named in ``config.price_sources`` in
order; a later source is only asked for the tickers every earlier one failed. The result names
the source that served each ticker, and for each ticker no source could serve, the reason
from every source tried, e.g. ``"yfinance: no data (unknown or delisted ticker); stooq: no
data (unknown ticker or no rows in the date range); embedded: not in the embedded data"``.
docs/sources.md describes the order, the settings, the rate limit and the cache layout.

One module per source, behind the interface in ``base.py``:

* ``yahoo.py`` (``yfinance``): one batch ``yf.download(..., auto_adjust=True)`` through an
  instrumented curl_cffi session, so each ticker's failure has a clear reason.
* ``stooq.py`` (``stooq``): Stooq's daily CSV over HTTP.
* ``local.py`` (``local``): ``<TICKER>.csv`` or ``<TICKER>.parquet`` in
  ``config.local_data_dir``.
* ``builtin.py`` (``embedded``, ``synthetic``): the data sets shipped in the package, and
  generated data for any ticker (benchmarks, demos).
* ``fetch.py``: the order, the retries, the disk cache (cache.py) and ``fetch_histories``.

Date range: ``config.start``/``config.end`` (inclusive); a missing start is ``lookback_days``
before the end. A missing end means "today" for network sources and "the newest date the data
has" for the local folder and embedded data (the synthetic source uses today).

Network sources share the library's one network layer with the news sources (network.py:
the HTTP client, TransientSourceError, the tenacity retry policy) and the request-rate limit
that holds across the Dask cluster (ratelimit.py), which a 429 answer's ``Retry-After``
pauses for everyone. Transient errors (HTTP 429 and 5xx, timeouts, connection resets,
malformed or truncated bodies) are retried with exponential backoff and jitter, at least
``Retry-After`` apart, up to ``config.max_retries``; permanent errors (unknown ticker, HTTP
404) and a source that can't be reached at all (DNS failure, a web page instead of data) are
not.
"""

from portfolio_analysis.network import YFINANCE_LOCK, SourceUnavailableError, TransientSourceError
from portfolio_analysis.sources.base import PriceHistory, PriceSource, network_window, slice_window
from portfolio_analysis.sources.builtin import EmbeddedSource, SyntheticSource
from portfolio_analysis.sources.fetch import (
    CACHED_SOURCES,
    SOURCE_TYPES,
    fetch_histories,
    fetch_with_retry,
    make_sources,
    normalise_tickers,
)
from portfolio_analysis.sources.local import LocalFolderSource
from portfolio_analysis.sources.stooq import STOOQ_INDICES, StooqSource, stooq_symbol
from portfolio_analysis.sources.yahoo import YFinanceSource, describe_yahoo_failure

__all__ = [
    "CACHED_SOURCES",
    "SOURCE_TYPES",
    "STOOQ_INDICES",
    "YFINANCE_LOCK",
    "EmbeddedSource",
    "LocalFolderSource",
    "PriceHistory",
    "PriceSource",
    "SourceUnavailableError",
    "StooqSource",
    "SyntheticSource",
    "TransientSourceError",
    "YFinanceSource",
    "describe_yahoo_failure",
    "fetch_histories",
    "fetch_with_retry",
    "make_sources",
    "network_window",
    "normalise_tickers",
    "slice_window",
    "stooq_symbol",
]
