"""CIFAR-10 held in memory as uint8 tensors and served in batches: decode once, slice after.

On two CPU cores, decoding JPEGs and per-image transforms cost more than a small network's
forward pass. Here every image is decoded once, kept as (N, C, H, W) uint8 (on the training
device), and random crop + flip run on whole batches.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import CIFAR10_MEAN, CIFAR10_STD, cifar10, image_folder


@dataclass
class Split:
    """Decoded images (N, C, H, W) uint8 and their int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def balanced_picks(targets: torch.Tensor, counts: Sequence[int | None], seed: int) -> list[torch.Tensor]:
    """Disjoint, class-balanced, seeded index sets: ``counts[i]`` images in all (None: the rest).

    The same seed gives the same sets whatever the run, so every method and seed of a benchmark
    sees one fixed train / validation / test split.
    """
    g = torch.Generator().manual_seed(seed)
    classes = targets.unique()
    per_class = [torch.nonzero(targets == c).flatten() for c in classes]
    per_class = [idx[torch.randperm(len(idx), generator=g)] for idx in per_class]
    picks, start = [], 0
    for count in counts:
        n = None if count is None else count // len(classes)
        picks.append(torch.cat([idx[start:] if n is None else idx[start : start + n] for idx in per_class]).sort().values)
        start = start + (n or 0)
    return picks


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

    def decode(idx: torch.Tensor) -> torch.Tensor:
        rows = [np.array(folder.loader(folder.samples[i][0]).convert("RGB")) for i in idx.tolist()]
        return torch.from_numpy(np.stack(rows)).permute(0, 3, 1, 2).contiguous()

    return decode, torch.tensor(folder.targets)


def _take(pool, idx: torch.Tensor) -> Split:
    decode, targets = pool
    return Split(decode(idx), targets[idx].clone())


class TensorLoader:
    """Batches of normalised float images from a :class:`Split`, shuffled and augmented when training.

    It yields ``(x, y)`` like a DataLoader (so ``SafeBox.wrap``, ``distill`` and ``evaluate``
    take it unchanged); each pass draws a new order from its own seeded generator.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int = 128,
        *,
        train: bool = False,
        device: str | torch.device = "cpu",
        seed: int = 0,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
    ):
        if batch_size < 1:
            raise ValueError(f"Expected `batch_size` ≥ 1, but got {batch_size}.")
        self.device = torch.device(device)
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.batch_size, self.train = batch_size, train
        self.generator = torch.Generator().manual_seed(seed)
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        n = len(self.labels)
        # Training drops a ragged last batch: BatchNorm cannot train on a batch of one.
        return n // self.batch_size if self.train and n >= self.batch_size else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator).to(self.device) if self.train else None
        for b in range(len(self)):
            sl = slice(b * self.batch_size, min((b + 1) * self.batch_size, n))
            idx = order[sl] if order is not None else sl
            x = self.images[idx].float().div_(255)
            if self.train:
                x = self._augment(x)
            yield (x - self.mean) / self.std, self.labels[idx]

    def _augment(self, x: torch.Tensor, pad: int = 4) -> torch.Tensor:
        """Random crop (zero padding ``pad``) and horizontal flip, per image, in one indexing op."""
        n, _, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        g = self.generator
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
        flip = (torch.rand(n, generator=g) < 0.5).to(x.device)
        rows = dy[:, None] + torch.arange(h, device=x.device)
        cols = dx[:, None] + torch.arange(w, device=x.device)
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        batch = torch.arange(n, device=x.device)[:, None, None]
        return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
