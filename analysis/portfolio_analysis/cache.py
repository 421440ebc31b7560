"""On-disk cache of downloaded price histories, so a repeated run skips the network.

One Parquet file per (source, ticker, start, end) under ``<cache_dir>/prices/<source>/``.
Only validated histories are stored; failures are not, so fixing a typo or waiting out an
outage works on the next run. Writers in several processes (Dask workers) are safe: each
writes a private temporary file in the same folder and renames it over the final name, an
atomic step, so a reader sees either no file or a complete one.

Expiry: a range that ends before today is history and never changes, so it never expires.
A range ending today or later can still gain or change today's bar: it is refetched once the
file is older than ``ttl_seconds`` (``AnalysisConfig.cache_ttl_seconds``, 6 hours by default).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd


class PriceCache:
    """Parquet files keyed by source, ticker and date range."""

    def __init__(self, root: Path, ttl_seconds: float) -> None:
        self.root = Path(root) / "prices"
        self.ttl_seconds = ttl_seconds

    def path(self, source: str, ticker: str, start: date, end: date) -> Path:
        return self.root / source / f"{ticker}_{start.isoformat()}_{end.isoformat()}.parquet"

    def get(self, source: str, ticker: str, start: date, end: date) -> pd.DataFrame | None:
        """The cached frame, or None if absent, expired or unreadable."""
        path = self.path(source, ticker, start, end)
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:  # absent, or the cache folder is unusable: a miss either way
            return None
        if end >= date.today() and age > self.ttl_seconds:
            return None
        try:
            return pd.read_parquet(path)
        except Exception:  # a damaged file is only a cache miss; the next put replaces it
            return None

    def put(self, source: str, ticker: str, start: date, end: date, frame: pd.DataFrame) -> None:
        path = self.path(source, ticker, start, end)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        os.close(handle)
        try:
            frame.to_parquet(temporary)
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
