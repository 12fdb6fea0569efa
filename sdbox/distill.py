"""Distilling a student (paper Eq. 2/3): from a plain model (anyone) or a KeyedTeacher (key holders)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import InputError, NonFiniteLossError
from .inputs import batch_of_one_message, check_reiterable, check_temperature, checked_batches, finite_number, has_batchnorm
from .losses import kd_loss
from .progress import progress_bar
from .restoring import eval_mode

TeacherFn = Callable[[torch.Tensor], torch.Tensor]


def teacher_logits(teacher: nn.Module | TeacherFn, x: torch.Tensor) -> torch.Tensor:
    """The teacher's logits with no graph. A module runs in eval mode for the call and gets its
    own modes back after it; its ``requires_grad`` flags are never touched (inference mode needs
    none), so the same model can be wrapped or trained afterwards."""
    with torch.inference_mode():
        if isinstance(teacher, nn.Module):
            with eval_mode(teacher):
                return teacher(x)
        return teacher(x)


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

    Every batch's structure is checked (:func:`~sdbox.inputs.check_batch`), and after each epoch
    the mean loss and the student's weights must be finite, else :class:`NonFiniteLossError`
    (a NaN batch or a learning rate too high): a NaN student is never returned as a result.
    """
    if not finite_number(alpha) or not 0 <= alpha <= 1:
        raise InputError(f"Expected `alpha` in [0, 1], but got {alpha!r}: pass e.g. alpha=0.9.")
    if optimizer is None and (not finite_number(lr) or not lr > 0):
        raise InputError(f"Expected `lr` to be a finite number > 0, but got {lr!r}: pass e.g. lr=1e-3.")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"Expected `epochs` to be an integer ≥ 1, but got {epochs!r}.")
    check_temperature(T)
    if epochs > 1:
        check_reiterable(loader)
    student.to(device).train()
    needs_pairs = has_batchnorm(student)
    optimizer = optimizer or torch.optim.Adam(student.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        total, steps = torch.zeros((), device=device), 0
        for x, y in progress_bar(checked_batches(loader), desc=f"distill epoch {epoch + 1}/{epochs}", enabled=progress):
            if needs_pairs and len(x) < 2:
                raise InputError(batch_of_one_message())
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if augment is not None:
                x = augment(x)
            try:
                if teacher is None:
                    loss = F.cross_entropy(student(x), y)
                else:
                    loss = distill_step(student, teacher_logits(teacher, x), x, y, alpha, T)[1]["total"]
            except IndexError as e:  # cross-entropy on CPU: a label the student has no output for
                raise InputError(
                    f"Expected class labels in [0, num_classes) of the student, but got one outside ({e}): "
                    "check the dataset's class mapping, or the student's number of outputs."
                ) from None
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            try:
                optimizer.step()
            except RuntimeError as e:  # Adam with lr ≳ 1e37: its step size no longer fits a float32
                if "overflow" not in str(e):
                    raise
                raise NonFiniteLossError(f"The optimiser's step overflowed float32 in epoch {epoch + 1} ({e}): "
                                         f"{_non_finite_fix(optimizer)}") from None
            total += loss.detach()
            steps += 1
        if steps == 0:
            raise InputError("Expected a loader with at least one batch, but it is empty: check the dataset path and filters.")
        history.append(total.item() / steps)
        _check_finite(student, history[-1], epoch + 1, optimizer)
    student.eval()
    return DistillResult(history)


def _non_finite_fix(optimizer: torch.optim.Optimizer) -> str:
    return (f"lower `lr` (now {optimizer.param_groups[0]['lr']:g}; `--lr` for `sdbox distill`), and check the inputs and the "
            "teacher's logits for NaN or infinite values. The student's weights are no longer usable: distil again into a fresh student.")


def _check_finite(student: nn.Module, mean_loss: float, epoch: int, optimizer: torch.optim.Optimizer) -> None:
    """Raise if the epoch's mean loss or any student weight is NaN or infinite. The weights are
    checked too: the step that breaks them can be an epoch's last, after its (finite) loss."""
    fix = _non_finite_fix(optimizer)
    if not math.isfinite(mean_loss):
        raise NonFiniteLossError(f"The distillation loss became {mean_loss} in epoch {epoch}: {fix}")
    params = dict(student.named_parameters())
    finite = torch.stack([torch.isfinite(p).all() for p in params.values()]).tolist() if params else []  # one host sync
    broken = [name for name, ok in zip(params, finite) if not ok]
    if broken:
        raise NonFiniteLossError(f"{len(broken)} of the student's weight tensors became NaN or infinite in epoch {epoch} "
                                 f"(first: {broken[0]}): {fix}")
