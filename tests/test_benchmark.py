"""The benchmark on a few hundred real CIFAR-10 images: outputs, resume, teacher cache, demo, offline."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sdbox.benchmark import CPU, run_benchmark
from sdbox.errors import InputError

DATA = Path(os.environ.get("SDBOX_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"))
pytestmark = pytest.mark.skipif(not (DATA / "train").is_dir(), reason=f"no CIFAR-10 ImageFolder at {DATA} (set SDBOX_DATA)")

TINY = replace(
    CPU, name="tiny", teacher="cnn5", students=("cnn5",), n_teacher=400, n_wrap=200, n_distill=100, n_val=100, n_test=100,
    teacher_epochs=1, wrap_epochs=1, student_epochs=1, batch_size=50, max_accuracy_drop=100.0,
    methods=("Normal", "SDB"), temperatures=(1.0, 4.0), random_keys=1, notes=(),
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SDBOX_CACHE", str(cache))
        rng = torch.random.get_rng_state()
        results = run_benchmark(DATA, TINY, 2, out, threads=1, progress=False)
        results["_rng_kept"] = torch.equal(torch.random.get_rng_state(), rng)  # not part of the run's results
        return out, results


def test_results_schema_report_and_figures(finished):
    out, results = finished
    saved = json.loads((out / "results.json").read_text())
    assert saved["seeds"] == results["seeds"] and set(saved["seeds"]) == {"0", "1"}
    assert saved["data"]["teacher"] == 400 and saved["data"]["distill"] == 100 and saved["data"]["wrap"] == 200
    assert saved["regime"].startswith("Data-limited regime: the teacher learnt from 400 images")
    seed = saved["seeds"]["0"]
    assert set(seed["methods"]["SDB"]["cnn5"]) == {"no_key", "key"} and set(seed["methods"]["Normal"]["cnn5"]) == {"no_key"}
    assert set(seed["temperature_attack"]) == {"1", "4"} and len(seed["random_key_attack"]) == 1
    assert len(seed["random_key_restat_attack"]) == 1  # the same fresh key, statistics re-estimated by the attacker
    assert saved["mean"]["scratch"]["cnn5"]["n"] == 2
    compute = saved["compute_s"]  # what every result took, whichever invocation made it
    assert compute["teacher"] > 0 and compute["wraps"] > 0
    assert compute["students"] == pytest.approx(sum(s["wall_time_s"] for s in saved["seeds"].values()))
    claims = {c["claim"]: c for c in saved["comparisons"]}
    assert {"KD pays (regime check)", "Fidelity", "Protection (T=1)", "Protection (T=4)", "Authorisation"} <= claims.keys()
    worst = next(c for c in claims.values() if c["claim"].startswith("Uniqueness (worst of 2 fresh keys:"))
    seed_of_worst = worst["claim"].split("seed ")[1][0]
    other = "1" if seed_of_worst == "0" else "0"
    gain = lambda s: saved["seeds"][s]["random_key_attack"][0] - saved["seeds"][s]["scratch"]["cnn5"]  # noqa: E731
    assert gain(seed_of_worst) >= gain(other) and worst["diff"]["over"] == "test images"  # each seed's key is its own: the worst binds
    assert claims["Fidelity"]["diff"]["over"] == "test images" and claims["Authorisation"]["diff"]["over"] == "seeds"
    # The seeds interval is built from the per-seed differences the results hold.
    d = [saved["seeds"][s]["methods"]["Normal"]["cnn5"]["no_key"] - saved["seeds"][s]["scratch"]["cnn5"] for s in ("0", "1")]
    assert claims["KD pays (regime check)"]["diff"]["mean"] == pytest.approx(sum(d) / 2)
    report = (out / "report.md").read_text()
    assert report.splitlines()[2] == f"**{saved['regime']}**"
    for section in ("## Claims", "## Students", "## The owner's models", "## Beside the paper", "## Figures", "## Per seed"):
        assert section in report
    for png in ("students.png", "loss_curves.png", "soft_labels.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (out / "box" / "README.md").read_text()
    assert "Protection report" in card and saved["regime"] in card
    assert json.loads((out / "box" / "config.json").read_text())["sdbox"]["report"]["claims"]["Fidelity"]["verdict"] == claims["Fidelity"]["verdict"]


def test_the_run_leaves_no_checkpoint_and_the_global_rng_alone(finished):
    """A finished wrap's checkpoint holds the key and the original teacher; the runner's seeding
    must not reseed the caller's generator."""
    out, results = finished
    assert not list(out.rglob("wrap_state.pt")) and not list(out.rglob("*.ckpt")) and not list(out.rglob("*.tmp"))
    assert results["_rng_kept"]


