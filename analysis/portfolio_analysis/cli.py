"""``portfolio-analysis``: run the analysis on a laptop and write JSON and HTML reports.

With no arguments it analyses the embedded sample portfolio on a local Dask cluster, offline.
By default it runs the plain-Dask pipeline; ``--prefect`` runs the same pipeline inside the
``dask_combined_analysis_flow`` Prefect flow (reporting to ``PREFECT_API_URL`` if set,
otherwise to a temporary local server, which costs seconds to tens of seconds).

Exit codes: 0 the analysis ran (possibly with some failed tickers, listed), 1 no ticker
could be analysed, 2 bad input (flags, holdings file, data folder) or a scheduler problem
(unreachable, no Dask scheduler, lost mid-run, other versions), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextvars
import csv
import dataclasses
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.vocabulary import EMBEDDED_DATASETS, NEWS_SOURCES, PRICE_SOURCES

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

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
STOOQ_KEY_ENV = "STOOQ_API_KEY"  # read here, on the client; workers get it in the config
RUN_EPILOG = (
    f"Environment: {STOOQ_KEY_ENV} is the Stooq API key (sent as apikey=; the stooq source "
    "needs one), PORTFOLIO_CACHE_DIR the download cache folder (default "
    "~/.cache/portfolio-operator), PREFECT_API_URL the Prefect server --prefect reports to."
)


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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _tickers(text: str) -> list[str]:
    tickers = [t.strip().upper() for t in text.split(",") if t.strip()]
    if not tickers:
        raise argparse.ArgumentTypeError("empty ticker list: give e.g. --tickers AAPL,MSFT")
    return tickers


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (``run`` is the default command)."""
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
    )
    what = run.add_mutually_exclusive_group()
    what.add_argument("--tickers", type=_tickers, help="comma-separated tickers, e.g. AAPL,MSFT")
    what.add_argument(
        "--holdings",
        type=Path,
        metavar="FILE",
        help="CSV (columns ticker,shares) or YAML (ticker: shares) file of holdings",
    )
    what.add_argument(
        "--universe",
        choices=EMBEDDED_DATASETS,
        help="an embedded universe: sample (5 stocks) or sp500 (524 stocks, 2009-2010)",
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
        help="worker processes of the local Dask cluster (default: one per core); not with "
        "--scheduler",
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
        help=f"where report.json and report.html go (default: ./{DEFAULT_OUTPUT})",
    )
    run.add_argument("--json", action="store_true", help="print the JSON report to stdout")
    run.add_argument(
        "--prefect",
        action="store_true",
        help="run inside the Prefect flow dask_combined_analysis_flow (reports to "
        "PREFECT_API_URL, else starts a temporary local Prefect server)",
    )
    run.add_argument("--lookback-days", type=_positive_int, help="days of history (default 365)")
    run.add_argument("--benchmark", metavar="TICKER", help="ticker to compute the beta against")
    run.add_argument(
        "--risk-free-rate", type=float, default=0.0, help="annual rate for Sharpe, e.g. 0.04"
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


def _holdings_from_csv(path: Path, text: str) -> dict[str, float]:
    rows = list(csv.DictReader(text.splitlines()))
    header = {name.strip().lower(): name for name in (rows[0].keys() if rows else [])}
    ticker_col = header.get("ticker") or header.get("symbol")
    shares_col = header.get("shares") or header.get("quantity")
    if not rows or ticker_col is None or shares_col is None:
        raise UsageError(
            f"holdings file {path}: expected a CSV header 'ticker,shares' and one row per holding"
        )
    holdings: dict[str, float] = {}
    for line, row in enumerate(rows, start=2):
        ticker = (row.get(ticker_col) or "").strip().upper()
        if not ticker:
            raise UsageError(f"holdings file {path}, line {line}: empty ticker")
        holdings[ticker] = holdings.get(ticker, 0.0) + _shares(
            (row.get(shares_col) or "").strip(), f"holdings file {path}, line {line}"
        )
    return holdings


def _holdings_from_yaml(path: Path, text: str) -> dict[str, float]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(
            f"holdings file {path} is not valid YAML: {str(exc).splitlines()[0]}"
        ) from None
    if isinstance(data, Mapping) and "holdings" in data:
        data = data["holdings"]
    if isinstance(data, list):
        try:
            data = {str(item["ticker"]): item["shares"] for item in data}
        except (TypeError, KeyError):
            raise UsageError(
                f"holdings file {path}: list entries need 'ticker' and 'shares'"
            ) from None
    if not isinstance(data, Mapping) or not data:
        raise UsageError(
            f"holdings file {path}: expected a mapping 'TICKER: shares', e.g. 'AAPL: 10'"
        )
    return {
        str(t).strip().upper(): _shares(s, f"holdings file {path}, {t}") for t, s in data.items()
    }


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
        changes["benchmark"] = args.benchmark.strip().upper()
    if args.universe == "sp500":
        # Serve every ticker from the S&P set first, so they all share the same dates.
        changes["embedded_datasets"] = ("sp500", "sample")
    try:
        return AnalysisConfig(**changes)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _request(args: argparse.Namespace) -> tuple[list[str] | None, dict[str, float] | None]:
    if args.holdings is not None:
        return None, read_holdings(args.holdings)
    if args.tickers:
        return args.tickers, None
    if args.universe == "sp500":
        from portfolio_analysis import embedded

        return embedded.universe_tickers("sp500"), None
    return None, None  # the sample portfolio


def _run(
    args: argparse.Namespace,
    progress: Callable[[str, int, int], None] | None,
    cancel: threading.Event,
) -> AnalysisRun:
    from portfolio_analysis import pipeline, report

    tickers, holdings = _request(args)
    config = _config(args)
    chosen, holdings = pipeline.resolve_request(tickers, holdings)
    options = pipeline.RunOptions(
        config=config,
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


def _run_in_thread(work: Callable[[], Any], cancel: threading.Event) -> Any:
    """Run ``work`` in a thread so Ctrl-C can set ``cancel`` and wait for a clean stop."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc

    # The thread sees this thread's context variables (e.g. a Prefect settings context).
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(target,), name="portfolio-analysis", daemon=True
    )
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        cancel.set()
        thread.join(30)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


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


def _with_progress(args: argparse.Namespace, stderr: Any, cancel: threading.Event) -> Any:
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

        return _run_in_thread(lambda: _run(args, progress, cancel), cancel)


def _print_summary(
    result: Mapping, paths: Mapping[str, Path] | None, stdout: Any, stderr: Any
) -> None:
    from portfolio_analysis import report

    stdout.print(report.summary_table(result))
    for line in report.portfolio_lines(result):
        stdout.print(line, soft_wrap=True)
    failed = result.get("failed", [])
    for record in failed[:10]:
        stderr.print(
            f"[yellow]failed[/] {record['ticker']} ({record['stage']}): {record['reason']}",
            highlight=False,
            soft_wrap=True,  # one line per failure, whatever the width
        )
    if len(failed) > 10:
        stderr.print(f"[yellow]... and {len(failed) - 10} more failures in the report[/]")
    if paths:
        stdout.print(
            f"Reports: {paths['html']} and {paths['json']}", highlight=False, soft_wrap=True
        )


def _all_failed_message(result: Mapping) -> str:
    failed = result.get("failed", [])
    reasons = "; ".join(f"{r['ticker']}: {r['reason']}" for r in failed[:3])
    more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
    return f"no ticker could be analysed: {reasons}{more}. Check the tickers and --source"


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the exit code."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if args.command is None:
            args = parse_args(["run"])
    except SystemExit as exit_:  # argparse: --help (0) or a one-line usage error (2)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
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
    try:
        run = _with_progress(args, stderr, cancel)
        from portfolio_analysis import report

        paths = report.write_reports(run, args.output)
    except (UsageError, *scheduler_errors, ValueError) as exc:
        if args.debug:
            raise
        return _fail(f"{exc}", EXIT_USAGE)
    except (KeyboardInterrupt, AnalysisCancelled):
        return _fail("interrupted; outstanding Dask tasks were cancelled", EXIT_INTERRUPTED)
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
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        _print_summary(result, paths, stdout, stderr)
    if result.get("status") == "failed":
        return _fail(_all_failed_message(result), EXIT_FAILED)
    return EXIT_OK


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
