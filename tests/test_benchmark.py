"""The benchmark on a few hundred real CIFAR-10 images: outputs, resume, offline error, CLI."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sdbox.benchmark import CPU, run_benchmark
from sdbox.errors import InputError

DATA = Path(os.environ.get("SDBOX_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"))
pytestmark = pytest.mark.skipif(not (DATA / "train").is_dir(), reason=f"no CIFAR-10 ImageFolder at {DATA} (set SDBOX_DATA)")

TINY = replace(
    CPU, name="tiny", teacher="cnn5", students=("cnn5",), n_train=300, n_val=100, n_test=100,
    teacher_epochs=1, wrap_epochs=1, student_epochs=1, max_accuracy_drop=100.0,
    methods=("Normal", "SDB"), temperatures=(1.0, 4.0), random_keys=1,
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict, bool]:
    """A finished run, and whether the caller's global RNG state came back as it was."""
    out = tmp_path_factory.mktemp("bench")
    rng = torch.random.get_rng_state()
    results = run_benchmark(DATA, TINY, 1, out, threads=1, progress=False)
    return out, results, torch.equal(torch.random.get_rng_state(), rng)


def test_results_schema_report_and_figures(finished):
    out, _, _ = finished
    saved = json.loads((out / "results.json").read_text())
    seed = saved["seeds"]["0"]
    assert {"clean_acc"} <= seed["teacher"].keys()
    for method in ("Normal", "SDB"):
        assert set(seed["methods"][method]["teacher_acc"]) == {"no_key", "key"}
        assert set(seed["methods"][method]["student"]["cnn5"]) == {"no_key", "key"}
    assert set(seed["temperature_attack"]) == {"1", "4"} and len(seed["random_key_attack"]) == 1
    assert saved["mean"]["scratch"]["cnn5"]["n"] == 1
    assert {"settings", "versions", "device", "wall_time_s"} <= saved.keys()
    report = (out / "report.md").read_text()
    for section in ("## Verdicts", "## Table 3", "## Table 5", "## Table 6", "## Figures", "## Per seed"):
        assert section in report
    assert (out / "loss_curves.png").stat().st_size > 0 and (out / "soft_labels.png").stat().st_size > 0
    card = (out / "box" / "README.md").read_text()
    assert "Protection report" in card and "loss_curves.png" in card
    assert json.loads((out / "box" / "config.json").read_text())["sdbox"]["report"]["claims"]


def test_recorded_accuracies_are_those_of_the_saved_models(finished):
    """Each figure in results.json must be the accuracy of the model saved beside it on the eval split."""
    from sdbox.benchmark.models import create
    from sdbox.benchmark.store import load_weights
    from sdbox.benchmark.tensordata import batches, load_cifar10
    from sdbox.evaluate import evaluate

    out, results, _ = finished
    _, val, test = load_cifar10(DATA, TINY.n_train, TINY.n_val, TINY.n_test)
    split = batches(test if TINY.eval_split == "test" else val, 256)
    seed, folder = results["seeds"]["0"], out / "seed0"
    teacher = load_weights(create("cnn5"), folder / "teacher.safetensors")
    assert evaluate(teacher, split)["acc"] == pytest.approx(seed["teacher"]["clean_acc"])
    for T, name in (("1", "SDB_no_key_T1"), ("4", "SDB_no_key")):  # the T=4 attack row is the no-key student itself
        student = load_weights(create("cnn5"), folder / "students" / "cnn5" / f"{name}.safetensors")
        assert evaluate(student, split)["acc"] == pytest.approx(seed["temperature_attack"][T])
    assert seed["methods"]["SDB"]["student"]["cnn5"]["no_key"] == pytest.approx(seed["temperature_attack"]["4"])


def test_the_run_leaves_no_checkpoint_and_the_global_rng_alone(finished):
    """A finished wrap's checkpoint holds the key and the original teacher; the runner's seeding
    used to reseed the caller's generator."""
    out, _, rng_kept = finished
    assert not list(out.rglob("wrap_state.pt")) and not list(out.rglob("*.ckpt"))
    assert not list(out.rglob("*.tmp"))
    assert rng_kept


def test_resume_does_no_training_and_adds_attacks(finished, monkeypatch):
    out, results, _ = finished
    from sdbox.benchmark import runner

    def refuse(*args, **kwargs):
        raise AssertionError("a resumed run trained again")

    monkeypatch.setattr(runner, "distill", refuse)
    monkeypatch.setattr(runner, "train_classifier", refuse)
    monkeypatch.setattr(runner.SafeBox, "wrap", refuse)
    attacks = [{"attack": "skeptical", "settings": {"T": 4}, "student_acc": 20.0, "gap_to_scratch": -1.0, "gap_to_key_holder": -2.0, "strongest": True}]
    (out / "attacks.json").write_text(json.dumps(attacks))
    again = run_benchmark(DATA, TINY, 1, out, threads=1, progress=False)
    assert again["seeds"] == results["seeds"]
    assert "## Other attacks" in (out / "report.md").read_text()


def test_box_evaluate_fills_the_card(finished):
    out, _, _ = finished
    from sdbox import Key, SafeBox
    from sdbox.benchmark.models import create
    from sdbox.benchmark.tensordata import batches, load_cifar10

    box = SafeBox.from_pretrained(out / "seed0" / "boxes" / "SDB", model=create("cnn5"))
    _, val, _ = load_cifar10(DATA, 300, 100, 10)
    figures = box.evaluate(batches(val, 50), Key.load(out / "seed0" / "key.key"))
    assert set(figures) == {"clean_acc", "keyed_acc", "images"} and figures["images"] == 100
    assert "this box, keyed input" in box.report_markdown and box.box_config.report["evaluation"] == figures


def test_offline_without_data_says_pass_data(monkeypatch, tmp_path):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")

    monkeypatch.setenv("SDBOX_CACHE", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(InputError, match="--data"):
        run_benchmark(None, TINY, 1, tmp_path / "out", progress=False)


def test_seeds_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="`seeds` ≥ 1"):
        run_benchmark(DATA, TINY, 0, tmp_path)
    with pytest.raises(ValueError, match="at least one seed"):
        run_benchmark(DATA, TINY, [], tmp_path)


def test_demo_and_benchmark_cli_parse():
    import argparse

    from sdbox.benchmark import cli

    parser = argparse.ArgumentParser()
    cli.add_parsers(parser.add_subparsers(dest="command"))
    demo = parser.parse_args(["demo", "--out", "x", "--threads", "1"])
    assert demo.run is cli.run_demo_cli and demo.out == "x" and demo.threads == 1
    bench = parser.parse_args(["benchmark", "--preset", "paper", "--seeds", "3", "--data", "d"])
    assert bench.run is cli.run_benchmark_cli and (bench.preset, bench.seeds, bench.data) == ("paper", 3, "d")
    with pytest.raises(SystemExit):
        parser.parse_args(["benchmark", "--preset", "gpu"])
