"""Why a λ = 0.5 box fails the fidelity guard: its BatchNorm statistics, not its weights.

Wraps the ``demo`` preset's cached teacher with the guard off (tiled key, wrong keys, λ 0.5 by
default), then re-estimates the BatchNorm running statistics of the same weights from clean
inputs only and from keyed inputs only, and scores each version on the validation slice.

    python benchmarks/batchnorm_streams.py                 # needs the demo's teacher in $SDBOX_CACHE (run `sdbox demo` once)
    python benchmarks/batchnorm_streams.py --lam 0.9 --tile 0
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch

from sdbox import Key, SafeBox, SDBSettings
from sdbox.benchmark import DEMO
from sdbox.benchmark.cli import default_data
from sdbox.benchmark.runner import load_data
from sdbox.benchmark.tensordata import batches
from sdbox.benchmark.teachers import obtain_teacher
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD
from sdbox.evaluate import evaluate
from sdbox.proxy import mix


def recalibrated(model: torch.nn.Module, loader, key: Key | None) -> torch.nn.Module:
    """A copy whose BatchNorm running statistics are the plain average over ``loader``'s
    inputs (keyed with ``key`` when given); the weights are untouched."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for x, _ in loader:
            model(x if key is None else mix(x, key.tensor, key.lam))
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=default_data())
    parser.add_argument("--lam", type=float, default=0.5)
    parser.add_argument("--tile", type=int, default=4, help="Key tile (0: an untiled key).")
    parser.add_argument("--wrong-keys", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=DEMO.wrap_epochs)
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    splits = load_data(args.data, DEMO, device)
    teacher = obtain_teacher(DEMO, splits.teacher, device, progress=True).model
    val = batches(splits.val, 256)
    key = Key.generate((3, 32, 32), args.lam, CIFAR10_MEAN, CIFAR10_STD, tile=args.tile or None)
    model = copy.deepcopy(teacher).requires_grad_(True)
    torch.manual_seed(0)
    box = SafeBox.wrap(model, batches(splits.wrap, DEMO.batch_size, train=True, seed=1), val_loader=val, key=key,
                       epochs=args.epochs, lr=DEMO.wrap_lr, max_accuracy_drop=100, device=device, mean=CIFAR10_MEAN,
                       std=CIFAR10_STD, settings=SDBSettings(lam=args.lam, wrong_keys=args.wrong_keys))
    box.eval()
    calibration = batches(splits.wrap, 256, train=True, seed=2)
    print(f"teacher: {evaluate(teacher, val)['acc']:.1f}% clean on {len(splits.val)} validation images")
    print("| BatchNorm statistics from | clean top-1 | keyed top-1 |\n|---|---|---|")
    for label, model in (("the wrap (every stream)", box), ("clean inputs only", recalibrated(box, calibration, None)),
                         ("keyed inputs only", recalibrated(box, calibration, key))):
        clean, keyed = evaluate(model, val)["acc"], evaluate(model, val, key=key.tensor, lam=key.lam)["acc"]
        print(f"| {label} | {clean:.1f} | {keyed:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
