"""How much can soft labels hurt a student at all? The ceiling of any clean-stream disturbance.

A box's clean stream can only protect by what its soft labels teach. This script skips the
wrapping and distils CNN5 students from the cpu preset's teacher with its logits *replaced* by a
designed target that keeps the teacher's top-1 (so fidelity would be untouched) and moves the
rest of the mass — the best any fine-tune that matched that target exactly could do. It is
scored on the validation slice (settings are chosen there), against scratch and plain KD on the
same slice, seeds and batches.

    python benchmarks/poison_ceiling.py --teacher ../shared/teachers/cifar10-cnn5_wide-76.safetensors \
        --out runs/ceiling [--seeds 0 1] [--only decoy_random_0.5 ...]

Targets (``m``: the top class's probability at T = 1; the decoy gets 1 − m):
- ``normal``: the teacher's own logits (plain KD); ``scratch``: no teacher.
- ``shrunk``: the teacher's logits divided by 8 (same order, flat soft labels).
- ``decoy_random``: the decoy spread by a frozen random network T0's own (standardised) logits over
  the 9 wrong classes — a deterministic, learnable, class-unrelated function of the image.
- ``decoy_inverted``: the decoy on the classes the teacher finds *least* likely.
- ``decoy_pixels``: the decoy spread by a fixed random linear map of the 4×4-pooled image — as
  class-unrelated as T0's, and far easier for a box to compute.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from sdbox.benchmark import CPU
from sdbox.benchmark import models
from sdbox.benchmark.cli import default_data
from sdbox.benchmark.runner import load_data
from sdbox.benchmark.teachers import load_teacher
from sdbox.benchmark.tensordata import batches
from sdbox.distill import distill
from sdbox.evaluate import evaluate
from sdbox.losses import decoy_target


def target(kind: str, m: float, z_teacher: torch.Tensor, z_random: torch.Tensor, z_pixels: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax is ``m`` on the teacher's top-1 and ``1 − m`` on a decoy over the rest:
    :func:`sdbox.losses.decoy_target`, the very target the ``decoy`` disturbance trains a box toward."""
    if kind == "normal":
        return z_teacher
    if kind == "shrunk":
        return z_teacher / 8
    scores = {"decoy_random": z_random, "decoy_pixels": z_pixels, "decoy_inverted": -z_teacher}[kind]
    return decoy_target(z_teacher, scores, share=1 - m).clamp_min(1e-8).log()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--data", default=default_data())
    parser.add_argument("--out", default="runs/ceiling")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--T", type=float, nargs="+", default=[4.0])
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    p = replace(CPU, eval_split="val")
    device = torch.device("cpu")
    splits = load_data(args.data, p, device)
    teacher = load_teacher(p.teacher, args.teacher, device)
    torch.manual_seed(1234)
    random_net = models.create(p.teacher).eval()
    projection = torch.randn(48, 10)
    pixel_scores = lambda x: F.adaptive_avg_pool2d(x, 4).flatten(1) @ projection  # noqa: E731
    candidates = ["scratch", "normal", "shrunk"] + [f"decoy_{k}_{m}" for k in ("random", "inverted", "pixels") for m in (0.5, 0.7)]
    if args.only:
        candidates = [c for c in candidates if c in args.only]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for T in args.T:
            for name in candidates:
                path = out / f"{name}_T{T:g}_seed{seed}.json"
                if path.exists():
                    print(json.loads(path.read_text()))
                    continue
                if name == "scratch" and T != args.T[0]:
                    continue
                kind, m = (name.rsplit("_", 1)[0], float(name.rsplit("_", 1)[1])) if name.startswith("decoy") else (name, 0.0)

                @torch.inference_mode()
                def source(x: torch.Tensor, kind=kind, m=m) -> torch.Tensor:
                    return target(kind, m, teacher(x), random_net(x), pixel_scores(x))

                torch.manual_seed(seed)
                student = models.create("cnn5")
                loader = batches(splits.distill, p.batch_size, train=True, seed=seed)
                start = time.time()
                distill(student, None if kind == "scratch" else source, loader, epochs=p.student_epochs, alpha=p.alpha, T=T,
                        lr=p.student_lr, progress=False)
                acc = evaluate(student, batches(splits.evaluation, 256))["acc"]
                record = {"name": name, "T": T, "seed": seed, "acc": acc, "s": round(time.time() - start, 1)}
                path.write_text(json.dumps(record))
                print(record, flush=True)


if __name__ == "__main__":
    main()
