"""Did the box learn its disturbance? Compare its clean soft labels with the original's, image by image.

Protection lives in the tail of the clean soft labels (everything but the top-1). This prints, on
the cpu preset's validation slice: how often the box's top-1 is the original's, the mean top-1
probability of each, the rank correlation of the box's tail with the original's (1: the original's
dark knowledge is intact; 0: none of it is left), and the KL at T = 1 and T = 4 between them.

    python benchmarks/box_tail.py runs/search-cpu/<candidate>/boxes/SDB \
        --teacher ../shared/teachers/cifar10-cnn5_wide-76.safetensors
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
import torch.nn.functional as F

from sdbox import SafeBox
from sdbox.benchmark import CPU, models
from sdbox.benchmark.cli import default_data
from sdbox.benchmark.runner import load_data
from sdbox.benchmark.teachers import load_teacher
from sdbox.benchmark.tensordata import batches
from sdbox.evaluate import tail_rank_correlation
from sdbox.losses import kd_loss


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("box", help="A box folder (save_pretrained's output) of the cpu preset's teacher architecture.")
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--data", default=default_data())
    args = parser.parse_args()
    p = replace(CPU, eval_split="val")
    splits = load_data(args.data, p, torch.device("cpu"))
    original = load_teacher(p.teacher, args.teacher, torch.device("cpu"))
    box = SafeBox.from_pretrained(args.box, model=models.create(p.teacher)).eval()
    x, _ = next(iter(batches(splits.evaluation, len(splits.evaluation))))
    z_original, z_box = original(x), box(x)
    top = z_original.argmax(1)
    p_top = lambda z: F.softmax(z, 1).gather(1, top[:, None]).mean().item()  # noqa: E731
    print(f"images: {len(x)} validation")
    print(f"top-1 agreement with the original: {(z_box.argmax(1) == top).float().mean().item():.3f}")
    print(f"mean top-1 probability (T=1): original {p_top(z_original):.3f}, box {p_top(z_box):.3f}")
    print(f"tail rank correlation with the original: {tail_rank_correlation(z_box, z_original):.3f}")
    print(f"KL(original ‖ box): T=1 {kd_loss(z_box, z_original, 1.0).item():.3f}, T=4 {kd_loss(z_box, z_original, 4.0).item():.3f}")


if __name__ == "__main__":
    main()
