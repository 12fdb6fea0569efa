"""How long each quick `sdbox` command takes before it answers, and which imports that time goes to.

    python benchmarks/cli_latency.py [--runs 5] [--json out.json]

Times whole processes from outside (start to exit, interpreter start-up included): ``sdbox --help``,
``sdbox inspect`` and ``sdbox verify`` on a small bundle made here, beside ``python -c pass`` (the
floor) and ``python -c "import torch"`` (what one heavy import costs). Then runs ``--help`` once
under ``python -X importtime`` and lists the packages it imports with their cumulative time: the
answer to "why is --help slow" is in that list. The goal (issue 21, item 8) is under 1 s for
``--help``, ``inspect`` and ``verify``. Quote the medians with the machine's load (printed first):
on a busy 2-core machine every figure grows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The packages whose import time decides start-up; anything else is summed as "other".
PACKAGES = ("torch", "torchvision", "timm", "huggingface_hub", "safetensors", "numpy", "tqdm", "sdbox")


def make_bundle(folder: Path) -> tuple[Path, Path]:
    """A small real bundle (config.json, model.safetensors, README.md) and its key file, made by
    the sdbox of this tree (the one the timed commands run), not an installed one."""
    sys.path.insert(0, str(REPO))
    import torch.nn as nn

    from sdbox import Key, SafeBox
    from sdbox.config import BoxConfig
    from sdbox.data import CIFAR10_MEAN, CIFAR10_STD

    key = Key.generate((3, 32, 32), 0.5, CIFAR10_MEAN, CIFAR10_STD)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    config = BoxConfig(architecture="torch.nn.Sequential", num_classes=10, input_size=(3, 32, 32), mean=CIFAR10_MEAN,
                       std=CIFAR10_STD, key_fingerprint=key.fingerprint, license="apache-2.0")
    SafeBox(model, config).save_pretrained(folder / "box")
    key.save(folder / "owner.key")
    return folder / "box", folder / "owner.key"


def wall_times(command: list[str], runs: int, env: dict[str, str]) -> list[float]:
    """Wall seconds of ``runs`` runs of ``command`` after one uncounted warm-up (which fills the OS file cache)."""
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
        if i:
            times.append(elapsed)
    return times


def import_breakdown(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Seconds spent importing each package's own modules in one ``-X importtime`` run of ``command``.

    Each module's *self* time (its own code, not what it imports) is added to its top-level
    package, so the figures add up to the whole import time and nothing counts twice; the
    packages not in :data:`PACKAGES` (the standard library, torch's and huggingface_hub's own
    dependencies) are summed as "other".
    """
    done = subprocess.run([command[0], "-X", "importtime", *command[1:]], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True)
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        package = parts[2].strip().split(".")[0]
        package = package if package in PACKAGES else "other"
        totals[package] = totals.get(package, 0.0) + int(parts[0]) / 1e6
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="Counted runs per command (default 5; the median is quoted).")
    parser.add_argument("--json", help="Also write the figures here.")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    python = sys.executable
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; {args.runs} runs each, median (min–max)")
    with tempfile.TemporaryDirectory() as tmp:
        box, key = make_bundle(Path(tmp))
        commands = {
            "python -c pass": [python, "-c", "pass"],
            'python -c "import torch"': [python, "-c", "import torch"],
            "sdbox --help": [python, "-m", "sdbox", "--help"],
            "sdbox inspect BOX": [python, "-m", "sdbox", "inspect", str(box)],
            "sdbox verify BOX --key KEY": [python, "-m", "sdbox", "verify", str(box), "--key", str(key)],
        }
        figures = {}
        for name, command in commands.items():
            times = wall_times(command, args.runs, env)
            figures[name] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": times}
            print(f"  {name:<30} {statistics.median(times):6.2f} s  ({min(times):.2f}–{max(times):.2f})")
        imports = import_breakdown(commands["sdbox --help"], env)
    print("import time of `sdbox --help` by package (self times, one run):")
    for package, seconds in imports.items():
        print(f"  {package:<30} {seconds:6.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_average": load, "commands": figures, "help_imports_s": imports}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
