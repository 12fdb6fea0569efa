"""Accuracy and disturbance measurements shared by wrap's fidelity guard, reports and benchmarks."""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn as nn

import contextlib

from . import keyed_norm
from .key import Key
from .losses import kd_loss
from .proxy import mix
from .restoring import eval_mode


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    key: Key | torch.Tensor | None = None,
    lam: float | None = None,
    reference: nn.Module | None = None,
    t_dis: float = 4.0,
    device: torch.device | str = "cpu",
    per_image: bool = False,
    norm: keyed_norm.NormState | None = None,
) -> dict[str, Any]:
    """Top-1 accuracy of ``model`` on ``loader`` (on x̃ when a key is given), and the image count.

    A :class:`~sdbox.key.Key` brings its λ and its keyed normalisation state; ``norm`` overrides
    the latter (the wrap evaluates its live state). A bare key tensor (κ alone, as an attacker's
    guess is) needs ``lam`` and runs with the model's own normalisation.

    With ``reference`` (the original model), also the mean ``L_kd`` at ``t_dis`` between the
    reference's and the model's clean soft labels: how far the box has moved its soft labels
    away from what a student would otherwise learn — wrap's measure of protection.
    ``per_image=True`` adds ``correct``, a "0"/"1" string in loader order: two models scored on
    the same images can then be compared image by image (a paired difference).
    """
    if isinstance(key, Key):
        lam, norm = key.lam, key.norm if norm is None else norm
        key = key.tensor
    if key is not None:
        if lam is None:
            raise ValueError("Expected `lam` with a bare key tensor: pass the Key itself (it carries λ) or `lam=`.")
        key = key.to(device)
    if norm is not None:
        keyed_norm.check_state(norm, keyed_norm.root(model))
        norm = {name: t.to(device) for name, t in norm.items()}
    correct = torch.zeros((), device=device)
    divergence = torch.zeros((), device=device)
    seen, hits = 0, []
    with eval_mode(model), keyed_norm.applied(keyed_norm.root(model), norm) if norm is not None else contextlib.nullcontext():
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
