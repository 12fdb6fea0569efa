"""``sdbox benchmark`` and ``sdbox demo``: argument parsing and the command's overall progress;
the work is in :mod:`.runner`."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ..progress import OverallProgress
from .gpu_budget import UTILISATION, estimate, rows_per_seed
from .presets import DEMO, GPU, PRESETS, Preset, get_preset


def default_data() -> str | None:
    """$SDBOX_DATA, else ../shared/data/cifar10 when it exists, else None (torchvision download)."""
    if os.environ.get("SDBOX_DATA"):
        return os.environ["SDBOX_DATA"]
    shared = Path("..") / "shared" / "data" / "cifar10"
    return str(shared) if shared.is_dir() else None


def _common(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("--data", default=default_data(),
                        help="CIFAR-10 ImageFolder root with train/ and test/ (default: $SDBOX_DATA, else ../shared/data/cifar10, "
                             "else a torchvision download).")
    parser.add_argument("--out", default=out, help="Output folder; rerunning with the same folder resumes.")
    parser.add_argument("--teacher", default=None,
                        help="Weights of the preset's teacher (a .safetensors file, or a folder with model.safetensors) to use "
                             "instead of training one (trained teachers are cached in $SDBOX_CACHE, default ~/.cache/sdbox).")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, …")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars (log lines only).")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("benchmark", help="Measure what a box protects: the SDB paper's CIFAR-10 tables, with paired intervals.")
    gpu_s, gpu_slow_s = (estimate(GPU, 3, utilisation=u).total_s for u in (UTILISATION, UTILISATION / 2))
    bench.add_argument("--preset", choices=sorted(p for p in PRESETS if p != "demo"), default="cpu",
                       help="cpu: data-limited, the 12-epoch wrap that protects; 55 min measured on 2 shared CPU cores, teacher included; "
                            f"gpu: the cpu recipe with a ResNet-18 teacher, ≈ {gpu_s / 60:.1f} min on one H100/H200 with 3 seeds, teacher "
                            f"included (estimated at {UTILISATION * 100:.0f}%% of bf16 peak, ≈ {gpu_slow_s / 60:.1f} min at half that; never run: "
                            "docs/gpu.md); gpu-smoke: the gpu preset's code path in seconds; paper: ResNet-18, full data, 200 epochs (GPU).")
    bench.add_argument("--seeds", type=int, default=3, help="Student seeds (≥ 3 for intervals worth reading).")
    _common(bench, "runs/benchmark")
    bench.set_defaults(run=run_benchmark_cli)

    demo = sub.add_parser("demo", help="Every step (teacher, box, students without and with the key, a fresh key) in about 7 min on 2 CPU cores; its 2-epoch wrap is too short to protect.")
    _common(demo, "runs/demo")
    demo.set_defaults(run=run_demo_cli)


def overall_progress(p: Preset, seeds: int, command: str, *, enabled: bool, started: float) -> OverallProgress:
    """One bar over a run, in percent of its planned training, advanced by the stage bars the
    runner draws: the teacher's training, each wrap epoch of each box, each epoch of each student.

    A stage weighs what :func:`.gpu_budget.estimate` gives its kind in FLOPs: arithmetic, not a
    measurement, but it ranks the stages on a CPU as on a GPU (a demo's students are half of
    its work, its teacher a tenth), so the time left follows the run's real pace, not a count of
    unequal stages. A rerun draws no bar for what it finds done (a cached teacher, the boxes and
    students of an earlier run): the estimate then runs high and the bar ends short of 100%.
    """
    flops = {stage.key: stage.flops for stage in estimate(p, seeds).stages}
    boxes = len([m for m in p.methods if m != "Normal"])
    per_bar = {  # the start of each stage bar's description, and what one such bar weighs
        "teacher": flops["teacher"],
        "wrap epoch": flops["wrap"] / max(boxes * p.wrap_epochs, 1),
        "distill epoch": flops["students"] / (len(rows_per_seed(p)) * seeds * p.student_epochs),
    }

    def weigh(desc: str) -> float:
        return next((weight for kind, weight in per_bar.items() if desc.startswith(kind)), 0.0)

    return OverallProgress(flops["teacher"] + flops["wrap"] + flops["students"], f"sdbox {command}", unit=None, weigh=weigh,
                           enabled=enabled, started=started)


def run_benchmark_cli(args: argparse.Namespace) -> int:
    started = time.monotonic()
    from .runner import run_benchmark

    with overall_progress(get_preset(args.preset), args.seeds, "benchmark", enabled=not args.no_progress, started=started):
        run_benchmark(args.data, args.preset, args.seeds, args.out, teacher=args.teacher, device=args.device, threads=args.threads,
                      progress=not args.no_progress)
        print(f"results: {Path(args.out) / 'results.json'}\nreport:  {Path(args.out) / 'report.md'}")
    return 0


def run_demo_cli(args: argparse.Namespace) -> int:
    started = time.monotonic()
    from .report import NO_MATPLOTLIB, STUDENTS_PNG, demo_summary
    from .runner import run_benchmark

    with overall_progress(DEMO, 1, "demo", enabled=not args.no_progress, started=started):
        results = run_benchmark(args.data, DEMO, 1, args.out, teacher=args.teacher, device=args.device, threads=args.threads,
                                progress=not args.no_progress)
        print("\n" + demo_summary(results) + "\n")
        print(f"report: {Path(args.out) / 'report.md'}")
        figure = Path(args.out) / STUDENTS_PNG
        print(f"figure: {figure}" if figure.exists() else NO_MATPLOTLIB)
        print(f"wall time: {results['wall_time_s']:.0f} s on {results['device']}")
    return 0
