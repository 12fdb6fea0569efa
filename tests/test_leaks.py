"""Issue 20, items 1–3: what `sdbox push` and `push_folder` publish from a bundle folder that also
holds a key under a pattern-like name, a copied checkpoint, or a symlink to a secret.

The secrets are real: the key and the `wrap_state.pt` of one short wrap of a small CNN on real
CIFAR-10 images, kept with `keep_checkpoint=True`. Every test asserts on what reached the (fake)
Hub through huggingface_hub's real client: the files of the commit and their bytes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from conftest import TinyNet, loader
from sdbox import Key, SafeBox
from sdbox.cli import main
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD
from sdbox.errors import PublishError, SdboxError
from sdbox.hub import push_folder
from sdbox.publish import CHECKPOINT_FILE, KEY_FILE, PICKLED_KEY, UNCHECKED_PICKLE, find_secret_files, plan_upload, secret_kind

BUNDLE_FILES = {"config.json", "model.safetensors", "README.md"}


@pytest.fixture(scope="module")
def owner(train_ds, test_ds, tmp_path_factory) -> tuple[SafeBox, Path]:
    """A box wrapped for one epoch on 40 real images, and the checkpoint that wrap kept."""
    torch.manual_seed(0)
    checkpoints = tmp_path_factory.mktemp("ckpt")
    box = SafeBox.wrap(TinyNet(), loader(train_ds, batch_size=20, n=40), val_loader=loader(test_ds, n=20), epochs=1,
                       max_accuracy_drop=100, device="cpu", progress=False, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                       checkpoint_dir=checkpoints, keep_checkpoint=True)
    return box.eval(), Path(box.wrap_result.kept_checkpoint)


@pytest.fixture
def bundle(owner, tmp_path) -> Path:
    box, _ = owner
    box.save_pretrained(tmp_path / "box")
    box.key.save(tmp_path / "owner.key")  # where it belongs: next to the bundle, not in it
    return tmp_path / "box"


def assert_no_secret_uploaded(fake_hub, key: Key, windows) -> None:
    """One commit of the bundle's files, and no 64-byte run of the key in any uploaded byte."""
    assert len(fake_hub.commits) == 1
    uploaded = fake_hub.commits[0][1]
    assert set(uploaded) == BUNDLE_FILES
    key_windows = windows(key.tensor.numpy().tobytes())
    assert not any(w in data for data in uploaded.values() for w in key_windows)


# ----------------------------------------------------------------- 1. names that look like patterns
@pytest.mark.parametrize("name", ["owner[1]", "owner[backup]", "[!o]wner", "key*?.bin", "a]b[c"])
def test_a_key_named_like_an_fnmatch_pattern_is_left_out(name, owner, bundle, fake_hub, windows):
    box, _ = owner
    shutil.copy(bundle.parent / "owner.key", bundle / name)
    with pytest.warns(UserWarning, match=rf"Leaving key file.*{KEY_FILE}"):
        push_folder(bundle, "org/box")
    assert_no_secret_uploaded(fake_hub, box.key, windows)


def test_sdbox_push_leaves_out_a_key_named_owner_backup(owner, bundle, fake_hub, windows):
    box, _ = owner
    shutil.copy(bundle.parent / "owner.key", bundle / "owner[backup]")
    with pytest.warns(UserWarning, match=r"owner\[backup\]"):
        assert main(["push", str(bundle), "org/box", "--token", "hf_owner"]) == 0
    assert_no_secret_uploaded(fake_hub, box.key, windows)


# ------------------------------------------------------------------ 2. checkpoints under any name
@pytest.mark.parametrize("name", ["resume.pt", "wrap_state.pt.bak", "model.bin", "notes/old.ckpt"])
def test_a_copied_checkpoint_is_left_out_whatever_its_name(name, owner, bundle, fake_hub, windows):
    box, checkpoint = owner
    (bundle / name).parent.mkdir(exist_ok=True)
    shutil.copy(checkpoint, bundle / name)
    assert secret_kind(bundle / name) == CHECKPOINT_FILE
    with pytest.warns(UserWarning, match="wrap checkpoint"):
        push_folder(bundle, "org/box")
    assert_no_secret_uploaded(fake_hub, box.key, windows)


def test_a_legacy_torch_pickle_or_a_pickled_key_is_found_by_content(owner, tmp_path):
    box, checkpoint = owner
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    torch.save(payload, tmp_path / "legacy", _use_new_zipfile_serialization=False)
    torch.save(box.key, tmp_path / "key.pt")
    torch.save(box.model.state_dict(), tmp_path / "weights.pt")  # a plain state dict: no sdbox secret in it
    assert secret_kind(tmp_path / "legacy") == CHECKPOINT_FILE
    assert secret_kind(tmp_path / "key.pt") == PICKLED_KEY
    assert secret_kind(tmp_path / "weights.pt") is None
    box.save_pretrained(tmp_path / "b")
    assert [secret_kind(p) for p in sorted((tmp_path / "b").iterdir())] == [None, None, None]


