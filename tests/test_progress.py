"""Progress without a terminal: a one-line update every LOG_EVERY seconds on stderr."""

from __future__ import annotations

from batch_runner.run import progress
from batch_runner.run.progress import Progress, Tally


def test_progress_lines_go_to_stderr_when_stdout_is_not_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)  # a line for every event
    tally = Tally(estimated=0.06)
    shown = Progress(tally, total=2, to_submit=2, enabled=True)  # pytest's stdout: no tty
    assert shown.bars == {}
    tally.count_submitted()
    tally.count_finished()
    tally.count_cost(0.03)
    tally.count_file(2_500_000)
    shown.close()
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    money = "$0.00 spent / $0.06 estimated"
    assert lines[0] == f"progress: 1 submitted, 0/2 finished, 0 files (0 B), {money}"
    money = "$0.03 spent / $0.06 estimated"
    assert lines[-1] == f"progress: 1 submitted, 1/2 finished, 1 files (2.5 MB), {money}"
    assert len(lines) == 4  # one per count


def test_progress_lines_wait_for_their_interval(monkeypatch, capsys):
    monkeypatch.setattr(progress, "LOG_EVERY", 3600.0)
    tally = Tally()
    Progress(tally, total=5, to_submit=5, enabled=True)
    for _ in range(5):
        tally.count_submitted()
    assert capsys.readouterr().err == ""


def test_no_progress_means_no_listener_and_no_output(capsys):
    tally = Tally()
    Progress(tally, total=3, to_submit=3, enabled=False)
    tally.count_submitted()
    assert tally.listeners == []
    assert capsys.readouterr() == ("", "")


def test_totals_grow_as_a_pipelines_children_are_added(monkeypatch, capsys):
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    tally = Tally()
    shown = Progress(tally, total=2, to_submit=2, enabled=True)
    tally.count_finished()
    tally.count_added(3)  # a parent done made three children
    tally.count_added(0)  # nothing new: no event
    tally.count_finished()
    assert shown.total == 5
    assert "2/5 finished" in capsys.readouterr().err.splitlines()[-1]


def test_bars_totals_grow_as_children_are_added(capsys):
    tally = Tally()
    shown = Progress(tally, total=2, to_submit=1, enabled=True, auto=True)
    try:
        tally.count_added(4)
        assert shown.bars["finished"].total == 6
        assert shown.bars["submitted"].total == 5
    finally:
        shown.close()
    assert "/6" in capsys.readouterr().err
