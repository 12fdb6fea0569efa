"""The key cannot leave by accident: it is never saved beside a bundle unless asked, and no
upload sdbox makes carries a key file (tested through huggingface_hub's real client)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sdbox import BundleError, Key
from sdbox.hub import push_folder

BUNDLE_FILES = {"config.json", "model.safetensors", "README.md"}


@pytest.fixture
def bundle(wrapped, tmp_path) -> Path:
    out = tmp_path / "out"
    wrapped.save_pretrained(out)
    return out


def test_a_key_is_not_saved_into_a_bundle_folder_unless_asked(wrapped, bundle):
    with pytest.raises(FileExistsError, match=r"holds a bundle .*would publish the key.*allow_bundle_folder=True"):
        wrapped.key.save(bundle / "owner.key")
    assert not (bundle / "owner.key").exists()
    assert Key.load(wrapped.key.save(bundle / "owner.key", allow_bundle_folder=True)).fingerprint == wrapped.key.fingerprint


def test_a_bundle_is_not_saved_into_a_folder_holding_a_key(wrapped, tmp_path):
    folder = tmp_path / "mixed"
    wrapped.key.save(folder / "secret.bin")  # any name: found by its content
    with pytest.raises(FileExistsError, match=r"holds a secret \(secret.bin: an sdbox key\).*allow_key_in_folder=True"):
        wrapped.save_pretrained(folder)
    assert not (folder / "config.json").exists()
    wrapped.save_pretrained(folder, allow_key_in_folder=True)
    assert (folder / "config.json").is_file()


def test_pushing_a_folder_leaves_every_key_file_out(wrapped, bundle, fake_hub):
    wrapped.key.save(bundle / "owner.key", allow_bundle_folder=True)
    shutil.copy(bundle / "owner.key", bundle / "backup.bin")  # a key under another name
    (bundle / "wrap_state.pt").write_bytes(b"checkpoint")  # wrap's checkpoint holds the key too
    (bundle / "figures").mkdir()
    (bundle / "figures" / "curve.svg").write_text("<svg/>")
    with pytest.warns(UserWarning, match="Leaving key file"):
        push_folder(bundle, "org/box", private=False, token="hf_owner")
    assert fake_hub.repos["org/box"]["visibility"] == "public"
    assert fake_hub.tokens("/api/repos/create", "/commit/") == {"hf_owner"}
    assert len(fake_hub.commits) == 1
    assert set(fake_hub.commits[0][1]) == BUNDLE_FILES | {"figures/curve.svg"}


def test_pushing_a_folder_that_is_no_bundle_is_refused_before_the_network(tmp_path, fake_hub):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BundleError, match="holds no config.json"):
        push_folder(tmp_path, "org/box")
    assert fake_hub.requests == []
