"""Getting images in: ImageFolder / torchvision CIFAR-10 loading, decoded tensors and batches.

What the box publishes about those images (mean/std, crop, class names) and the precedence of
its sources is :mod:`sdbox.preprocessing`'s job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from .errors import InputError

if TYPE_CHECKING:  # torch is imported where a tensor is made: `sdbox --help` and `inspect` need none of it
    import torch
    from torch.utils.data import Dataset

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def cifar10_transform(train: bool = False, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD):
    """The usual CIFAR-10 pipeline: (random crop + flip when training) → tensor → normalise."""
    from torchvision import transforms as T

    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


def image_folder(root: str | os.PathLike, transform=None) -> Dataset:
    """``torchvision.datasets.ImageFolder`` with an error that says what layout is expected."""
    from torchvision.datasets import ImageFolder

    root = Path(root)
    layout = "expected ROOT/<class>/<image> with one folder per class (e.g. ../shared/data/cifar10/train/airplane/0001.jpg)"
    if not root.is_dir():
        raise InputError(f"No image folder at {root}: {layout}.")
    classes = [entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")]
    if len(classes) < 2:
        found = f"one class folder ({classes[0]})" if classes else "no class folders"
        raise InputError(f"{root} holds {found}: a classifier needs at least two; {layout}.")
    return ImageFolder(str(root), transform=transform)


def cache_dir() -> Path:
    """Where sdbox keeps what it makes once per machine (downloads, benchmark teachers):
    ``$SDBOX_CACHE``, else ``~/.cache/sdbox``."""
    return Path(os.environ.get("SDBOX_CACHE") or Path.home() / ".cache" / "sdbox")


def cifar10(root: str | os.PathLike | None, train: bool, transform=None, download: bool = True) -> Dataset:
    """CIFAR-10 from an ImageFolder tree (``root/train``, ``root/test``) or, with ``root=None``,
    ``torchvision.datasets.CIFAR10`` (downloaded into ``~/.cache/sdbox``).

    Offline, the download fails; the error says to pass the ImageFolder tree instead.
    """
    if root is not None:
        return image_folder(Path(root) / ("train" if train else "test"), transform)
    from torchvision.datasets import CIFAR10

    try:
        return CIFAR10(str(cache_dir() / "cifar10"), train=train, transform=transform, download=download)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; torchvision raises RuntimeError when absent
        raise InputError(
            f"Could not download CIFAR-10 ({e}). Offline? Pass `--data DIR` (an ImageFolder root "
            "with train/ and test/, e.g. ../shared/data/cifar10)."
        ) from None


class TensorImageDataset:
    """Decoded images held as one uint8 tensor (N, C, H, W), normalised on the fly.

    Decoding JPEGs every epoch dominates small-model training on CPU; this decodes once. For
    whole-batch loading with random crop (padding 4) and flip, use :class:`TensorLoader`.
    A map-style dataset (``__len__`` and ``__getitem__`` are all DataLoader and Subset use); it
    does not subclass torch's ``Dataset`` so that importing this module does not import torch.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: Sequence[float], std: Sequence[float]):
        import torch

        if images.dtype != torch.uint8 or images.dim() != 4:
            raise InputError(f"Expected uint8 images of shape (N, C, H, W), but got {images.dtype} {tuple(images.shape)}.")
        self.images, self.labels = images, labels
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.normalize(self.images[i : i + 1])[0], self.labels[i]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float().div_(255) - self.mean.to(images.device)) / self.std.to(images.device)


