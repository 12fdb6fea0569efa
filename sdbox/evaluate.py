"""Accuracy and disturbance measurements shared by wrap's fidelity guard, reports and benchmarks."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from .losses import kd_loss
from .proxy import mix
from .restoring import eval_mode


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    key: torch.Tensor | None = None,
    lam: float = 0.5,
    reference: nn.Module | None = None,
    t_dis: float = 4.0,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Top-1 accuracy of ``model`` on ``loader`` (on x̃ when a key tensor is given), and the image count.

    With ``reference`` (the original model), also the mean ``L_kd`` at ``t_dis`` between the
    reference's and the model's clean soft labels: how far the box has moved its soft labels
    away from what a student would otherwise learn — wrap's measure of protection.
    """
    if key is not None:
        key = key.to(device)
    correct = torch.zeros((), device=device)
    divergence = torch.zeros((), device=device)
    seen = 0
    with eval_mode(model):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            inputs = mix(x, key, lam) if key is not None else x
            logits = model(inputs)
            correct += (logits.argmax(1) == y).sum()
            if reference is not None:
                divergence += kd_loss(logits, reference(x), t_dis) * len(y)
            seen += len(y)
    if seen == 0:
        raise ValueError("Expected a non-empty evaluation loader, but it yielded no batches.")
    result = {"acc": 100.0 * correct.item() / seen, "images": seen}
    if reference is not None:
        result["divergence"] = divergence.item() / seen
    return result
