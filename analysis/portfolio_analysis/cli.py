"""``portfolio-analysis``: run the analysis on a laptop and write JSON and HTML reports.

With no arguments it analyses the embedded sample portfolio on a local Dask cluster, offline.
By default it runs the plain-Dask pipeline; ``--prefect`` runs the same pipeline inside the
``dask_combined_analysis_flow`` Prefect flow (reporting to ``PREFECT_API_URL`` if set,
otherwise to a temporary local server, which costs seconds to tens of seconds).

Exit codes (``EXIT_CODES``, also in ``run --help``): 0 success, 1 no ticker could be
analysed, 2 bad input or a scheduler problem, 3 a partial result, 130 interrupted.

The reports of a run appear together or not at all: they are written into a temporary
folder beside ``--output`` and moved in only when both are complete, while a lock file
beside ``--output`` keeps other runs out; a failed run leaves the previous reports as they
were.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import csv
import dataclasses
import fcntl
import glob
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from portfolio_analysis.config import MAX_LOOKBACK_DAYS, RISK_FREE_RATE_RANGE, AnalysisConfig
from portfolio_analysis.vocabulary import (
    EMBEDDED_DATASETS,
    NEWS_SOURCES,
    PRICE_SOURCES,
    TICKER_RE,
    UNIVERSE_DATASET_ORDER,
    security,
)

if TYPE_CHECKING:
    from portfolio_analysis.pipeline import AnalysisRun, RunOptions

PROG = "portfolio-analysis"
DEFAULT_OUTPUT = Path("portfolio-report")
TABLE_WIDTH = 140  # columns of the summary table when stdout is not a terminal
STAGE_LABELS = {
    "pricing": "Prices",
    "technicals": "Indicators",
    "news": "News sentiment",
    "portfolio": "Portfolio figures",
}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = {
    EXIT_OK: "success: every ticker analysed, portfolio figures cover them all",
    EXIT_FAILED: "no ticker could be analysed (no report is written; a previous one is kept)",
    EXIT_USAGE: "bad input (an option, ticker, number, holdings file, data folder or --output "
    "folder, or another run writing to --output) or a problem with --scheduler",
    EXIT_PARTIAL: "partial result: some tickers failed or were left out of the portfolio "
    "figures, or the benchmark could not be priced (the PARTIAL line and the report's "
    "warnings say which)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}
STOOQ_KEY_ENV = "STOOQ_API_KEY"  # read here, on the client; workers get it in the config


def _paragraph(text: str, indent: str = "", hang: str = "") -> str:
    return textwrap.fill(text, width=78, initial_indent=indent, subsequent_indent=hang)


RUN_EPILOG = "\n\n".join(
    [
        _paragraph(
            "Tickers are symbols as Yahoo writes them (AAPL, BRK.B or BRK-B, ^GSPC). A ticker "
            "given twice in --tickers is analysed once; a holdings file that lists a ticker "
            "twice is refused (merge its rows into one position)."
        ),
        _paragraph(
            "Reports appear together or not at all: a failed or interrupted run keeps the "
            "previous ones, and a second run into the same --output while one is writing "
            "there stops at once (lock file .NAME.lock beside the folder)."
        ),
        "Exit codes:\n"
        + "\n".join(
            _paragraph(f"{code:<4}  {meaning}", indent="  ", hang=" " * 8)
            for code, meaning in EXIT_CODES.items()
        ),
        _paragraph(
            f"Environment: {STOOQ_KEY_ENV} is the Stooq API key (sent as apikey=; the stooq "
            "source needs one), PORTFOLIO_CACHE_DIR the download cache folder (default "
            "~/.cache/portfolio-operator), PREFECT_API_URL the Prefect server --prefect "
            "reports to."
        ),
    ]
)
# The report files a run writes into --output (report.write_reports).
REPORT_FILES = ("report.json", "report.html")
# A stopped run shuts its embedded cluster down before exiting; at most this long.
SHUTDOWN_SECONDS = 60


class UsageError(Exception):
    """Bad input the user can fix; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors on one line (no usage dump) with exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see {PROG} run --help)\n")


