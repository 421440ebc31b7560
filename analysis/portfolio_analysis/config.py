"""One picklable settings object, shipped unchanged to every Dask worker.

Every knob of a run lives here so that a worker needs nothing but its arguments: no
globals, no environment lookups on the worker side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from portfolio_analysis.vocabulary import EMBEDDED_DATASETS, NEWS_SOURCES, PRICE_SOURCES

# An annual risk-free rate as a fraction (0.04 = 4 %): above -1 (a rate of -100 % or less
# makes no sense for Sharpe) and at most 1 (100 %; anything larger is a typo for a percentage).
RISK_FREE_RATE_RANGE = (-1.0, 1.0)
# The longest history a run asks for: a century of days.
MAX_LOOKBACK_DAYS = 36500


def default_cache_dir() -> Path:
    """Where downloads are cached: $PORTFOLIO_CACHE_DIR, else ~/.cache/portfolio-operator."""
    env = os.environ.get("PORTFOLIO_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "portfolio-operator"


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of one analysis run.

    The default reads only the embedded data, so that a fresh machine with no network gets
    a complete, repeatable result; pass ``price_sources=LIVE_PRICE_ORDER`` for live data.
    """

    price_sources: tuple[str, ...] = ("embedded",)
    news_sources: tuple[str, ...] = ("embedded",)
    # Date range. With no ``end`` the range ends at the newest data a source has.
    start: date | None = None
    end: date | None = None
    lookback_days: int = 365
    # Extra calendar days fetched before the lookback so that every indicator is defined
    # from the lookback's first day (technicals.WARMUP_SESSIONS, the longest indicator
    # window, in calendar days); None derives it, 0 turns the warm-up off.
    warmup_days: int | None = None
    min_history_days: int = 30
    local_data_dir: Path | None = None
    embedded_datasets: tuple[str, ...] = EMBEDDED_DATASETS
    synthetic_seed: int = 0
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    use_cache: bool = True
    # Cached downloads whose range ends today (or later) are refetched after this long, as
    # today's bar can still change; ranges wholly in the past never expire.
    cache_ttl_seconds: float = 6 * 3600.0
    # Network behaviour.
    requests_per_second: float = 2.0
    max_retries: int = 4
    backoff_base_seconds: float = 0.5
    timeout_seconds: float = 15.0
    stooq_url: str = "https://stooq.com/q/d/l/"
    # Stooq serves CSV to programs only with a (free) API key; sent as ``apikey=``.
    stooq_api_key: str | None = field(default=None, repr=False)
    rss_url_template: str = (
        "https://feeds.finance.yahoo.com/rss/2.0/headline?s={ticker}&region=US&lang=en-US"
    )
    max_articles: int = 20
    # Portfolio figures.
    risk_free_rate: float = 0.0
    benchmark: str | None = None
    # Dask batching: how many tickers one task handles.
    batch_size: int | None = None

    def __post_init__(self) -> None:
        unknown = [s for s in self.price_sources if s not in PRICE_SOURCES]
        if unknown or not self.price_sources:
            raise ValueError(
                f"unknown price source(s) {unknown or '(none given)'}: choose from "
                f"{', '.join(PRICE_SOURCES)}"
            )
        unknown = [s for s in self.news_sources if s not in NEWS_SOURCES]
        if unknown:
            raise ValueError(
                f"unknown news source(s) {unknown}: choose from {', '.join(NEWS_SOURCES)}"
            )
        unknown = [d for d in self.embedded_datasets if d not in EMBEDDED_DATASETS]
        if unknown or not self.embedded_datasets:
            raise ValueError(
                f"unknown embedded data set(s) {unknown or '(none given)'}: choose from "
                f"{', '.join(EMBEDDED_DATASETS)}"
            )
        if self.cache_ttl_seconds < 0:
            raise ValueError(f"cache_ttl_seconds must be >= 0, got {self.cache_ttl_seconds}")
        if not 1 <= self.lookback_days <= MAX_LOOKBACK_DAYS:
            raise ValueError(
                f"lookback_days must be from 1 to {MAX_LOOKBACK_DAYS}, got {self.lookback_days}"
            )
        low, high = RISK_FREE_RATE_RANGE
        if not low < self.risk_free_rate <= high:  # also refuses NaN
            raise ValueError(
                f"risk_free_rate is an annual rate above {low:g} and at most {high:g} "
                f"(0.04 for 4 %), got {self.risk_free_rate}"
            )
        if self.requests_per_second <= 0:
            raise ValueError(
                f"requests_per_second must be positive, got {self.requests_per_second}"
            )
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")

    def warmup(self) -> int:
        """Calendar days fetched before the lookback: ``warmup_days``, or what the longest
        indicator window needs (derived from technicals, the one place it is defined)."""
        if self.warmup_days is not None:
            return self.warmup_days
        from portfolio_analysis.technicals import WARMUP_SESSIONS
        from portfolio_analysis.trading_calendar import calendar_days

        return calendar_days(WARMUP_SESSIONS)

    def with_changes(self, **changes: object) -> AnalysisConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
