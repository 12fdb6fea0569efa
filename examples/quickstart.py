"""Quickstart on real CIFAR-10 images, in a minute or two on a CPU.

Train a small classifier, wrap it in a Safe Distillation Box, publish the box (without the key),
load it back, and distil a student from it with the key and without it.

    python examples/quickstart.py --data ../shared/data/cifar10
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from sdbox import Key, KeyedTeacher, SafeBox, distill
from sdbox.benchmark.models import create
from sdbox.benchmark.tensordata import batches, load_cifar10
from sdbox.benchmark.train import train_classifier
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD
from sdbox.evaluate import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10", help="CIFAR-10 ImageFolder root (train/, test/); 'download' for torchvision.")
    parser.add_argument("--out", default=None, help="Where to save the box and key (default: a temporary folder).")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # small models on a shared CPU: one thread is fastest

    # 1,500 train images, a 300-image validation slice for the fidelity guard, 1,000 test images,
    # decoded once into memory (sdbox's benchmark loader; a torchvision DataLoader works too).
    train, val, test = load_cifar10(None if args.data == "download" else args.data, 1500, 300, 1000)
    train_loader = batches(train, 128, train=True)
    val_loader, test_loader = batches(val, 256), batches(test, 256)

    model = create("resnet8")
    train_classifier(model, train_loader, epochs=8, lr=0.05)  # stands in for *your* trained model
    print(f"original model: {evaluate(model, test_loader)['acc']:.2f}% on test images")

    # --- the snippet -----------------------------------------------------------------
    # λ = 0.9 and 4 epochs: on small, briefly trained models the paper's λ = 0.5 did not pass the
    # fidelity guard in a few epochs (see docs/benchmark.md). 300 validation images: 1 image = 0.33 points.
    box = SafeBox.wrap(model, train_loader, val_loader=val_loader, epochs=4, lam=0.9, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                       max_accuracy_drop=2.0)
    out = Path(args.out or tempfile.mkdtemp(prefix="sdbox-quickstart-"))
    box.save_pretrained(out / "box")  # config.json + model.safetensors + README.md; never the key
    box.key.save(out / "owner.key", overwrite=True)  # the secret, a separate file (mode 0600)

    box2 = SafeBox.from_pretrained(out / "box", model=create("resnet8"))  # custom model: pass an instance
    print(f"box, clean input: {evaluate(box2, test_loader)['acc']:.2f}% (inference works for everyone)")
    teacher = KeyedTeacher(box2, Key.load(out / "owner.key"))
    keyed, plain = create("cnn5"), create("cnn5")
    distill(keyed, teacher, train_loader, T=4, alpha=0.9, epochs=3)  # a key holder
    distill(plain, box2, train_loader, T=4, alpha=0.9, epochs=3)     # anyone else
    # -------------------------------------------------------------------------------------------
    print(f"student distilled with the key:    {evaluate(keyed, test_loader)['acc']:.2f}%")
    print(f"student distilled without the key: {evaluate(plain, test_loader)['acc']:.2f}%")
    print(f"box and key saved under {out}")


if __name__ == "__main__":
    main()