class TensorLoader:
    """Normalised (images, labels) batches straight from a uint8 tensor, on any device.

    A DataLoader over single images pays Python and collate costs per image; this indexes whole
    batches. With ``device="cuda"`` the dataset lives on the GPU as uint8 (a quarter of float32)
    and crop, flip and normalisation run there, so a step never waits for the host. ``augment``
    is the usual CIFAR recipe per image: a random crop of the zero-padded image and a random
    horizontal flip, done for the batch in one gather.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        batch_size: int,
        shuffle: bool = False,
        augment: bool = False,
        padding: int = 4,
        drop_last: bool = False,
        device: str | torch.device | None = None,
        seed: int | None = None,
    ):
        import torch

        if images.dtype != torch.uint8 or images.dim() != 4:
            raise InputError(f"Expected uint8 images of shape (N, C, H, W), but got {images.dtype} {tuple(images.shape)}.")
        if labels.dim() != 1 or len(labels) != len(images):
            raise InputError(f"Expected one label per image ({len(images)}), but got labels of shape {tuple(labels.shape)}.")
        if batch_size < 1:
            raise ValueError(f"Expected `batch_size` ≥ 1, but got {batch_size}.")
        if padding < 0:
            raise ValueError(f"Expected `padding` ≥ 0, but got {padding}.")
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device).contiguous()
        self.labels = labels.to(self.device)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)  # what the box publishes
        # (x/255 − mean)/std as one fused x·scale + shift: one pass over the batch, not three.
        self.scale, self.shift = 1 / (255 * std_t), -mean_t / std_t
        self.batch_size, self.shuffle, self.augment, self.padding, self.drop_last = batch_size, shuffle, augment, padding, drop_last
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(seed if seed is not None else int(torch.randint(2**62, ()).item()))

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import torch

        n = len(self.labels)
        order = torch.randperm(n, device=self.device, generator=self.generator) if self.shuffle else None
        for b in range(len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size] if order is not None else slice(b * self.batch_size, (b + 1) * self.batch_size)
            images, labels = self.images[index], self.labels[index]
            if self.augment:
                images = self.crop_flip(images)
            yield torch.addcmul(self.shift, images.float(), self.scale), labels

    def crop_flip(self, images: torch.Tensor) -> torch.Tensor:
        """Per-image random crop of the zero-padded batch and random horizontal flip, as one gather."""
        import torch

        n, _, h, w = images.shape
        p = self.padding
        padded = torch.nn.functional.pad(images, (p, p, p, p)) if p > 0 else images
        dy = torch.randint(0, 2 * p + 1, (n, 1), device=self.device, generator=self.generator)
        dx = torch.randint(0, 2 * p + 1, (n, 1), device=self.device, generator=self.generator)
        flip = torch.rand((n, 1), device=self.device, generator=self.generator) < 0.5
        cols = torch.arange(w, device=self.device).expand(n, w)
        cols = torch.where(flip, w - 1 - cols, cols) + dx
        rows = torch.arange(h, device=self.device) + dy
        batch = torch.arange(n, device=self.device).view(n, 1, 1)
        # Advanced indices split by the channel slice put their dims first: (N, H, W, C).
        return padded[batch, :, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2).contiguous()


def balanced_picks(targets: torch.Tensor, counts: Sequence[int | None], seed: int) -> list[torch.Tensor]:
    """Disjoint, class-balanced, seeded index sets: ``counts[i]`` images in all (None: the rest).

    The same seed gives the same sets whatever the run, so every method and seed of a benchmark
    sees one fixed train / validation / test split.
    """
    import torch

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


def decode_images(folder: Any, indices: torch.Tensor) -> torch.Tensor:
    """The images ``indices`` of an ImageFolder, decoded into one uint8 tensor (N, C, H, W)."""
    import numpy as np
    import torch

    rows = [np.array(folder.loader(folder.samples[i][0]).convert("RGB")) for i in indices.tolist()]
    return torch.from_numpy(np.stack(rows)).permute(0, 3, 1, 2).contiguous()


def decode_image_folder(root: str | os.PathLike, limit: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode an ImageFolder tree (or a seeded, class-balanced subset of ``limit`` images)
    into a uint8 tensor (N, C, H, W) and int64 labels."""
    import torch

    folder = image_folder(root)
    targets = torch.tensor(folder.targets)
    indices = balanced_picks(targets, [limit], seed)[0] if limit is not None and limit < len(folder) else torch.arange(len(folder))
    return decode_images(folder, indices), targets[indices]
