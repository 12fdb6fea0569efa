"""Training the teacher from labels: SGD with momentum and weight decay, the paper's optimiser."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

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
) -> list[float]:
    """Cross-entropy training; returns the mean loss per epoch.

    ``milestones`` (e.g. the paper's 80/120) divide lr by 10 at those epochs; without them the lr
    follows a cosine to zero, which gets more out of the few epochs a CPU can afford.
    """
    if epochs < 1:
        raise ValueError(f"Expected `epochs` ≥ 1, but got {epochs}.")
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    if milestones:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma=0.1)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    history = []
    for epoch in range(epochs):
        total, steps = torch.zeros((), device=device), 0
        for x, y in progress_bar(loader, desc=f"teacher epoch {epoch + 1}/{epochs}", enabled=progress):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            steps += 1
        scheduler.step()
        history.append(total.item() / max(steps, 1))
    model.eval()
    return history
