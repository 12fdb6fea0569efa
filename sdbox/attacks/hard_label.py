"""Hard-label distillation: learn from the box's argmax only.

The disturbance lives in the soft labels; the box must keep its top-1 right to stay useful, so
its predicted classes are knowledge it cannot hide (they may differ from the ground truth on
ambiguous images, which is what a student can learn from beyond the labels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..box import SafeBox
from .base import AttackData, AttackResult, Budget, LossFn, Recipe, StudentFactory, distill_from_targets, logits_of

GRID = [{"alpha": 0.5}, {"alpha": 1.0}]
QUICK_GRID = [{"alpha": 0.5}]


def hard_label_loss(alpha: float) -> LossFn:
    """``(1−α)·CE(z, y) + α·CE(z, argmax box)``: targets are the box's class indices."""

    def loss(z: torch.Tensor, target: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (1 - alpha) * F.cross_entropy(z, y) + alpha * F.cross_entropy(z, target)

    return loss


def attack(
    box: SafeBox, data: AttackData, student_factory: StudentFactory, budget: Budget, *, alpha: float = 0.5
) -> AttackResult:
    """Train on the box's predicted classes (weight ``alpha``) mixed with the true labels."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"Expected `alpha` in [0, 1], but got {alpha}.")
    predicted = logits_of(box, data.train_x, device=budget.device).argmax(1)
    agreement = 100.0 * (predicted == data.train_y).float().mean().item()
    return distill_from_targets(
        student_factory, data, budget, predicted, hard_label_loss(alpha), {"alpha": alpha},
        {"box_train_agreement": round(agreement, 2)}, desc="hard label",
    )


def one_hot_logits(logits: torch.Tensor, margin: float = 1e4) -> torch.Tensor:
    """Logits whose softmax at T = 1 is exactly one-hot on each row's top-1 (KL to it is CE to the class)."""
    return torch.full_like(logits, -margin).scatter(1, logits.argmax(1, keepdim=True), 0.0)


def recipe(box: SafeBox, data: AttackData, budget: Budget) -> Recipe:
    """The box's predicted classes as targets, through the run's KD loss at T = 1 (its α weighs them against the labels)."""
    box.eval()
    return Recipe({}, teacher=lambda x: one_hot_logits(box(x).float()), T=1.0)