def _comma_list(choices: Sequence[str], what: str) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(part.strip().lower() for part in text.split(",") if part.strip())
        if not items:
            raise argparse.ArgumentTypeError(f"empty {what} list: choose from {', '.join(choices)}")
        unknown = [item for item in items if item not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown)}: choose from {', '.join(choices)}"
            )
        return items

    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _lookback_days(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_LOOKBACK_DAYS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_LOOKBACK_DAYS} days, got {value}")
    return value


def _number(text: str) -> float:
    """A finite number: float() also reads nan and inf, which no option means."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _risk_free_rate(text: str) -> float:
    value = _number(text)
    low, high = RISK_FREE_RATE_RANGE
    if not low < value <= high:
        raise argparse.ArgumentTypeError(
            f"{text} is not an annual rate above {low:g} and at most {high:g}: write 4% as 0.04"
        )
    return value


def _shown(text: str, limit: int = 24) -> str:
    """``text`` quoted for a message, shortened when long (a 300-character 'ticker')."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def ticker_symbol(text: str) -> str:
    """``text`` as an upper-case ticker symbol, or ValueError saying how one is written
    (vocabulary.TICKER_PATTERN: the spellings every price source is asked in)."""
    ticker = text.strip().upper()
    if not TICKER_RE.match(ticker):
        raise ValueError(
            f"{_shown(text.strip())} is not a ticker symbol: write it as Yahoo does, e.g. "
            "AAPL, BRK.B or BRK-B, EURUSD=X, ^GSPC (letters, digits, '.', '-', '=')"
        )
    return ticker


