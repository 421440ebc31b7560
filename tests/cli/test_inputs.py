"""What ``portfolio-analysis run`` refuses before anything starts (exit 2, one line saying
what to fix): numbers that are no numbers or out of range, strings that are no ticker
symbols, and holdings files that list a ticker twice (issue 14, items 7, 11 and 14).

None of these tests starts a Dask cluster: a refused input never gets that far (the stand-in
for ``distributed.Client`` fails the test if it is reached).
"""

from __future__ import annotations

import re
from pathlib import Path

import distributed
import pytest
from portfolio_analysis import cli


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Dask cluster was started for input that should be refused")

    monkeypatch.setattr(distributed, "Client", refuse)


def _refused(capsys, tmp_path: Path, *argv: str) -> str:
    """The one error line of a run refused with exit code 2; nothing written."""
    output = tmp_path / "out"
    code = cli.main(["run", *argv, "--output", str(output), "--no-progress"])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("portfolio-analysis: error: "), captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert not output.exists()
    return lines[0]


# --- numbers (item 7) ----------------------------------------------------------------------

BAD_NUMBERS = {
    "rate nan": (["--risk-free-rate", "nan"], "'nan' is not a finite number"),
    "rate inf": (["--risk-free-rate", "inf"], "'inf' is not a finite number"),
    "rate -inf": (["--risk-free-rate=-inf"], "'-inf' is not a finite number"),
    "rate as a percentage": (["--risk-free-rate", "4"], "write 4% as 0.04"),
    "rate of -100 %": (["--risk-free-rate=-1"], "not an annual rate above -1"),
    "rate word": (["--risk-free-rate", "four"], "'four' is not a number"),
    "lookback nan": (["--lookback-days", "nan"], "'nan' is not a whole number"),
    "lookback zero": (["--lookback-days", "0"], "must be at least 1"),
    "lookback beyond a century": (["--lookback-days", "99999999"], "must be at most 36500"),
    "request rate nan": (["--requests-per-second", "nan"], "'nan' is not a finite number"),
    "request rate inf": (["--requests-per-second", "inf"], "'inf' is not a finite number"),
    "request rate negative": (["--requests-per-second=-2"], "must be a positive number"),
    "workers nan": (["--workers", "nan"], "'nan' is not a whole number"),
    "workers negative": (["--workers=-1"], "must be at least 1"),
}


@pytest.mark.parametrize("case", list(BAD_NUMBERS))
def test_invalid_numbers_are_refused_at_parse_time(case: str, capsys, tmp_path: Path) -> None:
    argv, message = BAD_NUMBERS[case]
    line = _refused(capsys, tmp_path, *argv)
    assert message in line
    assert f"argument {argv[0].split('=')[0]}" in line  # names the option to fix


def test_every_numeric_option_checks_its_value() -> None:
    """A numeric option added later gets a checking parser too (a bare float reads nan)."""
    run = next(
        action.choices["run"]
        for action in cli.build_parser()._actions
        if getattr(action, "choices", None) and "run" in action.choices
    )
    numeric = [a for a in run._actions if a.type in (int, float)]
    assert numeric == [], [a.option_strings for a in numeric]
    options = {o for a in run._actions for o in a.option_strings}
    for option in ("--risk-free-rate", "--lookback-days", "--requests-per-second", "--workers"):
        assert option in options
        for value in ("nan", "inf", "-inf"):
            with pytest.raises(SystemExit) as exit_:
                cli.parse_args(["run", f"{option}={value}"])
            assert exit_.value.code == 2


def test_valid_numbers_still_pass() -> None:
    args = cli.parse_args(
        ["run", "--risk-free-rate", "0.04", "--lookback-days", "730", "--requests-per-second",
         "0.5", "--workers", "2"]
    )  # fmt: skip
    assert (args.risk_free_rate, args.lookback_days) == (0.04, 730)
    assert (args.requests_per_second, args.workers) == (0.5, 2)
    assert cli.parse_args(["run", "--risk-free-rate=-0.005"]).risk_free_rate == -0.005


# --- ticker symbols (item 11) --------------------------------------------------------------

BAD_TICKERS = {
    "dollars": "$$$",
    "a path": "../../etc/passwd",
    "300 characters": "A" * 300,
    "a space inside": "AA PL",
    "a semicolon": "AAPL;rm",
}


@pytest.mark.parametrize("case", list(BAD_TICKERS))
def test_invalid_ticker_symbols_are_refused_at_parse_time(
    case: str, capsys, tmp_path: Path
) -> None:
    text = BAD_TICKERS[case]
    line = _refused(capsys, tmp_path, "--tickers", f"AAPL,{text}")
    assert "argument --tickers" in line and "is not a ticker symbol" in line
    assert "e.g. AAPL, BRK.B or BRK-B" in line
    assert len(line) < 300  # a long string is shown shortened, with its length
    if len(text) > 100:
        assert f"({len(text)} characters)" in line


