"""The paper's claims as paired comparisons between benchmark rows, each with a 95% interval.

A row is one source of a student (``scratch``, ``Normal``, ``SDB``, ``SDB+key``, ``SDB@T1``,
``random_key_0`` …) or an owner-side model (``teacher``, ``box``). Students are compared seed by
seed; the teacher and the box, single models, image by image (see :mod:`.stats`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .stats import Difference, paired_over_images, paired_over_seeds, verdict

# The must-reach bounds of the claims (issue tracker: "Make the box hold"), in points.
FIDELITY_BOUND = -1.0
AUTHORISATION_BOUND = -1.0
RANDOM_KEY_BOUND = 1.0


@dataclass(frozen=True)
class Comparison:
    """``a − b`` for one claim, the bound it must meet (``a − b ≥ bound`` when ``above``, else
    ``a − b < bound``), and the verdict its interval allows."""

    claim: str
    a: str
    b: str
    diff: Difference
    bound: float
    above: bool
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "a": self.a, "b": self.b, "diff": self.diff.to_dict(), "bound": self.bound,
                "above": self.above, "verdict": self.verdict}

    @property
    def requirement(self) -> str:
        return f"{self.a} − {self.b} {'≥' if self.above else '<'} {self.bound:+g}"


def student_rows(seed_result: dict[str, Any], student: str, T: float) -> dict[str, float]:
    """One seed's student accuracies by row name (the names ``_Run.seed`` records images under)."""
    rows = {"scratch": seed_result["scratch"][student]}
    for method, by_student in seed_result["methods"].items():
        entry = by_student.get(student, {})
        if "no_key" in entry:
            rows[method] = entry["no_key"]
        if "key" in entry:
            rows[f"{method}+key"] = entry["key"]
    for t, acc in seed_result["temperature_attack"].items():
        rows["SDB" if float(t) == T else f"SDB@T{t}"] = acc
    for i, acc in enumerate(seed_result["random_key_attack"]):
        rows[f"random_key_{i}"] = acc
    for i, acc in enumerate(seed_result.get("random_key_restat_attack", [])):
        rows[f"random_key_restat_{i}"] = acc
    return rows


def compare(results: dict[str, Any], correct: dict[str, dict[str, str]]) -> list[Comparison]:
    """Every claim the results allow. ``correct[seed][row]`` holds the per-image record of each
    student row, and ``correct["owner"]`` those of ``teacher``, ``box`` (SDB, clean) and
    ``box+key``; per-image records are used for the owner's models, and for students when
    there is one seed."""
    s = results["settings"]
    cnn, T = s["students"][0], float(s["T"])
    seeds = list(results["seeds"])
    rows = {seed: student_rows(results["seeds"][seed], cnn, T) for seed in seeds}
    out: list[Comparison] = []

    def students(claim: str, a: str, b: str, bound: float, above: bool) -> None:
        if not all(a in r and b in r for r in rows.values()):
            return
        if len(seeds) > 1:
            diff = paired_over_seeds([rows[x][a] for x in seeds], [rows[x][b] for x in seeds])
        else:
            diff = paired_over_images(correct[seeds[0]][a], correct[seeds[0]][b])
        out.append(Comparison(claim, a, b, diff, bound, above, verdict(diff, **{"above" if above else "below": bound})))

    students("KD pays (regime check)", "Normal", "scratch", 0.0, True)
    owner = correct.get("owner", {})
    if "box" in owner and "teacher" in owner:
        diff = paired_over_images(owner["box"], owner["teacher"])
        out.append(Comparison("Fidelity", "box", "teacher", diff, FIDELITY_BOUND, True, verdict(diff, above=FIDELITY_BOUND)))
    for t in s["temperatures"]:
        students(f"Protection (T={t:g})", "SDB" if float(t) == T else f"SDB@T{t:g}", "scratch", 0.0, False)
    students("Authorisation", "SDB+key", "Normal", AUTHORISATION_BOUND, True)
    for reading, prefix in (("", "random_key_"), (", re-estimated statistics", "random_key_restat_")):
        for b, bound, versus in (("scratch", RANDOM_KEY_BOUND, ""), ("SDB+key", 0.0, " vs key holder")):
            out.extend(_worst_fresh_key(rows, correct, prefix, b, bound, reading + versus))
    students("Nasty Teacher alone protects", "Nasty", "scratch", 0.0, False)
    return out


def _worst_fresh_key(rows: dict[str, dict[str, float]], correct: dict[str, dict[str, str]], prefix: str, b: str, bound: float,
                     reading: str) -> list[Comparison]:
    """Uniqueness judged on the fresh key that came closest to opening the box, image by image.

    Each seed draws its own keys, so "random key 1" of two seeds are two different keys: pooling
    them over seeds would average keys, while the claim is about *every* key. The key whose
    student gained most over ``b`` (its own seed's) binds the claim: if it holds, all do.
    """
    fresh = [(seed, row) for seed, by_row in rows.items() for row in by_row if row.startswith(prefix) and row[len(prefix):].isdigit()]
    fresh = [(seed, row) for seed, row in fresh if b in rows[seed] and row in correct.get(seed, {}) and b in correct[seed]]
    if not fresh:
        return []
    seed, row = max(fresh, key=lambda k: rows[k[0]][k[1]] - rows[k[0]][b])
    diff = paired_over_images(correct[seed][row], correct[seed][b])
    claim = f"Uniqueness (worst of {len(fresh)} fresh keys{reading}: seed {seed}, key {int(row[len(prefix):]) + 1})"
    return [Comparison(claim, row, b, diff, bound, False, verdict(diff, below=bound))]
