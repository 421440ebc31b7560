"""Share-class tickers in each source's spelling.

A US share class is written three ways: ``BRK.B`` (exchanges, the S&P's lists, the embedded
data set), ``BRK-B`` (Yahoo) and ``brk-b.us`` (Stooq). A user may type either of the first
two; each source is asked in its own spelling (``vocabulary.CLASS_SHARE_RE`` says what a
share class looks like) and the result is reported under the spelling the user gave.
Other dots are left alone: ``VOD.L`` or ``7203.T`` are Yahoo's exchange suffixes.
"""

from __future__ import annotations

from portfolio_analysis.vocabulary import CLASS_SHARE_RE


def with_class_separator(ticker: str, separator: str) -> str:
    """``ticker`` with its share-class separator replaced (``BRK.B`` -> ``BRK-B``), or as is."""
    match = CLASS_SHARE_RE.match(ticker)
    return f"{match.group(1)}{separator}{match.group(2)}" if match else ticker


def yahoo_symbol(ticker: str) -> str:
    """Yahoo's spelling: ``BRK.B`` -> ``BRK-B``; anything else unchanged."""
    return with_class_separator(ticker, "-")


def spellings(ticker: str) -> tuple[str, ...]:
    """The ticker as given, then its other share-class spelling if it is a share class."""
    return tuple(dict.fromkeys((ticker, *(with_class_separator(ticker, s) for s in ".-"))))
