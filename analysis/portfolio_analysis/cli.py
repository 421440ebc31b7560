"""``portfolio-analysis``: run the analysis on a laptop and write JSON and HTML reports.

With no arguments it analyses the embedded sample portfolio on a local Dask cluster, offline.
By default it runs the plain-Dask pipeline; ``--prefect`` runs the same pipeline inside the
``dask_combined_analysis_flow`` Prefect flow (reporting to ``PREFECT_API_URL`` if set,
otherwise to a temporary local server, which costs seconds to tens of seconds).

Exit codes: 0 the analysis ran (possibly with some failed tickers, listed), 1 no ticker
could be analysed, 2 bad input (flags, holdings file, scheduler address), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextvars
import csv
import json
import logging
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from portfolio_analysis.config import NEWS_SOURCES, PRICE_SOURCES, AnalysisConfig

PROG = "portfolio-analysis"
UNIVERSES = ("sample", "sp500")
DEFAULT_OUTPUT = Path("portfolio-report")
TABLE_WIDTH = 140  # columns of the summary table when stdout is not a terminal
STAGE_LABELS = {
    "pricing": "Prices",
    "technicals": "Indicators",
    "news": "News sentiment",
    "portfolio": "Portfolio figures",
}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


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
        choices=UNIVERSES,
        help="an embedded universe: sample (5 stocks) or sp500 (524 stocks, 2009-2010)",
    )
    run.add_argument(
        "--source",
        type=_comma_list(PRICE_SOURCES, "price source"),
        default=("embedded",),
        help=f"price sources tried in order, comma-separated ({', '.join(PRICE_SOURCES)}); "
        "default: embedded",
    )
    run.add_argument(
        "--news-source",
        type=_comma_list(NEWS_SOURCES, "news source"),
        default=("embedded",),
        help=f"news sources tried in order ({', '.join(NEWS_SOURCES)}); default: embedded",
    )
    run.add_argument("--workers", type=_positive_int, help="local Dask workers (default: cores)")
    run.add_argument(
        "--scheduler", metavar="ADDRESS", help="use a running Dask scheduler, e.g. tcp://host:8786"
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
    return build_parser().parse_args(argv)


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


# --- running -------------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> AnalysisConfig:
    changes: dict[str, Any] = {
        "price_sources": tuple(args.source),
        "news_sources": tuple(args.news_source),
        "risk_free_rate": args.risk_free_rate,
    }
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
) -> Any:
    from portfolio_analysis import pipeline, report

    tickers, holdings = _request(args)
    config = _config(args)
    chosen, holdings = pipeline.resolve_request(tickers, holdings)
    series_tickers = report.chart_tickers(chosen, holdings)
    if not args.prefect:
        return pipeline.run_analysis(
            chosen,
            holdings,
            config=config,
            dask_scheduler=args.scheduler,
            n_workers=args.workers,
            progress=progress,
            cancel=cancel,
            series_tickers=series_tickers,
        )
    from portfolio_analysis import flows

    with pipeline.run_hooks(
        progress=progress, cancel=cancel, n_workers=args.workers, series_tickers=series_tickers
    ) as hooks:
        result = flows.dask_combined_analysis_flow(
            tickers=chosen, holdings=holdings, dask_scheduler=args.scheduler, config=config
        )
    if progress:
        progress("portfolio", 1, 1)
    gathered = hooks.gathered[-1] if hooks.gathered else None
    return pipeline.AnalysisRun(
        result,
        gathered.close if gathered else None,
        gathered.series if gathered else {},
        holdings,
        gathered,
    )


def _run_in_thread(work: Callable[[], Any], cancel: threading.Event) -> Any:
    """Run ``work`` in a thread so Ctrl-C can set ``cancel`` and wait for a clean stop."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc

    # The thread sees this thread's context variables (Prefect's settings context, hooks).
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


def _quiet_logs(debug: bool) -> None:
    """Only our one-line messages on stderr unless --debug: failures are in the report."""
    level = logging.DEBUG if debug else logging.ERROR
    for name in ("prefect", "httpx", "yfinance", "bokeh"):
        logging.getLogger(name).setLevel(level)
    # Dask logs connection errors of a cluster that is shutting down (after Ctrl-C) at
    # ERROR level, with tracebacks.
    logging.getLogger("distributed").setLevel(logging.DEBUG if debug else logging.CRITICAL)
    from portfolio_analysis import pipeline

    pipeline.LOCAL_CLUSTER_LOG_LEVEL = logging.INFO if debug else logging.CRITICAL
    if not debug:
        import os

        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")


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
    from portfolio_analysis.pipeline import AnalysisCancelled, SchedulerUnreachableError

    try:
        run = _with_progress(args, stderr, cancel)
        paths = None
        from portfolio_analysis import report

        paths = report.write_reports(run, args.output)
    except (UsageError, SchedulerUnreachableError, ValueError) as exc:
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
