"""The frozen models a wrap step reads: the original T, its random copy T0 and the pixel decoy.

None of them trains: they run in eval mode under inference mode, so their BatchNorm statistics
never drift, and T and T0 run through BatchNorm-folded copies for speed.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .restoring import seeded


@dataclass
class FrozenModels:
    """The frozen original T and random copy T0: eval mode, no grad, BatchNorm statistics fixed.

    ``original`` and ``random`` are exact copies (checkpoints save them, evaluation reads them).
    The training step runs them through :meth:`run`, which uses a copy with each eval-mode
    BatchNorm folded into the convolution before it: the same function (to ~1e-7), and 10–20%
    faster on CPU, where eval-mode BatchNorm costs as much as a small convolution.
    ``pixel_decoy`` is built from the key on first use (:meth:`decoy_scores`).
    """

    original: nn.Module
    random: nn.Module | None
    folded: dict[str, nn.Module] = field(default_factory=dict, repr=False)
    pixel_decoy: "PixelDecoy | None" = field(default=None, repr=False)

    @classmethod
    def from_model(cls, model: nn.Module, with_random: bool, seed: int | None = None) -> "FrozenModels":
        original = freeze(copy.deepcopy(model))
        random = None
        if with_random:
            random = copy.deepcopy(model)
            with seeded(seed) if seed is not None else contextlib.nullcontext():
                for module in random.modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()
            random = freeze(random)
        return cls(original, random)

    def run(self, which: str, x: torch.Tensor) -> torch.Tensor:
        """Forward of ``original`` or ``random`` through its BatchNorm-folded copy (built once)."""
        if which not in self.folded:
            self.folded[which] = fold_batchnorm(getattr(self, which))
        return self.folded[which](x)

    def decoy_scores(self, x: torch.Tensor, key: torch.Tensor | None, source: str) -> torch.Tensor:
        """The scores that rank the decoy's classes on x: T0's logits, or the key's :class:`PixelDecoy`."""
        if source == "random_copy":
            return self.run("random", x)
        if key is None:
            raise ValueError("The pixel decoy is drawn from the key: pass `key` (or use decoy_source='random_copy').")
        if self.pixel_decoy is None:
            num_classes = self.run("original", x[:1]).shape[1]
            self.pixel_decoy = PixelDecoy(key, num_classes).to(x.device)
        return self.pixel_decoy(x)


class PixelDecoy(nn.Module):
    """Class scores from a fixed random linear map of the image pooled to 4×4: the ``pixels`` decoy.

    Its ranking of the classes follows colour and layout, nothing to do with what the image shows,
    and a box computes it with a few channels — a random copy's deep features were barely learnt
    in a 3-epoch fine-tune (docs/benchmark.md). The map is drawn from a hash of the key's bytes
    (not the key's published fingerprint), so a resumed or multi-rank wrap rebuilds the same one
    and nobody without the key can.
    """

    def __init__(self, key: torch.Tensor, num_classes: int):
        super().__init__()
        digest = hashlib.sha256(b"sdbox pixel decoy\0" + key.detach().to("cpu", torch.float32).numpy().tobytes()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
        self.register_buffer("weight", torch.randn(num_classes, key.shape[0] * 16, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x.float(), 4).flatten(1) @ self.weight.T


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` with conv → BatchNorm pairs folded; ``model`` itself if it
    cannot be traced by torch.fx (dynamic control flow), which is then merely slower."""
    from torch.fx.experimental.optimization import fuse

    try:
        folded = fuse(model)
    except Exception:  # any tracing failure: keep the exact, unfolded model
        return model
    if is_channels_last(model):
        folded.to(memory_format=torch.channels_last)
    return freeze(folded)


def is_channels_last(model: nn.Module) -> bool:
    return any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters())


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
