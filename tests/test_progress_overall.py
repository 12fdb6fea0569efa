"""One overall bar per long command: the stages' own bars advance it, redirected output stays one
line per stage, and the command ends with its wall time (issue 21, item 10)."""

from __future__ import annotations

import io
import re

import pytest

from sdbox.progress import OverallProgress, progress_bar

from test_progress import Clock, Terminal


def test_redirected_each_stage_line_carries_the_commands_progress_and_the_last_line_the_wall_time():
    log = io.StringIO()
    with OverallProgress(3, "sdbox distill", unit="epoch", stream=log):
        for epoch in (1, 2, 3):
            for _ in progress_bar(range(4), desc=f"distill epoch {epoch}/3", stream=log):
                pass
    out = log.getvalue()
    assert "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 4  # one per stage, and the wall time
    for epoch, line in enumerate(lines[:3], start=1):
        assert re.fullmatch(rf"distill epoch {epoch}/3: 4/4 steps in [\d.]+ s; sdbox distill: {epoch}/3 epochs, [\d.]+ s elapsed"
                            + (r", about [\d.]+ s left" if epoch < 3 else ""), line), line
    assert re.fullmatch(r"sdbox distill: finished in [\d.]+ s \(wall time\)", lines[3])


def test_on_a_terminal_the_stage_bars_advance_one_overall_bar():
    terminal = Terminal()
    with OverallProgress(2, "sdbox wrap", unit="epoch", stream=terminal) as overall:
        for epoch in (1, 2):
            for _ in progress_bar(range(3), desc=f"wrap epoch {epoch}/2", stream=terminal):
                pass
        assert overall.done == 2
    assert terminal.getvalue().splitlines()[-1].startswith("sdbox wrap: finished in ")


def test_weighted_stages_show_a_share_and_a_stage_cut_short_counts_for_what_it_did():
    clock, log = Clock(), io.StringIO()
    weights = {"teacher": 6.0, "student": 2.0}
    with pytest.raises(KeyboardInterrupt):
        with OverallProgress(8, "sdbox demo", unit=None, stream=log, clock=clock, weigh=lambda desc: weights[desc.split()[0]]) as overall:
            bar = progress_bar(None, total=10, desc="teacher (3 epochs)", stream=log)
            bar.update(10)
            clock.now += 60
            bar.close()
            assert overall.status() == "75% done, 1.0 min elapsed, about 20 s left"
            for i, _ in enumerate(progress_bar(range(4), desc="student epoch 1/1", stream=log)):
                if i == 2:
                    raise KeyboardInterrupt  # 2 of the student's 4 steps ran: 1 of its 2 units
    assert overall.done == pytest.approx(7.0)
    assert log.getvalue().splitlines()[-1] == "sdbox demo: stopped at 88% in 1.0 min (wall time)"


def test_the_wall_time_counts_from_the_commands_start_and_bars_outside_a_command_report_nowhere():
    clock, log = Clock(), io.StringIO()
    started = clock.now
    clock.now += 30  # the command's imports and data loading, before the bar opened
    with OverallProgress(1, "sdbox wrap", unit="epoch", stream=log, clock=clock, started=started):
        clock.now += 30
    assert log.getvalue() == "sdbox wrap: finished in 1.0 min (wall time)\n"
    for _ in progress_bar(range(2), desc="wrap epoch 1/1", stream=log):
        pass
    assert log.getvalue().splitlines()[-1].startswith("wrap epoch 1/1: 2/2 steps in ") and ";" not in log.getvalue().splitlines()[-1]


def test_a_disabled_overall_bar_prints_nothing_and_takes_no_reports():
    log = io.StringIO()
    with OverallProgress(2, "sdbox wrap", unit="epoch", stream=log, enabled=False) as overall:
        for _ in progress_bar(range(2), desc="wrap epoch 1/2", stream=log, enabled=False):
            pass
    assert log.getvalue() == "" and overall.done == 0
