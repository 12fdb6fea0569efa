"""State sdbox changes for a while and puts back: module modes, the global RNG, cudnn.benchmark.

A library that reseeds the caller's random generator, leaves their model in eval mode or turns
on a global backend flag changes the results of code it was never asked to run. Everything here
is a context manager that restores what it found, on success and on failure alike.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode, then give each submodule back its own mode (mixed modes too).

    Costs one walk over the modules; a model already in eval mode is left as is.
    """
    training = [m for m in model.modules() if m.training]
    for m in training:
        m.training = False
    try:
        yield model
    finally:
        for m in training:
            m.training = True


@contextlib.contextmanager
def modes_kept(model: nn.Module) -> Iterator[nn.Module]:
    """Let the block switch ``model`` between train and eval freely; afterwards every submodule
    has the mode it had before (mixed modes included), on success and on failure."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@contextlib.contextmanager
def global_rng_kept() -> Iterator[None]:
    """Whatever the block does to torch's global generators (CPU and CUDA), undo it afterwards.

    Also a decorator: ``@global_rng_kept()``.
    """
    with torch.random.fork_rng(devices=_cuda_devices()):
        yield


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generators for the block (reproducible model initialisation), then
    restore the caller's generator state: the caller's random stream goes on as if nothing ran."""
    with global_rng_kept():
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """Set ``torch.backends.cudnn.benchmark`` for the block, then put the caller's value back."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before
