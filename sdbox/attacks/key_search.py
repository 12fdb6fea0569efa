"""Key search: a white-box attacker optimises a candidate key κ̂ directly on the box.

The key is one image added to every input, and the box is differentiable in it, so nothing
stops an attacker from running Adam on κ̂. Our objective (the attacker's choice; the paper
measures no such attack) asks the box, on x̃ = λx + (1−λ)κ̂, to be

- accurate: ``CE(box(x̃), y)`` on the attacker's labels, and
- shaped like a normal teacher: ``T²·KL(σ(r(x)/T) ‖ σ(box(x̃)/T))`` at T = 4, with r a student
  the attacker trained from scratch on the same data (``data.reference``; trained here if absent).

κ̂ lives in pixel space [0, 1] (the attacker knows keys are uniform pixel noise) and is projected
back onto it after every step; it starts as a fresh uniform draw. Then the student is distilled
through κ̂ exactly as a key holder would be.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..box import SafeBox
from ..key import normalize
from ..losses import kd_loss
from ..proxy import mix
from .base import AttackData, AttackResult, Budget, StudentFactory, distill_from_targets, fit, kd_ce_loss, logits_of, new_student

GRID = [{"shape_weight": 1.0, "lr": 0.01}, {"shape_weight": 0.0, "lr": 0.01}]
QUICK_GRID = GRID[:1]


def search_key(
    box: SafeBox, data: AttackData, budget: Budget, reference: torch.nn.Module | None,
    *, shape_weight: float = 1.0, lr: float = 0.01, T: float = 4.0,
) -> tuple[torch.Tensor, list[float]]:
    """Optimise κ̂ for ``budget.key_search_steps`` Adam steps. Returns (κ̂ in input space, loss per step)."""
    config, device = box.box_config, budget.device
    mean = torch.tensor(config.mean, device=device).view(-1, 1, 1)
    std = torch.tensor(config.std, device=device).view(-1, 1, 1)
    generator = torch.Generator().manual_seed(budget.seed + 1)
    pixels = torch.rand(tuple(config.input_size), generator=generator).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([pixels], lr=lr)
    frozen = [p.requires_grad for p in box.parameters()]
    box.eval().requires_grad_(False)
    if reference is not None:
        reference.eval()
    losses = []
    try:
        for step in range(budget.key_search_steps):
            idx = torch.randint(len(data.train_y), (budget.batch_size,), generator=generator)
            x, y = data.train_x[idx].to(device), data.train_y[idx].to(device)
            z = box(mix(x, (pixels - mean) / std, config.lam))
            loss = F.cross_entropy(z, y)
            if shape_weight > 0 and reference is not None:
                with torch.no_grad():
                    r = reference(x)
                loss = loss + shape_weight * kd_loss(z, r, T)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                pixels.clamp_(0, 1)
            losses.append(loss.item())
    finally:
        for p, flag in zip(box.parameters(), frozen):
            p.requires_grad_(flag)
    return normalize(pixels.detach().cpu(), config.mean, config.std), losses


def attack(
    box: SafeBox, data: AttackData, student_factory: StudentFactory, budget: Budget,
    *, shape_weight: float = 1.0, lr: float = 0.01, T: float = 4.0, alpha: float = 0.9,
) -> AttackResult:
    """Search κ̂ (see the module docstring), then KD at ``T`` through ``mix(x, κ̂, λ)``."""
    if shape_weight < 0 or lr <= 0:
        raise ValueError(f"Expected `shape_weight` ≥ 0 and `lr` > 0, but got {shape_weight} and {lr}.")
    reference = data.reference
    if reference is None and shape_weight > 0:
        reference = fit(new_student(student_factory, budget), data, budget, desc="key search reference")
    candidate, losses = search_key(box, data, budget, reference, shape_weight=shape_weight, lr=lr, T=T)
    lam, key = box.box_config.lam, candidate.to(budget.device)
    targets = logits_of(lambda x: box(mix(x, key, lam)), data.train_x, device=budget.device)
    window = max(1, len(losses) // 10)
    extra = {
        "key_candidate": candidate,
        "search_loss_first": round(sum(losses[:window]) / window, 4),
        "search_loss_last": round(sum(losses[-window:]) / window, 4),
        "box_train_acc_through_candidate": round(100.0 * (targets.argmax(1) == data.train_y).float().mean().item(), 2),
    }
    settings = {"shape_weight": shape_weight, "lr": lr, "steps": budget.key_search_steps, "T": T, "alpha": alpha}
    return distill_from_targets(student_factory, data, budget, targets, kd_ce_loss(alpha, T), settings, extra, desc="key search")
