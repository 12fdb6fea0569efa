"""Saving a bundle: nothing lost on a failed save, never two boxes mixed in one folder."""

from __future__ import annotations

import copy
import errno
import threading

import pytest

from sdbox import SafeBox


def test_a_failed_save_leaves_the_previous_bundle_loadable(wrapped, tiny_cls, tmp_path, monkeypatch):
    """huggingface_hub's save_pretrained deletes config.json before writing: on a full disk the
    folder used to be left without one."""
    folder = tmp_path / "box"
    wrapped.save_pretrained(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def full_disk(self, directory):
        (directory / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(SafeBox, "_save_pretrained", full_disk)
    with pytest.raises(OSError, match="No space left"):
        wrapped.save_pretrained(folder)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no staging folder, nothing half-written
    SafeBox.from_pretrained(folder, model_class=tiny_cls)  # checksum and all


def test_two_saves_into_one_folder_never_mix_two_boxes(wrapped, tiny_cls, tmp_path):
    other = copy.deepcopy(wrapped)
    for p in other.model.parameters():
        p.data.add_(0.01)
    folder = tmp_path / "box"
    errors = []

    def save(box):
        try:
            for _ in range(5):
                box.save_pretrained(folder)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=save, args=(b,)) for b in (wrapped, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    loaded = SafeBox.from_pretrained(folder, model_class=tiny_cls)  # the checksum names the weights beside it
    state = loaded.model.state_dict()
    assert any(all(state[k].equal(v) for k, v in box.model.state_dict().items()) for box in (wrapped, other))
