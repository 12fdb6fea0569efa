"""Training the teacher from labels: SGD with momentum and weight decay, the paper's optimiser."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..files import atomic_write
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
) -> list[float]:
    """Cross-entropy training; returns the mean loss per epoch.

    ``milestones`` (e.g. the paper's 80/120) divide lr by 10 at those epochs; without them the lr
    follows a cosine to zero, which gets more out of the few epochs a CPU can afford. One progress
    bar spans every epoch, so its estimate is the time left for the whole training. With
    ``checkpoint``, the state after each epoch is saved there and a rerun resumes from it (the
    loader must be seeded for the resumed run to see the batches a fresh one would).
    """
    if epochs < 1:
        raise ValueError(f"Expected `epochs` ≥ 1, but got {epochs}.")
    model.to(device).train()
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
    for epoch in range(len(history), epochs):
        total, n = torch.zeros((), device=device), 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            n += 1
            bar.update(1)
        scheduler.step()
        history.append(total.item() / max(n, 1))
        bar.set_postfix(epoch=epoch + 1, loss=f"{history[-1]:.3f}")
        if checkpoint is not None and epoch + 1 < epochs:
            with atomic_write(checkpoint) as f:  # a killed run leaves the last epoch's state, never half of one
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "history": history,
                            "loader_generator": loader.generator.get_state() if hasattr(loader, "generator") else None}, f)
    bar.close()
    model.eval()
    return history