def test_a_pickle_too_large_to_read_through_is_left_out_unchecked(tmp_path, monkeypatch):
    import sdbox.publish

    names = {f"layer{i}.weight": i for i in range(500)}  # a pickle of some kB, no sdbox secret in it
    torch.save(names, tmp_path / "zip.pt")
    torch.save(names, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert secret_kind(tmp_path / "zip.pt") is None and secret_kind(tmp_path / "legacy.pt") is None
    monkeypatch.setattr(sdbox.publish, "MAX_PICKLE_BYTES", 1000)
    assert secret_kind(tmp_path / "zip.pt") == UNCHECKED_PICKLE
    assert secret_kind(tmp_path / "legacy.pt") == UNCHECKED_PICKLE
    (tmp_path / "weights.bin").write_bytes(b"\x80\x02" + bytes(5000))  # a pickle header, then no pickle: cheap, not a secret
    assert secret_kind(tmp_path / "weights.bin") is None


def test_inspect_warns_about_a_copied_checkpoint(owner, bundle, capsys):
    _, checkpoint = owner
    shutil.copy(checkpoint, bundle / "resume.pt")
    assert main(["inspect", str(bundle)]) == 0
    err = capsys.readouterr().err
    assert "resume.pt" in err and "wrap checkpoint" in err


# ------------------------------------------------------------------------------------ 3. symlinks
@pytest.mark.parametrize("target", ["../owner.key", "sub/owner.key", "sub/resume"])
def test_a_symlink_to_a_secret_is_refused_before_the_network(target, owner, bundle, fake_hub):
    _, checkpoint = owner
    (bundle / "sub").mkdir()
    shutil.copy(bundle.parent / "owner.key", bundle / "sub" / "owner.key")
    shutil.copy(checkpoint, bundle / "sub" / "resume")
    os.symlink(target, bundle / "notes.txt")
    with pytest.raises(PublishError, match=r"'notes.txt' is a symlink to .*(sdbox key|wrap checkpoint).*Remove it"):
        push_folder(bundle, "org/box")
    assert fake_hub.requests == []
    assert "notes.txt" in find_secret_files(bundle)


def test_sdbox_push_refuses_a_symlink_to_the_key_in_one_line(bundle, fake_hub, capsys):
    os.symlink("../owner.key", bundle / "notes.txt")
    assert main(["push", str(bundle), "org/box"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "notes.txt" in err and "Traceback" not in err
    assert fake_hub.requests == []


def test_symlinks_out_of_the_folder_to_nothing_or_to_a_folder_are_refused(bundle, tmp_path):
    (tmp_path / "outside.txt").write_text("harmless, but not the bundle's")
    for name, target, why in [("a", tmp_path / "outside.txt", "outside the folder"), ("b", bundle / "gone", "to nothing"),
                              ("c", tmp_path, "to a folder")]:
        os.symlink(target, bundle / name)
        with pytest.raises(PublishError, match=why):
            plan_upload(bundle)
        os.unlink(bundle / name)


def test_a_symlink_to_a_plain_file_inside_uploads_that_file(bundle, fake_hub):
    (bundle / "docs").mkdir()
    (bundle / "docs" / "curve.svg").write_text("<svg/>")
    os.symlink("docs/curve.svg", bundle / "curve.svg")
    push_folder(bundle, "org/box")
    uploaded = fake_hub.commits[0][1]
    assert set(uploaded) == BUNDLE_FILES | {"docs/curve.svg", "curve.svg"}
    assert uploaded["curve.svg"] == b"<svg/>"


def test_hidden_files_are_never_uploaded(bundle, fake_hub):
    (bundle / ".notes").write_text("draft")
    (bundle / ".git").mkdir()
    (bundle / ".git" / "config").write_text("[core]")
    os.symlink("../owner.key", bundle / ".link")  # hidden: not uploaded, so not refused
    push_folder(bundle, "org/box")
    assert set(fake_hub.commits[0][1]) == BUNDLE_FILES


def test_push_to_hub_uploads_the_three_bundle_files_only(owner, fake_hub, windows, tmp_path, monkeypatch):
    box, checkpoint = owner
    monkeypatch.chdir(tmp_path)  # secrets in the working folder, where a relative save would land
    box.key.save("owner.key")
    shutil.copy(checkpoint, "resume.pt")
    box.push_to_hub("org/box", token="hf_owner")
    assert_no_secret_uploaded(fake_hub, box.key, windows)


def test_publish_error_is_an_sdbox_error_and_an_os_error():
    assert issubclass(PublishError, SdboxError) and issubclass(PublishError, OSError)
