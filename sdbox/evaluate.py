"""Accuracy and disturbance measurements shared by wrap's fidelity guard, reports and benchmarks."""

from __future__ import annotations

from typing import Any, Iterable

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
    per_image: bool = False,
) -> dict[str, Any]:
    """Top-1 accuracy of ``model`` on ``loader`` (on x̃ when a key tensor is given), and the image count.

    With ``reference`` (the original model), also the mean ``L_kd`` at ``t_dis`` between the
    reference's and the model's clean soft labels: how far the box has moved its soft labels
    away from what a student would otherwise learn — wrap's measure of protection.
    ``per_image=True`` adds ``correct``, a "0"/"1" string in loader order: two models scored on
    the same images can then be compared image by image (a paired difference).
    """
    if key is not None:
        key = key.to(device)
    correct = torch.zeros((), device=device)
    divergence = torch.zeros((), device=device)
    seen, hits = 0, []
    with eval_mode(model):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            inputs = mix(x, key, lam) if key is not None else x
            logits = model(inputs)
            right = logits.argmax(1) == y
            correct += right.sum()
            if per_image:
                hits.append(right)
            if reference is not None:
                divergence += kd_loss(logits, reference(x), t_dis) * len(y)
            seen += len(y)
    if seen == 0:
        raise ValueError("Expected a non-empty evaluation loader, but it yielded no batches.")
    result = {"acc": 100.0 * correct.item() / seen, "images": seen}
    if reference is not None:
        result["divergence"] = divergence.item() / seen
    if per_image:
        result["correct"] = "".join("1" if h else "0" for h in torch.cat(hits).tolist())
    return result


def tail_rank_correlation(logits: torch.Tensor, reference: torch.Tensor) -> float:
    """How far ``logits`` rank the *other* classes as ``reference`` does: mean Spearman correlation
    over images, leaving out each image's top-1 under ``reference``.

    Protection lives in that tail — it is what a student distils beyond the label — so 1 means a
    box passes the reference's dark knowledge on intact and 0 means none of its ranking is left.
    """
    if logits.shape != reference.shape or logits.dim() != 2 or logits.shape[1] < 3:
        raise ValueError(f"Expected two (N, C ≥ 3) logit tensors of one shape, but got {tuple(logits.shape)} and {tuple(reference.shape)}.")
    top = reference.argmax(1, keepdim=True)
    keep = torch.ones_like(reference, dtype=torch.bool).scatter_(1, top, False)
    ranks = [t[keep].view(len(t), -1).argsort(1).argsort(1).float() for t in (logits, reference)]
    a, b = (r - r.mean(1, keepdim=True) for r in ranks)
    return ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean().item()
