"""Fresh keys with re-estimated statistics: the random-key attack against keyed normalisation.

A box wrapped with keyed normalisation reads x̃ with BatchNorm statistics only the key file
holds, so a fresh key read with the box's public statistics fails for two reasons at once: the
wrong κ and the wrong statistics. Anyone with the weights can fix the second: run the box over
their own images mixed with their key and re-estimate the statistics
(:func:`sdbox.keyed_norm.estimate_statistics`; the benchmark's ``random_key_restat`` rows). This
attack draws ``budget.n_keys`` fresh keys from the owner's family (uniform pixel noise,
``tile``×``tile`` patches repeated when ``tile`` is given, as ``Key.generate(tile=)`` draws
them, seeded here for reproducible rows), re-estimates the statistics for each, and distils
from the average of their logits (``mean``) or from the key under which the box is most
accurate on the attacker's images (``best``).
"""

from __future__ import annotations

import torch

from ..box import SafeBox
from ..key import normalize
from ..keyed_norm import root, state_of
from .base import AttackData, AttackResult, Budget, Recipe, StudentFactory, logits_of, run_recipe
from .key_search import restat_for, statistics_shift, through

GRID = [{"combine": "mean", "tile": 4}, {"combine": "best", "tile": 4}, {"combine": "mean", "tile": None}]
QUICK_GRID = GRID[:1]


def fresh_keys(box: SafeBox, n: int, seed: int, tile: int | None) -> list[torch.Tensor]:
    """``n`` seeded keys of the owner's family, normalised with the box's mean and std."""
    config = box.box_config
    c, h, w = (int(v) for v in config.input_size)
    th, tw = (tile, tile) if tile else (h, w)
    if h % th or w % tw:
        raise ValueError(f"Expected `tile` to divide the input's {h}×{w}, but got {tile}.")
    generator = torch.Generator().manual_seed(seed + 7)
    return [normalize(torch.rand((c, th, tw), generator=generator).repeat(1, h // th, w // tw), config.mean, config.std) for _ in range(n)]


def recipe(box: SafeBox, data: AttackData, budget: Budget, *, combine: str = "mean", tile: int | None = 4) -> Recipe:
    if combine not in ("mean", "best"):
        raise ValueError(f"Expected `combine` in ('mean', 'best'), but got {combine!r}.")
    lam = box.box_config.lam
    public = state_of(root(box))
    teachers, shifts = [], []
    for key in fresh_keys(box, budget.n_keys, budget.seed, tile):
        norm = restat_for(box, data, key, lam, budget)
        shifts.append(statistics_shift(norm, public))
        teachers.append(through(box, key, lam, norm, budget.device))
    accuracies = [round(100.0 * (logits_of(t, data.train_x, device=budget.device).argmax(1) == data.train_y).float().mean().item(), 2)
                  for t in teachers]
    if combine == "best":
        teacher = teachers[max(range(len(teachers)), key=accuracies.__getitem__)]
    else:
        teacher = lambda x: torch.stack([t(x) for t in teachers]).mean(0)  # noqa: E731
    extra = {"box_train_acc_per_key": accuracies, "statistics_shift_per_key": shifts}
    return Recipe({"combine": combine, "tile": tile, "n_keys": len(teachers)}, teacher=teacher, extra=extra)


def attack(
    box: SafeBox, data: AttackData, student_factory: StudentFactory, budget: Budget,
    *, combine: str = "mean", tile: int | None = 4, T: float = 4.0, alpha: float = 0.9,
) -> AttackResult:
    """Distil through ``budget.n_keys`` fresh keys, each read with statistics re-estimated on the attacker's images."""
    return run_recipe(recipe(box, data, budget, combine=combine, tile=tile), student_factory, data, budget, T=T, alpha=alpha,
                      desc="restat keys")
