"""The attack table against a benchmark's box, in the benchmark's own regime (issue 22).

Given a benchmark output folder (``sdbox benchmark --preset cpu --out runs/cpu``: ``results.json``,
``boxes/SDB``, ``boxes/SDB.key``, ``seedN/students/``), runs the attacks of
``sdbox.attacks.regime.DEFAULT_PLAN`` (or ``--attacks``) for the benchmark's seeds with its
slice, student, epochs and batches, and writes ``OUT/attack_table.md`` and ``OUT/attack_table.json``:
each row's accuracy, its paired 95% intervals against scratch and against the key holder (read
from the benchmark's own rows), whether the box held, the time it took and the machine. Attack
students are saved under ``OUT/seedN/`` as they are trained; a rerun skips them.

    python benchmarks/attack_table.py runs/cpu --data ../shared/data/cifar10

``--card`` also stores the strongest attack in the published box's report (``BENCH/box``), so
its model card names it with its figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", help="Benchmark output folder (holds results.json, boxes/SDB, boxes/SDB.key).")
    parser.add_argument("--data", help="CIFAR-10 ImageFolder root (default: the one the benchmark used).")
    parser.add_argument("--out", help="Folder for the table and the attack students (default: BENCH/attacks).")
    parser.add_argument("--seeds", type=int, nargs="+", help="Seeds (default: the benchmark's).")
    parser.add_argument("--attacks", nargs="+", help="Only the plan's rows of these attacks (default: the whole plan).")
    parser.add_argument("--key-search-steps", type=int, default=500, help="Adam steps of each key search (default 500).")
    parser.add_argument("--n-keys", type=int, default=4, help="Keys each random-key row guesses (default 4).")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads.")
    parser.add_argument("--card", action="store_true", help="Store the strongest attack in BENCH/box's report and card.")
    args = parser.parse_args(argv)

    import torch

    from sdbox.attacks.regime import DEFAULT_PLAN, regime_markdown, run_in_regime, write_outputs

    if args.threads:
        torch.set_num_threads(args.threads)
    plan = [(n, s) for n, s in DEFAULT_PLAN if args.attacks is None or n in args.attacks]
    if not plan:
        parser.error(f"--attacks matches no row of the plan: choose from {sorted({n for n, _ in DEFAULT_PLAN})}.")
    start = time.time()
    out = Path(args.out) if args.out else Path(args.bench) / "attacks"
    result = run_in_regime(args.bench, args.data, plan=plan, seeds=args.seeds, out=out, device=args.device,
                           key_search_steps=args.key_search_steps, n_keys=args.n_keys)
    table, data = write_outputs(result, out)
    print(regime_markdown(result))
    print(f"wrote {table} and {data} in {time.time() - start:.0f} s", file=sys.stderr)
    if args.card:
        from sdbox.attacks.regime import store_in_box

        print(f"stored the strongest attack in {store_in_box(args.bench, result)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
