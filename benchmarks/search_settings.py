"""Choose SDB settings by measurement: one lever at a time, scored on the validation slice only.

Each candidate is the ``demo`` preset (a cnn5 teacher of the whole training set, students on a
1,000-image slice) with some settings changed, evaluated on the 1,000-image *validation* slice —
never the test split. The teacher comes from the cache, and the scratch and Normal-KD students
(which no SDB setting touches) are trained once and copied into every candidate's folder.

    python benchmarks/search_settings.py --out runs/search            # every candidate
    python benchmarks/search_settings.py --out runs/search base kl    # some of them

Writes ``OUT/search.json`` and ``OUT/search.md`` (the table docs/benchmark.md shows).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from sdbox.benchmark import CPU, DEMO, run_benchmark
from sdbox.benchmark.cli import default_data

BASE = replace(DEMO, name="search", eval_split="val", random_keys=2, notes=())
# --preset cpu: the cpu preset's teacher, wrap and slice, but one seed, T = 4 only and no Nasty row.
CPU_BASE = replace(CPU, name="search-cpu", eval_split="val", random_keys=2, methods=("Normal", "SDB"), temperatures=(4.0,), notes=())

# name -> the settings that differ from BASE (λ 0.9, ω 0.1, η 1e-3, L_main 'mse', 2-epoch wrap at lr 0.01).
CANDIDATES: dict[str, dict] = {
    "base": {},
    "wrong_keys": {"wrong_keys": 1.0},
    "kl": {"main_loss": "kl"},
    "wrong_keys+kl": {"wrong_keys": 1.0, "main_loss": "kl"},
    "wrong_keys+kl, ω 0.3": {"wrong_keys": 1.0, "main_loss": "kl", "omega": 0.3},
    "wrong_keys+kl, ω 1": {"wrong_keys": 1.0, "main_loss": "kl", "omega": 1.0},
    "wrong_keys+kl, λ 0.7": {"wrong_keys": 1.0, "main_loss": "kl", "lam": 0.7},
    "wrong_keys+kl, λ 0.5": {"wrong_keys": 1.0, "main_loss": "kl", "lam": 0.5},
    "wrong_keys+kl, 4 epochs": {"wrong_keys": 1.0, "main_loss": "kl", "wrap_epochs": 4},
    "confuse, ω 0.1": {"disturbance_form": "confuse", "main_loss": "kl"},
    "confuse, ω 0.3": {"disturbance_form": "confuse", "main_loss": "kl", "omega": 0.3},
    "confuse, ω 0.3, wrong_keys": {"disturbance_form": "confuse", "main_loss": "kl", "omega": 0.3, "wrong_keys": 1.0},
    "confuse, ω 1": {"disturbance_form": "confuse", "main_loss": "kl", "omega": 1.0},
    "tiled key 4, wrong_keys, λ 0.5": {"key_tile": 4, "wrong_keys": 1.0, "lam": 0.5},
    "tiled key 4, wrong_keys, λ 0.7": {"key_tile": 4, "wrong_keys": 1.0, "lam": 0.7},
    "tiled key 4, λ 0.5": {"key_tile": 4, "lam": 0.5},
    "decoy, ω 1": {"disturbance_form": "decoy", "omega": 1.0, "main_loss": "kl", "wrong_keys": 1.0, "decoy_source": "random_copy"},
    "decoy, ω 1, 8 epochs": {"disturbance_form": "decoy", "omega": 1.0, "main_loss": "kl", "wrong_keys": 1.0, "decoy_source": "random_copy",
                             "wrap_epochs": 8},
    # Key-less diagnostics: can the box learn the decoy at all without a key stream to conflict with?
    "no key stream, decoy, guard off": {"disturbance_form": "decoy", "omega": 1.0, "decoy_source": "random_copy",
                                        "methods": ("Normal", "Nasty"), "key_rows": (), "max_accuracy_drop": 100.0,
                                        "random_keys": 0, "temperatures": ()},
    "pixel decoy, ω 1": {"disturbance_form": "decoy", "decoy_source": "pixels", "omega": 1.0, "main_loss": "kl", "wrong_keys": 1.0},
    "pixel decoy, ω 2": {"disturbance_form": "decoy", "decoy_source": "pixels", "omega": 2.0, "main_loss": "kl", "wrong_keys": 1.0},
    "decoy, ω 1, with Nasty row": {"disturbance_form": "decoy", "decoy_source": "random_copy", "omega": 1.0, "main_loss": "kl", "wrong_keys": 1.0,
                                   "methods": ("Normal", "Nasty", "SDB"), "key_rows": ("SDB",)},
    "decoy, ω 1, lr 0.005, 5 epochs": {"disturbance_form": "decoy", "decoy_source": "random_copy", "omega": 1.0, "main_loss": "kl", "wrong_keys": 1.0,
                                       "wrap_lr": 0.005, "wrap_epochs": 5},
    "decoy, ω 2, share 0.6": {"disturbance_form": "decoy", "decoy_source": "random_copy", "omega": 2.0, "decoy_share": 0.6, "main_loss": "kl", "wrong_keys": 1.0},
    "decoy, ω 2, share 0.6, tiled key 4": {"disturbance_form": "decoy", "decoy_source": "random_copy", "omega": 2.0, "decoy_share": 0.6, "main_loss": "kl",
                                           "wrong_keys": 1.0, "key_tile": 4},
    "decoy, ω 2, share 0.6, no wrong keys": {"disturbance_form": "decoy", "decoy_source": "random_copy", "omega": 2.0, "decoy_share": 0.6, "main_loss": "kl"},
    # Issue 18, round 5, on the cpu preset (--preset cpu): the recipe as landed (L_main 'mse') against L_main 'kl'.
    "recipe": {},
    "recipe, L_main kl": {"main_loss": "kl"},
}
SHARED = ("scratch", "Normal")  # student rows no SDB setting changes


def folder_name(name: str) -> str:
    return "".join(c if c.isascii() and c.isalnum() else "_" for c in name)


def row(name: str, changes: dict, results: dict) -> dict:
    """One table row, each figure the mean over the run's seeds; a candidate without an SDB box (a
    key-less diagnostic) reports its Nasty box."""
    seeds = list(results["seeds"].values())
    mean = lambda read: None if read(seeds[0]) is None else sum(read(s) for s in seeds) / len(seeds)  # noqa: E731
    box = "SDB" if "SDB" in results["boxes"] else "Nasty"
    sdb = results["boxes"].get(box, {})
    keyed = lambda s, mode: s["methods"][box].get("cnn5", {}).get(mode)  # noqa: E731
    per_key = lambda field: [sum(s[field][i] for s in seeds) / len(seeds) for i in range(len(seeds[0].get(field, [])))]  # noqa: E731
    return {"candidate": name, "changes": changes, "seeds": len(seeds), "teacher": results["teacher"]["acc"],
            "box_clean": sdb.get("clean_acc"), "box_keyed": sdb.get("keyed_acc"), "scratch": mean(lambda s: s["scratch"]["cnn5"]),
            "normal": mean(lambda s: s["methods"]["Normal"]["cnn5"]["no_key"]), "no_key": mean(lambda s: keyed(s, "no_key")),
            "key": mean(lambda s: keyed(s, "key")), "random_keys": per_key("random_key_attack"),
            "random_keys_restat": per_key("random_key_restat_attack"), "error": sdb.get("error"), "wall_s": results["wall_time_s"]}


def markdown(rows: list[dict]) -> str:
    f = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    lines = ["| candidate | seeds | box clean / keyed | scratch | Normal KD | no key − scratch | key − Normal | random keys − scratch | wall (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["error"]:
            lines.append(f"| {r['candidate']} | {r.get('seeds', 1)} | refused by the guard | {f(r['scratch'])} | {f(r['normal'])} | – | – | – | {r['wall_s']:.0f} |")
            continue
        randoms = ", ".join(f"{v - r['scratch']:+.2f}" for v in r["random_keys"])
        if r.get("random_keys_restat"):
            randoms += " / re-estimated " + ", ".join(f"{v - r['scratch']:+.2f}" for v in r["random_keys_restat"])
        key = "–" if r["key"] is None else f"{r['key'] - r['normal']:+.2f}"
        lines.append(f"| {r['candidate']} | {r.get('seeds', 1)} | {f(r['box_clean'])} / {f(r['box_keyed'])} | {f(r['scratch'])} | {f(r['normal'])} | "
                     f"{r['no_key'] - r['scratch']:+.2f} | {key} | {randoms or '–'} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"Candidates to run (default: all of {list(CANDIDATES)}).")
    parser.add_argument("--out", default="runs/search")
    parser.add_argument("--data", default=default_data())
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=1, help="Seeds per candidate (default 1); the table shows their means.")
    parser.add_argument("--preset", choices=("demo", "cpu"), default="demo", help="The setting the candidates change (default: demo).")
    parser.add_argument("--teacher", default=None, help="Teacher weights for the preset (default: cached or trained).")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}; expected names from {list(CANDIDATES)}")
    out = Path(args.out)
    record = out / "search.json"
    rows = {r["candidate"]: r for r in json.loads(record.read_text())} if record.exists() else {}
    for name in args.names or list(CANDIDATES):
        target = out / folder_name(name)
        # The rows no SDB setting changes: train once, copy (from any earlier candidate, even another process's).
        for seed in range(args.seeds):
            students = Path(f"seed{seed}") / "students" / "cnn5"
            first = next((out / folder_name(n) for n in CANDIDATES if (out / folder_name(n) / students / "Normal.json").exists()), None)
            for shared in SHARED if first is not None else ():
                for suffix in (".json", ".safetensors"):
                    source = first / students / f"{shared}{suffix}"
                    (target / students).mkdir(parents=True, exist_ok=True)
                    if source.exists() and not (target / source.relative_to(first)).exists():
                        shutil.copy(source, target / source.relative_to(first))
        start = time.time()
        print(f"== {name}: {CANDIDATES[name] or 'the base settings'}", flush=True)
        base = CPU_BASE if args.preset == "cpu" else BASE
        results = run_benchmark(args.data, replace(base, **CANDIDATES[name]), args.seeds, target, teacher=args.teacher,
                                threads=args.threads, progress=False)
        if record.exists():  # another process may have added rows since we started
            rows = {**{r["candidate"]: r for r in json.loads(record.read_text())}, **rows}
        rows[name] = row(name, CANDIDATES[name], results)
        rows[name]["wall_s"] = round(time.time() - start, 1)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(list(rows.values()), indent=2))
        (out / "search.md").write_text(markdown(list(rows.values())) + "\n")
        print(markdown([rows[name]]), flush=True)
    print(markdown(list(rows.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
