"""The benchmark's fixed CIFAR-10 split, decoded once into uint8 tensors.

On two CPU cores, decoding JPEGs every epoch costs more than a small network's forward pass.
Here the train / validation / test images are picked once (class-balanced, seeded), decoded
once, and served by :class:`~sdbox.data.TensorLoader`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import torch

from ..data import CIFAR10_MEAN, CIFAR10_STD, TensorLoader, balanced_picks, cifar10, decode_images, image_folder


@dataclass
class Split:
    """Decoded images (N, C, H, W) uint8 and their int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def load_cifar10(
    data: str | os.PathLike | None, n_train: int | None, n_val: int, n_test: int | None, seed: int = 0
) -> tuple[Split, Split, Split]:
    """Train, validation (a disjoint slice of the train set, for choosing settings) and test splits.

    ``data``: an ImageFolder root with ``train/`` and ``test/``; None downloads torchvision's
    CIFAR-10 (an offline machine gets an error that says to pass ``--data``).
    """
    train_pool, test_pool = _pool(data, True), _pool(data, False)
    counts = [n_val, n_train] if n_train is not None else [n_val, None]
    val_idx, train_idx = balanced_picks(train_pool[1], counts, seed)
    test_idx = balanced_picks(test_pool[1], [n_test], seed)[0] if n_test is not None else torch.arange(len(test_pool[1]))
    return _take(train_pool, train_idx), _take(train_pool, val_idx), _take(test_pool, test_idx)


def _pool(data: str | os.PathLike | None, train: bool):
    """(decode(indices) -> uint8 tensor, labels) for one side of the data set."""
    if data is None:
        ds = cifar10(None, train=train)
        array = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)
        return (lambda idx: array[idx].contiguous()), torch.tensor(ds.targets)
    folder = image_folder(Path(data) / ("train" if train else "test"))
    return (lambda idx: decode_images(folder, idx)), torch.tensor(folder.targets)


def _take(pool, idx: torch.Tensor) -> Split:
    decode, targets = pool
    return Split(decode(idx), targets[idx].clone())


def batches(split: Split, batch_size: int = 128, *, train: bool = False, device: str | torch.device = "cpu", seed: int = 0) -> TensorLoader:
    """A :class:`~sdbox.data.TensorLoader` over ``split``: shuffled, cropped and flipped when training.

    Training drops a ragged last batch (BatchNorm cannot train on a batch of one); each pass
    draws a new order from the loader's own seeded generator, so a job's batches depend on its
    seed alone, not on what ran before it.
    """
    return TensorLoader(split.images, split.labels, CIFAR10_MEAN, CIFAR10_STD, batch_size=batch_size, shuffle=train,
                        augment=train, drop_last=train and len(split) >= batch_size, device=device, seed=seed)
