"""What every attack shares: the attacker's data, the budget, the result, and one training loop.

All attacks train the same student, on the same images, for the same epochs, from the same
initial weights (seeded per run), so a row's accuracy differs from the Scratch row only by
what the attack took from the box. Inputs are decoded once into normalised float tensors and,
since there is no augmentation, the box's targets are computed once per attack rather than
every epoch: on a CPU this is what makes a dozen students fit in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

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


class TensorBatches:
    """Re-iterable (x, y, index) batches over normalised tensors ((x, y) with ``index=False``):
    shuffled by its own seeded generator (so a job's batches depend on its seed alone),
    optionally flipped at random, and without a ragged batch of one (BatchNorm needs two)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, *, flip: bool = False,
                 device: str | torch.device = "cpu", index: bool = True):
        self.x, self.y, self.batch_size, self.flip, self.device, self.index = x, y, batch_size, flip, device, index
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.y)
        return sum(1 for i in range(0, n, self.batch_size) if min(self.batch_size, n - i) >= 2)

    def __iter__(self):
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator)
        for i in range(0, n, self.batch_size):
            idx = order[i : i + self.batch_size]
            if len(idx) < 2:
                continue
            x = self.x[idx]
            if self.flip:
                flipped = torch.rand(len(idx), generator=self.generator) < 0.5
                x = torch.where(flipped.view(-1, 1, 1, 1), x.flip(3), x)
            batch = (x.to(self.device), self.y[idx].to(self.device))
            yield (*batch, idx) if self.index else batch


def train_student(
    student: nn.Module,
    batches: Iterable,
    step_loss: Callable[[nn.Module, Any], torch.Tensor],
    *,
    epochs: int,
    lr: float,
    device: str | torch.device = "cpu",
    param_groups: Sequence[dict[str, Any]] = (),
    progress: bool = False,
    desc: str = "student",
) -> list[float]:
    """The attacks' one training loop: Adam (the distill defaults) on ``step_loss(student, batch)``
    for every batch of ``batches`` (re-iterable), ``epochs`` times. ``param_groups`` adds an
    attack's own trainable parameters (a feature regressor, a class map), each group with its own
    ``lr`` if given. Returns the mean loss per epoch; the student comes back in eval mode."""
    student.to(device).train()
    optimizer = torch.optim.Adam([{"params": list(student.parameters())}, *param_groups], lr=lr)
    history = []
    for _ in progress_bar(range(epochs), desc=desc, enabled=progress):
        total, steps = 0.0, 0
        for batch in batches:
            value = step_loss(student, batch)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            total, steps = total + value.item(), steps + 1
        history.append(total / max(steps, 1))
    student.eval()
    return history


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

    def step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y, idx = batch
        z = model(x)
        return F.cross_entropy(z, y) if targets is None else loss(z, targets[idx].to(device), y)

    batches = TensorBatches(data.train_x, data.train_y, budget.batch_size, budget.seed, device=device)
    train_student(student, batches, step, epochs=budget.epochs, lr=budget.lr, device=device, progress=budget.progress, desc=desc)
    return student


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


class Objective(nn.Module):
    """A student's loss beyond KD on a teacher's logits (feature distillation, class-level repair).

    ``bind(student)`` is called once before training (e.g. to hook the student's features);
    ``forward(student, x, y)`` returns the step's loss; ``unbind()`` removes what ``bind`` added.
    The objective's own parameters train with the student (``lr``: their own rate, else the
    student's); ``history`` collects named measurements (e.g. the hint loss per epoch) for ``extra``.
    """

    lr: float | None = None

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}

    def bind(self, student: nn.Module) -> None:
        pass

    def unbind(self) -> None:
        pass

    def param_groups(self) -> list[dict[str, Any]]:
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return []
        return [{"params": params, **({"lr": self.lr} if self.lr is not None else {})}]

    def log(self, name: str, value: torch.Tensor) -> None:
        self.history.setdefault(name, []).append(float(value.detach()))

    def summary(self, steps_per_epoch: int) -> dict[str, Any]:
        """Each logged value's mean over the first and the last epoch."""
        out: dict[str, Any] = {}
        for name, values in self.history.items():
            k = max(1, min(steps_per_epoch, len(values)))
            out[f"{name}_first_epoch"] = round(sum(values[:k]) / k, 4)
            out[f"{name}_last_epoch"] = round(sum(values[-k:]) / k, 4)
        return out


@dataclass
class Recipe:
    """What an attack hands the student's training: KD from ``teacher``'s logits at ``T`` (None:
    the run's temperature) or, for attacks that need more than logits, an :class:`Objective`."""

    settings: dict[str, Any]
    teacher: Callable[[torch.Tensor], torch.Tensor] | None = None
    T: float | None = None
    objective: Objective | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.teacher is None) == (self.objective is None):
            raise ValueError("Expected exactly one of `teacher` and `objective` in a Recipe.")


def train_on_objective(
    student: nn.Module, objective: Objective, batches: Iterable, *, epochs: int, lr: float,
    device: str | torch.device = "cpu", progress: bool = False, desc: str = "student",
) -> dict[str, Any]:
    """Train ``student`` with ``objective`` (and the objective's parameters) on ``batches`` of
    (x, y[, …]); returns the objective's summary for ``extra``."""
    objective.to(device).train()
    objective.bind(student)
    try:
        train_student(student, batches, lambda model, b: objective(model, b[0], b[1]), epochs=epochs, lr=lr, device=device,
                      param_groups=objective.param_groups(), progress=progress, desc=desc)
    finally:
        objective.unbind()
    objective.eval()
    steps = len(batches) if hasattr(batches, "__len__") else 1
    return objective.summary(steps)


def run_recipe(
    recipe: Recipe, student_factory: StudentFactory, data: AttackData, budget: Budget,
    *, T: float = 4.0, alpha: float = 0.9, desc: str = "student",
) -> AttackResult:
    """An attack's recipe on the attacker's tensors (``sdbox attack``'s regime: no augmentation,
    targets computed once): KD from the recipe's teacher, or its objective."""
    settings = dict(recipe.settings)
    if recipe.teacher is not None:
        T = recipe.T if recipe.T is not None else T
        targets = logits_of(recipe.teacher, data.train_x, device=budget.device)
        settings.update(T=T, alpha=alpha)
        return distill_from_targets(student_factory, data, budget, targets, kd_ce_loss(alpha, T), settings, recipe.extra, desc=desc)
    student = new_student(student_factory, budget)
    batches = TensorBatches(data.train_x, data.train_y, budget.batch_size, budget.seed, device=budget.device)
    extra = {**recipe.extra, **train_on_objective(student, recipe.objective, batches, epochs=budget.epochs, lr=budget.lr,
                                                  device=budget.device, progress=budget.progress, desc=desc)}
    return AttackResult(student, score(student, data, budget.device), settings, extra)