def test_recorded_accuracies_are_those_of_the_saved_models(finished):
    """Each figure in results.json is the accuracy of the model saved beside it on the evaluation images."""
    from sdbox import Key, SafeBox
    from sdbox.benchmark import models
    from sdbox.benchmark.runner import load_data
    from sdbox.benchmark.store import load_weights
    from sdbox.benchmark.tensordata import batches
    from sdbox.evaluate import evaluate

    out, results = finished
    split = batches(load_data(DATA, TINY, torch.device("cpu")).evaluation, 256)
    box = SafeBox.from_pretrained(out / "boxes" / "SDB", model=models.create("cnn5"))
    key = Key.load(out / "boxes" / "SDB.key")  # the owner's key with the keyed normalisation of this box's wrap
    assert key.fingerprint == Key.load(out / "key.key").fingerprint and key.norm is not None
    assert evaluate(box, split)["acc"] == pytest.approx(results["boxes"]["SDB"]["clean_acc"])
    assert evaluate(box, split, key=key)["acc"] == pytest.approx(results["boxes"]["SDB"]["keyed_acc"])
    for T, row in (("1", "SDB@T1"), ("4", "SDB")):  # the T=4 attack row is the no-key student itself
        student = load_weights(models.create("cnn5"), out / "seed1" / "students" / "cnn5" / f"{row}.safetensors")
        assert evaluate(student, split)["acc"] == pytest.approx(results["seeds"]["1"]["temperature_attack"][T])


def test_box_evaluate_fills_the_card(finished):
    out, _ = finished
    from sdbox import Key, SafeBox
    from sdbox.benchmark.models import create
    from sdbox.benchmark.tensordata import batches, load_cifar10

    box = SafeBox.from_pretrained(out / "boxes" / "SDB", model=create("cnn5"))
    _, val, _ = load_cifar10(DATA, 300, 100, 10)
    figures = box.evaluate(batches(val, 50), Key.load(out / "boxes" / "SDB.key"))
    assert set(figures) == {"clean_acc", "keyed_acc", "images"} and figures["images"] == 100
    assert "this box, keyed input" in box.report_markdown and box.box_config.report["evaluation"] == figures


def test_students_of_a_seed_share_initial_weights_and_differ_by_teacher(finished):
    out, _ = finished
    from safetensors.torch import load_file

    students = out / "seed0" / "students" / "cnn5"
    scratch, normal = load_file(students / "scratch.safetensors"), load_file(students / "Normal.safetensors")
    other_seed = load_file(out / "seed1" / "students" / "cnn5" / "scratch.safetensors")
    assert any(not torch.equal(scratch[k], normal[k]) for k in scratch)  # the teacher changed the student
    assert any(not torch.equal(scratch[k], other_seed[k]) for k in scratch)  # the seed changed it too


def test_resume_does_no_training_and_adds_attacks(finished, cache, monkeypatch):
    out, results = finished
    from sdbox.benchmark import runner, teachers

    def refuse(*args, **kwargs):
        raise AssertionError("a resumed run trained again")

    monkeypatch.setenv("SDBOX_CACHE", str(cache))
    monkeypatch.setattr(runner, "distill", refuse)
    monkeypatch.setattr(teachers, "train_classifier", refuse)
    monkeypatch.setattr(runner.SafeBox, "wrap", refuse)
    attacks = [{"attack": "skeptical", "settings": {"T": 4}, "student_acc": 20.0, "gap_to_scratch": -1.0, "gap_to_key_holder": -2.0, "strongest": True}]
    (out / "attacks.json").write_text(json.dumps(attacks))
    again = run_benchmark(DATA, TINY, 2, out, threads=1, progress=False)
    assert again["seeds"] == results["seeds"] and again["comparisons"] == results["comparisons"]
    assert (out / "report.md").read_text().count("Uniqueness (worst of 2 fresh keys") == 4  # public and re-estimated statistics, each against scratch and the key holder
    # A preset asking for more rows trains only those on a rerun.
    monkeypatch.undo()
    monkeypatch.setenv("SDBOX_CACHE", str(cache))
    trained = []
    real = runner.distill
    monkeypatch.setattr(runner, "distill", lambda *a, **k: trained.append(1) or real(*a, **k))
    more = run_benchmark(DATA, replace(TINY, random_keys=2), 2, out, threads=1, progress=False)
    assert len(trained) == 4 and len(more["seeds"]["1"]["random_key_attack"]) == 2  # one new key per seed, public and re-estimated statistics
    assert more["seeds"]["1"]["scratch"] == results["seeds"]["1"]["scratch"]
    assert again["teacher"]["source"] == "cache"
    assert "## Other attacks" in (out / "report.md").read_text()


def test_a_folder_made_with_another_teacher_is_refused(finished, tmp_path):
    out, _ = finished
    from sdbox.benchmark import models
    from safetensors.torch import save_model

    torch.manual_seed(123)
    save_model(models.create("cnn5"), str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="another teacher"):
        run_benchmark(DATA, TINY, 1, out, teacher=tmp_path / "other.safetensors", progress=False)


