"""Attacks in the benchmark's own regime: the same slice, student, epochs and seeds as its claims.

``sdbox attack`` trains its students on its own terms (5,000 images, no augmentation, targets
computed once); the benchmark's claims are made on another slice, with crop and flip, for
another number of epochs. An attack row is only comparable with a claim row when both come from
the same training, so here every attack hands the benchmark a teacher (or, for attacks that need
more than logits, an :class:`~sdbox.attacks.base.Objective`) and the student is trained by the
benchmark's own code (:meth:`sdbox.benchmark.runner._Run.student`: ``sdbox.distill`` with the
preset's optimiser, epochs, α and T, the seed's initial weights and batch order). An attack
student of seed s therefore differs from the benchmark's scratch and key-holder students of seed s
only by what it learnt from, and rows are compared seed by seed (paired 95% intervals,
:mod:`sdbox.benchmark.stats`).

The attacker holds the distiller's slice with its labels (the images every student of the
benchmark holds), the public box (weights and config, no key) and the method. The key file is
read only to train a key-holder row the benchmark folder does not hold, and to measure how far a
searched κ̂ is from κ.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .registry import BLACK_BOX, load

# (attack, settings) rows run by default: the strongest settings of the earlier attacks in the
# `sdbox attack` runs, and every attack issue 22 added. The benchmark's own attack rows (KD from
# the box at each temperature, random keys with public and with re-estimated statistics) are read
# from its results, not trained again.
DEFAULT_PLAN: list[tuple[str, dict[str, Any]]] = [
    ("hard_label", {}),
    ("label_smoothing", {"eps": None}),
    ("logit_repair", {"mode": "standardize"}),
    ("random_keys", {"family": "uniform", "lam": 0.7, "combine": "mean"}),
    ("restat_keys", {"combine": "mean"}),
    ("key_search", {"shape_weight": 1.0, "lr": 0.01}),
    ("key_search", {"shape_weight": 1.0, "lr": 0.01, "restat": True}),
    ("feature_kd", {"mode": "hint", "weight": 1.0}),
    ("feature_kd", {"mode": "attention", "weight": 1000.0}),
    ("wash", {"wash_epochs": 3, "lr": 0.01}),
    ("class_repair", {"map_lr": 0.05}),
]
# Settings the regime fills in from the preset when a row does not give them.
_FROM_PRESET: dict[str, Callable[[Any], dict[str, Any]]] = {
    "class_repair": lambda p: {"T": p.T, "alpha": p.alpha},
    "restat_keys": lambda p: {"tile": p.key_tile},
}


def row_id(name: str, settings: dict[str, Any]) -> str:
    """A file-safe, stable name for one (attack, settings) row, e.g. ``key_search-restat=True``."""
    parts = [name] + [f"{k}={v}" for k, v in settings.items()]
    return re.sub(r"[^A-Za-z0-9=._-]", "_", "-".join(parts))


def preset_from_results(results: dict[str, Any]):
    """The :class:`~sdbox.benchmark.presets.Preset` a ``results.json`` was made with (lists back to tuples)."""
    from ..benchmark.presets import GpuPreset, Preset

    settings = dict(results["settings"])
    cls = GpuPreset if "student_batch_size" in settings else Preset
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in names})


def _json_ready(extra: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if not isinstance(v, torch.Tensor)}


def run_in_regime(
    bench: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    plan: Sequence[tuple[str, dict[str, Any]]] | None = None,
    seeds: Sequence[int] | None = None,
    out: str | os.PathLike | None = None,
    box: str | os.PathLike | None = None,
    key: str | os.PathLike | None = None,
    device: str = "auto",
    key_search_steps: int = 500,
    n_keys: int = 4,
    progress: bool = False,
) -> dict[str, Any]:
    """Run ``plan``'s attacks against a benchmark's box, in that benchmark's regime, for ``seeds``.

    ``bench``: a benchmark output folder (``results.json``, ``boxes/SDB``, ``boxes/SDB.key``,
    ``seedN/students/``). ``data``: the CIFAR-10 ImageFolder root (default: the one the
    benchmark used). ``seeds``: default the benchmark's. ``out``: where attack students and rows
    are saved (default ``bench/attacks``; a rerun skips what is there). ``box`` / ``key``: the
    bundle folder and key file (default ``bench/boxes/SDB`` and ``bench/boxes/SDB.key``).
    ``key_search_steps`` and ``n_keys``: the attacker's budget for searches and key guesses.

    Returns ``{"preset", "regime", "device", "seeds", "rows", "wall_s", …}``: every row (``kind``
    "baseline": scratch, key holder, Normal; "benchmark": the benchmark's own attack rows;
    "attack": the plan's) with its accuracy, per-image record and extras per seed, and its
    training and attack seconds; :func:`regime_markdown` turns it into the table.
    """
    from ..benchmark import models
    from ..benchmark.runner import _describe, _Run, load_data, resolve_device
    from ..benchmark.store import read_json
    from ..box import SafeBox
    from ..restoring import global_rng_kept
    from .runner import public_view

    start = time.time()
    plan = list(DEFAULT_PLAN if plan is None else plan)
    for name, _ in plan:  # unknown names, and attacks with their own training loop, fail here, before any data is decoded
        if not hasattr(load(name), "recipe"):
            raise ValueError(f"The {name!r} attack trains its student with its own loop and has no recipe for the benchmark's "
                             "regime: run it with `sdbox attack`.")
    bench = Path(bench)
    results = read_json(bench / "results.json")
    p = preset_from_results(results)
    cnn = p.students[0]
    device = resolve_device(device)
    seeds = [int(s) for s in results["seeds"]] if seeds is None else list(seeds)
    out = Path(out) if out is not None else bench / "attacks"
    data = data if data is not None else results["data"]["source"]
    splits = load_data(data, p, device)
    public = public_view(SafeBox.from_pretrained(Path(box) if box else bench / "boxes" / "SDB", model=models.create(p.teacher),
                                                 map_location=device))
    key_path = Path(key) if key else bench / "boxes" / "SDB.key"
    bench_run, attack_run = _Run(p, bench, splits, device, progress), _Run(p, out, splits, device, progress)
    attacker = _attacker_data(splits, p)

    def baseline(seed: int, row: str, teacher: Callable[[], Any] | None) -> dict[str, Any] | None:
        """A benchmark row as the benchmark recorded it, else trained here the same way (``teacher``: its maker)."""
        name = f"{cnn}/{row}"
        if (bench / f"seed{seed}" / "students" / f"{name}.json").exists():
            return bench_run.student(seed, name, cnn, None)  # read from the benchmark's folder
        if row != "scratch" and teacher is None:
            return None
        return attack_run.student(seed, name, cnn, teacher() if teacher else None)

    @global_rng_kept()
    def run() -> dict[str, Any]:
        from ..key import Key
        from ..teacher import KeyedTeacher

        owner_key = Key.load(key_path) if key_path.exists() else None
        holder = (lambda: KeyedTeacher(public, owner_key)) if owner_key else None  # the key-holder row only
        rows: dict[str, dict[str, Any]] = {}

        def put(row: str, kind: str, settings: dict[str, Any], seed: int, record: dict[str, Any] | None, **more: Any) -> None:
            if record is None:
                return
            entry = rows.setdefault(row, {"row": row, "kind": kind, "settings": settings, "acc": {}, "correct": {}, "extra": {},
                                          "train_s": 0.0, "attack_s": 0.0})
            entry["acc"][str(seed)], entry["correct"][str(seed)] = record["acc"], record["correct"]
            entry["train_s"] = round(entry["train_s"] + record.get("train_s", 0.0), 1)
            for k, v in more.items():
                if k == "extra":
                    entry["extra"][str(seed)] = v
                else:
                    entry[k] = round(entry[k] + v, 1)

        for seed in seeds:
            scratch = baseline(seed, "scratch", None)
            put("scratch", "baseline", {}, seed, scratch)
            put("key_holder", "baseline", {}, seed, baseline(seed, "SDB+key", holder))
            put("Normal", "baseline", {}, seed, baseline(seed, "Normal", None))
            for row, label in _benchmark_attack_rows(results, p):
                put(row, "benchmark", label, seed, baseline(seed, row, None))
            reference = _scratch_model(bench, out, seed, cnn, models)
            for name, settings in plan:
                row = row_id(name, settings)
                record, more = _attack_row(attack_run, out, seed, cnn, name, settings, row, public, attacker, reference, p, device,
                                           key_search_steps, n_keys, owner_key)
                put(row, "attack", {"attack": name, **settings}, seed, record, **more)
        return rows

    rows = run()
    return {"preset": p.name, "regime": results["regime"], "device": _describe(device), "seeds": seeds, "student": cnn,
            "student_epochs": p.student_epochs, "distill_images": len(splits.distill), "evaluation_images": len(splits.evaluation),
            "bench": str(bench.resolve()), "rows": list(rows.values()), "wall_s": round(time.time() - start, 1),
            "load_average_end": os.getloadavg()}


def _attacker_data(splits, p):
    """The distiller's slice as the attacker's tensors (normalised, on the CPU); the validation
    slice fills the test split, which no recipe reads."""
    from ..data import CIFAR10_MEAN, CIFAR10_STD
    from .base import AttackData

    pair = lambda s: (s.images.cpu(), s.labels.cpu())  # noqa: E731
    return AttackData.from_uint8(pair(splits.distill), pair(splits.val), CIFAR10_MEAN, CIFAR10_STD)


def _benchmark_attack_rows(results: dict[str, Any], p) -> list[tuple[str, dict[str, Any]]]:
    """The benchmark's own attack rows: KD from the box at each temperature, random keys."""
    rows = [("SDB" if float(t) == p.T else f"SDB@T{t:g}", {"attack": "temperature (benchmark)", "T": t}) for t in p.temperatures]
    first = next(iter(results["seeds"].values()))
    rows += [(f"random_key_{i}", {"attack": "random key (benchmark)", "key": i}) for i in range(len(first.get("random_key_attack", [])))]
    rows += [(f"random_key_restat_{i}", {"attack": "random key, re-estimated statistics (benchmark)", "key": i})
             for i in range(len(first.get("random_key_restat_attack", [])))]
    return rows


def _scratch_model(bench: Path, out: Path, seed: int, cnn: str, models) -> torch.nn.Module | None:
    """The seed's scratch student (key search's "shape of a normal teacher")."""
    from ..benchmark.store import load_weights

    for folder in (bench, out):
        path = folder / f"seed{seed}" / "students" / cnn / "scratch.safetensors"
        if path.exists():
            return load_weights(models.create(cnn), path, "cpu").eval()
    return None


def _attack_row(run, out: Path, seed: int, cnn: str, name: str, settings: dict[str, Any], row: str, public, attacker, reference,
                p, device, key_search_steps: int, n_keys: int, owner_key) -> tuple[dict[str, Any], ...]:
    """(student record, {"extra": …, "attack_s": …}) for one attack row of one seed; cached in ``out``."""
    from ..benchmark.store import read_json, write_json
    from .base import Budget

    path = out / f"seed{seed}" / "attacks" / f"{row}.json"
    student_path = run.out / f"seed{seed}" / "students" / f"{cnn}/{row}.json"
    if path.exists() and student_path.exists():
        saved = read_json(path)
        return read_json(student_path), {"extra": saved["extra"], "attack_s": saved["attack_s"]}
    budget = Budget(epochs=p.student_epochs, batch_size=p.batch_size, lr=p.student_lr, key_search_steps=key_search_steps,
                    n_keys=n_keys, seed=seed, device=str(device))
    data = dataclasses.replace(attacker, reference=reference)
    t = time.time()
    module = load(name)
    recipe = module.recipe(public, data, budget, **{**_FROM_PRESET.get(name, lambda _p: {})(p), **settings})
    attack_s = round(time.time() - t, 1)
    extra = dict(recipe.extra)
    candidate = extra.pop("key_candidate", None)
    if candidate is not None and owner_key is not None:
        from .runner import key_distance

        extra["candidate_vs_key"] = key_distance(candidate, owner_key.tensor)
    if recipe.teacher is not None:
        record = run.student(seed, f"{cnn}/{row}", cnn, recipe.teacher, recipe.T)
    else:
        record = _objective_student(run, seed, f"{cnn}/{row}", cnn, recipe.objective, p, device, extra)
        getattr(recipe.objective, "close", lambda: None)()
    write_json(path, {"settings": recipe.settings, "extra": _json_ready(extra), "attack_s": attack_s, "train_s": record.get("train_s", 0.0),
                      "black_box": name in BLACK_BOX})
    return record, {"extra": _json_ready(extra), "attack_s": attack_s}


def _objective_student(run, seed: int, name: str, arch: str, objective, p, device, extra: dict[str, Any]) -> dict[str, Any]:
    """:meth:`_Run.student` for an attack that needs more than a teacher's logits: the same initial
    weights, the same batches (crop and flip from the same seed), Adam at the preset's lr for its
    epochs; only the loss is the objective's."""
    from ..benchmark import models
    from ..benchmark.accel import student_batch_size
    from ..benchmark.runner import _subseed, log
    from ..benchmark.store import read_json, save_weights, write_json
    from ..benchmark.tensordata import batches
    from .base import train_on_objective

    path = run.out / f"seed{seed}" / "students" / f"{name}.json"
    if path.exists():
        return read_json(path)
    log(f"seed {seed}: training {name} ({p.student_epochs} epochs on {len(run.splits.distill)} images, attack objective)")
    torch.manual_seed(_subseed(seed, f"student/{arch}"))
    model = models.create(arch)
    loader = batches(run.splits.distill, student_batch_size(p), train=True, device=device, seed=_subseed(seed, f"student/{arch}"))
    start = time.time()
    extra.update(train_on_objective(model, objective, loader, epochs=p.student_epochs, lr=p.student_lr, device=device))
    save_weights(model, path.with_suffix(".safetensors"))
    record = {**run.score(model), "train_s": round(time.time() - start, 1)}
    write_json(path, record)
    log(f"seed {seed}: {name}: {record['acc']:.2f}%")
    return record


# ------------------------------------------------------------------------------ the table
def _diff(row: dict[str, Any], base: dict[str, Any], seeds: list[str]):
    from ..benchmark.stats import paired_over_images, paired_over_seeds

    common = [s for s in seeds if s in row["acc"] and s in base["acc"]]
    if len(common) >= 2:
        return paired_over_seeds([row["acc"][s] for s in common], [base["acc"][s] for s in common])
    if len(common) == 1:
        return paired_over_images(row["correct"][common[0]], base["correct"][common[0]])
    return None


def compared(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every non-baseline row with its paired differences to scratch and to the key holder and
    whether the box held (the whole interval against scratch below 0: "held"; above: "broken")."""
    from ..benchmark.stats import verdict

    rows = {r["row"]: r for r in result["rows"]}
    seeds = [str(s) for s in result["seeds"]]
    out = []
    for r in result["rows"]:
        if r["kind"] == "baseline":
            continue
        vs_scratch = _diff(r, rows["scratch"], seeds) if "scratch" in rows else None
        vs_holder = _diff(r, rows["key_holder"], seeds) if "key_holder" in rows else None
        held = None
        if vs_scratch is not None:
            held = {"holds": "held", "fails": "broken"}.get(verdict(vs_scratch, below=0.0), "not resolved")
        values = list(r["acc"].values())
        out.append({**r, "mean": sum(values) / len(values), "vs_scratch": vs_scratch, "vs_key_holder": vs_holder, "held": held})
    return out


def strongest_attack(result: dict[str, Any]) -> dict[str, Any] | None:
    """The attack row whose student gains most over scratch, in the form a box's report stores
    (``box_config.report["attacks"]``) and its card shows."""
    rows = [r for r in compared(result) if r["vs_scratch"] is not None]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["vs_scratch"].mean)
    settings = {k: v for k, v in best["settings"].items() if k != "attack"}
    return {"attack": best["settings"].get("attack", best["row"]), "row": best["row"], "settings": settings,
            "student_acc": round(best["mean"], 2), "diff": best["vs_scratch"].to_dict(), "held": best["held"],
            "preset": result["preset"], "seeds": len(result["seeds"]), "rows": len(rows),
            "measured_by": "benchmarks/attack_table.py (sdbox.attacks.run_in_regime)"}


def regime_markdown(result: dict[str, Any]) -> str:
    """The attack table: each row's mean accuracy, its paired 95% intervals against scratch and
    against the key holder, whether the box held, and the time it took; then the machine."""
    rows = {r["row"]: r for r in result["rows"]}
    n = len(result["seeds"])
    over = f"{n} seeds" if n > 1 else f"the {result['evaluation_images']:,} test images (1 seed)"
    mean_of = lambda r: sum(r["acc"].values()) / len(r["acc"])  # noqa: E731
    lines = [
        f"Preset `{result['preset']}`: {result['regime']} Student `{result['student']}`, {result['student_epochs']} epochs; "
        f"seeds {', '.join(str(s) for s in result['seeds'])}; 95% intervals over {over}, paired seed by seed.",
        "",
        "| row | settings | student acc (%) | − scratch [95%] | − key holder [95%] | box | time (s) |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for name in ("scratch", "Normal", "key_holder"):
        if name in rows:
            label = {"scratch": "scratch (labels only)", "Normal": "KD from the original teacher", "key_holder": "key holder (KD through κ)"}[name]
            lines.append(f"| {label} | – | {mean_of(rows[name]):.2f} | – | – | – | {rows[name]['train_s']:.0f} |")
    for r in compared(result):
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items() if k != "attack") or "–"
        what = r["settings"].get("attack", r["row"])
        fmt = lambda d: "–" if d is None else str(d)  # noqa: E731
        held = {"broken": "**broken**"}.get(r["held"], r["held"] or "–")
        lines.append(f"| {what} | {settings} | {r['mean']:.2f} | {fmt(r['vs_scratch'])} | {fmt(r['vs_key_holder'])} | {held} | "
                     f"{r['train_s'] + r.get('attack_s', 0.0):.0f} |")
    strongest = strongest_attack(result)
    if strongest is not None:
        d = strongest["diff"]
        lines += ["", f"Strongest attack: `{strongest['attack']}` ({', '.join(f'{k}={v}' for k, v in strongest['settings'].items()) or 'default'}), "
                      f"{d['mean']:+.2f} points [{d['low']:+.2f}, {d['high']:+.2f}] against scratch: "
                      + {"held": "the box held.", "broken": "the box is broken."}.get(strongest["held"], "not resolved at this size.")]
    lines += ["", f"Machine: {result['device']}; wall time of this invocation {result['wall_s'] / 60:.1f} min (rows read from "
                  "earlier runs count their own training time in the last column)."]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict[str, Any], out: str | os.PathLike) -> tuple[Path, Path]:
    """``out/attack_table.md`` and ``out/attack_table.json`` (per-image records left out)."""
    from ..files import write_text

    out = Path(out)
    slim = {**result, "rows": [{k: v for k, v in r.items() if k != "correct"} for r in result["rows"]],
            "strongest": strongest_attack(result)}
    write_text(out / "attack_table.json", json.dumps(slim, indent=2, default=str))
    write_text(out / "attack_table.md", regime_markdown(result))
    return out / "attack_table.md", out / "attack_table.json"


def store_in_box(bench: str | os.PathLike, result: dict[str, Any], box: str | os.PathLike | None = None) -> Path:
    """Store the strongest attack in a published box's report (``report["attacks"]``, which its card
    shows) and the attack table under its card's protection report; returns the box folder
    (default ``bench/box``, the box the benchmark publishes)."""
    from ..benchmark import models
    from ..benchmark.report import box_markdown
    from ..benchmark.store import read_json
    from ..box import SafeBox

    bench = Path(bench)
    results = read_json(bench / "results.json")
    target = Path(box) if box is not None else bench / "box"
    strongest = strongest_attack(result)
    if strongest is None:
        raise ValueError("Expected attack rows with a scratch row to compare them with, but the result has none: nothing to store.")
    loaded = SafeBox.from_pretrained(target, model=models.create(preset_from_results(results).teacher))
    loaded.box_config.report = {**(loaded.box_config.report or {}), "attacks": strongest}
    loaded.report_markdown = f"{box_markdown(results)}\n\n### Attacks in the same regime\n\n{regime_markdown(result)}"
    loaded.save_pretrained(target)
    return target
