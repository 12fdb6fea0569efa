"""Wash then distil: fine-tune a copy of the box on the attacker's labels, then distil from the copy.

The box is white-box, so nothing stops an attacker from training it. A few epochs of plain
cross-entropy on the attacker's labelled slice pull the clean stream's logits back towards what
the labels ask for; if the disturbance is a thin layer on top of intact features, the washed
copy is a teacher again. The copy is fine-tuned with the benchmark teacher's own recipe (SGD,
momentum 0.9, weight decay 5e-4, cosine schedule; :func:`sdbox.benchmark.train.train_classifier`),
on the attacker's images with random flips, BatchNorm statistics included; then the student
learns from it by plain KD.
"""

from __future__ import annotations

import copy

import torch

from ..box import SafeBox
from ..keyed_norm import root
from .base import AttackData, AttackResult, Budget, Recipe, StudentFactory, TensorBatches, run_recipe

GRID = [{"wash_epochs": 3, "lr": 0.01}, {"wash_epochs": 10, "lr": 0.01}]
QUICK_GRID = GRID[:1]


def washed(box: torch.nn.Module, data: AttackData, budget: Budget, *, wash_epochs: int = 3, lr: float = 0.01) -> torch.nn.Module:
    """A fine-tuned copy of the box's classifier (the box itself is left as it was)."""
    from ..benchmark.train import train_classifier

    if wash_epochs < 1 or not lr > 0:
        raise ValueError(f"Expected `wash_epochs` ≥ 1 and `lr` > 0, but got {wash_epochs} and {lr}.")
    model = copy.deepcopy(root(box)).requires_grad_(True)
    batches = TensorBatches(data.train_x, data.train_y, budget.batch_size, budget.seed + 2, flip=True, device=budget.device, index=False)
    train_classifier(model, batches, epochs=wash_epochs, lr=lr, device=budget.device, progress=False)
    return model.eval()


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: str) -> float:
    with torch.inference_mode():
        correct = sum((model(x[i : i + 500].to(device)).argmax(1).cpu() == y[i : i + 500]).sum().item() for i in range(0, len(y), 500))
    return round(100.0 * correct / len(y), 2)


def recipe(box: SafeBox, data: AttackData, budget: Budget, *, wash_epochs: int = 3, lr: float = 0.01) -> Recipe:
    before = _accuracy(box.eval(), data.train_x, data.train_y, budget.device)
    model = washed(box, data, budget, wash_epochs=wash_epochs, lr=lr)
    extra = {"box_train_acc_before": before, "box_train_acc_after": _accuracy(model, data.train_x, data.train_y, budget.device)}
    return Recipe({"wash_epochs": wash_epochs, "lr": lr}, teacher=model, extra=extra)


def attack(
    box: SafeBox, data: AttackData, student_factory: StudentFactory, budget: Budget,
    *, wash_epochs: int = 3, lr: float = 0.01, T: float = 4.0, alpha: float = 0.9,
) -> AttackResult:
    """Fine-tune a copy of the box for ``wash_epochs`` at ``lr`` with CE, then KD from it at ``T``."""
    return run_recipe(recipe(box, data, budget, wash_epochs=wash_epochs, lr=lr), student_factory, data, budget, T=T, alpha=alpha, desc="wash")
