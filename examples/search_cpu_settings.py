"""How the `cpu` preset's SDB settings were chosen: short runs scored on the validation slice.

Each candidate (ω, η, fine-tune lr, epochs) wraps the same seed-0 teacher into an SDB box and
distils the CNN student from it without and with the key; the teacher, the scratch student and
the Normal-KD student are trained once and shared. Nothing here looks at the test split.

    python examples/search_cpu_settings.py --data ../shared/data/cifar10 --out runs/search
"""

from __future__ import annotations

import argparse
import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from sdbox.benchmark import CPU, run_benchmark

SHARED = ["teacher.safetensors", "teacher.json", "students/cnn5/scratch.json", "students/cnn5/scratch.safetensors",
          "students/cnn5/Normal_no_key.json", "students/cnn5/Normal_no_key.safetensors"]
SAME_KEY = ["key.key", "methods/Normal.json", "students/cnn5/Normal_key.json", "students/cnn5/Normal_key.safetensors"]

# (ω, η, fine-tune lr, fine-tune epochs, λ), in the order they were tried. The first trains the
# shared teacher and students. λ = 0.5 and 0.7 never passed the fidelity guard in 2–3 epochs,
# so the later candidates use the official code's λ = 0.9.
CANDIDATES = [
    (0.004, 1e-3, 0.01, 2, 0.5),
    (0.004, 1e-3, 0.002, 3, 0.5),
    (0.004, 1e-3, 0.005, 3, 0.7),
    (0.004, 1e-3, 0.01, 2, 0.9),
    (0.01, 1e-3, 0.01, 2, 0.9),
    (0.04, 1e-3, 0.01, 2, 0.9),
    (0.1, 1e-3, 0.01, 2, 0.9),
    (0.004, 0.0, 0.01, 2, 0.9),
    (0.004, 1e-3, 0.01, 4, 0.9),
    (0.5, 1e-3, 0.01, 2, 0.9),
    (1.0, 1e-3, 0.01, 2, 0.9),
]


def candidate_preset(omega: float, eta: float, wrap_lr: float, wrap_epochs: int, lam: float):
    return replace(CPU, name="search", omega=omega, eta=eta, wrap_lr=wrap_lr, wrap_epochs=wrap_epochs, lam=lam, eval_split="val",
                   students=("cnn5",), methods=("Normal", "SDB"), temperatures=(4.0,), random_keys=0)


def run_one(data: str, out: str, candidate: tuple[float, float, float, int, float]) -> dict:
    results = run_benchmark(data, candidate_preset(*candidate), 1, out, threads=1, progress=False)
    r = results["seeds"]["0"]
    sdb = r["methods"]["SDB"]
    row = {"omega": candidate[0], "eta": candidate[1], "wrap_lr": candidate[2], "wrap_epochs": candidate[3], "lam": candidate[4],
           "teacher": r["teacher"]["clean_acc"], "scratch": r["scratch"]["cnn5"], "normal": r["methods"]["Normal"]["student"]["cnn5"]["no_key"]}
    if sdb.get("error"):
        return {**row, "verdict": "guard refused every epoch"}
    row.update(box_clean=sdb["teacher_acc"]["no_key"], box_keyed=sdb["teacher_acc"]["key"],
               no_key=sdb["student"]["cnn5"]["no_key"], key=sdb["student"]["cnn5"]["key"])
    checks = {"fidelity": row["teacher"] - row["box_clean"] <= 1.0, "protection": row["no_key"] < row["scratch"],
              "authorisation": row["key"] >= row["normal"] - 0.5}
    row["verdict"] = ", ".join(k for k, ok in checks.items() if ok) + " ✓" if all(checks.values()) else \
        "fails " + ", ".join(k for k, ok in checks.items() if not ok)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default="runs/search")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    candidates = CANDIDATES
    base = out / "base"
    rows = [run_one(args.data, str(base), candidates[0])]  # trains the shared teacher, scratch and Normal
    for i, cand in enumerate(candidates[1:], 1):
        target = out / f"c{i}" / "seed0"
        for rel in SHARED + (SAME_KEY if cand[4] == candidates[0][4] else []):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            if not (target / rel).exists():
                shutil.copy(base / "seed0" / rel, target / rel)
    # The shared students are re-used only where the key matches (same λ → same key file).
    with ProcessPoolExecutor(args.workers) as pool:
        rows += list(pool.map(run_one, [args.data] * (len(candidates) - 1), [str(out / f"c{i}") for i in range(1, len(candidates))], candidates[1:]))
    (out / "search.json").write_text(json.dumps(rows, indent=2))
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
