"""On-disk cache of downloaded price histories, so a repeated run skips the network.

One Arrow IPC file per batch of tickers written at once (a Dask task's batch), under
``<cache_dir>/prices/<source>/<start>_<end>/``: each ticker is one record batch of the file
(columns ``date, open, high, low, close, volume``), and the file's schema metadata lists the
tickers in order, so a reader opens a file's footer, finds its tickers and reads only their
record batches, memory-mapped, without parsing anything. A file per ticker cost ~2-5 ms of
Parquet decoding each (4-10 s for 2,000 tickers); one file per batch reads at about the
speed of one Arrow file holding everything (benchmarks/bench_pipeline.py measures both).

Only validated histories are stored; failures are not, so fixing a typo or waiting out an
outage works on the next run. Writers in several processes (Dask workers) are safe: each
writes a private temporary file in the same folder and renames it over the final name, an
atomic step, so a reader sees either no file or a complete one. When several files hold a
ticker (batches of different runs overlapped), the newest one serves it.

Expiry: a range that ends before today is history and never changes, so it never expires.
A range ending today or later can still gain or change today's bar: it is refetched once the
file is older than ``ttl_seconds`` (``AnalysisConfig.cache_ttl_seconds``, 6 hours by default).
An expired or unreadable file is a miss, and removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from portfolio_analysis.vocabulary import OHLCV_COLUMNS

SUFFIX = ".arrow"
_TICKERS_KEY = b"tickers"


def _schema(tickers: list[str]):
    import pyarrow as pa

    fields = [pa.field("date", pa.timestamp("us"))]
    fields += [pa.field(name, pa.float64()) for name in OHLCV_COLUMNS]
    return pa.schema(fields, metadata={_TICKERS_KEY: json.dumps(tickers)})


class PriceCache:
    """Arrow files of ticker batches, keyed by source and date range."""

    def __init__(self, root: Path, ttl_seconds: float) -> None:
        self.root = Path(root) / "prices"
        self.ttl_seconds = ttl_seconds

    def folder(self, source: str, start: date, end: date) -> Path:
        """Where the files of one source and date range live."""
        return self.root / source / f"{start.isoformat()}_{end.isoformat()}"

    def files(self, source: str, start: date, end: date) -> list[Path]:
        """The range's complete files, newest first (temporary files left out)."""
        folder = self.folder(source, start, end)
        try:
            entries = [
                (entry.stat().st_mtime, Path(entry.path))
                for entry in os.scandir(folder)
                if entry.name.endswith(SUFFIX) and not entry.name.startswith(".")
            ]
        except OSError:  # absent, or the cache folder is unusable: a miss either way
            return []
        return [path for _, path in sorted(entries, reverse=True)]

    def get_many(
        self, source: str, tickers: Iterable[str], start: date, end: date
    ) -> dict[str, pd.DataFrame]:
        """The cached frames of those ``tickers`` that are cached and fresh."""
        wanted = set(tickers)
        found: dict[str, pd.DataFrame] = {}
        expires = end >= date.today()
        for path in self.files(source, start, end):
            if len(found) == len(wanted):
                break
            try:
                if expires and time.time() - path.stat().st_mtime > self.ttl_seconds:
                    path.unlink()
                    continue
                found.update(_read(path, wanted.difference(found)))
            except Exception:  # damaged, or removed meanwhile: a miss; the next put replaces it
                with contextlib.suppress(OSError):
                    path.unlink()
        return found

    def put_many(
        self, source: str, frames: Mapping[str, pd.DataFrame], start: date, end: date
    ) -> None:
        """Store validated histories (one ``date``-indexed OHLCV frame each) as one file."""
        if not frames:
            return
        import pyarrow as pa
        import pyarrow.ipc

        tickers = list(frames)
        folder = self.folder(source, start, end)
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1("\n".join(tickers).encode()).hexdigest()[:20] + SUFFIX
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        os.close(handle)
        schema = _schema(tickers)
        try:
            with pa.OSFile(temporary, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
                for ticker in tickers:
                    frame = frames[ticker]
                    columns = [pa.array(frame.index.as_unit("us").to_numpy())]
                    columns += [
                        pa.array(frame[name].to_numpy(dtype=np.float64)) for name in OHLCV_COLUMNS
                    ]
                    writer.write_batch(pa.record_batch(columns, schema=schema))
            os.replace(temporary, folder / name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    def get(self, source: str, ticker: str, start: date, end: date) -> pd.DataFrame | None:
        """One ticker's cached frame, or None if absent, expired or unreadable."""
        return self.get_many(source, [ticker], start, end).get(ticker)

    def put(self, source: str, ticker: str, start: date, end: date, frame: pd.DataFrame) -> None:
        """Store one ticker's history (a file of one)."""
        self.put_many(source, {ticker: frame}, start, end)


def _read(path: Path, wanted: set[str]) -> dict[str, pd.DataFrame]:
    """The frames of ``wanted`` tickers that one file holds; only their record batches are read."""
    import pyarrow as pa
    import pyarrow.ipc

    found: dict[str, pd.DataFrame] = {}
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        tickers = json.loads(reader.schema.metadata[_TICKERS_KEY])
        last_dates, index = None, None
        columns = pd.Index(OHLCV_COLUMNS)  # one object shared by the frames
        for position, ticker in enumerate(tickers):
            if ticker not in wanted:
                continue
            batch = reader.get_batch(position)
            dates = batch.column(0).to_numpy()
            # Tickers of one batch mostly share their dates: one index object for them all
            # (validation then checks it once).
            if last_dates is None or not np.array_equal(dates, last_dates):
                last_dates = dates.copy()  # the mapped file closes below
                # normalize(): the index validate_ohlcv makes (its inferred freq), so the
                # frame passes validation as it is.
                index = pd.DatetimeIndex(last_dates, name="date").normalize()
            # One copy out of the mapped file, column after column into a fields x rows
            # block: the layout pandas keeps a float frame in (so no second copy).
            values = np.empty((len(OHLCV_COLUMNS), batch.num_rows))
            for i in range(len(OHLCV_COLUMNS)):
                values[i] = batch.column(i + 1).to_numpy()
            found[ticker] = pd.DataFrame(values.T, index=index, columns=columns, copy=False)
    return found
