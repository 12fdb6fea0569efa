"""Distilling a student (paper Eq. 2/3): from a plain model (anyone) or a KeyedTeacher (key holders)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import InputError
from .losses import kd_loss
from .progress import progress_bar

TeacherFn = Callable[[torch.Tensor], torch.Tensor]


def as_teacher(teacher: nn.Module | TeacherFn) -> TeacherFn:
    """A frozen, eval-mode, no-grad logits function from a model or a KeyedTeacher."""
    if isinstance(teacher, nn.Module):
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)

    @torch.inference_mode()
    def logits(x: torch.Tensor) -> torch.Tensor:
        return teacher(x)

    return logits


@dataclass
class DistillResult:
    losses: list[float]  # mean loss per epoch


def distill_step(
    student: nn.Module, teacher_logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, alpha: float, T: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 2/3: ``(1−α)·CE(S(x), y) + α·L_kd(z_S/T, z_T/T)``. Returns (logits, {term: value})."""
    z = student(x)
    ce = F.cross_entropy(z, y)
    kd = kd_loss(z, teacher_logits.clone(), T)
    return z, {"ce": ce, "kd": kd, "total": (1 - alpha) * ce + alpha * kd}


def distill(
    student: nn.Module,
    teacher: nn.Module | TeacherFn | None,
    loader: Iterable,
    *,
    epochs: int = 10,
    alpha: float = 0.9,
    T: float = 4.0,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    device: str | torch.device = "cpu",
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
) -> DistillResult:
    """Train ``student`` by KD from ``teacher`` (``None``: labels only, i.e. from scratch).

    ``teacher`` is a plain model (an unauthorized user: it sees x) or a
    :class:`~sdbox.KeyedTeacher` (a key holder: it sees x̃). Defaults follow Nasty Teacher's
    CIFAR student setting: Adam at lr 1e-3, α = 0.9, T = 4. ``augment`` runs on each batch (on
    ``device``) before both models see it, so teacher and student see the same image.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"Expected `alpha` in [0, 1], but got {alpha}.")
    if not T > 0:
        raise ValueError(f"Expected `T` > 0, but got {T}.")
    teacher_fn = as_teacher(teacher) if teacher is not None else None
    student.to(device).train()
    optimizer = optimizer or torch.optim.Adam(student.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        total, steps = torch.zeros((), device=device), 0
        for x, y in progress_bar(loader, desc=f"distill epoch {epoch + 1}/{epochs}", enabled=progress):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if augment is not None:
                x = augment(x)
            if teacher_fn is None:
                loss = F.cross_entropy(student(x), y)
            else:
                loss = distill_step(student, teacher_fn(x), x, y, alpha, T)[1]["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            steps += 1
        if steps == 0:
            raise InputError("Expected a loader with at least one batch, but it is empty: check the dataset path and filters.")
        history.append(total.item() / steps)
    student.eval()
    return DistillResult(history)
