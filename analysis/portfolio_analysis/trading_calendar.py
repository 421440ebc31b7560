"""The exchange calendar that decides which price dates are consecutive trading sessions.

A daily return is the move from one session to the *next* one. When a data set misses
sessions (the S&P 500 set has no rows for 2009-10-29..11-04, single tickers miss single
days), the move across the hole spans several sessions and is not a daily return: counting
it as one would understate how often and by how much prices move per day, and distort
volatility, VaR and Sharpe. The portfolio figures therefore drop such returns (portfolio.py).

The calendar is the New York Stock Exchange's: weekdays minus its holidays, built with
pandas' holiday rules (``pandas.tseries.holiday``), minus the unscheduled closures since
2001 that no rule describes. A date on which a price source has a row is always a session
too, so a market that trades on a US holiday keeps its own days.

The warm-up an indicator needs is counted in sessions; ``calendar_days`` turns sessions
into the calendar days to fetch.
"""

from __future__ import annotations

import math
from functools import lru_cache

import pandas as pd
from pandas.tseries.holiday import (
    AbstractHolidayCalendar,
    GoodFriday,
    Holiday,
    USLaborDay,
    USMartinLutherKingJr,
    USMemorialDay,
    USPresidentsDay,
    USThanksgivingDay,
    nearest_workday,
    sunday_to_monday,
)

# Days the exchange closed outside its holiday rules (September 11, national days of
# mourning, Hurricane Sandy).
UNSCHEDULED_CLOSURES = (
    "2001-09-11",
    "2001-09-12",
    "2001-09-13",
    "2001-09-14",
    "2004-06-11",
    "2007-01-02",
    "2012-10-29",
    "2012-10-30",
    "2018-12-05",
    "2025-01-09",
)


class NYSEHolidayCalendar(AbstractHolidayCalendar):
    """NYSE's full-day holidays since 1998 (a Saturday New Year is not moved to Friday)."""

    rules = [  # noqa: RUF012 (pandas reads the class attribute)
        Holiday("New Year's Day", month=1, day=1, observance=sunday_to_monday),
        USMartinLutherKingJr,
        USPresidentsDay,
        GoodFriday,
        USMemorialDay,
        Holiday("Juneteenth", month=6, day=19, start_date="2022-06-19", observance=nearest_workday),
        Holiday("Independence Day", month=7, day=4, observance=nearest_workday),
        USLaborDay,
        USThanksgivingDay,
        Holiday("Christmas Day", month=12, day=25, observance=nearest_workday),
    ]


@lru_cache(maxsize=64)
def _sessions(first: pd.Timestamp, last: pd.Timestamp) -> pd.DatetimeIndex:
    holidays = NYSEHolidayCalendar().holidays(first, last)
    closed = holidays.union(pd.DatetimeIndex(UNSCHEDULED_CLOSURES))
    days = pd.bdate_range(first, last)
    return days[~days.isin(closed)]


def sessions(first: pd.Timestamp, last: pd.Timestamp) -> pd.DatetimeIndex:
    """NYSE trading sessions from ``first`` to ``last`` inclusive (dates, tz-naive)."""
    return _sessions(pd.Timestamp(first).normalize(), pd.Timestamp(last).normalize())


def session_numbers(dates: pd.DatetimeIndex) -> pd.Series:
    """Each date's position on the calendar of NYSE sessions plus ``dates`` themselves;
    two dates are consecutive sessions when their numbers differ by exactly 1."""
    if len(dates) == 0:
        return pd.Series([], index=dates, dtype="int64")
    calendar = sessions(dates.min(), dates.max()).union(dates)
    return pd.Series(calendar.get_indexer(dates), index=dates)


# Trading sessions in an average year, and slack for the holidays of a short window.
SESSIONS_PER_YEAR = 252
_SLACK_DAYS = 10


def calendar_days(n_sessions: int) -> int:
    """Calendar days that hold at least ``n_sessions`` trading sessions (with holidays)."""
    if n_sessions <= 0:
        return 0
    return math.ceil(n_sessions * 365.25 / SESSIONS_PER_YEAR) + _SLACK_DAYS
