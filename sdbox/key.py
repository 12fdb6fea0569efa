"""The secret: a random key image κ and its mixing weight λ.

κ is drawn from the operating system's secure random source (``os.urandom``), never from a
seeded generator: a key that anyone can re-create by re-running a script protects nothing (the
official SDB code draws its key under ``np.random.seed(0)``). It is uniform noise in pixel space
[0, 1], mapped into the model's input space with the model's own mean/std, so that
``mix(x, κ, λ)`` works on the normalised tensors the model already eats.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import KeyFileError

KEY_FORMAT = "sdbox-key"
KEY_FORMAT_VERSION = 1


def _check_lam(lam: float) -> float:
    lam = float(lam)
    if not 0.0 < lam < 1.0:
        raise ValueError(f"Expected `lam` in (0, 1), but got {lam}.")
    return lam


@dataclass(frozen=True, eq=False)
class Key:
    """A key κ of shape (C, H, W) in the model's input space, with its mixing weight λ."""

    tensor: torch.Tensor
    lam: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.tensor, torch.Tensor) or self.tensor.dim() != 3:
            raise ValueError(
                "Expected the key tensor to have shape (C, H, W), "
                f"but got {getattr(self.tensor, 'shape', type(self.tensor))}."
            )
        object.__setattr__(self, "tensor", self.tensor.detach().to("cpu", torch.float32).contiguous())
        object.__setattr__(self, "lam", _check_lam(self.lam))

    @classmethod
    def generate(
        cls,
        shape: Sequence[int],
        lam: float = 0.5,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> "Key":
        """Draw a fresh key: uniform pixel noise from ``os.urandom``, normalised with mean/std."""
        if len(shape) != 3 or any(int(s) <= 0 for s in shape):
            raise ValueError(f"Expected `shape` to be (C, H, W) with positive sizes, but got {tuple(shape)}.")
        c, h, w = (int(s) for s in shape)
        raw = np.frombuffer(os.urandom(4 * c * h * w), dtype=np.uint32).reshape(c, h, w)
        pixels = torch.from_numpy(raw.astype(np.float64) / 2.0**32).float()  # uniform in [0, 1)
        return cls(normalize(pixels, mean, std), lam)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.tensor.shape)  # type: ignore[return-value]

    @property
    def fingerprint(self) -> str:
        """SHA-256 over a format tag, λ and the key's exact float32 bytes.

        Public: it lets a box check that a key is its own. Recovering κ from it means inverting
        SHA-256 over ~3 KiB+ of OS randomness, which is not feasible.
        """
        h = hashlib.sha256()
        h.update(f"{KEY_FORMAT}/v{KEY_FORMAT_VERSION}".encode())
        h.update(struct.pack("<d", self.lam))
        h.update(json.dumps(list(self.shape)).encode())
        h.update(self.tensor.numpy().tobytes())
        return h.hexdigest()

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the key as safetensors, readable by its owner only (mode 0600).

        Refuses to replace an existing file unless ``overwrite=True``: losing a key that a box
        was wrapped with locks its knowledge away for good.
        """
        path = Path(path)
        metadata = {
            "format": KEY_FORMAT,
            "format_version": str(KEY_FORMAT_VERSION),
            "lam": repr(self.lam),
            "shape": json.dumps(list(self.shape)),
            "space": "model_input",  # normalised with the model's mean/std, not raw pixels
            "fingerprint": self.fingerprint,
        }
        data = st_save({"key": self.tensor}, metadata=metadata)
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"Refusing to overwrite the key file {path}: pass `overwrite=True` if you really "
                "mean to replace it (the old key stops opening boxes wrapped with it)."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Key":
        """Read a key written by :meth:`save`, checking its format and integrity."""
        path = Path(path)
        if not path.is_file():
            raise KeyFileError(f"No key file at {path}: pass the path that `Key.save` wrote.")
        raw = path.read_bytes()
        try:
            tensors = st_load(raw)
            header_len = struct.unpack("<Q", raw[:8])[0]
            metadata = json.loads(raw[8 : 8 + header_len]).get("__metadata__") or {}
        except (SafetensorError, struct.error, ValueError, UnicodeDecodeError) as e:
            raise KeyFileError(
                f"{path} is not a readable sdbox key (corrupt or truncated: {e}). "
                "Restore it from your backup; a key cannot be re-derived."
            ) from None
        if metadata.get("format") != KEY_FORMAT or "key" not in tensors:
            raise KeyFileError(f"{path} is a safetensors file but not an sdbox key: pass the file `Key.save` wrote.")
        version = int(metadata.get("format_version", "0"))
        if version > KEY_FORMAT_VERSION:
            raise KeyFileError(
                f"{path} has key format version {version}, newer than this sdbox understands "
                f"({KEY_FORMAT_VERSION}): upgrade sdbox."
            )
        try:
            key = cls(tensors["key"], float(metadata["lam"]))
        except (KeyError, ValueError) as e:
            raise KeyFileError(f"{path} has a damaged key header ({e}): restore it from your backup.") from None
        if metadata.get("fingerprint") != key.fingerprint:
            raise KeyFileError(
                f"{path} fails its integrity check (its bytes do not match its stored fingerprint): "
                "the file was altered; restore it from your backup."
            )
        return key

    def __repr__(self) -> str:  # never print the secret itself
        return f"Key(shape={self.shape}, lam={self.lam}, fingerprint={self.fingerprint[:12]}…)"


def normalize(
    pixels: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None
) -> torch.Tensor:
    """Map a (C, H, W) pixel-space image in [0, 1] into model input space: (p − mean) / std."""
    if mean is None and std is None:
        return pixels
    c = pixels.shape[0]
    mean_t = torch.as_tensor(mean if mean is not None else [0.0] * c, dtype=torch.float32)
    std_t = torch.as_tensor(std if std is not None else [1.0] * c, dtype=torch.float32)
    if mean_t.numel() != c or std_t.numel() != c:
        raise ValueError(f"Expected `mean` and `std` with {c} values (one per channel), but got {mean_t.numel()} and {std_t.numel()}.")
    return (pixels - mean_t.view(c, 1, 1)) / std_t.view(c, 1, 1)
