"""Progress redirected to a file is one plain line per stage, with its elapsed time; a terminal gets bars."""

from __future__ import annotations

import io

import pytest

from sdbox.progress import OverallProgress, StageLine, eta_seconds, format_duration, progress_bar


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as a console's stderr does."""

    def isatty(self) -> bool:
        return True


class Clock:
    """A clock the test moves: ``clock.now += 12``."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bar_on_redirected_stderr_is_one_plain_line_per_stage(capsys):
    """pytest's captured stderr is no terminal, like ``sdbox demo 2> log``."""
    for epoch in (1, 2):
        bar = progress_bar(range(50), desc=f"distill epoch {epoch}/2")
        for _ in bar:
            bar.set_postfix({"loss": "0.500"})
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("distill epoch 1/2: 50/50 steps in ") and lines[0].endswith(" s (loss=0.500)")


def test_a_bar_on_a_terminal_is_redrawn_in_place():
    terminal = Terminal()
    for _ in progress_bar(range(50), desc="wrap epoch 1/1", stream=terminal):
        pass
    assert "\r" in terminal.getvalue()  # tqdm's frames: where a terminal redraws them, they are the point


def test_a_stage_line_says_how_long_the_stage_took_even_when_the_loop_stops_early():
    clock, log = Clock(), io.StringIO()
    line = StageLine(range(10), total=None, desc="wrap epoch 1/5", stream=log, clock=clock)
    for i in line:
        clock.now += 1.5
        if i == 3:
            break
    line.close()  # a second close adds nothing
    assert log.getvalue() == "wrap epoch 1/5: 3/10 steps in 6.0 s\n"


def test_a_stage_moved_by_update_reports_its_count_and_figures():
    clock, log = Clock(), io.StringIO()
    line = StageLine(None, total=None, desc="teacher (30 epochs)", stream=log, clock=clock)
    line.update(120)
    line.set_postfix(epoch=30, loss="0.812")
    clock.now += 754
    line.close()
    assert log.getvalue() == "teacher (30 epochs): 120 steps in 12.6 min (epoch=30, loss=0.812)\n"
    with pytest.raises(TypeError, match="call `update"):
        iter(line).__next__()


def test_disabled_progress_prints_nothing(capsys):
    for _ in progress_bar(range(5), desc="quiet", enabled=False):
        pass
    assert capsys.readouterr().err == ""


def test_the_overall_bar_gives_the_time_left_per_stage_and_the_wall_time_at_the_end():
    clock, log = Clock(), io.StringIO()
    with OverallProgress(4, "sdbox wrap", unit="epoch", stream=log, clock=clock) as overall:
        for epoch in range(1, 5):
            clock.now += 30
            overall.update(stage=f"epoch {epoch}/4")
            if epoch == 1:
                assert overall.eta() == pytest.approx(90)
    assert log.getvalue().splitlines() == [
        "sdbox wrap: epoch 1/4 done, 1/4 epochs, 30 s elapsed, about 1.5 min left",
        "sdbox wrap: epoch 2/4 done, 2/4 epochs, 1.0 min elapsed, about 1.0 min left",
        "sdbox wrap: epoch 3/4 done, 3/4 epochs, 1.5 min elapsed, about 30 s left",
        "sdbox wrap: epoch 4/4 done, 4/4 epochs, 2.0 min elapsed",
        "sdbox wrap: finished in 2.0 min (wall time)",
    ]


def test_an_interrupted_command_says_where_it_stopped():
    clock, log = Clock(), io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with OverallProgress(10, "sdbox distill", unit="epoch", stream=log, clock=clock) as overall:
            clock.now += 8
            overall.update(3)
            raise KeyboardInterrupt
    assert log.getvalue() == "sdbox distill: stopped at 3/10 epochs in 8.0 s (wall time)\n"


def test_the_overall_bar_on_a_terminal_is_one_tqdm_bar_with_its_final_line():
    terminal = Terminal()
    with OverallProgress(3, "sdbox demo", stream=terminal) as overall:
        overall.update(3, stage="students")
    out = terminal.getvalue()
    assert "\r" in out and "3/3" in out and out.splitlines()[-1].startswith("sdbox demo: finished in ")


def test_eta_and_durations():
    assert eta_seconds(0, 10, 5.0) is None
    assert eta_seconds(2, 10, 30.0) == pytest.approx(120)
    assert eta_seconds(12, 10, 30.0) == 0  # more done than planned: nothing left, not a negative time
    assert [format_duration(s) for s in (4.25, 41, 138, 5400)] == ["4.2 s", "41 s", "2.3 min", "1.5 h"]
