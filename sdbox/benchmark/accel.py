"""What a :class:`~.presets.GpuPreset` changes in how the benchmark runs, and nothing else.

The CPU presets keep fp32, contiguous tensors and one batch size (their published figures were
measured so); a GPU preset asks for bf16 autocast and channels_last through
:class:`~sdbox.fastpath.FastPath`, and for its own students' batch size.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..fastpath import FastPath
from .gpu_budget import student_batch_size  # noqa: F401  (the runner's name for it; defined without torch)
from .presets import GpuPreset, Preset


def fast_path(p: Preset) -> FastPath | None:
    """The preset's fast path, or None for a CPU preset (each consumer's own default then applies)."""
    if not isinstance(p, GpuPreset):
        return None
    return FastPath(amp=p.amp, channels_last=p.channels_last)


class FastTeacher(nn.Module):
    """A distiller's teacher (a model, a box, a keyed teacher or a key-mixing function) whose
    forward passes run on ``fast``'s path, giving fp32 logits as the KD loss expects.

    The teacher's forward is most of a distillation step's arithmetic (ResNet-18 against a CNN5
    student), so it is the part worth bf16; the student trains as the CPU recipe does. A module
    teacher is registered as a submodule, so ``distill`` still puts it in eval mode for the call.
    """

    def __init__(self, teacher: nn.Module | Callable[[torch.Tensor], torch.Tensor], fast: FastPath, device: torch.device):
        super().__init__()
        self.teacher, self.fast, self.device = teacher, fast.resolve(device), device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.fast.autocast(self.device):
            return self.teacher(self.fast.inputs(x)).float()


def fast_teacher(teacher: nn.Module | Callable | None, p: Preset, device: torch.device) -> nn.Module | Callable | None:
    """``teacher`` on the preset's fast path (unchanged for a CPU preset, or for scratch's None)."""
    fast = fast_path(p)
    return teacher if teacher is None or fast is None else FastTeacher(teacher, fast, device)
