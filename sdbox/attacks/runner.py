"""Run every attack against one box and record the rows ``attacks.json`` holds.

Two reference rows frame the attacks: Scratch (labels only: what the attacker gets without the
box) and, when the evaluation harness holds the key, the key holder's student (what the box
gives to whom it should). The key goes to that row and to the κ̂-distance measurement only;
every attack gets a keyless view of the box.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..box import SafeBox
from ..files import write_text
from ..key import Key
from ..progress import progress_bar
from ..teacher import KeyedTeacher
from .base import AttackData, AttackResult, Budget, StudentFactory, distill_from_targets, kd_ce_loss, logits_of
from .registry import ATTACK_NAMES, load

ATTACKS = {name: load(name) for name in ATTACK_NAMES}
QUICK_BUDGET = Budget(epochs=6, key_search_steps=150, n_keys=4)


def plan(quick: bool, names: list[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(attack, settings) pairs to run: each module's GRID, or its QUICK_GRID subset."""
    names = list(ATTACKS) if names is None else names
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise ValueError(f"Expected attack names from {list(ATTACKS)}, but got {unknown}.")
    return [(n, dict(s)) for n in names for s in (ATTACKS[n].QUICK_GRID if quick else ATTACKS[n].GRID)]


def public_view(box: SafeBox) -> SafeBox:
    """The same weights and config with no key attached: what an attacker downloads."""
    return SafeBox(box.model, box.box_config).eval()


def scratch(data: AttackData, student_factory: StudentFactory, budget: Budget) -> AttackResult:
    """The bar to beat: the same student on the same data, labels only."""
    return distill_from_targets(student_factory, data, budget, None, None, {}, desc="scratch")


def key_holder(box: SafeBox, key: Key, data: AttackData, student_factory: StudentFactory, budget: Budget,
               T: float = 4.0, alpha: float = 0.9) -> AttackResult:
    """KD through the true key: the student the box is meant to give its owner's licensees."""
    targets = logits_of(KeyedTeacher(box, key), data.train_x, device=budget.device)
    return distill_from_targets(student_factory, data, budget, targets, kd_ce_loss(alpha, T), {"T": T, "alpha": alpha}, desc="key holder")


def key_distance(candidate: torch.Tensor, key: torch.Tensor) -> dict[str, float]:
    """Relative L2 ‖κ̂ − κ‖/‖κ‖ and cosine(κ̂, κ), in the box's input space."""
    return {"rel_l2": round(((candidate - key).norm() / key.norm()).item(), 4),
            "cosine": round(F.cosine_similarity(candidate.flatten(), key.flatten(), dim=0).item(), 4)}


def run_attacks(
    box: SafeBox,
    data: AttackData,
    student_factory: StudentFactory,
    budget: Budget = QUICK_BUDGET,
    *,
    quick: bool = True,
    key: Key | None = None,
    attacks: list[str] | None = None,
    out: str | Path | None = None,
    meta: dict[str, Any] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Scratch, key holder (if ``key``), then every planned attack. Returns {"meta", "results"}.

    With ``out``, writes ``out/attacks.json`` and ``out/attacks_meta.json`` after every row, so
    a stopped run keeps its rows.
    """
    start = time.time()
    public = public_view(box)
    rows: list[dict[str, Any]] = []
    report = {"meta": {**(meta or {}), "budget": vars(budget).copy(), "quick": quick, "seed": budget.seed,
                       "train_images": len(data.train_y), "test_images": len(data.test_y)}, "results": rows}

    def record(name: str, result: AttackResult, kind: str, seconds: float) -> None:
        extra = dict(result.extra)
        candidate = extra.pop("key_candidate", None)
        if candidate is not None and key is not None:
            extra["candidate_vs_key"] = key_distance(candidate, key.tensor)
            fresh = Key.generate(key.shape, key.lam, box.box_config.mean, box.box_config.std).tensor
            extra["random_key_vs_key"] = key_distance(fresh, key.tensor)  # chance level, for comparison
        rows.append({"attack": name, "kind": kind, "settings": result.settings, "student_acc": round(result.accuracy, 2),
                     "gap_to_scratch": None, "gap_to_key_holder": None, "strongest": False, "extra": extra, "wall_s": round(seconds, 1)})
        _finish(rows)
        report["meta"]["wall_s"] = round(time.time() - start, 1)
        if out is not None:
            write_json(report, out)
        if on_row is not None:
            on_row(rows[-1])

    t = time.time()
    scratch_result = scratch(data, student_factory, budget)
    data = replace(data, reference=scratch_result.student)  # key search's "normal teacher" shape
    record("scratch", scratch_result, "baseline", time.time() - t)
    if key is not None:
        t = time.time()
        record("key_holder", key_holder(box, key, data, student_factory, budget), "baseline", time.time() - t)
    for name, settings in progress_bar(plan(quick, attacks), desc="attacks", enabled=budget.progress):
        t = time.time()
        record(name, ATTACKS[name].attack(public, data, student_factory, budget, **settings), "attack", time.time() - t)
    return report


def _finish(rows: list[dict[str, Any]]) -> None:
    """Fill the gaps to the baselines and mark the strongest attack row(s)."""
    base = {r["attack"]: r["student_acc"] for r in rows if r["kind"] == "baseline"}
    attack_rows = [r for r in rows if r["kind"] == "attack"]
    best = max((r["student_acc"] for r in attack_rows), default=None)
    for r in rows:
        if "scratch" in base:
            r["gap_to_scratch"] = round(r["student_acc"] - base["scratch"], 2)
        if "key_holder" in base:
            r["gap_to_key_holder"] = round(r["student_acc"] - base["key_holder"], 2)
        r["strongest"] = r["kind"] == "attack" and r["student_acc"] == best


def write_json(report: dict[str, Any], out: str | Path) -> Path:
    """Write ``out/attacks.json`` (the list of rows, as the benchmark report reads it) and
    ``out/attacks_meta.json`` (box, data, budget, seed, wall time), each atomically."""
    out = Path(out)
    for name, payload in (("attacks_meta.json", report["meta"]), ("attacks.json", report["results"])):
        write_text(out / name, json.dumps(payload, indent=2, default=str))
    return out / "attacks.json"
