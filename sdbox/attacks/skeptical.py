"""Skeptical Student (Kundu et al., NeurIPS 2021): distil the box into an auxiliary head.

The student's own classifier learns from labels only; a small auxiliary head on an
intermediate feature map takes the (possibly nasty) soft labels, and its gradients shape only
the early layers. KD starts after ``delay`` epochs, once those features are label-trained, so
a misleading teacher can steer representation learning less than it steers a final head.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..box import SafeBox
from ..losses import kd_loss
from ..progress import progress_bar
from .base import AttackData, AttackResult, Budget, StudentFactory, logits_of, new_student, score

GRID = [{"T": 4.0, "alpha": 0.9, "delay_frac": 0.25}, {"T": 10.0, "alpha": 0.9, "delay_frac": 0.25}]
QUICK_GRID = GRID[:1]
DEFAULT_TAP = "features.7"  # CNN5: the ReLU closing block 2 (64 channels at 8×8)


class AuxHead(nn.Module):
    """conv3×3 → BN → ReLU → global average pool → linear: a head for one feature map."""

    def __init__(self, channels: int, num_classes: int, width: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def _tap(student: nn.Module, name: str) -> tuple[torch.utils.hooks.RemovableHandle, dict[str, torch.Tensor]]:
    """Hook the named submodule; the dict receives its output on every forward until the handle is removed."""
    modules = dict(student.named_modules())
    if name not in modules:
        raise ValueError(f"The student has no module named {name!r}: pass `tap=` one of {[n for n in modules if n][:12]}…")
    seen: dict[str, torch.Tensor] = {}
    handle = modules[name].register_forward_hook(lambda _m, _i, out: seen.__setitem__("features", out))
    return handle, seen


def attack(
    box: SafeBox, data: AttackData, student_factory: StudentFactory, budget: Budget,
    *, T: float = 4.0, alpha: float = 0.9, delay_frac: float = 0.25, tap: str = DEFAULT_TAP,
) -> AttackResult:
    """Final head: CE on labels. Aux head at ``tap``: (1−α)·CE + α·KD(box, T), from epoch ⌈delay_frac·epochs⌉."""
    if not 0 <= delay_frac < 1:
        raise ValueError(f"Expected `delay_frac` in [0, 1), but got {delay_frac}.")
    device = budget.device
    targets = logits_of(box, data.train_x, device=device)
    student = new_student(student_factory, budget).to(device)
    handle, seen = _tap(student, tap)
    student.eval()
    with torch.no_grad():
        student(data.train_x[:2].to(device))
    head = AuxHead(seen["features"].shape[1], targets.shape[1]).to(device)
    params = list(student.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=budget.lr)
    generator = torch.Generator().manual_seed(budget.seed)
    delay = int(delay_frac * budget.epochs + 0.999)
    n = len(data.train_y)
    for epoch in progress_bar(range(budget.epochs), desc="skeptical", enabled=budget.progress):
        student.train(), head.train()
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, budget.batch_size):
            idx = order[i : i + budget.batch_size]
            if len(idx) < 2:
                continue
            x, y = data.train_x[idx].to(device), data.train_y[idx].to(device)
            z = student(x)
            aux = head(seen["features"])
            loss = F.cross_entropy(z, y) + (1 - alpha) * F.cross_entropy(aux, y)
            if epoch >= delay:
                loss = loss + alpha * kd_loss(aux, targets[idx].to(device), T)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    handle.remove()
    student.eval()
    settings = {"T": T, "alpha": alpha, "delay_epochs": delay, "tap": tap}
    return AttackResult(student, score(student, data, device), settings)
