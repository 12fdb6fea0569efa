"""The `gpu` preset and benchmarks/gpu_check.sh, without a GPU: its smoke mode end to end, the
arithmetic that sizes it, and the fast path's pieces (bf16 teacher, channels_last training)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import zipfile
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from sdbox.benchmark import models
from sdbox.benchmark.accel import FastTeacher, fast_path, fast_teacher, student_batch_size
from sdbox.benchmark.gpu_budget import FORWARD_FLOPS, UTILISATION, estimate, rows_per_seed
from sdbox.benchmark.gpu_check import heartbeat, main, pack, unpack
from sdbox.benchmark.presets import CPU, GPU, GPU_SMOKE, PRESETS
from sdbox.benchmark.store import save_weights
from sdbox.benchmark.tensordata import Split, batches
from sdbox.benchmark.teachers import recipe
from sdbox.benchmark.train import train_classifier
from sdbox.distill import teacher_logits
from sdbox.fastpath import FastPath
from sdbox.frozen import is_channels_last

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SDBOX_DATA", REPO.parent / "shared" / "data" / "cifar10"))
CLAIMS = {"KD pays (regime check)", "Fidelity", "Protection (T=1)", "Protection (T=4)", "Authorisation",
          "Uniqueness (worst of 2 fresh keys", "Uniqueness (worst of 2 fresh keys vs key holder"}  # the worst key's seed and number follow


def _tiny_cifar(root: Path, train_per_class: int, test_per_class: int) -> Path:
    """A copy of the first images of each class: as many as GPU_SMOKE draws, no more."""
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for folder in sorted((DATA / split).iterdir()):
            target = root / "cifar10" / split / folder.name
            target.mkdir(parents=True)
            for image in sorted(folder.iterdir())[:n]:
                shutil.copy(image, target / image.name)
    return root / "cifar10"


@pytest.mark.skipif(not (DATA / "train").is_dir(), reason=f"no CIFAR-10 ImageFolder at {DATA} (set SDBOX_DATA)")
def test_smoke_mode_of_the_script_writes_the_report_and_every_claim(tmp_path):
    """benchmarks/gpu_check.sh --smoke: the zip is packed, unpacked and run through the gpu
    preset's code path; $OUT gets the few files a device run brings back, and never a key."""
    per_class = (GPU_SMOKE.n_val + GPU_SMOKE.n_teacher) // 10
    archive = tmp_path / "cifar10.zip"
    pack(_tiny_cifar(tmp_path / "source", per_class, GPU_SMOKE.n_test // 10), archive)
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "OUT": str(out)}
    start = time.time()
    run = subprocess.run(["nice", "-n", "19", "bash", "benchmarks/gpu_check.sh", "--smoke", "--zip", str(archive),
                          "--work", str(work), "--threads", "1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    print(f"smoke run: {time.time() - start:.0f} s wall")

    assert sorted(p.name for p in out.iterdir()) == ["log.txt", "loss_curves.png", "report.md", "results.json",
                                                     "soft_labels.png", "students.png", "summary.json"]  # ≤ 8 come back
    log = (out / "log.txt").read_text()
    assert "== nvidia-smi" in log and "packages: torch" in log and "done in" in log
    results = json.loads((out / "results.json").read_text())
    assert results["preset"] == "gpu-smoke" and set(results["seeds"]) == {"0", "1"}
    assert set(results["seeds"]["0"]["scratch"]) == {"cnn5", "resnet8"}
    claims = {c["claim"]: c for c in results["comparisons"]}
    assert CLAIMS <= {claim.split(':')[0] for claim in claims}
    assert all(c["verdict"] in ("holds", "fails", "not resolved at this size") for c in claims.values())
    assert claims["Authorisation"]["diff"]["over"] == "seeds"
    report = (out / "report.md").read_text()
    assert "preset `gpu-smoke`" in report and "## Claims" in report and "students.png" in report
    assert (out / "students.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The estimate counts the students the runner trains, and the summary measures each stage.
    summary = json.loads((out / "summary.json").read_text())
    trained = list((work / "gpu-smoke").glob("seed*/students/*/*.json"))
    assert len(trained) == 2 * len(rows_per_seed(GPU_SMOKE))
    assert summary["stages"]["students"]["images"] == len(trained) * GPU_SMOKE.n_distill * GPU_SMOKE.student_epochs
    assert summary["stages"]["teacher"]["images"] == GPU_SMOKE.n_teacher and summary["stages"]["teacher"]["images_per_s"] > 0
    assert summary["stages"]["wrap"]["images_per_s"] > 0


def test_without_a_gpu_the_check_stops_and_names_the_smoke_mode(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the check would run")
    assert main(["--work", str(tmp_path), "--out", str(tmp_path / "out"), "--zip", str(tmp_path / "none.zip")]) == 2
    assert "--smoke" in capsys.readouterr().out
    assert not (tmp_path / "data").exists()  # it stopped before unpacking anything


def test_a_zip_made_as_the_data_readme_says_unpacks_inside_the_work_folder(tmp_path):
    """`zip -r .carry/cifar10.zip ../shared/data/cifar10` stores '../' in every name."""
    archive = tmp_path / "c.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for split in ("train", "test"):
            z.writestr(f"../shared/data/cifar10/{split}/cat/0000.jpg", b"jpeg")
    root = unpack(archive, tmp_path / "work")
    assert root == tmp_path / "work" / "data" / "shared" / "data" / "cifar10"
    assert (root / "train" / "cat" / "0000.jpg").read_bytes() == b"jpeg"
    (root / "train" / "cat" / "0000.jpg").unlink()
    unpack(archive, tmp_path / "work")  # the same zip again: not unpacked again
    assert not (root / "train" / "cat" / "0000.jpg").exists()


def test_flop_counts_are_those_of_the_models():
    from torch.utils.flop_counter import FlopCounterMode

    for name, flops in FORWARD_FLOPS.items():
        with FlopCounterMode(display=False) as counter:
            models.create(name).eval()(torch.zeros(1, 3, 32, 32))
        assert counter.get_total_flops() == flops, name


def test_the_gpu_preset_is_sized_for_five_minutes_and_says_so():
    """Even at half the assumed utilisation the whole run, teacher included, fits in 5 minutes, and
    the notes (report.md) and --help quote the estimate the arithmetic gives now."""
    full, slow = estimate(GPU, 3), estimate(GPU, 3, utilisation=UTILISATION / 2)
    assert slow.total_s <= 300
    notes = " ".join(GPU.notes)
    quoted = (f"≈ {full.total_s / 60:.1f} min on one H100/H200", f"≈ {slow.total_s / 60:.1f} min at half")
    assert all(q in notes for q in quoted), f"update the gpu preset's notes (presets.py) and docs/gpu.md to: {quoted}"
    assert quoted[0] in full.describe()
    assert full.describe() in (REPO / "docs" / "gpu.md").read_text(), "paste the new estimate (--help) into docs/gpu.md"


def test_the_gpu_preset_is_the_cpu_recipe_at_gpu_scale():
    scaled = {"name", "teacher", "students", "n_test", "teacher_epochs", "teacher_lr", "wrap_epochs", "wrap_lr",
              "batch_size", "notes", "random_keys"}  # random_keys: the five-minute sum counts 2 a seed
    for f in fields(CPU):
        if f.name not in scaled:
            assert getattr(GPU, f.name) == getattr(CPU, f.name), f.name
    assert GPU.teacher == "resnet18_cifar" and GPU.students[0] == "cnn5" and GPU.n_teacher is None and GPU.n_test is None
    assert GPU.wrap_epochs >= GPU.teacher_epochs and GPU.n_distill <= 2000
    assert student_batch_size(GPU) == CPU.batch_size == student_batch_size(CPU)
    assert PRESETS["gpu"] is GPU and PRESETS["gpu-smoke"] is GPU_SMOKE
    assert fast_path(CPU) is None and fast_path(GPU).resolve("cuda").amp and not fast_path(GPU).resolve("cpu").amp


def test_cpu_teachers_keep_their_cache_and_a_gpu_teacher_gets_its_own():
    pool = Split(torch.zeros(20, 3, 32, 32, dtype=torch.uint8), torch.arange(20) % 10)
    assert "fast" not in recipe(CPU, pool)  # the hash of every cached CPU teacher is unchanged
    assert recipe(GPU, pool)["fast"] == {"amp": None, "channels_last": None}


def test_fast_training_hands_back_a_model_that_saves(tmp_path):
    """bf16 autocast and channels_last during the epochs; the model comes back in its own layout
    (safetensors refuses non-contiguous tensors) and one log line per epoch."""
    torch.manual_seed(0)
    split = Split(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8), torch.arange(40) % 10)
    model, lines = models.create("cnn5"), []
    history = train_classifier(model, batches(split, 20, train=True, seed=0), epochs=2, lr=0.05, progress=False,
                               fast=FastPath(amp=True, channels_last=True), log=lines.append)
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(history)))
    assert not is_channels_last(model) and not model.training
    save_weights(model, tmp_path / "teacher.safetensors")
    assert [line.split(":")[0] for line in lines] == ["teacher epoch 1/2", "teacher epoch 2/2"]


def test_the_fast_teacher_gives_fp32_eval_mode_logits_and_leaves_the_model_as_it_was():
    """distill's teacher_logits puts a module teacher in eval mode for the call: through the
    wrapper too, or a training-mode BatchNorm would move the teacher's statistics."""
    torch.manual_seed(0)
    model, x = models.create("cnn5"), torch.randn(8, 3, 32, 32)
    expected = model.eval()(x)
    model.train()
    stats = model.features[1].running_mean.clone()
    logits = teacher_logits(FastTeacher(model, FastPath(amp=True, channels_last=True), torch.device("cpu")), x)
    assert logits.dtype == torch.float32
    assert torch.allclose(logits, expected, atol=0.15, rtol=0.05)  # bf16: close, not equal
    assert model.training and torch.equal(model.features[1].running_mean, stats)
    assert fast_teacher(model, CPU, torch.device("cpu")) is model  # CPU presets distil as they always did
    assert fast_teacher(None, GPU, torch.device("cpu")) is None  # scratch has no teacher


def test_heartbeat_shows_a_long_stage_alive(capsys):
    with heartbeat(every_s=0.05):
        time.sleep(0.3)
    assert "still running" in capsys.readouterr().out
