"""The owner's command line on real CIFAR-10 images: wrap, inspect, verify, push, distill."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from sdbox import Key
from sdbox.cli import main
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD

from conftest import DATA

QUICK = ["--limit", "60", "--epochs", "1", "--batch-size", "20", "--no-progress"]


def save_teacher(folder: Path, architecture: str) -> Path:
    """A seeded timm model whose config says CIFAR-10 preprocessing, saved as a `local-dir:` folder."""
    from timm.models import save_for_hf

    if not (DATA / "train").is_dir():
        pytest.skip(f"CIFAR-10 ImageFolder tree not found at {DATA}")
    torch.manual_seed(0)
    teacher = timm.create_model(architecture, num_classes=10, pretrained_cfg_overlay=dict(
        input_size=(3, 32, 32), crop_pct=1.0, interpolation="bilinear", mean=CIFAR10_MEAN, std=CIFAR10_STD))
    save_for_hf(teacher, str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def wrapped_dir(tmp_path_factory) -> Path:
    """`sdbox wrap local-dir:TEACHER` of a timm resnet18 whose config says CIFAR-10 preprocessing."""
    root = tmp_path_factory.mktemp("cli")
    save_teacher(root / "teacher", "resnet18")
    code = main(["wrap", f"local-dir:{root / 'teacher'}", "--data", str(DATA), "--out", str(root / "out"),
                 "--key-out", str(root / "owner.key"), "--max-accuracy-drop", "100", "--license", "apache-2.0", "--allow-low-accuracy",
                 "--dataset-name", "cifar10", *QUICK])
    assert code == 0
    return root


def test_wrap_writes_a_bundle_and_a_key_apart(wrapped_dir, capsys):
    out = wrapped_dir / "out"
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    config = json.loads((out / "config.json").read_text())
    assert config["pretrained_cfg"]["mean"] == list(CIFAR10_MEAN) and config["label_names"][0] == "airplane"
    assert config["sdbox"]["license"] == "apache-2.0" and config["sdbox"]["datasets"] == ["cifar10"]
    key = Key.load(wrapped_dir / "owner.key")
    assert key.fingerprint == config["sdbox"]["key_fingerprint"]
    assert timm.create_model(f"local-dir:{out}", pretrained=True).num_classes == 10


def test_inspect_shows_what_the_bundle_publishes(wrapped_dir, capsys):
    assert main(["inspect", str(wrapped_dir / "out")]) == 0
    shown = capsys.readouterr().out
    assert "resnet18 (timm), 10 classes" in shown and "plain timm" in shown
    assert "mean [0.4914, 0.4822, 0.4465]" in shown and "airplane, automobile" in shown
    assert "main_loss kl" in shown and "kept_epoch closest to the decoy target" in shown and "wrapped by        sdbox 0." in shown
    assert main(["inspect", str(wrapped_dir / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["architecture"] == "resnet18"


def test_verify_says_whether_a_key_opens_the_box_without_printing_it(wrapped_dir, tmp_path, capsys):
    key = Key.load(wrapped_dir / "owner.key")
    assert main(["verify", str(wrapped_dir / "out"), "--key", str(wrapped_dir / "owner.key")]) == 0
    said = capsys.readouterr().out
    assert said.startswith("OK") and key.fingerprint not in said  # a 12-digit prefix only
    assert not any(f"{v:.4f}" in said for v in key.tensor.flatten()[:50].tolist())
    other = Key.generate(key.shape, key.lam).save(tmp_path / "other.key")
    assert main(["verify", str(wrapped_dir / "out"), "--key", str(other)]) == 1
    assert capsys.readouterr().out.startswith("NO")


def test_verify_refuses_a_bundle_whose_weights_fail_their_checksum(wrapped_dir, tmp_path, capsys):
    import shutil

    changed = tmp_path / "changed"
    shutil.copytree(wrapped_dir / "out", changed)
    raw = bytearray((changed / "model.safetensors").read_bytes())
    raw[-1] ^= 1  # one bit of one weight
    (changed / "model.safetensors").write_bytes(bytes(raw))
    assert main(["verify", str(changed), "--key", str(wrapped_dir / "owner.key")]) == 1
    said = capsys.readouterr().out
    assert said.startswith("NO") and "model.safetensors does not match the checksum" in said


def test_push_uploads_the_bundle_without_the_key(wrapped_dir, fake_hub, tmp_path, capsys):
    import shutil

    folder = Path(shutil.copytree(wrapped_dir / "out", tmp_path / "out"))
    shutil.copy(wrapped_dir / "owner.key", folder / "owner.key")  # the accident the issue describes
    with pytest.warns(UserWarning, match="Leaving key file"):
        assert main(["push", str(folder), "org/box", "--private", "--token", "hf_owner"]) == 0
    assert fake_hub.repos["org/box"]["visibility"] == "private" and fake_hub.tokens("/commit/") == {"hf_owner"}
    assert len(fake_hub.commits) == 1 and set(fake_hub.commits[0][1]) == {"config.json", "model.safetensors", "README.md"}


def test_distill_with_the_key_writes_a_student(wrapped_dir, tmp_path, capsys):
    assert main(["distill", str(wrapped_dir / "out"), "--key", str(wrapped_dir / "owner.key"), "--data", str(DATA),
                 "--student", "test_resnet", "--out", str(tmp_path / "student"), *QUICK]) == 0
    assert "student top-1 on 20 held-out images" in capsys.readouterr().out
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["sdbox_student"]["keyed"] is True and config["pretrained_cfg"]["mean"] == list(CIFAR10_MEAN)
    student = timm.create_model("test_resnet", num_classes=10)
    from safetensors.torch import load_model

    load_model(student, str(tmp_path / "student" / "model.safetensors"))


def test_distill_and_wrap_redirected_print_a_line_per_epoch_with_the_commands_progress_and_end_with_the_wall_time(wrapped_dir, tmp_path, capsys):
    """capsys's stderr is no terminal, like `sdbox distill ... 2> log`: no carriage-return frames."""
    quick_with_progress = [a for a in QUICK if a != "--no-progress"]
    quick_with_progress[quick_with_progress.index("--epochs") + 1] = "2"
    assert main(["distill", str(wrapped_dir / "out"), "--data", str(DATA), "--student", "test_resnet", "--out", str(tmp_path / "student"),
                 *quick_with_progress]) == 0
    assert main(["wrap", f"local-dir:{save_teacher(tmp_path / 'teacher', 'test_resnet')}", "--data", str(DATA), "--out", str(tmp_path / "box"),
                 "--key-out", str(tmp_path / "owner.key"), "--max-accuracy-drop", "100", "--allow-low-accuracy", *quick_with_progress]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    for command, stage in (("distill", "distill epoch"), ("wrap", "wrap epoch")):
        lines = [line for line in err.splitlines() if line.startswith((stage, f"sdbox {command}: finished"))]
        assert [line.split(":")[0] for line in lines] == [f"{stage} 1/2", f"{stage} 2/2", f"sdbox {command}"]
        assert f"; sdbox {command}: 1/2 epochs, " in lines[0] and " left" in lines[0] and f"; sdbox {command}: 2/2 epochs, " in lines[1]
        assert lines[2].endswith("(wall time)")


def test_wrap_a_torchvision_model_from_its_weights_file(tmp_path, capsys):
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(torchvision.models.resnet18(num_classes=10).state_dict(), str(tmp_path / "mine.safetensors"))
    mean, std = [str(v) for v in CIFAR10_MEAN], [str(v) for v in CIFAR10_STD]
    assert main(["wrap", "torchvision:resnet18", "--weights", str(tmp_path / "mine.safetensors"), "--data", str(DATA),
                 "--out", str(tmp_path / "out"), "--key-out", str(tmp_path / "owner.key"), "--max-accuracy-drop", "100",
                 "--allow-low-accuracy", "--input-size", "3", "32", "32", "--crop-pct", "1.0", "--mean", *mean, "--std", *std, *QUICK]) == 0
    from sdbox import SafeBox

    loaded = SafeBox.from_pretrained(tmp_path / "out")
    config = loaded.box_config
    assert (config.model_library, config.architecture, config.model_args) == ("torchvision", "resnet18", {"num_classes": 10})
    assert (config.input_size, config.mean, config.crop_pct) == ((3, 32, 32), CIFAR10_MEAN, 1.0)
    assert main(["verify", str(tmp_path / "out"), "--key", str(tmp_path / "owner.key")]) == 0


@pytest.mark.parametrize("argv, message", [
    (["wrap", "resnet18", "--data", "D", "--out", "{t}/out", "--key-out", "{t}/out/owner.key"], "outside --out"),
    (["wrap", "resnet18", "--data", str(DATA), "--out", "{t}/out", "--key-out", "{t}/owner.key"], "--weights FILE.safetensors"),
    (["inspect", "{t}"], "holds no config.json"),
    (["verify", "{t}", "--key", "{t}/none.key"], "holds no config.json"),
])
def test_errors_are_one_line_with_the_fix_and_exit_1(argv, message, tmp_path, capsys):
    assert main([a.replace("{t}", str(tmp_path)) for a in argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_python_dash_m_sdbox_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "sdbox", "verify", "--help"], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0 and "--key" in done.stdout
    assert subprocess.run([sys.executable, "-m", "sdbox", "wrap"], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1]).returncode == 2  # usage error


def test_the_quickstart_uses_the_public_api_only():
    import ast

    import sdbox

    tree = ast.parse((Path(__file__).parents[1] / "examples" / "quickstart.py").read_text())
    imported = [(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("sdbox") for alias in node.names]
    assert imported and all(module == "sdbox" and name in sdbox.__all__ for module, name in imported)
