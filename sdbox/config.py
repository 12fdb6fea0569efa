"""The public description of a box: what ``config.json`` holds, in timm's layout.

Everything here is published. The key itself never is: only its SHA-256 fingerprint and shape.
Loading tolerates unknown keys (a newer sdbox may add fields) and rejects damaged values with a
:class:`~sdbox.errors.BundleError` that says what is wrong.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import BundleError

BOX_FORMAT_VERSION = 1


@dataclass
class BoxConfig:
    """What a loader needs to rebuild the model and what a key holder needs to check a key."""

    architecture: str = field(metadata={"help": "timm / torchvision model name, or module.Class for a custom model."})
    num_classes: int = field(metadata={"help": "Number of output logits."})
    input_size: tuple[int, int, int] = field(metadata={"help": "(C, H, W) of one input; also the key's shape."})
    mean: tuple[float, ...] = field(metadata={"help": "Per-channel mean the inputs are normalised with."})
    std: tuple[float, ...] = field(metadata={"help": "Per-channel std the inputs are normalised with."})
    key_fingerprint: str = field(metadata={"help": "SHA-256 of the key (see Key.fingerprint); public."})
    model_library: str = field(default="custom", metadata={"help": "'timm', 'torchvision' or 'custom' (needs `model=` on load)."})
    normalization_source: str = field(default="user", metadata={"help": "Where mean/std came from."})
    lam: float = field(default=0.5, metadata={"help": "Key mixing weight λ."})
    t_dis: float = field(default=4.0, metadata={"help": "Temperature the box was disturbed at."})
    omega: float = field(default=0.0, metadata={"help": "Disturbance weight ω used in the fine-tune."})
    eta: float = field(default=0.0, metadata={"help": "Augmentation weight η used in the fine-tune."})
    fidelity: dict[str, float] = field(default_factory=dict, metadata={"help": "Measured clean/keyed accuracy before and after wrapping."})
    report: dict[str, Any] | None = field(default=None, metadata={"help": "Measured protection report, when one was run."})
    weights_sha256: str | None = field(default=None, metadata={"help": "SHA-256 of model.safetensors, to detect a damaged file."})
    format_version: int = field(default=BOX_FORMAT_VERSION, metadata={"help": "sdbox bundle format."})

    @property
    def key_shape(self) -> tuple[int, int, int]:
        return tuple(self.input_size)  # type: ignore[return-value]

    def to_json(self) -> dict[str, Any]:
        """timm's layout (architecture, num_classes, pretrained_cfg) plus an ``sdbox`` section."""
        return {
            "architecture": self.architecture,
            "num_classes": self.num_classes,
            "pretrained_cfg": {"input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std)},
            "library_name": "sdbox",
            "sdbox": {
                "format_version": self.format_version,
                "model_library": self.model_library,
                "normalization_source": self.normalization_source,
                "lam": self.lam,
                "t_dis": self.t_dis,
                "omega": self.omega,
                "eta": self.eta,
                "key_fingerprint": self.key_fingerprint,
                "key_shape": list(self.input_size),
                "fidelity": self.fidelity,
                "report": self.report,
                "weights_sha256": self.weights_sha256,
            },
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "config.json") -> "BoxConfig":
        try:
            sd = dict(data["sdbox"])
            cfg = data["pretrained_cfg"]
            values = {
                "architecture": data["architecture"],
                "num_classes": data["num_classes"],
                "input_size": tuple(cfg["input_size"]),
                "mean": tuple(cfg["mean"]),
                "std": tuple(cfg["std"]),
            }
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"{source} is not an sdbox config (missing {e}): load a folder that `save_pretrained` wrote.") from None
        known = {f.name for f in fields(cls)}
        unknown = set(sd) - known - {"key_shape"}
        if unknown:
            warnings.warn(f"{source}: ignoring unknown sdbox fields {sorted(unknown)} (written by a newer sdbox?)", stacklevel=3)
        values.update({k: v for k, v in sd.items() if k in known and k not in values})  # pretrained_cfg wins
        config = cls(**values)
        if "key_shape" in sd and (not isinstance(sd["key_shape"], list) or tuple(sd["key_shape"]) != tuple(config.input_size)):
            raise BundleError(f"{source} is inconsistent: key_shape {sd['key_shape']} ≠ input_size {list(config.input_size)}. The file was edited; restore it.")
        config.validate(source)
        return config

    def validate(self, source: str = "config") -> None:
        """Reject values no sdbox writes: a damaged or hand-edited config fails here, not in torch."""
        problems = []
        if self.format_version > BOX_FORMAT_VERSION:
            problems.append(f"format_version {self.format_version} is newer than this sdbox ({BOX_FORMAT_VERSION}); upgrade sdbox")
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            problems.append(f"num_classes must be an integer ≥ 2, got {self.num_classes!r}")
        if len(self.input_size) != 3 or not all(isinstance(s, int) and s > 0 for s in self.input_size):
            problems.append(f"input_size must be 3 positive integers (C, H, W), got {list(self.input_size)}")
        elif len(self.mean) != self.input_size[0] or len(self.std) != self.input_size[0]:
            problems.append(f"mean/std must have {self.input_size[0]} values, got {len(self.mean)} and {len(self.std)}")
        if any(not isinstance(m, (int, float)) or not math.isfinite(m) for m in self.mean):
            problems.append(f"mean values must be finite numbers, got {list(self.mean)}")
        if any(not isinstance(s, (int, float)) or not (s > 0 and math.isfinite(s)) for s in self.std):
            problems.append(f"std values must be > 0, got {list(self.std)}")
        if not isinstance(self.lam, (int, float)) or not 0 < self.lam < 1:
            problems.append(f"lam must be in (0, 1), got {self.lam!r}")
        if not isinstance(self.t_dis, (int, float)) or not (self.t_dis > 0 and math.isfinite(self.t_dis)):
            problems.append(f"t_dis must be > 0, got {self.t_dis!r}")
        if not isinstance(self.key_fingerprint, str) or not re.fullmatch(r"[0-9a-f]{64}", self.key_fingerprint):
            problems.append("key_fingerprint must be 64 hex digits")
        if self.model_library not in ("timm", "torchvision", "custom"):
            problems.append(f"model_library must be timm, torchvision or custom, got {self.model_library!r}")
        if problems:
            raise BundleError(f"{source} is damaged or was edited by hand: " + "; ".join(problems) + ". Restore it from the published bundle.")
