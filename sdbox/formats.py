"""The files sdbox writes: their names, their format markers and how each is recognised — without torch.

``sdbox inspect``, the secret-file checks before a push and the CLI's first lines read files
without running a model; keeping what they need here, free of torch, lets them answer in a
fraction of a second instead of waiting seconds for torch to import. The modules that write
and fully validate each file (:mod:`.config`, :mod:`.key`, :mod:`.checkpoint`, :mod:`.box`)
take their names and markers from here, so a name is defined once.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

# A bundle: what save_pretrained writes and timm's ``local-dir:`` reads.
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
BUNDLE_MARKERS = (CONFIG_NAME, WEIGHTS_NAME)  # files that make a folder a bundle: no key goes beside them
MAX_CONFIG_BYTES = 16 << 20  # a config with a full protection report is a few kB

# A wrap checkpoint, and what every one holds (a copy under any name is recognised by these parts).
CHECKPOINT_NAME = "wrap_state.pt"
CHECKPOINT_PARTS = ("model", "original", "random", "optimizer", "scheduler", "state", "key", "belongs_to")

# A key file: a safetensors file whose metadata says so.
KEY_FORMAT = "sdbox-key"
KEY_FORMAT_VERSION = 2  # 2: the file may carry keyed normalisation tensors ("norm/<module>.<tensor>") beside "key"
MAX_KEY_HEADER_BYTES = 1 << 20
# Bounds on an input (C, H, W), hence on a key: generous for image classifiers (multispectral
# channels, 2048-pixel sides), small enough that a hostile file cannot make sdbox allocate
# gigabytes. A bundle's input_size obeys the same bounds.
MAX_CHANNELS = 64
MAX_SIDE = 2048


def is_key_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an sdbox key file, judged by its header (the name may be anything)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return False
            size = struct.unpack("<Q", head)[0]
            if size > MAX_KEY_HEADER_BYTES:
                return False
            header = json.loads(f.read(size))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(header, dict) and isinstance(header.get("__metadata__"), dict) and header["__metadata__"].get("format") == KEY_FORMAT


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (what config.json's `weights_sha256` records)."""
    h = hashlib.sha256()
    with open(Path(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
