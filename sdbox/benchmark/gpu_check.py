"""The ``gpu`` preset in one command on a bare GPU machine (``benchmarks/gpu_check.sh`` runs this).

A GPU is lent for about fifteen minutes at a time, on a machine with no network and nothing of
ours on it, so nothing here may need set-up: CIFAR-10 comes from a zip carried inside the
checkout, the teacher is trained in the run (its cache kept in the work folder, so a rerun after
a timeout resumes instead of starting over), and only a handful of small files go to ``--out``
(the device tool brings back at most 8, and never the keys). ``--smoke`` runs the same code at
sizes a CPU core finishes in seconds; the test suite runs it so this path cannot rot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import torch

from .gpu_budget import UTILISATION, estimate
from .presets import GPU, GPU_SMOKE, GpuPreset
from .report import LOSS_CURVES_PNG, SOFT_LABELS_PNG, STUDENTS_PNG
from .runner import run_benchmark

DEFAULT_WORK = Path("runs") / "gpu-check"
DEFAULT_ZIP = Path(".carry") / "cifar10.zip"
SEEDS = {GPU.name: 3, GPU_SMOKE.name: 2}
BROUGHT_BACK = ("report.md", "results.json", STUDENTS_PNG, LOSS_CURVES_PNG, SOFT_LABELS_PNG)  # never keys or weights
HEARTBEAT_S = 30.0
CARRY_LIMIT_BYTES = 64 * 2**20  # what one device run carries: the working tree and every carried path together


def log(message: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parser() -> argparse.ArgumentParser:
    full, pessimistic = estimate(GPU, SEEDS[GPU.name]), estimate(GPU, SEEDS[GPU.name], utilisation=UTILISATION / 2)
    epilog = (f"{full.describe()}\n  at half that utilisation: ≈ {pessimistic.total_s / 60:.1f} min.\n\n"
              "Outputs in --out: report.md, results.json, the figures, summary.json (GPU model, wall time, images/s of each "
              "stage beside this estimate); benchmarks/gpu_check.sh adds log.txt. See docs/gpu.md.")
    ap = argparse.ArgumentParser(prog="python -m sdbox.benchmark.gpu_check", description=__doc__.splitlines()[0], epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help=f"the {GPU_SMOKE.name} preset: the same code path in seconds, on a CPU too.")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or DEFAULT_WORK / "out"),
                    help="where the report, results and figures go (default: $OUT, else runs/gpu-check/out).")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK,
                    help="the unpacked data, the teacher cache and the full benchmark folder (default: runs/gpu-check); "
                         "a rerun with the same folder resumes.")
    ap.add_argument("--zip", type=Path, default=DEFAULT_ZIP, help="CIFAR-10 as a zip of its ImageFolder tree (default: .carry/cifar10.zip).")
    ap.add_argument("--data", type=Path, default=None, help="an unpacked CIFAR-10 ImageFolder root instead of --zip.")
    ap.add_argument("--seeds", type=int, default=None, help="student seeds (default: 3, or 2 with --smoke).")
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cuda, cpu (with --smoke: the gpu preset needs a GPU).")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
    ap.add_argument("--pack", type=Path, default=None, metavar="DIR",
                    help="make --zip from the ImageFolder root DIR (e.g. ../shared/data/cifar10) and stop: run this where "
                         "the data is, before the GPU run.")
    return ap


def pack(source: Path, archive: Path) -> int:
    """Zip the ImageFolder tree ``source`` as ``<name>/train/...``, deflated: 53 MB for CIFAR-10,
    where a stored zip (``zip -0``) is 66 MB and with ``../shared/data/`` in every name 68 MB,
    over the 64 MiB a device run carries. Returns the archive's size in bytes."""
    image_folder_root(source, depth=1)  # refuses a folder without train/ and test/
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                z.write(path, Path(source.name) / path.relative_to(source))
    partial.replace(archive)
    return archive.stat().st_size


def unpack(archive: Path, work: Path) -> Path:
    """The ImageFolder root inside ``archive``, unpacked once into ``work/data``.

    Members are extracted with Python's zipfile, which drops ``..`` from their paths, so a zip
    made as ``../shared/data/README.md`` says (``zip -0 -qr .carry/cifar10.zip ../shared/data/cifar10``,
    too large to carry with CIFAR-10 whole) unpacks inside ``work`` too.
    """
    if not archive.is_file():
        raise SystemExit(f"No CIFAR-10 zip at {archive}: make it where the data is with "
                         "`python -m sdbox.benchmark.gpu_check --pack ../shared/data/cifar10` and carry `.carry`, "
                         "or pass --data DIR (an ImageFolder root with train/ and test/).")
    target, stamp = work / "data", f"{archive.stat().st_size}"
    marker = target / ".unpacked"
    if not (marker.is_file() and marker.read_text() == stamp):
        shutil.rmtree(target, ignore_errors=True)
        start = time.time()
        with zipfile.ZipFile(archive) as z:
            z.extractall(target)
        marker.write_text(stamp)
        log(f"unpacked {archive} in {time.time() - start:.1f} s")
    return image_folder_root(target)


