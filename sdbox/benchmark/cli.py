"""``sdbox benchmark`` and ``sdbox demo``: argument parsing only; the work is in :mod:`.runner`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .presets import DEMO, PRESETS


def default_data() -> str | None:
    """$SDBOX_DATA, else ../shared/data/cifar10 when it exists, else None (torchvision download)."""
    if os.environ.get("SDBOX_DATA"):
        return os.environ["SDBOX_DATA"]
    shared = Path("..") / "shared" / "data" / "cifar10"
    return str(shared) if shared.is_dir() else None


def add_parsers(sub: Any) -> None:
    bench = sub.add_parser("benchmark", help="Reproduce the SDB paper's CIFAR-10 tables (3, 5, 6) and judge its claims.")
    bench.add_argument("--data", default=None, help="CIFAR-10 ImageFolder root with train/ and test/ (default: torchvision download).")
    bench.add_argument("--preset", choices=sorted(p for p in PRESETS if p != "demo"), default="cpu",
                       help="cpu: small teacher, 2,000 images, ~30 min on 2 shared cores; paper: ResNet-18, full data, 200 epochs (GPU).")
    bench.add_argument("--seeds", type=int, default=2, help="Seeds to run; results are mean ± std over them.")
    bench.add_argument("--out", default="runs/benchmark", help="Output folder; rerunning with the same folder resumes.")
    bench.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, …")
    bench.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a CPU shared with other jobs).")
    bench.add_argument("--no-progress", action="store_true", help="No progress bars (log lines only).")
    bench.set_defaults(run=run_benchmark_cli)

    demo = sub.add_parser("demo", help="The whole story (wrap, distil without and with the key) in a few CPU minutes.")
    demo.add_argument("--data", default=default_data(), help="CIFAR-10 ImageFolder root (default: $SDBOX_DATA or ../shared/data/cifar10).")
    demo.add_argument("--out", default="runs/demo", help="Output folder for the models, report.md and figures.")
    demo.add_argument("--device", default="auto")
    demo.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a CPU shared with other jobs).")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(run=run_demo_cli)


def run_benchmark_cli(args: argparse.Namespace) -> int:
    from .runner import run_benchmark

    run_benchmark(args.data, args.preset, args.seeds, args.out, device=args.device, threads=args.threads, progress=not args.no_progress)
    print(f"results: {Path(args.out) / 'results.json'}\nreport:  {Path(args.out) / 'report.md'}")
    return 0


def run_demo_cli(args: argparse.Namespace) -> int:
    from .runner import run_benchmark

    results = run_benchmark(args.data, DEMO, 1, args.out, device=args.device, threads=args.threads, progress=not args.no_progress)
    print(demo_table(results))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def demo_table(results: dict[str, Any]) -> str:
    """Five lines: the teacher, the box both ways, and the CNN student from each source."""
    r, cnn = results["seeds"]["0"], results["settings"]["students"][0]
    sdb, normal = r["methods"]["SDB"], r["methods"]["Normal"]
    if sdb.get("error"):
        return f"The fidelity guard refused the SDB box: {sdb['error']}"
    pct = lambda v: f"{v:6.2f}%"  # noqa: E731
    rows = [
        ("teacher (original), clean input", pct(r["teacher"]["clean_acc"])),
        ("SDB box: clean input / keyed input", f"{pct(sdb['teacher_acc']['no_key'])} / {pct(sdb['teacher_acc']['key'])}"),
        (f"{cnn} student from scratch", pct(r["scratch"][cnn])),
        (f"{cnn} student from the box: no key / key", f"{pct(sdb['student'][cnn]['no_key'])} / {pct(sdb['student'][cnn]['key'])}"),
        (f"{cnn} student from the original teacher", pct(normal["student"][cnn]["no_key"])),
    ]
    return "\n".join(f"{label:<42} {value}" for label, value in rows)
