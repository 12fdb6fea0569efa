"""Feature distillation: learn from the box's intermediate features, where no logit disturbance lives.

The wrap disturbs the box's soft labels; the features behind them only have to keep the top-1
right. A white-box attacker can read them:

- ``hint`` (FitNets, Romero et al., ICLR 2015): a learned linear regressor maps the student's
  penultimate features onto the box's, ``‖r(f_s) − f_t‖²`` (mean squared error per value);
- ``attention`` (Zagoruyko & Komodakis, ICLR 2017): the student's spatial attention maps match
  the box's at every resolution both networks share, ``β/2 · Σ mean((at_s − at_t)²)``, β = 1000;
- ``both``: the sum of the two.

Each is added to cross-entropy on the attacker's labels; the box's logits are never used.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..box import SafeBox
from .base import AttackData, AttackResult, Budget, Objective, Recipe, StudentFactory, run_recipe
from .features import Taps, attention_loss

MODES = ("hint", "attention", "both")
GRID = [{"mode": "hint", "weight": 1.0}, {"mode": "attention", "weight": 1000.0}, {"mode": "both", "weight": 1.0}]
QUICK_GRID = GRID[:2]


class FeatureObjective(Objective):
    """CE(student(x), y) + the hint and/or attention terms against ``box``'s features on x."""

    def __init__(self, box: nn.Module, mode: str, weight: float, sample: torch.Tensor):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"Expected `mode` in {MODES}, but got {mode!r}.")
        if not weight > 0:
            raise ValueError(f"Expected `weight` > 0, but got {weight}.")
        object.__setattr__(self, "box", box)  # read, never trained: not a submodule (no parameters, no train mode)
        self.mode, self.weight = mode, weight
        self.teacher_taps = Taps(box, penultimate=mode != "attention", maps=mode != "hint")
        self.student_taps: Taps | None = None
        self.sample = sample[:2]
        self.regressor: nn.Linear | None = None

    def bind(self, student: nn.Module) -> None:
        self.student_taps = Taps(student, penultimate=self.mode != "attention", maps=self.mode != "hint")
        if self.mode != "attention" and self.regressor is None:
            device = next(student.parameters()).device
            was = student.training
            student.eval()
            with torch.no_grad():
                student(self.sample.to(device))
                self._teacher(self.sample.to(device))
            student.train(was)
            s_dim, t_dim = self.student_taps.penultimate.shape[1], self.teacher_taps.penultimate.shape[1]
            self.regressor = nn.Linear(s_dim, t_dim).to(device)

    def unbind(self) -> None:
        if self.student_taps is not None:
            self.student_taps.remove()

    def close(self) -> None:
        self.teacher_taps.remove()

    @torch.no_grad()
    def _teacher(self, x: torch.Tensor) -> None:
        self.box.eval()
        self.box(x)

    def param_groups(self) -> list[dict]:
        return [{"params": list(self.regressor.parameters())}] if self.regressor is not None else []

    def forward(self, student: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._teacher(x)
        z = student(x)
        loss = F.cross_entropy(z, y)
        if self.mode in ("hint", "both"):
            hint = F.mse_loss(self.regressor(self.student_taps.penultimate), self.teacher_taps.penultimate.detach())
            self.log("hint_loss", hint)
            loss = loss + (self.weight if self.mode == "hint" else 1.0) * hint
        if self.mode in ("attention", "both"):
            teacher_maps = {k: v.detach() for k, v in self.teacher_taps.maps.items()}
            at = attention_loss(self.student_taps.maps, teacher_maps)
            self.log("attention_loss", at)
            loss = loss + (self.weight if self.mode == "attention" else 1000.0) / 2 * at
        return loss


def recipe(box: SafeBox, data: AttackData, budget: Budget, *, mode: str = "hint", weight: float = 1.0) -> Recipe:
    objective = FeatureObjective(box, mode, weight, data.train_x)
    return Recipe({"mode": mode, "weight": weight}, objective=objective, extra={}, T=None)


def attack(
    box: SafeBox, data: AttackData, student_factory: StudentFactory, budget: Budget, *, mode: str = "hint", weight: float = 1.0
) -> AttackResult:
    """CE on the attacker's labels plus the ``mode`` feature term from the box, weighted by ``weight``."""
    r = recipe(box, data, budget, mode=mode, weight=weight)
    try:
        return run_recipe(r, student_factory, data, budget, desc=f"features {mode}")
    finally:
        r.objective.close()