def image_folder_root(folder: Path, depth: int = 5) -> Path:
    """The first folder at most ``depth`` levels down that holds both ``train/`` and ``test/``."""
    for level in range(depth):
        for train in sorted(folder.glob("/".join(["*"] * level + ["train"]))):
            if train.is_dir() and (train.parent / "test").is_dir():
                return train.parent
    raise SystemExit(f"No folder with train/ and test/ in {folder}: the zip must hold CIFAR-10 as an ImageFolder tree "
                     "(cifar10/train/<class>/*.jpg, cifar10/test/<class>/*.jpg).")


@contextlib.contextmanager
def heartbeat(every_s: float = HEARTBEAT_S) -> Iterator[None]:
    """A line every ``every_s`` seconds while the block runs, so a long stage without log lines
    (a wrap epoch) still shows the process alive, with the GPU memory it holds."""
    stop, start = threading.Event(), time.time()

    def beat() -> None:
        while not stop.wait(every_s):
            memory = f", {torch.cuda.memory_allocated() / 2**30:.1f} GiB on the GPU" if torch.cuda.is_initialized() else ""
            log(f"still running: {time.time() - start:.0f} s{memory}")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def summary(results: dict[str, Any], p: GpuPreset, seeds: int, student_records: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """What the run measured beside what :mod:`.gpu_budget` estimated: seconds and images/s a stage."""
    sizes, compute = results["data"], results["compute_s"]
    planned = {s.key: s.seconds for s in estimate(p, seeds).stages}
    boxes = [b for b in results["boxes"].values() if b.get("wrap_s")]
    stages = {
        "teacher": (compute["teacher"], p.teacher_epochs * sizes["teacher"]),
        "wrap": (compute["wraps"], p.wrap_epochs * sizes["wrap"] * len(boxes)),
        "students": (compute["students"], p.student_epochs * sizes["distill"] * len(student_records)),
    }
    return {
        "preset": p.name, "seeds": seeds, "device": results["device"], "torch": torch.__version__,
        "cuda": torch.version.cuda, "wall_time_s": round(wall_s, 1), "benchmark_wall_time_s": results["wall_time_s"],
        "estimated_s": round(estimate(p, seeds).total_s, 1),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_initialized() else None,
        "stages": {name: {"seconds": seconds, "images": images,
                          "images_per_s": round(images / seconds) if seconds else None,
                          "estimated_s": round(planned[name], 1)}
                   for name, (seconds, images) in stages.items()},
    }


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.pack is not None:
        size = pack(args.pack, args.zip)
        log(f"{args.zip}: {size / 2**20:.1f} MiB; a device run carries {CARRY_LIMIT_BYTES / 2**20:.0f} MiB with the checkout")
        return 0 if size < CARRY_LIMIT_BYTES else 1
    started = time.time()
    p = GPU_SMOKE if args.smoke else GPU
    if not args.smoke and not torch.cuda.is_available():
        log(f"no CUDA device is visible (torch {torch.__version__}, built for CUDA {torch.version.cuda}): the {GPU.name} preset "
            "is sized for one H100/H200. On a CPU, run `benchmarks/gpu_check.sh --smoke` (the same code at tiny sizes).")
        return 2
    seeds = args.seeds if args.seeds is not None else SEEDS[p.name]
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["SDBOX_CACHE"] = str((args.work / "cache").resolve())  # the teacher this check trains, and no other
    data = args.data if args.data is not None else unpack(args.zip, args.work)
    if torch.cuda.is_available() and args.device != "cpu":
        props = torch.cuda.get_device_properties(0)
        log(f"{props.name}: {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, bf16 "
            f"{'supported' if torch.cuda.is_bf16_supported() else 'NOT supported'}; torch {torch.__version__}, CUDA {torch.version.cuda}")
    plan = estimate(p, seeds)
    log(f"preset {p.name}, {seeds} seeds, data {data}, work {args.work}; estimated {plan.total_s:.0f} s on one H100/H200")

    bench = args.work / p.name
    with heartbeat():
        results = run_benchmark(data, p, seeds, bench, device=args.device, threads=args.threads, progress=False)
    records = [json.loads(path.read_text()) for path in bench.glob("seed*/students/*/*.json")]
    measured = summary(results, p, seeds, records, time.time() - started)
    for name in BROUGHT_BACK:
        if (bench / name).exists():
            shutil.copy(bench / name, args.out / name)
    (args.out / "summary.json").write_text(json.dumps(measured, indent=2) + "\n")
    log(f"{measured['device']}: {measured['wall_time_s']:.0f} s in all (estimated {measured['estimated_s']:.0f} s)")
    for name, stage in measured["stages"].items():
        log(f"  {name:<8} {stage['seconds'] or 0:7.1f} s  {stage['images_per_s'] or 0:>9,} images/s  (estimated {stage['estimated_s']:.0f} s)")
    log(f"outputs: {', '.join(sorted(path.name for path in args.out.iterdir()))} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
