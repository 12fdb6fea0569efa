"""The secret: a random key image κ, its mixing weight λ, and the keyed normalisation state.

κ is drawn from the operating system's secure random source (``os.urandom``), never from a
seeded generator: a key that anyone can re-create by re-running a script protects nothing (the
official SDB code draws its key under ``np.random.seed(0)``). It is uniform noise in pixel space
[0, 1], mapped into the model's input space with the model's own mean/std, so that
``mix(x, κ, λ)`` works on the normalised tensors the model already eats.

A wrap adds the keyed normalisation state (:mod:`sdbox.keyed_norm`) that only the keyed stream
reads: it is as secret as κ, so it travels in the key file and never in the public bundle.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import KeyFileError
from .files import write_bytes
from .formats import BUNDLE_MARKERS, KEY_FORMAT, KEY_FORMAT_VERSION, MAX_CHANNELS, MAX_KEY_HEADER_BYTES, MAX_SIDE, is_key_file

NORM_PREFIX = "norm/"
# The fingerprint covers κ, λ and the shape only, under the tag of format 1, so boxes wrapped
# by any sdbox keep recognising their keys.
_FINGERPRINT_TAG = b"sdbox-key/v1"
# Keyed normalisation: a ResNet-152 has ~0.4 M normalisation values and a ViT-L ~0.2 M; the
# bounds leave room for far larger models while a hostile file stays small.
MAX_NORM_TENSORS = 4096
MAX_NORM_VALUES = 1 << 24
_MAX_KEY_FILE_BYTES = 8 + MAX_KEY_HEADER_BYTES + 4 * MAX_CHANNELS * MAX_SIDE * MAX_SIDE + 4 * MAX_NORM_VALUES
_NORM_NAME = re.compile(r"[A-Za-z0-9_.]{1,300}")


def _check_lam(lam: float) -> float:
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not 0.0 < lam < 1.0:
        raise ValueError(f"Expected `lam` in (0, 1), but got {lam!r}.")
    return float(lam)


@dataclass(frozen=True, eq=False)
class Key:
    """A key κ of shape (C, H, W) in the model's input space, its mixing weight λ and, once a
    wrap has trained it, the keyed normalisation state ``norm`` (None before, or for a model
    without normalisation layers). ``norm`` is not part of the fingerprint: it is what the wrap
    learns for this κ, checked by its own digest in the key file."""

    tensor: torch.Tensor
    lam: float = 0.5
    norm: Mapping[str, torch.Tensor] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tensor, torch.Tensor) or self.tensor.dim() != 3:
            raise ValueError(
                "Expected the key tensor to have shape (C, H, W), "
                f"but got {getattr(self.tensor, 'shape', type(self.tensor))}."
            )
        if not _is_key_shape(list(self.tensor.shape)):
            raise ValueError(
                f"Expected the key tensor to have shape (C, H, W) with C ≤ {MAX_CHANNELS} and H, W ≤ {MAX_SIDE}, "
                f"but got {tuple(self.tensor.shape)}."
            )
        tensor = self.tensor.detach().to("cpu", torch.float32).contiguous()
        if not torch.isfinite(tensor).all():
            raise ValueError(
                f"Expected finite key values, but {int((~torch.isfinite(tensor)).sum())} are NaN or infinite: "
                "draw a fresh key with `Key.generate`, or restore the key file from your backup."
            )
        object.__setattr__(self, "tensor", tensor)
        object.__setattr__(self, "lam", _check_lam(self.lam))
        if self.norm is not None:
            object.__setattr__(self, "norm", _checked_norm(self.norm) or None)

    def with_norm(self, norm: Mapping[str, torch.Tensor] | None) -> "Key":
        """The same key (same κ, λ and fingerprint) carrying the keyed normalisation ``norm``."""
        return Key(self.tensor, self.lam, norm)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """The proxy input x̃ = λx + (1−λ)κ for a batch ``x`` (see :func:`sdbox.proxy.mix`)."""
        from .proxy import mix

        return mix(x, self.tensor.to(x.device, x.dtype), self.lam)

    @classmethod
    def generate(
        cls,
        shape: Sequence[int],
        lam: float = 0.5,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        tile: int | None = None,
    ) -> "Key":
        """Draw a fresh key: uniform pixel noise from ``os.urandom``, normalised with mean/std.

        ``tile``: draw one ``tile × tile`` patch and repeat it over the image. Every fresh key of
        the untiled family has the same local statistics, which is all a convolution sees; a
        tiled key repeats one random local pattern that a convolution can recognise anywhere.
        """
        if len(shape) != 3 or not _is_key_shape([int(s) for s in shape]):
            raise ValueError(
                f"Expected `shape` to be (C, H, W) with positive sizes, C ≤ {MAX_CHANNELS} and H, W ≤ {MAX_SIDE}, but got {tuple(shape)}."
            )
        c, h, w = (int(s) for s in shape)
        if tile is not None and (not isinstance(tile, int) or tile < 1 or h % tile or w % tile):
            raise ValueError(f"Expected `tile` to be a positive integer dividing the key's height and width {h}×{w}, but got {tile!r}.")
        th, tw = (tile, tile) if tile else (h, w)
        raw = np.frombuffer(os.urandom(4 * c * th * tw), dtype=np.uint32).reshape(c, th, tw)
        pixels = torch.from_numpy(raw.astype(np.float64) / 2.0**32).float()  # uniform in [0, 1)
        return cls(normalize(pixels.repeat(1, h // th, w // tw), mean, std), lam)

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
        h.update(_FINGERPRINT_TAG)
        h.update(struct.pack("<d", self.lam))
        h.update(json.dumps(list(self.shape)).encode())
        h.update(self.tensor.numpy().tobytes())
        return h.hexdigest()

    def save(self, path: str | os.PathLike, overwrite: bool = False, *, allow_bundle_folder: bool = False) -> Path:
        """Write the key as safetensors, readable by its owner only (mode 0600).

        Refuses to replace an existing file unless ``overwrite=True``: losing a key that a box
        was wrapped with locks its knowledge away for good. Refuses a folder that holds a bundle
        (config.json or model.safetensors) unless ``allow_bundle_folder=True``: ``hf upload`` or
        ``HfApi().upload_folder`` of that folder would publish the key with the box.
        """
        path = Path(path)
        bundle_files = [name for name in BUNDLE_MARKERS if (path.parent / name).exists()]
        if bundle_files and not allow_bundle_folder:
            raise FileExistsError(
                f"Refusing to save the key into {path.parent}, which holds a bundle ({', '.join(bundle_files)}): uploading "
                "that folder (`hf upload`, `HfApi().upload_folder`) would publish the key. Save it outside the bundle "
                "(e.g. `owner.key` next to the folder), or pass `allow_bundle_folder=True` if you really mean it."
            )
        metadata = {
            "format": KEY_FORMAT,
            "format_version": str(KEY_FORMAT_VERSION),
            "lam": repr(self.lam),
            "shape": json.dumps(list(self.shape)),
            "space": "model_input",  # normalised with the model's mean/std, not raw pixels
            "fingerprint": self.fingerprint,
        }
        tensors = {"key": self.tensor}
        if self.norm is not None:
            tensors.update({NORM_PREFIX + name: t for name, t in self.norm.items()})
            metadata["norm_sha256"] = _norm_digest(self.norm)
        refusal = (
            f"Refusing to overwrite the key file {path}: pass `overwrite=True` if you really "
            "mean to replace it (the old key stops opening boxes wrapped with it)."
        )
        if os.path.lexists(path) and not overwrite:
            raise FileExistsError(refusal)
        try:
            return write_bytes(path, st_save(tensors, metadata=metadata), secret=True, overwrite=overwrite)
        except FileExistsError:  # it appeared while we wrote
            raise FileExistsError(refusal) from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Key":
        """Read a key written by :meth:`save`, checking its format and integrity.

        The file is untrusted until checked: exactly one float32 tensor ``key`` of a bounded
        (C, H, W) shape, finite values, an integer format version this sdbox knows, a λ in
        (0, 1) and a fingerprint matching the bytes. Anything else is a :class:`KeyFileError`.
        """
        path = Path(path)
        if not path.is_file():
            raise KeyFileError(f"No key file at {path}: pass the path that `Key.save` wrote.")
        damaged = f"Restore {path} from your backup; a key cannot be re-derived."
        if path.stat().st_size > _MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path} is {path.stat().st_size} bytes, larger than any sdbox key: it is not a key file. {damaged}")
        raw = path.read_bytes()
        metadata, tensor, norm = _parse_key_file(raw, path, damaged)
        version = metadata.get("format_version", "")
        if not re.fullmatch(r"[0-9]{1,6}", version) or int(version) < 1:
            raise KeyFileError(f"{path}: expected an integer key `format_version` ≥ 1, but got {version!r:.40}. {damaged}")
        if int(version) > KEY_FORMAT_VERSION:
            raise KeyFileError(
                f"{path} has key format version {int(version)}, newer than this sdbox understands "
                f"({KEY_FORMAT_VERSION}): upgrade sdbox."
            )
        try:
            key = cls(tensor, float(metadata["lam"]), norm or None)
        except (KeyError, ValueError) as e:
            raise KeyFileError(f"{path} has a damaged key header or values ({e}): {damaged}") from None
        if metadata.get("fingerprint") != key.fingerprint or (norm and metadata.get("norm_sha256") != _norm_digest(norm)):
            raise KeyFileError(
                f"{path} fails its integrity check (its bytes do not match its stored fingerprint): "
                "the file was altered; restore it from your backup."
            )
        if int(version) < 2:
            warnings.warn(
                f"{path} is a key file of format {int(version)} (sdbox 0.1): it carries no keyed normalisation, so it opens "
                "only boxes wrapped by sdbox 0.1. Boxes wrapped since need the key file their own wrap wrote.",
                stacklevel=2,
            )
        return key

    def __repr__(self) -> str:  # never print the secret itself
        return f"Key(shape={self.shape}, lam={self.lam}, fingerprint={self.fingerprint[:12]}…)"


def find_key_files(folder: str | os.PathLike, max_files: int = 10_000) -> list[Path]:
    """Key files anywhere under ``folder``: named ``*.key`` or holding an sdbox key, whatever their name."""
    folder = Path(folder)
    found = []
    for i, path in enumerate(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        if i >= max_files:
            break
        if path.name.endswith(".key") or is_key_file(path):
            found.append(path)
    return found


def _parse_key_file(raw: bytes, path: Path, fix: str) -> tuple[dict[str, str], torch.Tensor, dict[str, torch.Tensor]]:
    """The metadata and the one tensor of a key file, with the safetensors header checked first,
    so that no declared size is trusted before it is compared with the file's real length."""

    def refuse(why: str) -> KeyFileError:
        return KeyFileError(f"{path} is not a readable sdbox key ({why}). {fix}")

    if len(raw) < 8:
        raise refuse(f"{len(raw)} bytes, shorter than a safetensors header")
    header_len = struct.unpack("<Q", raw[:8])[0]
    if header_len > MAX_KEY_HEADER_BYTES or 8 + header_len > len(raw):
        raise refuse(f"header length {header_len} does not fit the file's {len(raw)} bytes")
    try:
        header = json.loads(raw[8 : 8 + header_len])
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise refuse(f"unreadable header: {type(e).__name__}") from None
    if not isinstance(header, dict):
        raise refuse("the header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise refuse("its metadata is not a map of strings")
    if metadata.get("format") != KEY_FORMAT:
        raise KeyFileError(f"{path} is a safetensors file but not an sdbox key: pass the file `Key.save` wrote.")
    norm_names = [name for name in header if isinstance(name, str) and name.startswith(NORM_PREFIX)]
    if "key" not in header or set(header) != {"key", *norm_names} or not all(isinstance(v, dict) for v in header.values()):
        raise refuse(f"expected one tensor named `key` (and `{NORM_PREFIX}…` tensors), but found {sorted(map(str, header))[:5]}")
    if len(norm_names) > MAX_NORM_TENSORS:
        raise refuse(f"{len(norm_names)} keyed normalisation tensors, more than any model has ({MAX_NORM_TENSORS})")
    info = header["key"]
    shape = info.get("shape")
    if info.get("dtype") != "F32":
        raise refuse(f"expected a float32 (F32) key, but it is stored as {str(info.get('dtype'))[:20]}")
    if not _is_key_shape(shape):
        raise refuse(f"expected a shape (C, H, W) with C ≤ {MAX_CHANNELS} and H, W ≤ {MAX_SIDE}, but got {str(shape)[:40]}")
    nbytes = 4 * math.prod(shape)
    for name in norm_names:
        norm_info, norm_shape = header[name], header[name].get("shape")
        if not _NORM_NAME.fullmatch(name[len(NORM_PREFIX):]) or norm_info.get("dtype") != "F32" or not (
                isinstance(norm_shape, list) and len(norm_shape) >= 1 and all(type(s) is int and s > 0 for s in norm_shape)):
            raise refuse(f"the keyed normalisation tensor {name[:60]!r} is not a named float32 tensor")
        nbytes += 4 * math.prod(norm_shape)
    if nbytes > 4 * (MAX_CHANNELS * MAX_SIDE * MAX_SIDE + MAX_NORM_VALUES) or len(raw) != 8 + header_len + nbytes:
        raise refuse(f"its tensors take {nbytes} bytes, but the file holds {len(raw) - 8 - header_len}")
    if not norm_names and info.get("data_offsets") != [0, nbytes]:
        raise refuse(f"a {shape} float32 key takes {nbytes} bytes at offset 0")
    try:
        tensors = st_load(raw)  # checks every tensor's offsets against the buffer
    except (SafetensorError, ValueError) as e:
        raise refuse(str(e)[:200]) from None
    return metadata, tensors["key"], {name[len(NORM_PREFIX):]: tensors[name] for name in norm_names}


def _checked_norm(norm: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached float32 CPU copy of a keyed normalisation state, refused if not finite."""
    if not isinstance(norm, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in norm.items()):
        raise ValueError("Expected the keyed normalisation `norm` as a map of names to tensors (what a wrap produces).")
    checked = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in norm.items()}
    bad = [name for name, t in checked.items() if not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"Expected finite keyed normalisation values, but {bad[0]} holds NaN or infinite values: restore the key file from your backup.")
    return checked


def _norm_digest(norm: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(norm):
        h.update(name.encode() + b"\0" + json.dumps(list(norm[name].shape)).encode())
        h.update(norm[name].numpy().tobytes())
    return h.hexdigest()


def _is_key_shape(shape: object) -> bool:
    return (
        isinstance(shape, list) and len(shape) == 3 and all(type(s) is int and s > 0 for s in shape)
        and shape[0] <= MAX_CHANNELS and shape[1] <= MAX_SIDE and shape[2] <= MAX_SIDE
    )


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
