"""The CLI never loses or mixes a report (issue 14, item 10): a run's report.json and
report.html appear together or not at all, a run that fails keeps the previous reports
byte for byte, a second run into the same --output while one holds it stops at once with
a clear message, and an --output that cannot take the reports is refused before the
analysis starts (exit 2).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import distributed
import pytest
from portfolio_analysis import cli, report


def _main(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(["run", *argv, "--no-progress"])
    return code, capsys.readouterr().err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _no_leftovers(parent: Path, name: str) -> None:
    """Only the folder and its lock file: no staging folder is left behind."""
    assert sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}")) == [
        f".{name}.lock"
    ]


@pytest.fixture
def good_run(tmp_path: Path, capsys, scheduler_address: str) -> tuple[Path, dict[str, bytes]]:
    """--output after a good run, and its files' bytes."""
    output = tmp_path / "reports"
    code, err = _main(capsys, "--tickers", "AAPL,IBM", "--scheduler", scheduler_address,
                      "--output", str(output))  # fmt: skip
    assert code == 0, err
    files = _snapshot(output)
    assert set(files) == {"report.json", "report.html"}
    return output, files


@pytest.mark.dask
def test_a_run_that_analyses_nothing_keeps_the_previous_reports(
    good_run: tuple[Path, dict[str, bytes]], capsys, scheduler_address: str
) -> None:
    output, before = good_run
    code, err = _main(capsys, "--tickers", "NOPE1,NOPE2", "--scheduler", scheduler_address,
                      "--output", str(output))  # fmt: skip
    assert code == 1
    assert f"no report written; {output} is left as it was" in err.strip().splitlines()[-1]
    assert _snapshot(output) == before
    _no_leftovers(output.parent, output.name)


@pytest.mark.dask
def test_a_run_whose_html_cannot_be_written_keeps_both_previous_reports(
    good_run: tuple[Path, dict[str, bytes]],
    capsys,
    scheduler_address: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """report.json used to be replaced before report.html failed."""
    output, before = good_run

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("the page could not be drawn")

    monkeypatch.setattr(report, "render_html", broken)
    code, err = _main(capsys, "--tickers", "MSFT", "--scheduler", scheduler_address,
                      "--output", str(output))  # fmt: skip
    assert code == 1
    assert "unexpected RuntimeError: the page could not be drawn" in err
    assert _snapshot(output) == before
    _no_leftovers(output.parent, output.name)


@pytest.mark.dask
def test_a_new_run_replaces_both_reports_and_leaves_other_files_alone(
    good_run: tuple[Path, dict[str, bytes]], capsys, scheduler_address: str
) -> None:
    output, before = good_run
    (output / "notes.txt").write_text("mine")
    code, err = _main(capsys, "--tickers", "MSFT", "--scheduler", scheduler_address,
                      "--output", str(output))  # fmt: skip
    assert code == 0, err
    after = _snapshot(output)
    assert after["notes.txt"] == b"mine"
    assert after["report.json"] != before["report.json"]
    assert after["report.html"] != before["report.html"]
    assert json.loads(after["report.json"])["report"]["tickers"] == ["MSFT"]
    _no_leftovers(output.parent, output.name)


@pytest.mark.dask
def test_a_new_folder_gets_the_usual_permissions(
    tmp_path: Path, capsys, scheduler_address: str
) -> None:
    output = tmp_path / "new" / "reports"
    code, err = _main(capsys, "--tickers", "IBM", "--scheduler", scheduler_address,
                      "--output", str(output))  # fmt: skip
    assert code == 0, err
    umask = os.umask(0)
    os.umask(umask)
    assert output.stat().st_mode & 0o777 == 0o777 & ~umask
    assert sorted(p.name for p in output.iterdir()) == ["report.html", "report.json"]


def test_a_second_run_into_the_same_output_stops_at_once_naming_the_first(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock is held for the whole run; another run sees it before it starts a cluster."""

    def no_cluster(*args: object, **kwargs: object) -> None:
        raise AssertionError("the second run started an analysis")

    monkeypatch.setattr(distributed, "Client", no_cluster)
    output = tmp_path / "reports"
    first = cli.claim_output(output)  # what a running run holds
    try:
        os.pwrite(first.lock_fd, b"4242\n", 0)
        code, err = _main(capsys, "--tickers", "AAPL", "--output", str(output))
    finally:
        first.release()
    assert code == 2
    assert err == (
        f"portfolio-analysis: error: another portfolio-analysis run (pid 4242) is writing to "
        f"--output {output}: wait for it to finish or choose another folder\n"
    )
    # Released, the folder can be claimed again.
    cli.claim_output(output).release()


def test_the_lock_is_a_real_file_lock_beside_the_output(tmp_path: Path) -> None:
    output = tmp_path / "reports"
    claimed = cli.claim_output(output)
    try:
        with open(tmp_path / ".reports.lock", "rb") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert claimed.staging.parent == tmp_path  # same file system: renames are atomic
        assert claimed.staging.is_dir()
    finally:
        claimed.release()
    assert not claimed.staging.exists()


def test_staging_folders_of_killed_runs_are_cleaned_up(tmp_path: Path) -> None:
    stale = tmp_path / ".reports.abc123.tmp"
    stale.mkdir()
    (stale / "report.json").write_text("{}")
    unrelated = tmp_path / ".other.abc123.tmp"
    unrelated.mkdir()
    cli.claim_output(tmp_path / "reports").release()
    assert not stale.exists()
    assert unrelated.exists()


def _unusable(tmp_path: Path, case: str) -> tuple[Path, str]:
    if case == "proc":
        return Path("/proc/x"), "cannot be written: creating files in /proc failed"
    if case == "a file":
        path = tmp_path / "report.txt"
        path.write_text("keep me")
        return path, "is a file: give a folder for report.json and report.html"
    if case == "below a file":
        (tmp_path / "file").write_text("keep me")
        return tmp_path / "file" / "reports", "cannot be written: creating files in"
    if case == "report.json is a folder":
        (tmp_path / "out" / "report.json").mkdir(parents=True)
        return tmp_path / "out", "holds a folder named report.json: move it away"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["proc", "a file", "below a file", "report.json is a folder"])
def test_an_unusable_output_is_refused_before_the_analysis_starts(
    case: str, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_cluster(*args: object, **kwargs: object) -> None:
        raise AssertionError("the analysis started although --output is unusable")

    monkeypatch.setattr(distributed, "Client", no_cluster)
    path, message = _unusable(tmp_path, case)
    code, err = _main(capsys, "--tickers", "AAPL", "--output", str(path))
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"portfolio-analysis: error: --output {path}")
    assert message in lines[0]
    assert "choose" in lines[0] or "give" in lines[0] or "move" in lines[0]  # what to fix
    if case == "a file":
        assert path.read_text() == "keep me"


def test_a_read_only_output_is_refused_before_the_analysis_starts(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder this user may not write into. Root may write anywhere, so as root os.access
    is made to answer as it does for an ordinary user."""
    output = tmp_path / "reports"
    output.mkdir()
    output.chmod(0o555)
    if os.geteuid() == 0:
        real_access = os.access

        def access(path: object, mode: int, **kwargs: object) -> bool:
            if Path(path) == output and mode & os.W_OK:
                return False
            return real_access(path, mode, **kwargs)

        monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(distributed, "Client", lambda *a, **k: pytest.fail("analysis started"))
    code, err = _main(capsys, "--tickers", "AAPL", "--output", str(output))
    output.chmod(0o755)
    assert code == 2
    assert err == (
        f"portfolio-analysis: error: --output {output} is not writable: check its "
        "permissions or choose another folder\n"
    )
