"""Issue 20: what a careless or hostile caller hands sdbox becomes a named error that says the fix.

The Python API: each case raised a raw torch error, or nothing at all, before: 3-tuples from a
loader, int32 or bool labels, as many labels as images or not, a shape change mid-loader, a
float64 or bf16 model, 0–255 pixels, a NaN batch or a huge learning rate in distill (item 10).
The command line: a hostile bundle's strings reach the terminal escaped (item 5), card metadata
and every flag and output path are checked before training (item 9 and the raw tracebacks),
and `sdbox distill --lr 1e30` fails in one line. Real CIFAR-10 images.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from conftest import DATA, TinyNet
from sdbox import Key, SafeBox, distill
from sdbox.box import read_config
from sdbox.cli import main
from sdbox.config import BoxConfig
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD
from sdbox.errors import BundleError, InputError, NonFiniteLossError, SdboxError
from sdbox.owner_cli import check_card_metadata

NORM = dict(mean=CIFAR10_MEAN, std=CIFAR10_STD)


@pytest.fixture(scope="module")
def images(train_ds) -> tuple[torch.Tensor, torch.Tensor]:
    """40 real, normalised CIFAR-10 training images and their int64 labels."""
    x, y = next(iter(DataLoader(train_ds, batch_size=40)))
    return x, y


def pairs(x: torch.Tensor, y: torch.Tensor, size: int = 20) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def wrap(model, batches, **kwargs):
    return SafeBox.wrap(model, batches, val_loader=kwargs.pop("val_loader", batches), epochs=1, max_accuracy_drop=100,
                        device="cpu", progress=False, **NORM, **kwargs)


def bad_loaders(x, y) -> dict[str, tuple[list, str]]:
    """Each malformed loader, and what the error must say (the problem and the fix)."""
    return {
        "3-tuples": ([(a, b, b) for a, b in pairs(x, y)], r"yield \(images, labels\) pairs.*holds 3 items.*collate_fn"),
        "int32 labels": (pairs(x, y.int()), r"int64.*torch\.int32.*\.long\(\)"),
        "bool labels": (pairs(x, y > 4), r"int64.*torch\.bool.*\.long\(\)"),
        "fewer labels": ([(x[:20], y[:19]), (x[20:], y[20:])], r"as many labels as images.*20 images and 19 labels"),
        "empty batch": ([(x[:0], y[:0]), *pairs(x, y)], r"as many labels as images \(at least one\).*0 images"),
        "float64 images": (pairs(x.double(), y), r"float32 images.*torch\.float64.*\.float\(\)"),
        "0-255 pixels": (pairs((x * 60 + 120).round().clamp(0, 255), y), r"raw 0–255 pixels.*ToTensor\(\)"),
    }


@pytest.mark.parametrize("case", list(bad_loaders(torch.zeros(40, 3, 4, 4), torch.zeros(40, dtype=torch.long))))
def test_wrap_names_a_malformed_loader_before_training(case, images):
    loader, message = bad_loaders(*images)[case]
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InputError, match=message) as info:
        wrap(model, loader)
    assert isinstance(info.value, SdboxError) and isinstance(info.value, ValueError)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # refused before any training step


@pytest.mark.parametrize("case", ["3-tuples", "int32 labels", "bool labels", "fewer labels", "float64 images"])
def test_distill_names_a_malformed_loader(case, images):
    loader, message = bad_loaders(*images)[case]
    with pytest.raises(InputError, match=message):
        distill(TinyNet(), TinyNet().eval(), loader, epochs=1, progress=False)


def test_a_shape_change_mid_loader_is_named_in_distill(images):
    x, y = images
    loader = [(x[:20], y[:20]), (x[20:, :, :16, :16], y[20:])]
    with pytest.raises(InputError, match=r"first batch's shape \(3, 32, 32\).*later batch has \(3, 16, 16\).*one size"):
        distill(TinyNet(), None, loader, epochs=1, progress=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_wrap_refuses_a_model_that_is_not_float32(dtype, images):
    model = TinyNet().to(dtype)
    with pytest.raises(InputError, match=rf"float32 model.*{dtype}.*model\.float\(\)"):
        wrap(model, pairs(*images))


def test_uint8_labels_still_work(images):
    x, y = images
    result = distill(TinyNet(), TinyNet().eval(), pairs(x, y.to(torch.uint8)), epochs=1, progress=False)
    assert len(result.losses) == 1 and torch.isfinite(torch.tensor(result.losses)).all()


# ------------------------------------------------------------------- item 10: non-finite distill
def test_distill_refuses_a_nan_batch_instead_of_returning_a_nan_student(images):
    x, y = images
    nan_batch = x[20:].clone()
    nan_batch[:, :, :4, :4] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"distillation loss became nan in epoch 1.*lower `lr`.*NaN or infinite") as info:
        distill(TinyNet(), TinyNet().eval(), [(x[:20], y[:20]), (nan_batch, y[20:])], epochs=1, progress=False)
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, SdboxError)


def test_distill_refuses_a_huge_lr(images):
    with pytest.raises(NonFiniteLossError, match=r"lower `lr` \(now 1e\+30"):
        distill(TinyNet(), TinyNet().eval(), pairs(*images), lr=1e30, epochs=2, progress=False)


def test_distill_checks_the_weights_when_the_last_step_breaks_them(images):
    """One batch: its loss is computed before the step that breaks the weights, so it is finite."""
    x, y = images
    student = TinyNet()
    overflowing = torch.optim.SGD(student.parameters(), lr=1e38, weight_decay=1e38)  # 1e38 · 1e38·w is inf in float32
    with pytest.raises(NonFiniteLossError, match=r"of the student's weight tensors became NaN or infinite in epoch 1.*lower `lr`"):
        distill(student, None, [(x[:20], y[:20])], optimizer=overflowing, epochs=1, progress=False)


def test_an_adam_step_that_overflows_float32_is_named(images):
    with pytest.raises(NonFiniteLossError, match=r"step overflowed float32.*lower `lr` \(now 1e\+39"):
        distill(TinyNet(), None, pairs(*images), lr=1e39, epochs=1, progress=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=1.5), r"`alpha` in \[0, 1\]"), (dict(T=0), r"`T` to be a finite number > 0"),
    (dict(lr=float("nan")), r"`lr` to be a finite number > 0"), (dict(epochs=0), r"`epochs` to be an integer ≥ 1"),
])
def test_distill_arguments_are_named_errors(kwargs, message, images):
    with pytest.raises(InputError, match=message):
        distill(TinyNet(), None, pairs(*images), progress=False, **kwargs)


# ========================================================================== the command line
HOSTILE = "\x1b]52;c;SGVsbG8=\x07"  # OSC 52: writes the reader's clipboard
RAW_CONTROLS = ("\x1b", "\x07", "\u202e")


@pytest.fixture(scope="module")
def timm_bundle(tmp_path_factory) -> tuple[Path, Path]:
    """An untrained timm test_resnet box for CIFAR-10 inputs and its key: no training needed to
    test what the CLI checks and prints."""
    import timm

    root = tmp_path_factory.mktemp("cli")
    key = Key.generate((3, 32, 32), 0.5, CIFAR10_MEAN, CIFAR10_STD)
    key.save(root / "owner.key")
    torch.manual_seed(0)
    config = BoxConfig(architecture="test_resnet", num_classes=10, input_size=(3, 32, 32), mean=CIFAR10_MEAN, std=CIFAR10_STD,
                       key_fingerprint=key.fingerprint, model_library="timm", interpolation="bilinear", crop_pct=1.0,
                       crop_mode="center", label_names=["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])
    SafeBox(timm.create_model("test_resnet", num_classes=10), config).save_pretrained(root / "box")
    return root / "box", root / "owner.key"


def hostile_copy(bundle: Path, folder: Path, **edits) -> Path:
    """A copy of ``bundle`` whose config.json carries hostile strings (still a valid config)."""
    shutil.copytree(bundle, folder)
    config = json.loads((folder / "config.json").read_text())
    config["label_names"][0] = edits.get("label", HOSTILE)
    config["sdbox"]["normalization_source"] = "\x1b[2J\x1b[Hall clear"
    config["sdbox"]["report"] = {"\x1b]0;retitled\x07": {"a": 1}}
    config["sdbox"]["fidelity"] = {"\u202eevil": 1.0}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# --------------------------------------------------------------- item 5: untrusted strings, escaped
def test_inspect_prints_a_hostile_bundle_escaped(timm_bundle, tmp_path, capsys):
    folder = hostile_copy(timm_bundle[0], tmp_path / "box")
    read_config(folder / "config.json")  # the loader accepts it: only the printing can defend
    assert main(["inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in RAW_CONTROLS)
    assert r"\x1b]52;c;SGVsbG8=\x07" in out and r"\x1b[2J" in out and r"\u202eevil" in out and r"\x1b]0;retitled" in out
    assert main(["inspect", str(folder), "--json"]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in RAW_CONTROLS) and json.loads(out)["label_names"][0] == HOSTILE


def test_error_lines_and_warnings_are_escaped(timm_bundle, tmp_path, capsys):
    assert main(["inspect", str(tmp_path / f"no{HOSTILE}box")]) == 1  # a path quoted in the error line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no config.json" in err and not any(c in err for c in RAW_CONTROLS)
    folder = Path(shutil.copytree(timm_bundle[0], tmp_path / "box"))
    shutil.copy(timm_bundle[1], folder / f"{HOSTILE}.key")  # a file name quoted in a warning
    assert main(["inspect", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "secret file" in err and r"\x1b]52" in err and not any(c in err for c in RAW_CONTROLS)


def test_sdbox_push_warning_is_escaped(timm_bundle, tmp_path, fake_hub, recwarn):
    folder = Path(shutil.copytree(timm_bundle[0], tmp_path / "box"))
    shutil.copy(timm_bundle[1], folder / f"{HOSTILE}.key")
    assert main(["push", str(folder), "org/box"]) == 0
    shown = " ".join(str(w.message) for w in recwarn)
    assert "Leaving key file" in shown and not any(c in shown for c in RAW_CONTROLS)
    assert set(fake_hub.commits[0][1]) == {"config.json", "model.safetensors", "README.md"}


def test_inspect_says_when_push_would_refuse_the_folder(timm_bundle, tmp_path, capsys):
    folder = Path(shutil.copytree(timm_bundle[0], tmp_path / "box"))
    (tmp_path / "elsewhere.txt").write_text("not the bundle's")
    os.symlink(tmp_path / "elsewhere.txt", folder / "notes.txt")
    assert main(["inspect", str(folder)]) == 0
    assert "`sdbox push` would refuse this folder" in capsys.readouterr().err


# ------------------------------------------------------------------ item 9: card metadata first
@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    import timm
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "mine.safetensors"
    save_file(timm.create_model("test_resnet", num_classes=10).state_dict(), str(path))
    return path


def wrap_argv(tmp_path: Path, weights: Path, *extra: str) -> list[str]:
    return ["wrap", "test_resnet", "--weights", str(weights), "--data", str(DATA), "--out", str(tmp_path / "out"),
            "--key-out", str(tmp_path / "owner.key"), "--epochs", "1", "--limit", "20", "--no-progress", "--allow-low-accuracy", *extra]


def assert_refused_before_training(tmp_path: Path, capsys, *fragments: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sdbox wrap: error:") and "Traceback" not in err, err
    assert all(f in err for f in fragments), err
    assert not (tmp_path / "owner.key").exists() and not (tmp_path / "out").exists()  # nothing trained, nothing written


@pytest.mark.parametrize("flag, value, fragments", [
    ("--dataset-name", "CIFAR 10", ["--dataset-name", "'CIFAR 10'", "`CIFAR-10`", "would not load"]),
    ("--license", "MIT License", ["--license", "'MIT License'", "`apache-2.0`", "would not load"]),
])
def test_wrap_checks_card_metadata_before_training(flag, value, fragments, weights_file, tmp_path, capsys):
    assert main(wrap_argv(tmp_path, weights_file, flag, value)) == 1
    assert_refused_before_training(tmp_path, capsys, *fragments)


@pytest.mark.parametrize("dataset", ["cifar10", "uoft-cs/cifar10", "CIFAR-10", "CIFAR 10", "-cifar", "x" * 201, "ü", "a\x1bb"])
def test_the_cli_accepts_a_dataset_name_exactly_when_the_bundle_loader_does(dataset, timm_bundle, tmp_path):
    config = json.loads((timm_bundle[0] / "config.json").read_text())
    config["sdbox"]["datasets"] = [dataset]
    (tmp_path / "config.json").write_text(json.dumps(config))
    try:
        read_config(tmp_path / "config.json")
        loads = True
    except BundleError:
        loads = False
    try:
        check_card_metadata(None, dataset)
        accepted = True
    except InputError:
        accepted = False
    assert accepted == loads


# ------------------------------------------------------------- flags that raised raw tracebacks
@pytest.mark.parametrize("extra, fragments", [
    (["--mean", "0.5", "0.5"], ["--mean to give 1 or 3 values", "got 2"]),
    (["--std", "0.2", "0", "0.2"], ["--std to be finite numbers > 0"]),
    (["--input-size", "3", "0", "32"], ["--input-size to be 3 positive integers C H W", "(3, 0, 32)"]),
    (["--crop-pct", "3"], ["--crop-pct to be a number in (0, 2]"]),
    (["--device", "tpu"], ["--device", "'tpu'", "cpu"]),
    (["--limit", "-5"], ["--limit", "≥ 1", "got -5"]),
    (["--epochs", "0"], ["--epochs to be an integer ≥ 1"]),
    (["--lr", "nan"], ["--lr to be a finite number > 0"]),
])
def test_wrap_flags_are_checked_before_training(extra, fragments, weights_file, tmp_path, capsys):
    argv = wrap_argv(tmp_path, weights_file)
    if "--limit" in extra:
        argv = argv[: argv.index("--limit")] + argv[argv.index("--limit") + 2 :]
    assert main([*argv, *extra]) == 1
    assert_refused_before_training(tmp_path, capsys, *fragments)


def test_wrap_refuses_a_pickle_as_weights(tmp_path, capsys):
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.pt")
    assert main(wrap_argv(tmp_path, tmp_path / "model.pt")) == 1
    assert_refused_before_training(tmp_path, capsys, "--weights to be a safetensors state dict", "save_file(torch.load(")


def test_wrap_refuses_weights_of_another_model(tmp_path, capsys):
    from safetensors.torch import save_file

    save_file({"fc.weight": torch.zeros(10, 4)}, str(tmp_path / "other.safetensors"))
    assert main(wrap_argv(tmp_path, tmp_path / "other.safetensors")) == 1
    assert_refused_before_training(tmp_path, capsys, "do not fit test_resnet with 10 classes")


@pytest.mark.parametrize("where, fragments", [
    ("out", ["--out to be a folder", "is a file"]),
    ("checkpoint", ["--checkpoint-dir to be a folder", "is a file"]),
    ("key folder", ["--key-out's folder to be a folder"]),
    ("checkpoint in out", ["--checkpoint-dir outside --out"]),
    ("key beside a bundle", ["--key-out outside any bundle folder", "config.json"]),
    ("out holds a key", ["--out to hold no key or checkpoint", "old.key"]),
])
def test_wrap_checks_every_output_path_before_training(where, fragments, weights_file, timm_bundle, tmp_path, capsys):
    argv = wrap_argv(tmp_path, weights_file)
    if where == "out":
        (tmp_path / "out").write_text("a file")
    elif where == "checkpoint":
        (tmp_path / "ck").write_text("a file")
        argv += ["--checkpoint-dir", str(tmp_path / "ck")]
    elif where == "key folder":
        (tmp_path / "keys").write_text("a file")
        argv[argv.index("--key-out") + 1] = str(tmp_path / "keys" / "owner.key")
    elif where == "checkpoint in out":
        argv += ["--checkpoint-dir", str(tmp_path / "out" / "ck")]
    elif where == "key beside a bundle":
        shutil.copytree(timm_bundle[0], tmp_path / "old")
        argv[argv.index("--key-out") + 1] = str(tmp_path / "old" / "owner.key")
    elif where == "out holds a key":
        (tmp_path / "out").mkdir()
        shutil.copy(timm_bundle[1], tmp_path / "out" / "old.key")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and all(f in err for f in fragments), err
    assert not (tmp_path / "owner.key").exists()


# ----------------------------------------------------------------- item 10 on the command line
def distill_argv(timm_bundle, tmp_path, *extra: str) -> list[str]:
    return ["distill", str(timm_bundle[0]), "--key", str(timm_bundle[1]), "--data", str(DATA), "--student", "test_resnet",
            "--out", str(tmp_path / "student"), "--epochs", "1", "--limit", "20", "--batch-size", "10", "--no-progress", *extra]


def test_sdbox_distill_with_a_huge_lr_exits_1_in_one_line(timm_bundle, tmp_path, capsys):
    assert main(distill_argv(timm_bundle, tmp_path, "--lr", "1e30")) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("sdbox distill: error:") and "lower `lr` (now 1e+30" in err[-1]
    assert not (tmp_path / "student" / "model.safetensors").exists()  # no NaN student written


@pytest.mark.parametrize("extra, fragment", [(["--limit", "-5"], "--limit"), (["--device", "tpu"], "--device")])
def test_sdbox_distill_flags_are_checked_first(extra, fragment, timm_bundle, tmp_path, capsys):
    argv = distill_argv(timm_bundle, tmp_path)
    argv = [a for i, a in enumerate(argv) if not (a == extra[0] or (i and argv[i - 1] == extra[0]))]
    assert main([*argv, *extra]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


# ------------------------------------------------------------------ a public file is readable
def test_the_public_weights_file_gets_a_public_files_mode(timm_bundle, tmp_path):
    """safetensors writes its own 0600 temporary file; the bundle's weights and the distilled
    student's must end like config.json: 0644 under umask 022."""
    old_umask = os.umask(0o022)
    try:
        SafeBox.from_pretrained(timm_bundle[0]).save_pretrained(tmp_path / "box")
        assert main(distill_argv(timm_bundle, tmp_path)) == 0
    finally:
        os.umask(old_umask)
    for folder in (tmp_path / "box", tmp_path / "student"):
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in folder.glob("*.*")} == {
            name: "0o644" for name in ("config.json", "model.safetensors", "README.md") if (folder / name).exists()}
