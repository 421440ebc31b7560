"""The tickers a run is asked for, as the flows and the operator receive them."""

from __future__ import annotations

from portfolio_analysis.pipeline import normalize_tickers


def test_both_spellings_of_a_share_class_are_one_security_kept_as_first_given() -> None:
    assert normalize_tickers(" brk-b, AAPL ,BRK.B,aapl,, BF.B ") == ["BRK-B", "AAPL", "BF.B"]


def test_exchange_suffixes_are_not_share_classes() -> None:
    """VOD.L (London) and VOD-L are different symbols; only classes A to C are folded."""
    assert normalize_tickers(["VOD.L", "VOD-L", "BRK.A", "BRK-A"]) == ["VOD.L", "VOD-L", "BRK.A"]