def test_an_invalid_benchmark_is_refused_at_parse_time(capsys, tmp_path: Path) -> None:
    line = _refused(capsys, tmp_path, "--benchmark", "../x")
    assert "argument --benchmark: '../x' is not a ticker symbol" in line


def test_an_invalid_ticker_in_a_holdings_file_names_the_file_and_line(
    capsys, tmp_path: Path
) -> None:
    holdings = tmp_path / "h.csv"
    holdings.write_text("ticker,shares\nAAPL,1\n$$$,2\n")
    line = _refused(capsys, tmp_path, "--holdings", str(holdings))
    assert f"holdings file {holdings}, line 3: '$$$' is not a ticker symbol" in line


def test_class_shares_are_accepted_in_both_spellings() -> None:
    args = cli.parse_args(["run", "--tickers", "brk.b,BF-B,^gspc,EURUSD=X", "--benchmark", "spy"])
    assert args.tickers == ["BRK.B", "BF-B", "^GSPC", "EURUSD=X"]
    assert args.benchmark == "SPY"


# --- duplicates (item 14): one rule for every holdings form, stated in --help ----------------

DUPLICATED_HOLDINGS = {
    "csv": ("h.csv", "ticker,shares\nAAPL,10\nIBM,4\naapl,5\n", "line 4", "also line 2"),
    "yaml mapping": ("h.yaml", "AAPL: 10\nIBM: 4\nAAPL: 5\n", "key 'AAPL'", "also key 'AAPL'"),
    "yaml mapping, other case": ("h.yml", "aapl: 10\nAAPL: 5\n", "key 'AAPL'", "also key 'aapl'"),
    "yaml mapping under holdings": (
        "h.yaml",
        "holdings:\n  AAPL: 10\n  AAPL: 5\n",
        "key 'AAPL'",
        "also key 'AAPL'",
    ),
    "yaml list": (
        "h.yaml",
        "holdings:\n  - {ticker: AAPL, shares: 10}\n  - {ticker: aapl, shares: 5}\n",
        "entry 2",
        "also entry 1",
    ),
}


def test_both_spellings_of_a_share_class_are_one_security(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("ticker,shares\nBRK.B,10\nAAPL,1\nbrk-b,5\n")
    with pytest.raises(cli.UsageError) as error:
        cli.read_holdings(path)
    assert "line 4: BRK-B is listed twice (also line 2, as BRK.B): merge them into one " in str(
        error.value
    )
    assert cli.parse_args(["run", "--tickers", "BRK-B,AAPL,BRK.B"]).tickers == ["BRK-B", "AAPL"]
    # Yahoo's exchange suffixes are no share classes: VOD.L and VOD-L stay two tickers.
    assert cli.parse_args(["run", "--tickers", "VOD.L,VOD-L"]).tickers == ["VOD.L", "VOD-L"]


@pytest.mark.parametrize("case", list(DUPLICATED_HOLDINGS))
def test_a_ticker_listed_twice_in_holdings_is_refused_in_every_form(
    case: str, capsys, tmp_path: Path
) -> None:
    name, text, where, first = DUPLICATED_HOLDINGS[case]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(cli.UsageError) as error:
        cli.read_holdings(path)
    message = str(error.value)
    assert f"holdings file {path}, {where}: AAPL is listed twice ({first})" in message
    assert "merge them into one position of 15 shares" in message
    line = _refused(capsys, tmp_path, "--holdings", str(path))
    assert "AAPL is listed twice" in line


def test_holdings_without_duplicates_read_the_same_in_every_form(tmp_path: Path) -> None:
    expected = {"AAPL": 15.0, "IBM": 4.0}
    forms = {
        "h.csv": "Ticker,Shares\nAAPL,15\nIBM,4\n",
        "h.yaml": "AAPL: 15\nibm: 4\n",
        "h2.yaml": "holdings:\n  AAPL: 15\n  IBM: 4\n",
        "h3.yml": "holdings:\n  - {ticker: aapl, shares: 15}\n  - {ticker: IBM, shares: 4}\n",
        "h4.yaml": "- {ticker: AAPL, shares: 15}\n- {ticker: IBM, shares: 4}\n",
    }
    for name, text in forms.items():
        (tmp_path / name).write_text(text)
        assert cli.read_holdings(tmp_path / name) == expected, name


def test_a_ticker_given_twice_in_tickers_is_analysed_once() -> None:
    assert cli.parse_args(["run", "--tickers", "AAPL,msft, aapl,MSFT"]).tickers == ["AAPL", "MSFT"]


def test_help_states_the_duplicate_rule_and_every_exit_code(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(["run", "--help"])
    help_text = capsys.readouterr().out
    text = " ".join(help_text.split())
    assert "A ticker given twice in --tickers is analysed once" in text
    assert "a holdings file that lists a ticker twice is refused" in text
    codes = help_text[help_text.index("Exit codes:") :]
    for code in (0, 1, 2, 3, 130):
        assert re.search(rf"^  {code} +\S", codes, re.MULTILINE), code
    assert re.search(r"^  3 +partial result", codes, re.MULTILINE)
