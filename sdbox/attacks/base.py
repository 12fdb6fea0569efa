"""What every attack shares: the attacker's data, the budget, the result, and one training loop.

All attacks train the same student, on the same images, for the same epochs, from the same
initial weights (seeded per run), so a row's accuracy differs from the Scratch row only by
what the attack took from the box. Inputs are decoded once into normalised float tensors and,
since there is no augmentation, the box's targets are computed once per attack rather than
every epoch: on a CPU this is what makes a dozen students fit in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import CIFAR10_MEAN, CIFAR10_STD
from ..evaluate import evaluate
from ..progress import progress_bar
from ..restoring import seeded

TeacherFn = Callable[[torch.Tensor], torch.Tensor]
StudentFactory = Callable[[], nn.Module]
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class AttackData:
    """What the attacker holds: training images and labels, and a test split to score students.

    Images are normalised float tensors (N, C, H, W) in the box's input space. ``reference`` is
    optional: a student the attacker trained from scratch on the same data (key search uses its
    soft labels as the shape of a normal teacher; the runner passes its Scratch student).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...] = CIFAR10_MEAN
    std: tuple[float, ...] = CIFAR10_STD
    reference: nn.Module | None = None

    def __post_init__(self) -> None:
        for name in ("train_x", "test_x"):
            value = getattr(self, name)
            if value.dim() != 4 or not value.is_floating_point():
                raise ValueError(f"Expected `{name}` as normalised float images (N, C, H, W), but got {value.dtype} {tuple(value.shape)}.")
        if len(self.train_x) != len(self.train_y) or len(self.test_x) != len(self.test_y):
            raise ValueError("Expected as many labels as images in both splits: check `train_y` and `test_y`.")

    @classmethod
    def from_uint8(
        cls, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
        mean: Sequence[float], std: Sequence[float],
    ) -> "AttackData":
        """Normalise uint8 (images, labels) pairs, e.g. from :func:`sdbox.data.decode_image_folder`."""
        m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
        norm = lambda images: (images.float() / 255 - m) / s  # noqa: E731
        return cls(norm(train[0]), train[1], norm(test[0]), test[1], tuple(mean), tuple(std))

    def test_loader(self, batch_size: int = 500) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.test_x[i : i + batch_size], self.test_y[i : i + batch_size]) for i in range(0, len(self.test_y), batch_size)]


@dataclass
class Budget:
    """How much the attacker spends per student; the same for every attack and the baselines."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    key_search_steps: int = 500
    n_keys: int = 8
    seed: int = 0
    device: str = "cpu"
    progress: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.key_search_steps < 1 or self.n_keys < 1:
            raise ValueError(f"Expected positive `epochs`, `batch_size`, `key_search_steps` and `n_keys`, but got {self}.")


@dataclass
class AttackResult:
    """The student an attack produced, its test accuracy (%), the settings used, and extras.

    ``extra`` holds JSON-ready measurements, except ``key_candidate`` (a tensor) from key search,
    which the runner compares with the true key and then drops.
    """

    student: nn.Module
    accuracy: float
    settings: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


@torch.inference_mode()
def logits_of(teacher: TeacherFn, x: torch.Tensor, batch_size: int = 500, device: str = "cpu") -> torch.Tensor:
    """The teacher's logits on every image of ``x``, batched, on the CPU."""
    if isinstance(teacher, nn.Module):
        teacher.eval()
    return torch.cat([teacher(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])


def kd_ce_loss(alpha: float, T: float) -> LossFn:
    """``(1−α)·CE(z_s, y) + α·T²·KL(σ(z_t/T) ‖ σ(z_s/T))``: :func:`sdbox.distill`'s loss, on targets."""
    from ..losses import kd_loss

    def loss(z: torch.Tensor, target: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (1 - alpha) * F.cross_entropy(z, y) + alpha * kd_loss(z, target, T)

    return loss


def fit(
    student: nn.Module,
    data: AttackData,
    budget: Budget,
    targets: torch.Tensor | None = None,
    loss: LossFn | None = None,
    desc: str = "student",
) -> nn.Module:
    """Train ``student`` on ``data.train_x`` with Adam (the distill defaults), one target row per image.

    ``targets=None`` trains on labels only (the Scratch baseline); otherwise ``loss(z, targets[batch], y)``.
    """
    device = budget.device
    student.to(device).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=budget.lr)
    generator = torch.Generator().manual_seed(budget.seed)
    n = len(data.train_y)
    for epoch in progress_bar(range(budget.epochs), desc=desc, enabled=budget.progress):
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, budget.batch_size):
            idx = order[i : i + budget.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            x, y = data.train_x[idx].to(device), data.train_y[idx].to(device)
            z = student(x)
            value = F.cross_entropy(z, y) if targets is None else loss(z, targets[idx].to(device), y)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
    return student.eval()


def score(student: nn.Module, data: AttackData, device: str = "cpu") -> float:
    """Test accuracy (%) of a student."""
    return evaluate(student, data.test_loader(), device=device)["acc"]


def new_student(student_factory: StudentFactory, budget: Budget) -> nn.Module:
    """A fresh student with the run's seeded initial weights: every row starts from the same point.

    Seeded on a fork of the global generator, so the caller's random stream is left as it was.
    """
    with seeded(budget.seed):
        return student_factory()


def distill_from_targets(
    student_factory: StudentFactory, data: AttackData, budget: Budget, targets: torch.Tensor | None,
    loss: LossFn | None, settings: dict[str, Any], extra: dict[str, Any] | None = None, desc: str = "student",
) -> AttackResult:
    """The common tail of an attack: train a fresh student on the targets and score it."""
    student = fit(new_student(student_factory, budget), data, budget, targets, loss, desc=desc)
    return AttackResult(student, score(student, data, budget.device), settings, extra or {})