def test_teacher_path_must_hold_the_presets_architecture(tmp_path):
    from sdbox.benchmark import models
    from safetensors.torch import save_model

    save_model(models.create("resnet8"), str(tmp_path / "resnet8.safetensors"))
    with pytest.raises(InputError, match="does not hold `cnn5` weights"):
        run_benchmark(DATA, TINY, 1, tmp_path / "out", teacher=tmp_path / "resnet8.safetensors", progress=False)
    with pytest.raises(InputError, match="No teacher weights"):
        run_benchmark(DATA, TINY, 1, tmp_path / "out", teacher=tmp_path / "missing.safetensors", progress=False)


def test_teacher_cache_is_keyed_by_recipe(monkeypatch, tmp_path):
    from sdbox.benchmark import teachers
    from sdbox.benchmark.tensordata import Split

    monkeypatch.setenv("SDBOX_CACHE", str(tmp_path))
    pool = Split(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8), torch.arange(40) % 10)
    base = teachers.recipe_path(teachers.recipe(TINY, pool))
    assert base.parent == tmp_path / "teachers" and base.name.startswith("cnn5-")
    assert teachers.recipe_path(teachers.recipe(replace(TINY, teacher_epochs=2), pool)) != base
    other = Split(pool.images.clone(), pool.labels.clone())
    other.images[0, 0, 0, 0] ^= 1  # one pixel of the data
    assert teachers.recipe_path(teachers.recipe(TINY, other)) != base
    assert teachers.recipe_path(teachers.recipe(TINY, Split(pool.images.clone(), pool.labels.clone()))) == base


def test_teacher_training_resumes_from_its_last_epoch(tmp_path):
    """An interrupted training, resumed, ends with the weights of one uninterrupted run."""
    from sdbox.benchmark import models
    from sdbox.benchmark.tensordata import Split, batches
    from sdbox.benchmark.train import train_classifier

    pool = Split(torch.randint(0, 256, (60, 3, 32, 32), dtype=torch.uint8), torch.arange(60) % 10)

    def fresh():
        torch.manual_seed(0)
        return models.create("cnn5"), batches(pool, 20, train=True, seed=3)

    model, loader = fresh()
    train_classifier(model, loader, epochs=3, lr=0.05, progress=False)

    interrupted, loader = fresh()
    real_step, calls = torch.optim.SGD.step, {"n": 0}

    def step_then_stop(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # during epoch 2 (3 steps per epoch)
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.SGD, "step", step_then_stop)
        with pytest.raises(KeyboardInterrupt):
            train_classifier(interrupted, loader, epochs=3, lr=0.05, progress=False, checkpoint=tmp_path / "t.pt")
    assert (tmp_path / "t.pt").exists()
    resumed, loader = fresh()
    train_classifier(resumed, loader, epochs=3, lr=0.05, progress=False, checkpoint=tmp_path / "t.pt")
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_report_without_matplotlib_skips_figures_with_a_note(finished, monkeypatch, tmp_path):
    from sdbox.benchmark.report import NO_MATPLOTLIB, write_report

    _, results = finished
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    path = write_report(results, tmp_path)
    assert NO_MATPLOTLIB in path.read_text() and not list(tmp_path.glob("*.png"))


def test_demo_runs_to_the_end_without_matplotlib(monkeypatch, tmp_path, cache, capsys):
    from sdbox.benchmark import cli
    from sdbox.cli import main

    monkeypatch.setenv("SDBOX_CACHE", str(cache))
    monkeypatch.setattr(cli, "DEMO", TINY)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["demo", "--data", str(DATA), "--out", str(tmp_path / "demo"), "--threads", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "figures skipped: matplotlib is not installed" in printed
    assert "Data-limited regime" in printed and "SDB+key − Normal" in printed and "Without the key, the box's student scored" in printed
    assert (tmp_path / "demo" / "report.md").exists()


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


def test_presets_reject_a_slice_smaller_than_one_image_per_class():
    with pytest.raises(ValueError, match="`n_distill` ≥ 10"):
        replace(TINY, n_distill=5)


def test_demo_and_benchmark_cli_parse():
    import argparse

    from sdbox.benchmark import cli

    parser = argparse.ArgumentParser()
    cli.add_parsers(parser.add_subparsers(dest="command"))
    demo = parser.parse_args(["demo", "--out", "x", "--threads", "1", "--teacher", "t.safetensors"])
    assert demo.run is cli.run_demo_cli and demo.out == "x" and demo.threads == 1 and demo.teacher == "t.safetensors"
    bench = parser.parse_args(["benchmark", "--preset", "paper", "--data", "d"])
    assert bench.run is cli.run_benchmark_cli and (bench.preset, bench.seeds, bench.data) == ("paper", 3, "d")
    assert parser.parse_args(["benchmark", "--preset", "gpu"]).preset == "gpu"
    with pytest.raises(SystemExit):
        parser.parse_args(["benchmark", "--preset", "demo"])  # the demo has its own command
