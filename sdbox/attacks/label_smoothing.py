"""The label-smoothing bar (CMIM, 2025): a student trained on the box's own top-1, smoothed.

Later work asks more of a protecting teacher than losing to scratch: its student must not beat
one trained with label smoothing built from the teacher's own predictions, since the top-1 is
what a box cannot hide. Targets: ``(1−ε)·onehot(argmax box(x)) + ε/K``, learnt through the
benchmark's KD loss at T = 1 (KL to a fixed distribution is cross-entropy to it up to a
constant), with the run's weight on CE to the attacker's labels.

ε is chosen on the attacker's data: by default the maximum-likelihood ε for the attacker's
labels under the smoothed targets, which has a closed form: with a the box's top-1 accuracy on
the attacker's images, the smoothed target gives the top class 1 − ε + ε/K = a, hence
ε = K(1 − a)/(K − 1) (clipped to [10⁻³, 1]).
"""

from __future__ import annotations

import math

import torch

from ..box import SafeBox
from .base import AttackData, AttackResult, Budget, Recipe, StudentFactory, logits_of, run_recipe

GRID = [{"eps": None}, {"eps": 0.1}]
QUICK_GRID = GRID[:1]


def fitted_eps(accuracy: float, num_classes: int) -> float:
    """The maximum-likelihood ε for labels the box's top-1 gets right a fraction ``accuracy`` of the time."""
    if not 0 <= accuracy <= 1 or num_classes < 2:
        raise ValueError(f"Expected `accuracy` in [0, 1] and `num_classes` ≥ 2, but got {accuracy} and {num_classes}.")
    return min(1.0, max(1e-3, num_classes * (1 - accuracy) / (num_classes - 1)))


def smoothed_logits(box_logits: torch.Tensor, eps: float) -> torch.Tensor:
    """log((1−ε)·onehot(top-1) + ε/K): logits whose softmax is the smoothed target."""
    k = box_logits.shape[1]
    top = box_logits.argmax(1, keepdim=True)
    low = math.log(eps / k)
    high = math.log(1 - eps + eps / k)
    return torch.full_like(box_logits, low).scatter(1, top, high)


def recipe(box: SafeBox, data: AttackData, budget: Budget, *, eps: float | None = None) -> Recipe:
    logits = logits_of(box, data.train_x, device=budget.device)
    accuracy = (logits.argmax(1) == data.train_y).float().mean().item()
    chosen = fitted_eps(accuracy, logits.shape[1]) if eps is None else float(eps)
    if not 0 < chosen <= 1:
        raise ValueError(f"Expected `eps` in (0, 1], but got {eps}.")
    box.eval()
    teacher = lambda x: smoothed_logits(box(x).float(), chosen)  # noqa: E731
    extra = {"box_train_agreement": round(100.0 * accuracy, 2), "eps": round(chosen, 4)}
    return Recipe({"eps": "fitted" if eps is None else eps}, teacher=teacher, T=1.0, extra=extra)


def attack(
    box: SafeBox, data: AttackData, student_factory: StudentFactory, budget: Budget, *, eps: float | None = None, alpha: float = 0.9
) -> AttackResult:
    """Label smoothing on the box's top-1 with ``eps`` (None: fitted on the attacker's labels)."""
    return run_recipe(recipe(box, data, budget, eps=eps), student_factory, data, budget, alpha=alpha, desc="label smoothing")
