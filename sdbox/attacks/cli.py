"""``sdbox attack``: every attack against a saved box, written to OUT/attacks.json and printed."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .registry import ATTACK_NAMES  # torch, the box and the attacks are imported when the command runs, not for --help


def load_box(path: str | Path, model: str | None = None):
    """Load a bundle; a custom architecture is rebuilt from ``sdbox.benchmark.models`` by name,
    or, without a name, by trying each benchmark model until the weights fit."""
    from ..benchmark.models import MODELS, create
    from ..box import SafeBox
    from ..errors import BundleError

    if model is None:
        try:
            return SafeBox.from_pretrained(str(path))
        except BundleError:
            pass
    for name in [model] if model is not None else list(MODELS):
        try:
            return SafeBox.from_pretrained(str(path), model=create(name))
        except BundleError:
            if model is not None:
                raise
    raise BundleError(f"{path} wraps a custom model that no benchmark model fits: load it with `SafeBox.from_pretrained(path, model=...)` and call `run_attacks`.")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..benchmark.models import create
    from ..data import decode_image_folder
    from ..key import Key
    from .base import AttackData, Budget
    from .report import attacks_markdown
    from ..progress import OverallProgress
    from .runner import QUICK_BUDGET, plan, run_attacks

    start, started = time.time(), time.monotonic()
    box = load_box(args.box, args.box_model)
    config = box.box_config
    train_limit = args.train_limit or (5000 if args.quick else None)
    test_limit = args.test_limit or (2000 if args.quick else None)
    data = AttackData.from_uint8(
        decode_image_folder(Path(args.data) / "train", train_limit, args.seed),
        decode_image_folder(Path(args.data) / "test", test_limit, args.seed),
        config.mean, config.std,
    )
    base = QUICK_BUDGET if args.quick else Budget()
    budget = Budget(
        epochs=args.epochs or base.epochs, key_search_steps=args.key_search_steps or base.key_search_steps,
        n_keys=base.n_keys, seed=args.seed, progress=not args.no_progress,
        device=("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device,
    )
    key = Key.load(args.key) if args.key else None
    torch.manual_seed(args.seed)
    meta = {"box": str(Path(args.box).resolve()), "data": str(Path(args.data).resolve()), "student": args.student,
            "box_lam": config.lam, "box_omega": config.omega, "box_architecture": config.architecture,
            "key_given_for_reference_rows": key is not None, "decode_s": round(time.time() - start, 1)}
    rows = 1 + (key is not None) + len(plan(args.quick, args.attacks))  # scratch, the key holder, each planned attack

    # One overall bar counts finished rows (the stage bars inside an attack weigh nothing: attacks
    # differ too much in their work to share a unit), and ends with the wall time.
    with OverallProgress(rows, "sdbox attack", unit="row", weigh=lambda desc: 0.0, started=started, enabled=not args.no_progress) as overall:
        def on_row(r: dict) -> None:
            print(f"{r['attack']:>13} {r['student_acc']:6.2f}%  {r['settings']}  ({r['wall_s']}s)", file=sys.stderr, flush=True)
            overall.update(1, stage=r["attack"])

        report = run_attacks(box, data, lambda: create(args.student, config.num_classes), budget, quick=args.quick, key=key,
                             attacks=args.attacks, out=args.out, meta=meta, on_row=on_row)
    print(attacks_markdown(report))
    print(f"wrote {Path(args.out) / 'attacks.json'} in {time.time() - start:.0f}s")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attack", help="Attack a box without its key: which attacks beat a student trained from scratch?")
    p.add_argument("--box", required=True, help="Folder written by `box.save_pretrained`.")
    p.add_argument("--data", required=True, help="ImageFolder root with train/ and test/ (e.g. ../shared/data/cifar10).")
    p.add_argument("--out", required=True, help="Folder for attacks.json.")
    p.add_argument("--key", help="The owner's key file: used for the key-holder reference row and κ̂ distances only, never by an attack.")
    p.add_argument("--quick", action="store_true", help="Small budget (5,000 train images, 6 epochs, subset of each sweep): ~20 min on 2 idle CPU cores for the first seven attacks, plus about 8 students for the five of issue 22.")
    p.add_argument("--attacks", nargs="+", choices=list(ATTACK_NAMES), help="Run only these attacks (default: all).")
    p.add_argument("--student", default="cnn5", help="Student model from sdbox.benchmark.models (default: cnn5).")
    p.add_argument("--box-model", help="Benchmark model name of a custom box (default: found from the weights).")
    p.add_argument("--epochs", type=int, help="Student epochs (default: 6 with --quick, else 30).")
    p.add_argument("--key-search-steps", type=int, help="Adam steps on κ̂ (default: 150 with --quick, else 500).")
    p.add_argument("--train-limit", type=int, help="Class-balanced training subset size (default: 5,000 with --quick, else all).")
    p.add_argument("--test-limit", type=int, help="Test subset size (default: 2,000 with --quick, else all).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda, … (default: cuda when available, else cpu).")
    p.add_argument("--no-progress", action="store_true", help="No progress bars.")
    p.set_defaults(run=run)
