"""Wrap checkpoints: what an interrupted wrap resumes from, and why it is guarded like the key.

``wrap_state.pt`` holds the key, the *unprotected original model*, the random copy T0, the
optimiser and the epochs so far: everything the box hides. So it is written like the key file
(owner-only, atomically, see :mod:`sdbox.files`), deleted after a successful wrap unless the
owner asks to keep it, and it records what it belongs to: the model's class and initial
weights, the settings, lr, epochs and the size of the training data. Resuming with anything else
would silently hand back another wrap's box and key, so it is refused, naming the difference.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
import torch.nn as nn

from .errors import CheckpointError
from .files import atomic_write
from .inputs import length
from .formats import CHECKPOINT_NAME
from .formats import CHECKPOINT_PARTS as PARTS
from .key import Key
_START_OVER = "point `checkpoint_dir` at an empty folder to start over"


def checkpoint_path(checkpoint_dir: str | os.PathLike) -> Path:
    return Path(checkpoint_dir) / CHECKPOINT_NAME


def belongs_to(model: nn.Module, settings: Any, lr: float, epochs: int, loader: Iterable) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: read from the model *before* any training."""
    return {
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_weights_sha256": weights_sha256(model),
        "settings": asdict(settings),
        "lr": float(lr),
        "epochs": int(epochs),
        "train_batches": length(loader),
        "train_images": length(getattr(loader, "dataset", None)),
    }


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 over every state_dict entry's name, dtype, shape and bytes (layout-independent)."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        flat = value.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()


def save(path: Path, payload: dict[str, Any]) -> None:
    """Owner-only, atomic: a crash leaves the previous epoch's checkpoint, never a torn one."""
    with atomic_write(path, secret=True) as f:
        torch.save(payload, f)


def epochs_done(path: Path, epochs: int) -> int | None:
    """The epochs a checkpoint of a wrap of ``epochs`` finished, or None (no file, unreadable, or
    started for another number of epochs).

    Reads only the pickled records: ``mmap=True`` maps the tensors (the model, the original and
    the optimiser, hundreds of MB for a large model) without reading them. :func:`load` reads and
    checks the whole file later and names what is wrong with a damaged one.
    """
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        done, started_for = payload["state"]["epoch"], payload["belongs_to"]["epochs"]
    except Exception:  # any unreadable file: load() names the problem and the fix
        return None
    return done if isinstance(done, int) and started_for == epochs else None


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint without unpickling code; a damaged file is a :class:`CheckpointError`."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn zip, a foreign pickle, a wrong type: torch raises many kinds
        raise CheckpointError(
            f"{path} is not a readable wrap checkpoint ({type(e).__name__}; truncated or damaged?): "
            f"delete it, or {_START_OVER}."
        ) from None
    if not isinstance(payload, dict) or any(part not in payload for part in PARTS):
        raise CheckpointError(f"{path} was not written by this version of sdbox's wrap: delete it, or {_START_OVER}.")
    state = payload["state"]
    if not (isinstance(state, dict) and isinstance(state.get("epoch"), int) and isinstance(state.get("epochs"), list)
            and isinstance(payload["belongs_to"], dict) and isinstance(payload["key"], dict)):
        raise CheckpointError(f"{path} holds a damaged wrap state (its epoch count, records or identity): delete it, or {_START_OVER}.")
    return payload


def stored_key(payload: dict[str, Any], path: Path) -> Key:
    try:
        return Key(payload["key"]["tensor"], payload["key"]["lam"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} holds a damaged key ({e}): delete it, or {_START_OVER}.") from None


def check_matches(payload: dict[str, Any], path: Path, key: Key, identity: dict[str, Any]) -> None:
    """Refuse to resume another wrap's checkpoint, naming the first field that differs."""
    if stored_key(payload, path).fingerprint != key.fingerprint:
        raise CheckpointError(
            f"The checkpoint in {path.parent} was made with another key: pass the key it was started "
            f"with (`key=Key.load(...)`), or {_START_OVER}."
        )
    for name, then, now in _differences(payload["belongs_to"], identity):
        change = "differs (it started from other weights)" if name == "model_weights_sha256" else f"was {then!r}, now {now!r}"
        raise CheckpointError(
            f"The checkpoint in {path.parent} belongs to another wrap: its `{name}` {change}. "
            f"Resume with the same model (its weights from before the interrupted wrap) and the same arguments, or {_START_OVER}."
        )


def _differences(saved: Any, now: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(field, saved value, current value) for each field that differs; settings field by field."""
    saved = saved if isinstance(saved, dict) else {}
    for name, value in now.items():
        then = saved.get(name)
        if isinstance(then, dict) and isinstance(value, dict):
            yield from ((f"{name}.{k}", then.get(k), v) for k, v in value.items() if then.get(k) != v)
        elif then != value:
            yield name, then, value


def remove(path: Path, remove_folder: bool) -> None:
    """Delete a finished wrap's checkpoint (it holds the key and the original model), and its
    folder when the wrap created it and nothing else is in it."""
    path.unlink(missing_ok=True)
    if remove_folder:
        with contextlib.suppress(OSError):
            path.parent.rmdir()
