"""How a wrap runs on an accelerator: bf16 autocast, channels_last, torch.compile.

Kept apart from ``sdbox.speed`` (which times things) so the training loop depends on the options
alone. ``sdbox speed`` measures what each option buys.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from .restoring import cudnn_benchmark


@dataclass(frozen=True)
class FastPath:
    """How a wrap runs: ``None`` means "decide for the device".

    ``amp``: bf16 autocast of the forward passes (losses are computed in fp32), on for CUDA only:
    on CPU fp32 stays the reference numerics. ``channels_last``: NHWC memory format for models and
    batches, on everywhere: cuDNN's fastest convolutions want it, and on a 2-core CPU it measured
    as fast or faster (cnn5_wide SDB step 745 → 509 ms, plain step 189 → 147 ms; resnet18_cifar
    unchanged; `sdbox speed`). ``compile``: ``torch.compile`` the trainable model, opt-in because
    the first steps pay minutes of compilation. On CUDA a run also turns on cudnn.benchmark
    (:meth:`running_on`), and puts the caller's value back afterwards.
    """

    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False

    def resolve(self, device: torch.device | str) -> "FastPath":
        """The options with every ``None`` decided for ``device``."""
        cuda = torch.device(device).type == "cuda"
        return replace(
            self,
            amp=cuda if self.amp is None else self.amp,
            channels_last=True if self.channels_last is None else self.channels_last,
        )

    def running_on(self, device: torch.device | str) -> contextlib.AbstractContextManager:
        """The backend settings for a run on ``device``, restored on exit: cudnn.benchmark on CUDA
        (the fastest kernels for the fixed shapes of a training loop), nothing elsewhere."""
        return cudnn_benchmark(True) if torch.device(device).type == "cuda" else contextlib.nullcontext()

    def prepare(self, model: nn.Module) -> nn.Module:
        """Put ``model`` in the memory format these options want (in place) and return it."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def compiled(self, model: nn.Module) -> nn.Module:
        """``model`` compiled in place when asked (``nn.Module.compile`` keeps state_dict keys)."""
        if self.compile:
            model.compile()
        return model

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the memory format the models were prepared for."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self, device: torch.device | str) -> contextlib.AbstractContextManager:
        """bf16 autocast on ``device`` when ``amp`` is on, else a no-op context."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
