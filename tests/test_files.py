"""Every file sdbox writes: atomic, owner-only where it holds a secret, never through a planted
name, durable (fsync), and no temporary file left behind on failure — Ctrl-C included."""

from __future__ import annotations

import os
import stat

import pytest

import sdbox.files
from sdbox import Key
from sdbox.benchmark.store import write_json
from sdbox.files import atomic_path, atomic_write, write_bytes


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_key_save_does_not_follow_a_symlink_planted_at_the_old_temp_name(tmp_path):
    target = tmp_path / "attacker.txt"
    target.write_bytes(b"")
    (tmp_path / "owner.key.tmp").symlink_to(target)
    key = Key.generate((3, 4, 4))
    key.save(tmp_path / "owner.key")
    assert target.read_bytes() == b"", "the key was written through the planted link"
    assert Key.load(tmp_path / "owner.key").fingerprint == key.fingerprint


def test_key_save_over_a_symlink_replaces_the_link_not_its_target(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"precious")
    (tmp_path / "owner.key").symlink_to(target)
    Key.generate((3, 4, 4)).save(tmp_path / "owner.key", overwrite=True)
    assert target.read_bytes() == b"precious"
    assert not (tmp_path / "owner.key").is_symlink()
    assert stat.S_IMODE((tmp_path / "owner.key").stat().st_mode) == 0o600


def test_a_stale_world_readable_temp_file_does_not_make_a_secret_readable(tmp_path):
    stale = tmp_path / "owner.key.tmp"
    stale.write_bytes(b"old")
    stale.chmod(0o644)
    Key.generate((3, 4, 4)).save(tmp_path / "owner.key")
    assert stat.S_IMODE((tmp_path / "owner.key").stat().st_mode) == 0o600
    assert stale.read_bytes() == b"old"  # never reused


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_an_interrupted_key_save_leaves_neither_key_nor_temp_file(tmp_path, monkeypatch, interrupt):
    def fail(*args, **kwargs):
        raise interrupt("killed before the rename")

    monkeypatch.setattr(sdbox.files.os, "replace", fail)
    monkeypatch.setattr(sdbox.files.os, "link", fail)
    with pytest.raises(interrupt):
        Key.generate((3, 4, 4)).save(tmp_path / "owner.key", overwrite=True)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b"half")
            raise RuntimeError("writer crashed")
    assert path.read_text() == "old" and leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert path.read_text() == "old" and leftovers(tmp_path) == []


def test_secret_files_are_owner_only_and_public_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_bytes(tmp_path / "secret", b"k", secret=True)
        write_bytes(tmp_path / "public", b"p")
        write_json(tmp_path / "bench" / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "public").stat().st_mode) == 0o644
    assert (tmp_path / "bench" / "r.json").read_text().strip().startswith("{")


def test_writes_are_fsynced_file_and_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(sdbox.files.os, "fsync", lambda fd: (synced.append(os.path.isdir(f"/proc/self/fd/{fd}")), real(fd)))
    write_bytes(tmp_path / "f", b"x")
    assert synced == [False, True]  # the data, then the folder that holds the new name


def test_overwrite_false_refuses_a_file_that_appears_during_the_write(tmp_path):
    path = tmp_path / "owner.key"
    with pytest.raises(FileExistsError):
        with atomic_write(path, secret=True, overwrite=False) as f:
            f.write(b"new")
            path.write_bytes(b"someone else's")
    assert path.read_bytes() == b"someone else's" and leftovers(tmp_path) == []


def test_ctrl_c_during_a_torch_save_is_raised_after_a_complete_file(tmp_path):
    """The CI failure this guards: SIGINT inside torch.save left a torn zip and a RuntimeError, not KeyboardInterrupt."""
    import signal

    import torch

    class InterruptsWhilePickled:
        def __reduce__(self):
            os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of torch's zip writer
            return (dict, ())

    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "state.pt", secret=True) as f:
            torch.save({"weights": torch.arange(1000.0), "marker": InterruptsWhilePickled()}, f)
    assert torch.equal(torch.load(tmp_path / "state.pt", weights_only=False)["weights"], torch.arange(1000.0))
    assert leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
