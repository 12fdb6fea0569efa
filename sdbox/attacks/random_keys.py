"""Random keys (SDB Table 6): guess the key by drawing plausible ones, then distil through them.

The attacker knows how keys are made (uniform pixel noise, normalised with the box's mean/std)
and λ, but not the draw (its draws are seeded, for reproducible rows). If the box had learnt "any noise in x̃ opens me" rather than "this κ
opens me", a fresh key, Gaussian noise or the dataset's mean image would open it too. With N
keys, ``combine="best"`` keeps the key under which the box is most accurate on the attacker's
own data; ``"mean"`` averages the box's logits over all N (an ensemble of guesses).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..box import SafeBox
from ..key import normalize
from ..proxy import mix
from .base import AttackData, AttackResult, Budget, Recipe, StudentFactory, distill_from_targets, kd_ce_loss, logits_of

FAMILIES = ("uniform", "gaussian", "mean_image")
GRID = [{"family": f, "lam": lam, "combine": "mean"} for f in FAMILIES for lam in (None, 0.3, 0.7)] + [
    {"family": "uniform", "lam": None, "combine": "best"}, {"family": "gaussian", "lam": None, "combine": "best"}
]
QUICK_GRID = [
    {"family": "uniform", "lam": None, "combine": "best"},
    {"family": "uniform", "lam": None, "combine": "mean"},
    {"family": "gaussian", "lam": None, "combine": "mean"},
    {"family": "mean_image", "lam": None, "combine": "mean"},
    {"family": "uniform", "lam": 0.7, "combine": "mean"},
]


def draw_keys(family: str, n: int, box: SafeBox, data: AttackData, seed: int) -> list[torch.Tensor]:
    """``n`` candidate keys of one family, in the box's input space (``mean_image`` is a single key)."""
    config = box.box_config
    shape = tuple(config.input_size)
    generator = torch.Generator().manual_seed(seed)
    makers: dict[str, Callable[[], torch.Tensor]] = {
        "uniform": lambda: normalize(torch.rand(shape, generator=generator), config.mean, config.std),
        "gaussian": lambda: normalize((0.5 + 0.25 * torch.randn(shape, generator=generator)).clamp(0, 1), config.mean, config.std),
        "mean_image": lambda: data.train_x.mean(0),
    }
    if family not in makers:
        raise ValueError(f"Expected `family` in {FAMILIES}, but got {family!r}.")
    return [makers[family]() for _ in range(1 if family == "mean_image" else n)]


def attack(
    box: SafeBox, data: AttackData, student_factory: StudentFactory, budget: Budget,
    *, family: str = "uniform", lam: float | None = None, combine: str = "mean", T: float = 4.0, alpha: float = 0.9,
) -> AttackResult:
    """Distil through ``budget.n_keys`` keys of ``family`` mixed at ``lam`` (default: the box's λ)."""
    if combine not in ("best", "mean"):
        raise ValueError(f"Expected `combine` in ('best', 'mean'), but got {combine!r}.")
    lam = float(box.box_config.lam if lam is None else lam)
    if not 0 < lam < 1:
        raise ValueError(f"Expected `lam` in (0, 1), but got {lam}.")
    keys = [k.to(budget.device) for k in draw_keys(family, budget.n_keys, box, data, budget.seed)]
    per_key = [logits_of(lambda x, k=k: box(mix(x, k, lam)), data.train_x, device=budget.device) for k in keys]
    accuracies = [100.0 * (z.argmax(1) == data.train_y).float().mean().item() for z in per_key]
    targets = per_key[max(range(len(keys)), key=accuracies.__getitem__)] if combine == "best" else torch.stack(per_key).mean(0)
    settings = {"family": family, "lam": lam, "combine": combine, "n_keys": len(keys), "T": T, "alpha": alpha}
    extra = {"box_train_acc_per_key": [round(a, 2) for a in accuracies],
             "box_train_acc_targets": round(100.0 * (targets.argmax(1) == data.train_y).float().mean().item(), 2)}
    return distill_from_targets(student_factory, data, budget, targets, kd_ce_loss(alpha, T), settings, extra, desc=f"random keys {family}")


def recipe(box: SafeBox, data: AttackData, budget: Budget, *, family: str = "uniform", lam: float | None = None, combine: str = "mean") -> Recipe:
    """The same keys as :func:`attack`, read per batch (augmented batches differ from the attacker's tensors)."""
    if combine not in ("best", "mean"):
        raise ValueError(f"Expected `combine` in ('best', 'mean'), but got {combine!r}.")
    lam = float(box.box_config.lam if lam is None else lam)
    if not 0 < lam < 1:
        raise ValueError(f"Expected `lam` in (0, 1), but got {lam}.")
    box.eval()
    keys = [k.to(budget.device) for k in draw_keys(family, budget.n_keys, box, data, budget.seed)]
    extra = {}
    if combine == "best":
        accuracies = [100.0 * (logits_of(lambda x, k=k: box(mix(x, k, lam)), data.train_x, device=budget.device).argmax(1) == data.train_y).float().mean().item()
                      for k in keys]
        keys = [keys[max(range(len(keys)), key=accuracies.__getitem__)]]
        extra["box_train_acc_per_key"] = [round(a, 2) for a in accuracies]
    teacher = lambda x: torch.stack([box(mix(x, k, lam)) for k in keys]).mean(0)  # noqa: E731
    return Recipe({"family": family, "lam": lam, "combine": combine, "n_keys": budget.n_keys}, teacher=teacher, extra=extra)
