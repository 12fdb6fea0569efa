"""Logit repair: edit the box's clean logits into a plausible teacher's before KD.

The disturbance keeps the top-1 right and scrambles the rest, so an attacker keeps what is
trustworthy and rebuilds the rest:

- ``standardize``: re-centre each row and scale it to a fixed spread (a per-image temperature),
  undoing the disturbance's inflated or squashed logit ranges;
- ``random_key_tail``: keep the clean top-1, take the tail's shape from the box's own logits on
  x mixed with random keys (the proxy stream, seen through a wrong key), swapping values so the
  clean top-1 stays first;
- ``smooth``: the clean top-1 with a flat tail — label smoothing on the box's predictions, the
  bar later work (CMIM) sets for an unauthorized student.
"""

from __future__ import annotations

import torch

from ..box import SafeBox
from ..proxy import mix
from .base import AttackData, AttackResult, Budget, Recipe, StudentFactory, distill_from_targets, kd_ce_loss, logits_of
from .random_keys import draw_keys

MODES = ("standardize", "random_key_tail", "smooth")
GRID = [{"mode": m} for m in MODES]
QUICK_GRID = [{"mode": "standardize"}, {"mode": "random_key_tail"}]


def repair(clean: torch.Tensor, mode: str, scale: float = 2.0, tail: torch.Tensor | None = None) -> torch.Tensor:
    """Repaired logits from the box's clean logits (``tail``: logits for ``random_key_tail``)."""
    top = clean.argmax(1, keepdim=True)
    if mode == "standardize":
        centred = clean - clean.mean(1, keepdim=True)
        return scale * centred / centred.std(1, keepdim=True).clamp_min(1e-6)
    if mode == "random_key_tail":
        if tail is None:
            raise ValueError("Expected `tail` logits for mode 'random_key_tail': pass the box's logits on keyed guesses.")
        tail_top = tail.argmax(1, keepdim=True)
        swapped = tail.clone()
        swapped.scatter_(1, top, tail.gather(1, tail_top))
        swapped.scatter_(1, tail_top, tail.gather(1, top))  # where top == tail_top this writes the same value twice
        return swapped
    if mode == "smooth":
        return torch.zeros_like(clean).scatter(1, top, scale)
    raise ValueError(f"Expected `mode` in {MODES}, but got {mode!r}.")


def attack(
    box: SafeBox, data: AttackData, student_factory: StudentFactory, budget: Budget,
    *, mode: str = "random_key_tail", scale: float = 2.0, T: float = 4.0, alpha: float = 0.9,
) -> AttackResult:
    """KD at ``T`` from the repaired clean logits; ``scale`` is the spread for standardize/smooth."""
    clean = logits_of(box, data.train_x, device=budget.device)
    tail = None
    if mode == "random_key_tail":
        lam = box.box_config.lam
        keys = [k.to(budget.device) for k in draw_keys("uniform", budget.n_keys, box, data, budget.seed)]
        tail = torch.stack([logits_of(lambda x, k=k: box(mix(x, k, lam)), data.train_x, device=budget.device) for k in keys]).mean(0)
    targets = repair(clean, mode, scale, tail)
    settings = {"mode": mode, "T": T, "alpha": alpha, **({"scale": scale} if mode != "random_key_tail" else {"n_keys": budget.n_keys})}
    return distill_from_targets(student_factory, data, budget, targets, kd_ce_loss(alpha, T), settings, desc=f"repair {mode}")


def recipe(box: SafeBox, data: AttackData, budget: Budget, *, mode: str = "standardize", scale: float = 2.0) -> Recipe:
    """The repair of :func:`attack`, applied to each batch's clean logits."""
    if mode not in MODES:
        raise ValueError(f"Expected `mode` in {MODES}, but got {mode!r}.")
    box.eval()
    lam = box.box_config.lam
    keys = [k.to(budget.device) for k in draw_keys("uniform", budget.n_keys, box, data, budget.seed)] if mode == "random_key_tail" else []

    def teacher(x: torch.Tensor) -> torch.Tensor:
        tail = torch.stack([box(mix(x, k, lam)) for k in keys]).mean(0) if keys else None
        return repair(box(x).float(), mode, scale, tail)

    return Recipe({"mode": mode, **({"scale": scale} if mode != "random_key_tail" else {"n_keys": len(keys)})}, teacher=teacher)
