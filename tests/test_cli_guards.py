"""`sdbox wrap` as a careless user meets it: an existing bundle, a guard that refuses, a full disk, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdbox import InputError, Key, SafeBox
from sdbox.cli import main

from conftest import DATA, REPO
from test_cli import QUICK, save_teacher


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    return save_teacher(tmp_path_factory.mktemp("teacher"), "test_resnet")


def wrap_args(teacher_dir: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["wrap", f"local-dir:{teacher_dir}", "--data", str(DATA), "--out", str(tmp_path / "out"),
            "--key-out", str(tmp_path / "owner.key"), "--max-accuracy-drop", "100", "--license", "apache-2.0", "--allow-low-accuracy",
            *QUICK, *extra]


def test_a_bundle_in_out_is_not_replaced_without_overwrite(teacher_dir, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.json").write_text("{}")
    assert main(wrap_args(teacher_dir, tmp_path)) == 1
    assert "already holds a bundle: pass --overwrite" in capsys.readouterr().err
    assert not (tmp_path / "owner.key").exists()  # refused before training and before the key


def test_a_failed_save_keeps_the_checkpoint_and_a_rerun_finishes_without_training(teacher_dir, tmp_path, capsys, monkeypatch):
    def full_disk(self, directory):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(SafeBox, "_save_pretrained", full_disk)
        assert main(wrap_args(teacher_dir, tmp_path)) == 1
    err = capsys.readouterr().err
    checkpoint = tmp_path / "owner.key.checkpoint"
    assert "No space left" in err and f"the checkpoint in {checkpoint} keeps the finished wrap" in err
    assert (checkpoint / "wrap_state.pt").is_file()
    key = Key.load(tmp_path / "owner.key")  # the key was written before the bundle failed
    assert main(wrap_args(teacher_dir, tmp_path)) == 0  # the same command: the key file is this wrap's, so it goes on
    assert Key.load(tmp_path / "owner.key").fingerprint == key.fingerprint
    assert not checkpoint.exists()  # deleted once the key and the bundle are safe
    assert SafeBox.from_pretrained(tmp_path / "out").box_config.key_fingerprint == key.fingerprint


def test_a_refusing_guard_names_the_cli_flags(teacher_dir, tmp_path, capsys, monkeypatch):
    from sdbox.errors import FidelityError

    def refuse(*args, **kwargs):
        raise FidelityError("No epoch kept accuracy ... Lower `omega` ... empty `checkpoint_dir`",
                            accuracy_before=70.0, closest={"epoch": 2, "clean_acc": 61.0, "keyed_acc": 64.0})

    monkeypatch.setattr(SafeBox, "wrap", refuse)
    assert main([*wrap_args(teacher_dir, tmp_path), "--lr", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "closest was epoch 2 with clean 61.00%" in err and "--max-accuracy-drop" in err and "--lr (now 0.5)" in err
    assert "omega" not in err and "`checkpoint_dir`" not in err and str(tmp_path / "owner.key.checkpoint") in err


def test_ctrl_c_exits_130_with_one_line_saying_what_was_kept(teacher_dir, tmp_path):
    args = wrap_args(teacher_dir, tmp_path)
    args[args.index("--epochs") + 1] = "50"
    process = subprocess.Popen([sys.executable, "-m", "sdbox", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    checkpoint = tmp_path / "owner.key.checkpoint" / "wrap_state.pt"
    deadline = time.time() + 240
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("sdbox wrap: interrupted;") and "rerun the same command to resume" in lines[-1]
    assert "Traceback" not in err


@pytest.mark.parametrize("classes", [[], ["cat"]])
def test_a_folder_without_two_class_folders_shows_the_layout(tmp_path, classes):
    from sdbox.data import image_folder

    for name in classes:
        (tmp_path / name).mkdir()
        (tmp_path / name / "0001.jpg").write_bytes(b"")
    (tmp_path / "stray.jpg").write_bytes(b"")
    with pytest.raises(InputError, match=r"at least two; expected ROOT/<class>/<image>"):
        image_folder(tmp_path)


@pytest.mark.parametrize("point", ["after the first epoch's checkpoint", "at the key", "mid-bundle"])
def test_a_wrap_killed_at_any_file_writing_point_finishes_on_rerun_with_nothing_lost(teacher_dir, tmp_path, monkeypatch, capsys, point):
    """Fault injection: the rerun of the same command resumes or finishes, saying so on its first
    line with the epoch it resumes from; the key opens the bundle, the checkpoint is gone, and no
    secret sits in the bundle folder."""
    import sdbox.wrap as wrap_module
    from sdbox.publish import find_secret_files

    args = wrap_args(teacher_dir, tmp_path)
    args[args.index("--epochs") + 1] = "2"
    real_checkpoint, real_key_save = wrap_module._save_checkpoint, Key.save

    def checkpoint_then_die(*a, **k):
        real_checkpoint(*a, **k)
        raise KeyboardInterrupt

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        if point == "after the first epoch's checkpoint":
            patch.setattr(wrap_module, "_save_checkpoint", checkpoint_then_die)
            assert main(args) == 130  # Ctrl-C's exit code
        else:
            patch.setattr(*((Key, "save", fail) if point == "at the key" else (SafeBox, "_save_pretrained", fail)))
            assert main(args) == 1
    assert (tmp_path / "owner.key.checkpoint" / "wrap_state.pt").is_file()  # what was finished is kept
    capsys.readouterr()
    assert main(args) == 0
    first = capsys.readouterr().err.splitlines()[0]
    checkpoint = tmp_path / "owner.key.checkpoint"
    assert first == (f"sdbox wrap: resuming from epoch 2 of 2 (1 done, kept in {checkpoint}); delete {checkpoint} to start over."
                     if point == "after the first epoch's checkpoint" else
                     f"sdbox wrap: resuming the finished wrap in {checkpoint} (2 of 2 epochs): nothing is trained again; "
                     f"delete {checkpoint} to start over.")
    key = Key.load(tmp_path / "owner.key")
    assert key.norm is not None and SafeBox.from_pretrained(tmp_path / "out").box_config.key_fingerprint == key.fingerprint
    assert not (tmp_path / "owner.key.checkpoint").exists() and not find_secret_files(tmp_path / "out")
    assert Key.save is real_key_save


def test_without_input_size_the_size_comes_from_the_data(tmp_path, capsys):
    """test_resnet's own default is 160 px; CIFAR-10's images are all 32×32."""
    import json
    import timm
    from timm.models import save_for_hf

    save_for_hf(timm.create_model("test_resnet", num_classes=10), str(tmp_path / "teacher"), safe_serialization=True)
    args = ["wrap", f"local-dir:{tmp_path / 'teacher'}", "--data", str(DATA), "--out", str(tmp_path / "out"),
            "--key-out", str(tmp_path / "owner.key"), "--max-accuracy-drop", "100", "--allow-low-accuracy", *QUICK]
    assert main(args) == 0
    assert "input size [3, 32, 32] from the data" in capsys.readouterr().err
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]


def test_an_original_at_chance_on_the_owners_images_is_refused_before_training(teacher_dir, tmp_path, capsys):
    args = [a for a in wrap_args(teacher_dir, tmp_path) if a != "--allow-low-accuracy"]  # an untrained model: 10% on 10 classes
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "near chance (10.0%)" in err and "--allow-low-accuracy" in err and "--input-size" in err
    assert not (tmp_path / "owner.key").exists() and not (tmp_path / "owner.key.checkpoint").exists()
