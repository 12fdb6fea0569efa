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

``restat=True`` is the adaptive version against keyed normalisation: a box whose keyed stream has
its own BatchNorm statistics reads any other key with the wrong ones, so at every search step the
box's statistics are re-estimated on that step's batch mixed with the current κ̂
(:func:`sdbox.keyed_norm.estimate_statistics`, the code path of the benchmark's
``random_key_restat`` rows) and the step runs under them; the student is then distilled through
κ̂ with statistics re-estimated on all of the attacker's images mixed with the final κ̂.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import contextlib

from ..box import SafeBox
from ..key import Key, normalize
from ..keyed_norm import applied, estimate_statistics, root, state_of
from ..losses import kd_loss
from ..proxy import mix
from .base import AttackData, AttackResult, Budget, Recipe, StudentFactory, fit, new_student, run_recipe

GRID = [{"shape_weight": 1.0, "lr": 0.01}, {"shape_weight": 0.0, "lr": 0.01}, {"shape_weight": 1.0, "lr": 0.01, "restat": True}]
QUICK_GRID = GRID[:1]


def search_key(
    box: SafeBox, data: AttackData, budget: Budget, reference: torch.nn.Module | None,
    *, shape_weight: float = 1.0, lr: float = 0.01, T: float = 4.0, restat: bool = False,
) -> tuple[torch.Tensor, list[float]]:
    """Optimise κ̂ for ``budget.key_search_steps`` Adam steps (with ``restat``, each under BatchNorm
    statistics re-estimated on the step's batch mixed with κ̂). Returns (κ̂ in input space, loss per step)."""
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
            mixed = mix(x, (pixels - mean) / std, config.lam)
            statistics = contextlib.nullcontext()
            if restat:
                statistics = applied(root(box), estimate_statistics(root(box), [mixed.detach()]))
            with statistics:
                z = box(mixed)
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


def restat_for(box: SafeBox, data: AttackData, key: torch.Tensor, lam: float, budget: Budget) -> dict[str, torch.Tensor]:
    """The box's statistics re-estimated on all of the attacker's images mixed with ``key``."""
    k = key.to(budget.device)
    mixed = (mix(data.train_x[i : i + 256].to(budget.device), k, lam) for i in range(0, len(data.train_y), 256))
    return estimate_statistics(root(box), mixed)


def statistics_shift(norm: dict[str, torch.Tensor], public: dict[str, torch.Tensor]) -> float:
    """Mean over BatchNorm layers of ‖μ̂ − μ‖/‖μ‖: how far re-estimated statistics moved from the box's public ones."""
    names = [n for n in norm if n.endswith("running_mean")]
    shifts = [((norm[n] - public[n]).norm() / public[n].norm().clamp_min(1e-8)).item() for n in names]
    return round(sum(shifts) / max(len(shifts), 1), 4)


def through(box: SafeBox, key: torch.Tensor, lam: float, norm: dict[str, torch.Tensor] | None, device: str):
    """A teacher reading ``mix(x, key, λ)``, under ``norm`` when given (the benchmark's ``through_key``)."""
    from ..benchmark.runner import through_key

    return through_key(box, Key(key.to(device), lam), norm)


def recipe(
    box: SafeBox, data: AttackData, budget: Budget, student_factory: StudentFactory | None = None,
    *, shape_weight: float = 1.0, lr: float = 0.01, T: float = 4.0, restat: bool = False,
) -> Recipe:
    """Search κ̂ (see the module docstring); the recipe distils through ``mix(x, κ̂, λ)``."""
    if shape_weight < 0 or lr <= 0:
        raise ValueError(f"Expected `shape_weight` ≥ 0 and `lr` > 0, but got {shape_weight} and {lr}.")
    reference = data.reference
    if reference is None and shape_weight > 0:
        if student_factory is None:
            raise ValueError("Expected `data.reference` (a scratch student) or a `student_factory` to train one.")
        reference = fit(new_student(student_factory, budget), data, budget, desc="key search reference")
    candidate, losses = search_key(box, data, budget, reference, shape_weight=shape_weight, lr=lr, T=T, restat=restat)
    lam = box.box_config.lam
    norm = restat_for(box, data, candidate, lam, budget) if restat else None
    teacher = through(box, candidate, lam, norm, budget.device)
    with torch.inference_mode():
        predicted = torch.cat([teacher(data.train_x[i : i + 500].to(budget.device)).argmax(1).cpu() for i in range(0, len(data.train_y), 500)])
    window = max(1, len(losses) // 10)
    extra = {
        "key_candidate": candidate,
        "search_loss_first": round(sum(losses[:window]) / window, 4),
        "search_loss_last": round(sum(losses[-window:]) / window, 4),
        "box_train_acc_through_candidate": round(100.0 * (predicted == data.train_y).float().mean().item(), 2),
    }
    if norm is not None:
        extra["statistics_shift"] = statistics_shift(norm, state_of(root(box)))
    settings = {"shape_weight": shape_weight, "lr": lr, "steps": budget.key_search_steps, **({"restat": True} if restat else {})}
    return Recipe(settings, teacher=teacher, extra=extra)


def attack(
    box: SafeBox, data: AttackData, student_factory: StudentFactory, budget: Budget,
    *, shape_weight: float = 1.0, lr: float = 0.01, T: float = 4.0, alpha: float = 0.9, restat: bool = False,
) -> AttackResult:
    """Search κ̂ (see the module docstring), then KD at ``T`` through ``mix(x, κ̂, λ)``."""
    r = recipe(box, data, budget, student_factory, shape_weight=shape_weight, lr=lr, T=T, restat=restat)
    return run_recipe(r, student_factory, data, budget, T=T, alpha=alpha, desc="key search")
