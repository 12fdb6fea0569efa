"""Temperature sweep (SDB Table 5): plain KD from the box's clean logits at many T and α.

A disturbed teacher hides its knowledge in the *shape* of its soft labels; a high temperature
flattens that shape and a low one keeps only the top classes, so if any T still teaches, the
disturbance is tuned to one temperature only. α = 1 is pure KD (no labels), α = 0.5 leans on labels.
"""

from __future__ import annotations

from ..box import SafeBox
from .base import AttackData, AttackResult, Budget, Recipe, StudentFactory, distill_from_targets, kd_ce_loss, logits_of

GRID = [{"T": T, "alpha": a} for T in (1, 2, 4, 8, 16, 32) for a in (0.5, 0.9, 1.0)]
QUICK_GRID = [{"T": 1, "alpha": 0.9}, {"T": 4, "alpha": 0.9}, {"T": 16, "alpha": 0.9}, {"T": 4, "alpha": 1.0}]


def attack(
    box: SafeBox, data: AttackData, student_factory: StudentFactory, budget: Budget, *, T: float = 4.0, alpha: float = 0.9
) -> AttackResult:
    """KD from ``box(x)`` at temperature ``T`` with weight ``alpha`` on the KD term."""
    if not T > 0:
        raise ValueError(f"Expected `T` > 0, but got {T}.")
    if not 0 <= alpha <= 1:
        raise ValueError(f"Expected `alpha` in [0, 1], but got {alpha}.")
    targets = logits_of(box, data.train_x, device=budget.device)
    return distill_from_targets(student_factory, data, budget, targets, kd_ce_loss(alpha, T), {"T": T, "alpha": alpha}, desc=f"temperature T={T}")


def recipe(box: SafeBox, data: AttackData, budget: Budget, *, T: float | None = None) -> Recipe:
    """Plain KD from the box's clean logits at ``T`` (None: the run's temperature)."""
    if T is not None and not T > 0:
        raise ValueError(f"Expected `T` > 0, but got {T}.")
    return Recipe({} if T is None else {"T": T}, teacher=box.eval(), T=T)
