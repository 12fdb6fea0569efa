"""`sdbox demo` and `sdbox benchmark` redirected: one line per stage carrying the run's share done
and time left, and a last line with the wall time (issue 21, item 10)."""

from __future__ import annotations

import re
import sys
from dataclasses import replace

import pytest

from sdbox.benchmark.cli import overall_progress
from sdbox.benchmark.gpu_budget import rows_per_seed
from sdbox.benchmark.presets import CPU, DEMO

from conftest import DATA

TINY = replace(
    CPU, name="tiny", teacher="cnn5", students=("cnn5",), n_teacher=400, n_wrap=200, n_distill=100, n_val=100, n_test=100,
    teacher_epochs=1, wrap_epochs=1, student_epochs=1, batch_size=50, max_accuracy_drop=100.0,
    methods=("Normal", "SDB"), temperatures=(1.0, 4.0), random_keys=1, notes=(),
)


@pytest.mark.parametrize("p, seeds", [(DEMO, 1), (CPU, 3)])
def test_the_stage_bars_of_a_full_run_add_up_to_the_whole(p, seeds):
    """Every bar the runner draws for a fresh run, weighed: together they are 100% of the plan."""
    overall = overall_progress(p, seeds, "demo", enabled=False, started=0.0)
    boxes = len([m for m in p.methods if m != "Normal"])
    bars = (["teacher (30 epochs)"] + [f"wrap epoch {e}/{p.wrap_epochs}" for e in range(1, p.wrap_epochs + 1)] * boxes
            + [f"distill epoch {e}/{p.student_epochs}" for e in range(1, p.student_epochs + 1)] * len(rows_per_seed(p)) * seeds)
    assert sum(overall.weigh(desc) for desc in bars) == pytest.approx(overall.total)
    assert overall.weigh("something else") == 0.0


@pytest.mark.skipif(not (DATA / "train").is_dir(), reason=f"no CIFAR-10 ImageFolder at {DATA} (set SDBOX_DATA)")
def test_a_redirected_demo_prints_one_line_per_stage_with_the_runs_progress_and_ends_with_its_wall_time(monkeypatch, tmp_path, capsys):
    from sdbox.benchmark import cli
    from sdbox.cli import main

    monkeypatch.setenv("SDBOX_CACHE", str(tmp_path / "cache"))  # a fresh cache: the teacher is trained, every stage is drawn
    monkeypatch.setattr(cli, "DEMO", TINY)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # no figures: faster, and not what is tested
    assert main(["demo", "--data", str(DATA), "--out", str(tmp_path / "demo"), "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    stages = [line for line in err.splitlines() if "; sdbox demo: " in line]
    assert stages[0].startswith("teacher (1 epochs): ") and any(line.startswith("wrap epoch 1/1: ") for line in stages)
    assert len(stages) == 1 + 1 + len(rows_per_seed(TINY))  # the teacher, one wrap epoch, one epoch per student
    assert all(re.search(r"; sdbox demo: \d+% done, [\d.]+ (s|min) elapsed", line) for line in stages)
    assert "; sdbox demo: 100% done, " in stages[-1] and " left" not in stages[-1]
    assert re.fullmatch(r"sdbox demo: finished in [\d.]+ (s|min) \(wall time\)", err.splitlines()[-1])
