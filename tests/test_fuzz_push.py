"""Property-based test of what `push_folder` (`sdbox push`) publishes from a folder it did not write.

Each example builds a bundle folder, then adds files under names drawn from characters fnmatch
and shells treat specially (``[ ] * ? !``, spaces, non-ASCII, a right-to-left mark) in plain and
odd-named subfolders: plain files, copies of a real key file, of a real wrap checkpoint (torch's
zip format), of the same checkpoint in torch's legacy pickle format, of a pickled ``Key``, and
symlinks to each of them, inside the folder or outside it, or to nothing. Hidden names (a leading
``.``) are drawn too. The folder is pushed through huggingface_hub's real client to the fake Hub
of ``tests/fake_hub.py``, and the outcome is compared with what the rules say must happen:

* a symlink that is not hidden and leads out of the folder, to nothing or to a secret: the push
  is refused with PublishError, and no request reaches the Hub;
* otherwise one commit of the bundle and of exactly the plain files and symlinks to plain files
  inside, none of them hidden, and no 64-byte run of the key in any uploaded byte.

The oracle is the list of what was planted, not sdbox's own classification. CI runs
``SDBOX_FUZZ_EXAMPLES`` examples (default 100, derandomised so a run is repeatable).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub.utils._http import default_client_factory
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import TinyNet, key_windows, loader
from fake_hub import FakeHub
from sdbox import SafeBox
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD
from sdbox.errors import PublishError
from sdbox.hub import push_folder

EXAMPLES = int(os.environ.get("SDBOX_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize="SDBOX_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
BUNDLE_FILES = {"config.json", "model.safetensors", "README.md"}
SECRETS = ("key", "checkpoint", "legacy_checkpoint", "pickled_key")
# Symlink kinds: where the link points. "plain_inside" is the only one a push may follow.
LINKS = ("link_plain_inside", "link_plain_outside", "link_dangling", *(f"link_{s}_{w}" for s in SECRETS for w in ("inside", "outside")))
NAME = st.text(st.sampled_from("ab1_-[]*?! é\u202e."), min_size=1, max_size=10).filter(lambda n: n not in (".", "..") and n != "sub")
FOLDER = st.sampled_from(["", "sub", "[x]", "a*b", "?!", ".hidden"])


@dataclass(frozen=True)
class Entry:
    folder: str
    name: str
    kind: str  # "plain", one of SECRETS, or one of LINKS

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.name}" if self.folder else self.name

    @property
    def hidden(self) -> bool:
        return any(part.startswith(".") for part in self.path.split("/"))


ENTRY = st.builds(Entry, FOLDER, NAME, st.sampled_from(("plain", *SECRETS, *LINKS)))
# Half the examples draw no link a push refuses, so that half of them reach the upload.
PUSHABLE_ENTRY = st.builds(Entry, FOLDER, NAME, st.sampled_from(("plain", *SECRETS, "link_plain_inside")))


@pytest.fixture(scope="module")
def planted(train_ds, test_ds, tmp_path_factory) -> dict[str, object]:
    """The secrets of one real short wrap (its key file, its kept checkpoint, that checkpoint in
    torch's legacy format, the Key pickled) and its bundle, as bytes to plant."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("planted")
    box = SafeBox.wrap(TinyNet(), loader(train_ds, batch_size=20, n=40), val_loader=loader(test_ds, n=20), epochs=1,
                       max_accuracy_drop=100, device="cpu", progress=False, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                       checkpoint_dir=root / "ckpt", keep_checkpoint=True)
    box.eval().save_pretrained(root / "bundle")
    box.key.save(root / "owner.key")
    checkpoint = Path(box.wrap_result.kept_checkpoint)
    torch.save(torch.load(checkpoint, weights_only=True), root / "legacy", _use_new_zipfile_serialization=False)
    torch.save(box.key, root / "pickled_key")
    return {
        "bundle": root / "bundle",
        "bytes": {"key": (root / "owner.key").read_bytes(), "checkpoint": checkpoint.read_bytes(),
                  "legacy_checkpoint": (root / "legacy").read_bytes(), "pickled_key": (root / "pickled_key").read_bytes()},
        "windows": key_windows(box.key.tensor.numpy().tobytes()),
    }


def build(workdir: Path, planted: dict, entries: list[Entry]) -> Path:
    """The bundle folder with ``entries`` planted in it (their link targets in a store inside it,
    or beside it for the ``_outside`` kinds)."""
    folder = Path(shutil.copytree(planted["bundle"], workdir / "box"))
    for where, base in (("inside", folder / "sub"), ("outside", workdir / "outside")):
        base.mkdir()
        (base / "plain.txt").write_text(f"plain text {where}")
        for secret in SECRETS:
            (base / f"{secret}.bin").write_bytes(planted["bytes"][secret])
    for entry in entries:
        path = folder / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind == "plain":
            path.write_text(f"notes {entry.path}")
        elif entry.kind in SECRETS:
            path.write_bytes(planted["bytes"][entry.kind])
        elif entry.kind == "link_dangling":
            os.symlink(workdir / "nothing-here", path)
        else:
            what, where = entry.kind.removeprefix("link_").rsplit("_", 1)
            target = (folder / "sub" if where == "inside" else workdir / "outside") / ("plain.txt" if what == "plain" else f"{what}.bin")
            os.symlink(os.path.relpath(target, path.parent), path)
    return folder


def unique_paths(entries: list[Entry]) -> bool:
    """No two entries at one path, and no file named like a subfolder (`sub` is the link store)."""
    paths = [e.path for e in entries]
    return len(set(paths)) == len(paths) and not {e.name for e in entries if not e.folder} & {e.folder for e in entries}


@FUZZ
@given(entries=(st.lists(ENTRY, min_size=1, max_size=8) | st.lists(PUSHABLE_ENTRY, min_size=1, max_size=8)).filter(unique_paths))
def test_push_publishes_exactly_the_plain_files_and_never_a_secret(entries, planted):
    hub = FakeHub()
    huggingface_hub.set_client_factory(hub.client)
    workdir = Path(tempfile.mkdtemp())
    try:
        folder = build(workdir, planted, entries)
        visible = [e for e in entries if not e.hidden]
        refused = [e for e in visible if e.kind in LINKS and e.kind != "link_plain_inside"]
        if refused:
            event("refused: a symlink out, to nothing or to a secret")
            with pytest.raises(PublishError, match="is a symlink to"):
                push_folder(folder, "org/box")
            assert hub.requests == []
            return
        event(f"uploaded, {sum(e.kind in SECRETS for e in visible)} planted secret(s) visible")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the left-out warning; what was left out is checked below
            push_folder(folder, "org/box")
        uploaded = hub.commits[0][1]
        store = {"sub/plain.txt"}  # the link store's plain file is a plain file inside too
        expected = BUNDLE_FILES | store | {e.path for e in visible if e.kind in ("plain", "link_plain_inside")}
        assert len(hub.commits) == 1 and set(uploaded) == expected
        assert not any(w in data for data in uploaded.values() for w in planted["windows"])
    finally:
        huggingface_hub.set_client_factory(default_client_factory)
        shutil.rmtree(workdir)
