"""Where a white-box attacker reads a network's intermediate features: forward hooks by role.

- the penultimate features: the input of the network's last ``nn.Linear`` (CNN5's 128-d
  embedding, a ResNet's pooled features, a timm model's pre-logits);
- one feature map per spatial resolution: the last 4-D output any module completes at that
  resolution, i.e. the end of the computation there (CNN5: each block's BatchNorm before its
  pooling, and the last block's output; a ResNet: each stage's last block).

The box's features are read on the clean input, with the box's public normalisation: all an
attacker without the key has.
"""

from __future__ import annotations

import torch
import torch.nn as nn

def last_linear(model: nn.Module) -> nn.Module:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer: a penultimate-feature hint needs a linear classifier head.")
    return linears[-1]


class Taps:
    """Hooks that record, on every forward, the penultimate features (``penultimate``) and the
    feature maps by resolution (``maps``: {(H, W): tensor}); ``remove()`` takes the hooks off."""

    def __init__(self, model: nn.Module, *, penultimate: bool = True, maps: bool = True):
        self.penultimate: torch.Tensor | None = None
        self.maps: dict[tuple[int, int], torch.Tensor] = {}
        self._seen: dict[tuple[int, int], torch.Tensor] = {}
        self.handles = []
        if penultimate:
            self.handles.append(last_linear(model).register_forward_pre_hook(self._pre))
        if maps:
            for module in model.modules():
                if module is model:
                    continue
                self.handles.append(module.register_forward_hook(self._hook))
            self.handles.append(model.register_forward_pre_hook(self._reset))
            self.handles.append(model.register_forward_hook(self._collect))

    def _pre(self, _module: nn.Module, inputs: tuple) -> None:
        self.penultimate = inputs[0].flatten(1)

    def _hook(self, _module: nn.Module, _inputs: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            self._seen[tuple(output.shape[-2:])] = output

    def _reset(self, *_args: object) -> None:
        self._seen = {}

    def _collect(self, *_args: object) -> None:
        self.maps = dict(self._seen)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """Zagoruyko & Komodakis (ICLR 2017): the channel mean of squared activations, flattened and
    L2-normalised per image."""
    return nn.functional.normalize(features.pow(2).mean(1).flatten(1), dim=1)


def attention_loss(student_maps: dict, teacher_maps: dict) -> torch.Tensor:
    """Σ over the resolutions both networks have of mean((at_s − at_t)²)."""
    common = sorted(set(student_maps) & set(teacher_maps), reverse=True)
    if not common:
        raise ValueError(f"The student's feature maps ({sorted(student_maps)}) and the box's ({sorted(teacher_maps)}) share no resolution.")
    return sum((attention_map(student_maps[s]) - attention_map(teacher_maps[s])).pow(2).mean() for s in common)