def _benchmark(text: str) -> str:
    try:
        return ticker_symbol(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tickers(text: str) -> list[str]:
    """Comma-separated tickers, checked, each security once (in the first spelling given)
    in the order given."""
    names = [t for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("empty ticker list: give e.g. --tickers AAPL,MSFT")
    try:
        tickers = [ticker_symbol(t) for t in names]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    first: dict[str, str] = {}
    for ticker in tickers:
        first.setdefault(security(ticker), ticker)
    return list(first.values())


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (``run`` is the default command)."""
    from portfolio_analysis.pipeline import IN_PROCESS_MAX_TICKERS

    parser = _Parser(
        prog=PROG,
        description="Parallel portfolio analysis on Dask: prices, indicators, news sentiment "
        "and portfolio figures, with JSON and HTML reports.",
    )
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = commands.add_parser(
        "run",
        help="analyse a portfolio (the default command)",
        description="Analyse tickers or holdings. With no options: the embedded sample "
        "portfolio on a local Dask cluster, offline.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the epilog's lines as written
    )
    what = run.add_mutually_exclusive_group()
    what.add_argument(
        "--tickers",
        type=_tickers,
        help="comma-separated tickers, e.g. AAPL,MSFT (one given twice is analysed once)",
    )
    what.add_argument(
        "--holdings",
        type=Path,
        metavar="FILE",
        help="CSV (columns ticker,shares) or YAML (ticker: shares) file of holdings; a ticker "
        "listed twice is an error (merge its rows into one position)",
    )
    what.add_argument(
        "--universe",
        choices=EMBEDDED_DATASETS,
        help="an embedded universe: sample (5 stocks, 2012-2013) or sp500 (the S&P 500 of "
        "2009-2010, about 520 stocks)",
    )
    run.add_argument(
        "--source",
        type=_comma_list(PRICE_SOURCES, "price source"),
        help=f"price sources tried in order, comma-separated ({', '.join(PRICE_SOURCES)}); "
        "default: embedded, or local with --data-dir",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="folder of your price files, TICKER.csv or TICKER.parquet (columns date, open, "
        "high, low, close, volume), read by the local source; implies --source local unless "
        "--source is given. With --scheduler the workers must see the same path",
    )
    run.add_argument(
        "--news-source",
        type=_comma_list(NEWS_SOURCES, "news source"),
        default=("embedded",),
        help=f"news sources tried in order ({', '.join(NEWS_SOURCES)}); default: embedded",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        help="worker processes of the local Dask cluster (default: one per core, or for runs "
        f"of at most {IN_PROCESS_MAX_TICKERS} tickers one worker inside this process, which "
        "starts faster); not with --scheduler",
    )
    run.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="use a running Dask scheduler, e.g. tcp://host:8786 (its workers do the work)",
    )
    run.add_argument(
        "--requests-per-second",
        type=_positive_float,
        metavar="RATE",
        help="request starts per second to each web service (Yahoo, Stooq, a feed's host), "
        "shared by all workers of the run (default 2)",
    )
    run.add_argument(
        "--no-cache",
        action="store_true",
        help="fetch prices from the web services again instead of reusing downloads cached "
        "under PORTFOLIO_CACHE_DIR, and cache nothing",
    )
    run.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="DIR",
        help=f"where report.json and report.html go (default: ./{DEFAULT_OUTPUT}); checked "
        "before the analysis starts, replaced only by a run that analysed something",
    )
    run.add_argument("--json", action="store_true", help="print the JSON report to stdout")
    run.add_argument(
        "--prefect",
        action="store_true",
        help="run inside the Prefect flow dask_combined_analysis_flow (reports to "
        "PREFECT_API_URL, else starts a temporary local Prefect server)",
    )
    run.add_argument(
        "--lookback-days",
        type=_lookback_days,
        help=f"days of history, 1 to {MAX_LOOKBACK_DAYS} (default 365)",
    )
    run.add_argument(
        "--benchmark",
        type=_benchmark,
        metavar="TICKER",
        help="ticker to compute the beta against (a warning and a partial result if it "
        "cannot be priced)",
    )
    run.add_argument(
        "--risk-free-rate",
        type=_risk_free_rate,
        default=0.0,
        metavar="RATE",
        help=f"annual rate for Sharpe as a fraction, e.g. 0.04 for 4%% (above "
        f"{RISK_FREE_RATE_RANGE[0]:g}, at most {RISK_FREE_RATE_RANGE[1]:g}; default 0)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--debug", action="store_true", help="show tracebacks and Dask logs")
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; a bare ``portfolio-analysis`` (or options only) means ``run``."""
    argv = list(argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv.insert(0, "run")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        _check_combinations(parser, args)
    return args


def _check_combinations(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags that would be silently ignored together are an error instead."""
    if args.workers is not None and args.scheduler:
        parser.error(
            "--workers sizes the local cluster only; with --scheduler the cluster's size is "
            "set where it runs (start more workers there): drop --workers"
        )
    if args.data_dir is not None and args.source is not None and "local" not in args.source:
        parser.error(
            "--data-dir is read by the local price source only: add local to --source, "
            "e.g. --source local,embedded"
        )
    if args.data_dir is None and args.source is not None and "local" in args.source:
        parser.error("the local price source reads your files: give --data-dir DIR")


# --- holdings files ------------------------------------------------------------------------


def _shares(value: Any, where: str) -> float:
    try:
        shares = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: shares {value!r} is not a number") from None
    if not shares > 0 or shares == float("inf"):
        raise UsageError(f"{where}: shares must be a positive number, got {value!r}")
    return shares


class _Holdings:
    """Holdings being read, one position per ticker: the one rule for every file form
    (CSV, YAML mapping, YAML list) is that a ticker listed twice is refused, naming both
    places, rather than silently added up or overwritten (the operator's spec.holdings
    refuses them too)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.positions: dict[str, float] = {}
        self._first: dict[str, tuple[str, str]] = {}  # security -> (spelling, where)

    def add(self, ticker: Any, shares: Any, where: str) -> None:
        place = f"holdings file {self.path}, {where}"
        try:
            symbol = ticker_symbol(str(ticker if ticker is not None else ""))
        except ValueError as exc:
            raise UsageError(f"{place}: {exc}") from None
        amount = _shares(shares, place)
        if security(symbol) in self._first:
            spelling, first = self._first[security(symbol)]
            also = first if spelling == symbol else f"{first}, as {spelling}"
            raise UsageError(
                f"{place}: {symbol} is listed twice (also {also}): merge them into one "
                f"position of {self.positions[spelling] + amount:g} shares"
            )
        self.positions[symbol] = amount
        self._first[security(symbol)] = (symbol, where)


def _holdings_from_csv(path: Path, text: str) -> dict[str, float]:
    rows = list(csv.DictReader(text.splitlines()))
    header = {name.strip().lower(): name for name in (rows[0].keys() if rows else [])}
    ticker_col = header.get("ticker") or header.get("symbol")
    shares_col = header.get("shares") or header.get("quantity")
    if not rows or ticker_col is None or shares_col is None:
        raise UsageError(
            f"holdings file {path}: expected a CSV header 'ticker,shares' and one row per holding"
        )
    holdings = _Holdings(path)
    for line, row in enumerate(rows, start=2):
        ticker = (row.get(ticker_col) or "").strip()
        if not ticker:
            raise UsageError(f"holdings file {path}, line {line}: empty ticker")
        holdings.add(ticker, (row.get(shares_col) or "").strip(), f"line {line}")
    return holdings.positions


class _Pairs(list):
    """A YAML mapping as its (key, value) pairs in file order, duplicates kept (PyYAML's
    safe_load keeps only the last of two equal keys)."""


def _yaml_pairs(text: str) -> Any:
    import yaml

    class PairsLoader(yaml.SafeLoader):
        pass

    def pairs(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _Pairs:
        loader.flatten_mapping(node)
        return _Pairs(
            (loader.construct_object(key, deep=True), loader.construct_object(value, deep=True))
            for key, value in node.value
        )

    PairsLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, pairs)
    return yaml.load(text, Loader=PairsLoader)  # noqa: S506 (a SafeLoader subclass)


def _holdings_from_yaml(path: Path, text: str) -> dict[str, float]:
    import yaml

    try:
        data = _yaml_pairs(text)
    except yaml.YAMLError as exc:
        raise UsageError(
            f"holdings file {path} is not valid YAML: {str(exc).splitlines()[0]}"
        ) from None
    if isinstance(data, _Pairs):
        under = [value for key, value in data if key == "holdings"]
        data = under[-1] if under else data
    holdings = _Holdings(path)
    if isinstance(data, list) and not isinstance(data, _Pairs):
        for number, item in enumerate(data, start=1):
            entry = dict(item) if isinstance(item, _Pairs) else None
            if entry is None or "ticker" not in entry or "shares" not in entry:
                raise UsageError(f"holdings file {path}: list entries need 'ticker' and 'shares'")
            holdings.add(entry["ticker"], entry["shares"], f"entry {number}")
    elif isinstance(data, _Pairs) and data:
        for ticker, shares in data:
            holdings.add(ticker, shares, f"key {_shown(str(ticker))}")
    if not holdings.positions:
        raise UsageError(
            f"holdings file {path}: expected a mapping 'TICKER: shares', e.g. 'AAPL: 10'"
        )
    return holdings.positions


def read_holdings(path: Path) -> dict[str, float]:
    """Holdings (ticker -> shares) from a CSV or YAML file, or a UsageError saying what to fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read holdings file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"holdings file {path} is not UTF-8 text") from None
    if not text.strip():
        raise UsageError(f"holdings file {path} is empty: add lines like 'AAPL,10'")
    if path.suffix.lower() in (".yaml", ".yml"):
        return _holdings_from_yaml(path, text)
    if path.suffix.lower() == ".csv":
        return _holdings_from_csv(path, text)
    raise UsageError(f"holdings file {path}: use a .csv or .yaml file")


def data_dir(path: Path) -> Path:
    """``path`` as an absolute folder the run can list and read, or a UsageError.

    Absolute because the worker processes need not share this process's working folder.
    """
    if not path.exists():
        raise UsageError(f"data folder {path} does not exist: give --data-dir an existing folder")
    if not path.is_dir():
        raise UsageError(f"data folder {path} is a file: give --data-dir the folder it is in")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UsageError(f"data folder {path} is not readable: check its permissions")
    return path.resolve()


# --- the output folder ----------------------------------------------------------------------


@dataclasses.dataclass
class OutputFolder:
    """``--output`` claimed for one run: its lock held, a staging folder beside it.

    The reports are written into ``staging`` and moved in by :meth:`publish` only when all
    are complete, so they appear together or not at all and a run that fails keeps the
    previous reports. The lock (``flock`` on ``.NAME.lock`` beside the folder, released by
    the kernel even when the process is killed) keeps a second run out for the whole run.
    """

    shown: str  # --output as the user wrote it, for messages
    folder: Path  # absolute
    staging: Path
    lock_fd: int

    def publish(self) -> dict[str, Path]:
        """Move the staged reports into the folder; paths of report.json and report.html."""
        names = sorted(p.name for p in self.staging.iterdir() if p.is_file())
        for name in names:
            _fsync(self.staging / name)
        if not self.folder.exists():
            os.rename(self.staging, self.folder)  # the whole folder at once
        else:
            _replace_files(self.staging, self.folder, names)
        _fsync(self.folder.parent, directory=True)
        return {"json": self.folder / "report.json", "html": self.folder / "report.html"}

    def release(self) -> None:
        """Remove the staging folder (if still there) and release the lock."""
        shutil.rmtree(self.staging, ignore_errors=True)
        os.close(self.lock_fd)


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_files(staging: Path, folder: Path, names: Sequence[str]) -> None:
    """Rename each staged file over its namesake in ``folder`` (other files there are left
    alone); if one rename fails, the files already replaced get their previous version back."""
    previous = Path(tempfile.mkdtemp(prefix="previous.", dir=staging))
    for name in names:
        if (folder / name).is_file():
            try:
                os.link(folder / name, previous / name)
            except OSError:  # a file system without hard links
                shutil.copy2(folder / name, previous / name)
    replaced: list[str] = []
    try:
        for name in names:
            os.replace(staging / name, folder / name)
            replaced.append(name)
    except OSError:
        for name in replaced:
            if (previous / name).exists():
                os.replace(previous / name, folder / name)
            else:
                (folder / name).unlink(missing_ok=True)
        raise


def _unusable(shown: str, where: Path, exc: OSError) -> str:
    return (
        f"--output {shown} cannot be written: creating files in {where} failed "
        f"({exc.strerror or exc}); choose a folder you can write to"
    )


def claim_output(path: Path) -> OutputFolder:
    """Check that ``path`` can take the reports and lock it, before any analysis starts;
    a UsageError says what to fix (a file, a folder that cannot be written, another run)."""
    shown = str(path)
    folder = Path(os.path.abspath(path))
    if folder == folder.parent:
        raise UsageError(f"--output {shown} is the root folder: give a folder for the reports")
    if folder.exists() and not folder.is_dir():
        raise UsageError(
            f"--output {shown} is a file: give a folder for report.json and report.html "
            "(it is created if missing)"
        )
    for name in REPORT_FILES:
        if (folder / name).is_dir():
            raise UsageError(
                f"--output {shown} holds a folder named {name}: move it away or choose "
                "another --output"
            )
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(
            f"--output {shown} is not writable: check its permissions or choose another folder"
        )
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(
            parent / f".{folder.name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
    except OSError as exc:
        raise UsageError(_unusable(shown, parent, exc)) from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(lock_fd, 32, 0).decode(errors="replace").strip()
        os.close(lock_fd)
        if not isinstance(exc, BlockingIOError):  # e.g. no locks on this file system
            raise UsageError(_unusable(shown, parent, exc)) from None
        raise UsageError(
            f"another {PROG} run{f' (pid {holder})' if holder.isdigit() else ''} is writing "
            f"to --output {shown}: wait for it to finish or choose another folder"
        ) from None
    try:
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
        # Staging folders of runs that were killed: no run uses them, as we hold the lock.
        for stale in parent.glob(f".{glob.escape(folder.name)}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=parent))
        # mkdtemp makes it private (0700); renamed into place it is the report folder.
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
    except OSError as exc:
        os.close(lock_fd)
        raise UsageError(_unusable(shown, parent, exc)) from None
    return OutputFolder(shown, folder, staging, lock_fd)


# --- running -------------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> AnalysisConfig:
    sources = args.source or (("local",) if args.data_dir is not None else ("embedded",))
    changes: dict[str, Any] = {
        "price_sources": tuple(sources),
        "news_sources": tuple(args.news_source),
        "risk_free_rate": args.risk_free_rate,
        "stooq_api_key": os.environ.get(STOOQ_KEY_ENV, "").strip() or None,
    }
    if args.data_dir is not None:
        changes["local_data_dir"] = data_dir(args.data_dir)
    if args.requests_per_second is not None:
        changes["requests_per_second"] = args.requests_per_second
    if args.no_cache:
        changes["use_cache"] = False
    if args.lookback_days:
        changes["lookback_days"] = args.lookback_days
    if args.benchmark:
        changes["benchmark"] = args.benchmark
    if args.universe:
        # Serve every ticker from the universe's own data set first, so they share the same dates.
        changes["embedded_datasets"] = UNIVERSE_DATASET_ORDER[args.universe]
    try:
        return AnalysisConfig(**changes)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


@dataclasses.dataclass(frozen=True)
class _Request:
    """What one run analyses, read and checked before anything starts."""

    tickers: list[str] | None
    holdings: dict[str, float] | None
    config: AnalysisConfig


def _request(args: argparse.Namespace) -> _Request:
    config = _config(args)
    if args.holdings is not None:
        return _Request(None, read_holdings(args.holdings), config)
    if args.tickers:
        return _Request(args.tickers, None, config)
    if args.universe == "sp500":
        from portfolio_analysis import embedded

        return _Request(embedded.universe_tickers("sp500"), None, config)
    return _Request(None, None, config)  # the sample portfolio


def _run(
    args: argparse.Namespace,
    request: _Request,
    progress: Callable[[str, int, int], None] | None,
    cancel: threading.Event,
) -> AnalysisRun:
    from portfolio_analysis import pipeline, report

    chosen, holdings = pipeline.resolve_request(request.tickers, request.holdings)
    options = pipeline.RunOptions(
        config=request.config,
        dask_scheduler=args.scheduler,
        n_workers=args.workers,
        progress=progress,
        cancel=cancel,
        local_cluster_log_level=_cluster_log_level(args.debug),
        series_tickers=report.chart_tickers(chosen, holdings),
    )
    if args.prefect:
        return _run_flow(chosen, holdings, options, args.debug)
    return pipeline.run_analysis(chosen, holdings, options)


def _run_flow(
    tickers: list[str], holdings: dict[str, float] | None, options: RunOptions, debug: bool
) -> AnalysisRun:
    """The same run inside ``dask_combined_analysis_flow``. The flow returns the report
    only, so the frames the HTML report draws come back through ``on_gathered``."""
    from portfolio_analysis import flows, pipeline, prefect_settings

    _quiet_logs(debug)  # again: importing Prefect configured its loggers
    gathered: list[pipeline.StageResults] = []
    options = dataclasses.replace(options, on_gathered=gathered.append)
    with prefect_settings.quiet_prefect_settings(log_level=None if debug else "WARNING"):
        result = flows.dask_combined_analysis_flow(
            tickers=tickers,
            holdings=holdings,
            dask_scheduler=options.dask_scheduler,
            config=options.config,
            n_workers=options.n_workers,
            options=options,
        )
    stages = gathered[-1] if gathered else None
    return pipeline.AnalysisRun(
        result,
        stages.close if stages else None,
        stages.series if stages else {},
        holdings,
        stages,
    )


def _run_in_thread(
    work: Callable[[], Any],
    cancel: threading.Event,
    on_interrupt: Callable[[], None] | None = None,
) -> Any:
    """Run ``work`` in a thread so that Ctrl-C can set ``cancel`` and wait for a clean stop.

    Ctrl-C at a terminal signals the whole foreground process group, the embedded cluster's
    worker processes included, and each would print its own KeyboardInterrupt traceback.
    So the run's thread blocks SIGINT: a signal mask is inherited by the threads it starts
    (Dask's) and by the processes those start (the workers; the mask survives fork and
    exec), while this (main) thread still gets the signal, cancels the run and waits, up to
    SHUTDOWN_SECONDS, for it to shut its cluster down. Waiting also keeps the interpreter's
    exit from racing that shutdown (distributed's atexit ``close_clusters`` then raised
    UnboundLocalError). ``on_interrupt`` runs first (it takes the progress bar away).

    multiprocessing's resource tracker, when a spawn starts it, unblocks SIGINT in the
    spawning thread (``resource_tracker.ensure_running`` blocks it around its own start,
    then unblocks it), so that the workers would get the signal after all: it is started
    here first, once, where that changes nothing.
    """
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    outcome: dict[str, Any] = {}
    # Waited for with an Event, not Thread.join: a KeyboardInterrupt inside join() can leave
    # the thread marked as stopped while it still runs (CPython 3.11's
    # Thread._wait_for_tstate_lock releases the running thread's lock), and the interpreter
    # would then exit in the middle of the cluster's shutdown.
    finished = threading.Event()

    def target() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc
        finally:
            finished.set()

    # The thread sees this thread's context variables (e.g. a Prefect settings context).
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(target,), name="portfolio-analysis", daemon=True
    )
    thread.start()
    try:
        while not finished.wait(0.1):
            pass
    except KeyboardInterrupt:
        if on_interrupt is not None:
            on_interrupt()
        cancel.set()
        _wait_for(finished, SHUTDOWN_SECONDS)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _wait_for(finished: threading.Event, seconds: float) -> None:
    """Wait up to ``seconds`` for ``finished``; another Ctrl-C meanwhile changes nothing (the
    run is already stopping)."""
    deadline = time.monotonic() + seconds
    while not finished.is_set() and time.monotonic() < deadline:
        with contextlib.suppress(KeyboardInterrupt):
            finished.wait(0.1)


def _cluster_log_level(debug: bool) -> int:
    """Log level of an embedded cluster's processes: a cancelled run's workers otherwise
    print heartbeat tracebacks while their cluster shuts down."""
    return logging.INFO if debug else logging.CRITICAL


def _quiet_logs(debug: bool) -> None:
    """Only our one-line messages on stderr unless --debug: failures are in the report.

    Levels of this process's loggers only. Dask and Prefect set theirs when imported, so
    Dask is imported first here and the ``--prefect`` path calls this again after
    importing Prefect.
    """
    import distributed  # noqa: F401  (sets up Dask's loggers, which are set below)

    level = logging.DEBUG if debug else logging.ERROR
    for name in ("prefect", "httpx", "yfinance", "bokeh"):
        logging.getLogger(name).setLevel(level)
    # Dask logs connection errors of a cluster that is shutting down (after Ctrl-C) at
    # ERROR level, with tracebacks, and so does a client whose scheduler went away (our
    # SchedulerLostError says it in one line). Dask's config gives some children of
    # "distributed" (e.g. distributed.client) levels and handlers of their own.
    dask_level = logging.DEBUG if debug else logging.CRITICAL
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(dask_level)


def _with_progress(
    args: argparse.Namespace, request: _Request, stderr: Any, cancel: threading.Event
) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    show = not args.no_progress and stderr.is_terminal
    columns = (
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr, transient=False, disable=not show) as bar:
        tasks: dict[str, Any] = {}
        starting = bar.add_task("Starting Dask", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            if starting is not None and not bar.tasks[starting].finished:
                bar.update(starting, total=1, completed=1)
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGE_LABELS.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        def take_bar_away() -> None:
            # Interrupted: the bar is erased rather than drawn once more, so that the one
            # line saying so is all a Ctrl-C leaves on the terminal.
            bar.live.transient = True
            bar.stop()

        return _run_in_thread(lambda: _run(args, request, progress, cancel), cancel, take_bar_away)


# The terminal lists at most this many warnings (report.json has them all).
MAX_TERMINAL_WARNINGS = 12


def _print_warnings(result: Mapping, stderr: Any) -> None:
    """The PARTIAL line and the report's warnings, one line each (stderr, so that --json's
    stdout stays the JSON alone)."""
    from rich.markup import escape

    report = result.get("report") or {}
    warnings = report.get("warnings")
    if warnings is None:  # a result from elsewhere: its failures are what it can say
        warnings = [f"{f['ticker']}: {f['stage']} failed: {f['reason']}" for f in result["failed"]]
    if result.get("status") == "partial":
        stderr.print(
            f"[bold yellow]PARTIAL[/]: some of what was asked for is missing (exit code "
            f"{EXIT_PARTIAL}); {len(warnings)} warning(s):",
            highlight=False,
            soft_wrap=True,
        )
    for line in warnings[:MAX_TERMINAL_WARNINGS]:
        stderr.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if len(warnings) > MAX_TERMINAL_WARNINGS:
        stderr.print(
            f"[yellow]... and {len(warnings) - MAX_TERMINAL_WARNINGS} more warnings in "
            "report.json[/]",
            highlight=False,
        )


def _print_summary(result: Mapping, paths: Mapping[str, Path] | None, stdout: Any) -> None:
    from portfolio_analysis import report

    stdout.print(report.summary_table(result))
    for line in report.portfolio_lines(result):
        stdout.print(line, soft_wrap=True)
    if paths:
        stdout.print(
            f"Reports: {paths['html']} and {paths['json']}", highlight=False, soft_wrap=True
        )


def _all_failed_message(result: Mapping, output: Path) -> str:
    failed = result.get("failed", [])
    reasons = "; ".join(f"{r['ticker']}: {r['reason']}" for r in failed[:3])
    more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
    return (
        f"no ticker could be analysed: {reasons}{more}. Check the tickers and --source "
        f"(no report written; {output} is left as it was)"
    )


INTERRUPTED = "interrupted; outstanding Dask tasks were cancelled"


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the exit code.

    Called without ``argv`` (the ``portfolio-analysis`` script, ``python -m
    portfolio_analysis.cli``), it ends the process itself once everything is written and
    printed (``end_process``); called with ``argv`` (tests, other programs), it returns.
    """
    try:
        code = _main(argv)
    except KeyboardInterrupt:  # before or after the run (during it, _main handles it)
        code = _fail(INTERRUPTED, EXIT_INTERRUPTED)
    if argv is None:
        end_process(code)
    return code


def end_process(code: int) -> NoReturn:
    """Exit with ``code`` now, without the interpreter's teardown of every module and object.

    That teardown (pandas, numba and LLVM, Dask) took 0.2-0.6 s after a run had written its
    reports and printed its summary: a quarter of the sample portfolio's `./dev run`.
    What a normal exit does that matters is done first, in its order: other threads are
    joined (``threading._shutdown``, which also stops idle thread pools), atexit handlers
    run (logging's flush, tempfile's, multiprocessing's and Dask's clean-up, a Prefect
    server's shutdown), the standard streams are flushed.
    """
    threading._shutdown()  # what Py_FinalizeEx runs first (CPython 3.11-3.13)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if args.command is None:
            args = parse_args(["run"])
    except SystemExit as exit_:  # argparse: --help (0) or a one-line usage error (2)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        request = _request(args)
    except UsageError as exc:
        return _fail(f"{exc}", EXIT_USAGE)
    from rich.console import Console

    stdout = Console(stderr=False)
    if not stdout.is_terminal:
        # Piped or redirected: rich would assume 80 columns and truncate the table.
        stdout = Console(stderr=False, width=TABLE_WIDTH)
    stderr = Console(stderr=True)
    _quiet_logs(args.debug)
    cancel = threading.Event()
    from portfolio_analysis.pipeline import (
        AnalysisCancelled,
        SchedulerLostError,
        SchedulerUnreachableError,
        VersionMismatchError,
    )

    # The scheduler's problems (unreachable, no Dask scheduler, lost mid-run, other
    # versions) are the user's to fix at --scheduler: one line, exit 2, like bad input.
    scheduler_errors = (SchedulerUnreachableError, SchedulerLostError, VersionMismatchError)
    paths = None
    try:
        output = claim_output(args.output)
        try:
            run = _with_progress(args, request, stderr, cancel)
            if run.result.get("status") != "failed":
                from portfolio_analysis import report

                report.write_reports(run, output.staging, config=request.config)
                paths = output.publish()
        finally:
            output.release()
    except (UsageError, *scheduler_errors, ValueError) as exc:
        if args.debug:
            raise
        return _fail(f"{exc}", EXIT_USAGE)
    except (KeyboardInterrupt, AnalysisCancelled):
        return _fail(INTERRUPTED, EXIT_INTERRUPTED)
    except OSError as exc:
        if args.debug:
            raise
        return _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), EXIT_FAILED)
    except Exception as exc:
        if args.debug:
            raise
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        return _fail(
            f"unexpected {type(exc).__name__}: {first_line} (run with --debug for details)",
            EXIT_FAILED,
        )
    result = run.result
    if args.json:
        from portfolio_analysis.report import to_json  # the same text as report.json

        sys.stdout.write(to_json(result))
    else:
        _print_summary(result, paths, stdout)
    _print_warnings(result, stderr)
    status = result.get("status")
    if status == "failed":
        return _fail(_all_failed_message(result, args.output), EXIT_FAILED)
    return EXIT_PARTIAL if status == "partial" else EXIT_OK


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
