"""Training the teacher from labels: SGD with momentum and weight decay, the paper's optimiser."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..fastpath import FastPath
from ..files import atomic_write
from ..frozen import is_channels_last
from ..progress import progress_bar


def train_classifier(
    model: nn.Module,
    loader: Iterable,
    *,
    epochs: int,
    lr: float,
    milestones: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    fast: FastPath | None = None,
    log: Callable[[str], None] | None = None,
) -> list[float]:
    """Cross-entropy training; returns the mean loss per epoch.

    ``milestones`` (e.g. the paper's 80/120) divide lr by 10 at those epochs; without them the lr
    follows a cosine to zero, which gets more out of the few epochs a CPU can afford. One progress
    bar spans every epoch, so its estimate is the time left for the whole training. With
    ``checkpoint``, the state after each epoch is saved there and a rerun resumes from it (the
    loader must be seeded for the resumed run to see the batches a fresh one would).

    ``fast`` runs the steps under its bf16 autocast and channels_last (the loss in fp32) and hands
    the model back in the layout it came in, so it saves as it would have; None keeps fp32 and the
    model's layout, the numerics the CPU presets' teachers were trained with. ``log`` gets one line
    per epoch (loss and seconds), for logs read without progress bars.
    """
    if epochs < 1:
        raise ValueError(f"Expected `epochs` ≥ 1, but got {epochs}.")
    fast = fast.resolve(device) if fast is not None else None
    came_channels_last = is_channels_last(model)
    model.to(device).train()
    if fast is not None:
        fast.prepare(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    if milestones:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma=0.1)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    history: list[float] = []
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = state["history"]
        if hasattr(loader, "generator"):  # the batches a fresh run would draw from here on
            loader.generator.set_state(state["loader_generator"])
    steps = len(loader) if hasattr(loader, "__len__") else None
    bar = progress_bar(None, total=steps and (epochs - len(history)) * steps, desc=f"teacher ({epochs} epochs)", enabled=progress)
    try:
        with fast.running_on(device) if fast is not None else contextlib.nullcontext():
            for epoch in range(len(history), epochs):
                start = time.time()
                total, n = torch.zeros((), device=device), 0
                for x, y in loader:
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    if fast is None:
                        loss = F.cross_entropy(model(x), y)
                    else:
                        with fast.autocast(device):
                            logits = model(fast.inputs(x))
                        loss = F.cross_entropy(logits.float(), y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += loss.detach()
                    n += 1
                    bar.update(1)
                scheduler.step()
                history.append(total.item() / max(n, 1))  # the one host sync of an epoch
                bar.set_postfix(epoch=epoch + 1, loss=f"{history[-1]:.3f}")
                if log is not None:
                    log(f"teacher epoch {epoch + 1}/{epochs}: loss {history[-1]:.3f} ({time.time() - start:.1f} s)")
                if checkpoint is not None and epoch + 1 < epochs:
                    with atomic_write(checkpoint) as f:  # a killed run leaves the last epoch's state, never half of one
                        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "scheduler": scheduler.state_dict(), "history": history,
                                    "loader_generator": loader.generator.get_state() if hasattr(loader, "generator") else None}, f)
    finally:
        if fast is not None and fast.channels_last and not came_channels_last:
            model.to(memory_format=torch.contiguous_format)
    bar.close()
    model.eval()
    return history
