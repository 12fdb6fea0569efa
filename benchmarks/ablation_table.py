"""One row per benchmark folder, every claim judged by today's rules: the ablation table of issue 18.

Each folder is a finished ``sdbox benchmark`` run of the same preset whose boxes differ in one
lever (the same teacher, seeds, test images, scratch and Normal-KD students and fresh keys, so
the rows differ only where the box does). The claims are recomputed from each folder's saved
students and per-image records with :func:`sdbox.benchmark.compare.compare`, so a folder written
by an older sdbox is judged exactly as a new one.

    python benchmarks/ablation_table.py "L_main mse, most divergent epoch=runs/cpu-mse" \\
        "L_main kl, most divergent epoch=runs/cpu-kl-maxdiv" "L_main kl, closest to target=runs/cpu"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sdbox.benchmark.compare import Comparison, compare


def judged(folder: Path) -> tuple[dict, list[Comparison]]:
    """A folder's results and its claims, recomputed from the per-image records it holds."""
    results = json.loads((folder / "results.json").read_text())
    cnn = results["settings"]["students"][0]
    correct = {seed: {p.stem: json.loads(p.read_text())["correct"] for p in (folder / f"seed{seed}" / "students" / cnn).glob("*.json")}
               for seed in results["seeds"]}
    box = json.loads((folder / "boxes" / "SDB.json").read_text())
    correct["owner"] = {"teacher": json.loads((folder / "teacher.json").read_text())["correct"],
                        "box": box["clean"]["correct"], "box+key": box["keyed"]["correct"]}
    return results, compare(results, correct)


def cell(claims: dict[str, Comparison], prefix: str) -> str:
    found = [c for name, c in claims.items() if name.startswith(prefix)]
    if not found:
        return "–"
    c = found[0]
    mark = {"holds": "✓", "fails": "✗"}.get(c.verdict, "?")
    return f"{c.diff.mean:+.2f} [{c.diff.low:+.2f}, {c.diff.high:+.2f}] {mark}"


COLUMNS = [("fidelity", "Fidelity"), ("protection T=1", "Protection (T=1)"), ("T=4", "Protection (T=4)"),
           ("T=8", "Protection (T=8)"), ("T=16", "Protection (T=16)"), ("authorisation", "Authorisation"),
           ("worst fresh key − scratch", "Uniqueness (worst of"), ("same, re-estimated statistics", "Uniqueness (worst of")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", metavar="LABEL=FOLDER", help="A row's label and its benchmark folder.")
    args = parser.parse_args(argv)
    lines = ["| box | seeds | box clean / keyed (%) | " + " | ".join(name for name, _ in COLUMNS) + " |",
             "|" + "---|" * (len(COLUMNS) + 3)]
    for row in args.rows:
        label, _, folder = row.rpartition("=")
        if not label:
            parser.error(f"expected LABEL=FOLDER, but got {row!r}")
        results, comparisons = judged(Path(folder))
        claims = {c.claim: c for c in comparisons}
        public = {k: v for k, v in claims.items() if "re-estimated" not in k and "vs key holder" not in k}
        restat = {k: v for k, v in claims.items() if "re-estimated" in k and "vs key holder" not in k}
        cells = [cell(restat if i == len(COLUMNS) - 1 else public, prefix) for i, (_, prefix) in enumerate(COLUMNS)]
        sdb = results["boxes"]["SDB"]
        lines.append(f"| {label} | {len(results['seeds'])} | {sdb['clean_acc']:.2f} / {sdb['keyed_acc']:.2f} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print("\nEach cell: difference in points [95% interval] and ✓ holds / ✗ fails / ? not resolved; intervals over seeds "
          "for students, over test images for fidelity and for the worst fresh key (each seed draws its own keys).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
