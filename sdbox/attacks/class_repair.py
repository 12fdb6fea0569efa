"""Class-level repair: learn a per-class map from the box's soft labels to targets, with the student.

If the disturbance moves probability mass between classes in a way that depends on the class
more than on the image (a decoy class per true class, a fixed confusion), a row-stochastic
K×K matrix M (row i: where class i's mass should go; a Markov transition) undoes it. M is fitted
on the attacker's labels, ``NLL(y | σ(z_box) M)``, jointly with the student, which learns by KD
from the repaired soft labels ``σ(z_box/T) M`` (held fixed for the student's gradient) plus CE on
the labels. M = softmax(W) row by row; W starts at zero (every row uniform: no prior), so on an
undisturbed box the map has to find the identity by itself.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..box import SafeBox
from .base import AttackData, AttackResult, Budget, Objective, Recipe, StudentFactory, run_recipe

GRID = [{"map_lr": 0.05}]
QUICK_GRID = GRID


class ClassMap(Objective):
    """The K×K map and the student's loss: (1−α)·CE(z, y) + α·T²·KL(σ(z_box/T)M ‖ σ(z/T)) + NLL(y | σ(z_box)M)."""

    def __init__(self, box: nn.Module, num_classes: int, *, T: float = 4.0, alpha: float = 0.9, map_lr: float = 0.05):
        super().__init__()
        if not T > 0 or not 0 <= alpha <= 1 or not map_lr > 0:
            raise ValueError(f"Expected `T` > 0, `alpha` in [0, 1] and `map_lr` > 0, but got {T}, {alpha} and {map_lr}.")
        object.__setattr__(self, "box", box)  # read, never trained
        self.T, self.alpha, self.lr = T, alpha, map_lr
        self.logits_map = nn.Parameter(torch.zeros(num_classes, num_classes))

    @property
    def matrix(self) -> torch.Tensor:
        """M, each row a distribution over target classes."""
        return F.softmax(self.logits_map, dim=1)

    def repaired(self, box_logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
        """σ(z_box/T) M: the repaired distribution over classes."""
        return F.softmax(box_logits / T, dim=1) @ self.matrix

    def forward(self, student: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.box.eval()
            z_box = self.box(x).float()
        map_loss = F.nll_loss(self.repaired(z_box).clamp_min(1e-8).log(), y)
        target = self.repaired(z_box, self.T).detach().clamp_min(1e-8)
        z = student(x)
        kd = F.kl_div(F.log_softmax(z / self.T, dim=1), target, reduction="batchmean") * self.T**2
        self.log("map_nll", map_loss)
        return (1 - self.alpha) * F.cross_entropy(z, y) + self.alpha * kd + map_loss

    def summary(self, steps_per_epoch: int) -> dict:
        m = self.matrix.detach().cpu()
        return {**super().summary(steps_per_epoch), "map_diagonal_mean": round(m.diag().mean().item(), 4),
                "map_argmax": m.argmax(1).tolist()}


def recipe(box: SafeBox, data: AttackData, budget: Budget, *, map_lr: float = 0.05, T: float = 4.0, alpha: float = 0.9) -> Recipe:
    with torch.no_grad():
        num_classes = box.eval()(data.train_x[:2].to(budget.device)).shape[1]
    return Recipe({"map_lr": map_lr, "T": T, "alpha": alpha}, objective=ClassMap(box, num_classes, T=T, alpha=alpha, map_lr=map_lr))


def attack(
    box: SafeBox, data: AttackData, student_factory: StudentFactory, budget: Budget,
    *, map_lr: float = 0.05, T: float = 4.0, alpha: float = 0.9,
) -> AttackResult:
    """Fit the class map (Adam at ``map_lr``) and the student together; KD at ``T`` with weight ``alpha``."""
    return run_recipe(recipe(box, data, budget, map_lr=map_lr, T=T, alpha=alpha), student_factory, data, budget, desc="class repair")
