"""Stingy / top-k KD (Ma et al., "stingy teacher"): learn only from the box's k largest logits.

A Nasty-Teacher-style disturbance plants its misleading mass in the tail of the soft labels
while keeping the top-1 right; cutting the tail away (softmax over the top-k only) may leave the
part of the shape that still carries knowledge (which classes come second and third).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..box import SafeBox
from .base import AttackData, AttackResult, Budget, LossFn, Recipe, StudentFactory, distill_from_targets, logits_of

GRID = [{"k": k, "T": 4.0, "alpha": 0.9} for k in (1, 2, 3)]
QUICK_GRID = GRID


def topk_mask(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep each row's ``k`` largest logits and set the rest to −inf (softmax gives them exactly 0)."""
    if k not in (1, 2, 3):
        raise ValueError(f"Expected `k` in {{1, 2, 3}}, but got {k}.")
    top = logits.topk(k, dim=1).indices
    return torch.full_like(logits, float("-inf")).scatter(1, top, logits.gather(1, top))


def masked_kd_loss(alpha: float, T: float) -> LossFn:
    """``(1−α)·CE + α·T²·Σ p_t (log p_t − log p_s)`` with p_t from −inf-masked logits.

    ``xlogy`` makes 0·log 0 = 0, so masked classes add nothing (``F.kl_div`` would give NaN).
    """

    def loss(z: torch.Tensor, target: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p_t = F.softmax(target / T, dim=1)
        kd = (torch.special.xlogy(p_t, p_t) - p_t * F.log_softmax(z / T, dim=1)).sum(1).mean() * T * T
        return (1 - alpha) * F.cross_entropy(z, y) + alpha * kd

    return loss


def attack(
    box: SafeBox, data: AttackData, student_factory: StudentFactory, budget: Budget,
    *, k: int = 1, T: float = 4.0, alpha: float = 0.9,
) -> AttackResult:
    """KD on the box's top-``k`` clean logits, renormalised over those k classes."""
    targets = topk_mask(logits_of(box, data.train_x, device=budget.device), k)
    return distill_from_targets(student_factory, data, budget, targets, masked_kd_loss(alpha, T), {"k": k, "T": T, "alpha": alpha}, desc=f"top-{k}")


def recipe(box: SafeBox, data: AttackData, budget: Budget, *, k: int = 1) -> Recipe:
    """KD on the top-``k`` logits; the rest sit 10⁴ below the k-th, so the softmax gives them 0
    while the run's KD loss (which takes log-probabilities) stays finite."""
    box.eval()

    def teacher(x: torch.Tensor) -> torch.Tensor:
        z = topk_mask(box(x).float(), k)
        floor = z.masked_fill(~torch.isfinite(z), float("inf")).min(1, keepdim=True).values - 1e4
        return torch.where(torch.isfinite(z), z, floor)

    return Recipe({"k": k}, teacher=teacher)
