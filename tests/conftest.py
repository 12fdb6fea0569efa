"""Shared fixtures: a few hundred real CIFAR-10 images, tiny models and one wrapped box.

Data: an ImageFolder tree (train/<class>/*.jpg, test/...) at $SDBOX_DATA, by default
``<repo>/../shared/data/cifar10``. Everything is decoded once per session and kept small so the
whole suite runs in a few minutes on a 2-core CPU.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from sdbox.data import CIFAR10_MEAN, CIFAR10_STD, TensorImageDataset, decode_image_folder

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SDBOX_DATA", REPO.parent / "shared" / "data" / "cifar10"))

torch.set_num_threads(min(2, torch.get_num_threads()))


class TinyNet(nn.Module):
    """A 2-conv CNN with BatchNorm (so frozen-statistics bugs would show), ~3 MFLOPs per image."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(4),
        )
        self.fc = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


@pytest.fixture(scope="session")
def tiny_cls():
    return TinyNet


def _dataset(split: str, limit: int) -> TensorImageDataset:
    root = DATA / split
    if not root.is_dir():
        pytest.skip(f"CIFAR-10 ImageFolder tree not found at {root} (set SDBOX_DATA)")
    images, labels = decode_image_folder(root, limit=limit)
    return TensorImageDataset(images, labels, CIFAR10_MEAN, CIFAR10_STD)


@pytest.fixture(scope="session")
def train_ds() -> TensorImageDataset:
    """300 real training images, 30 per class, normalised with CIFAR-10's mean/std."""
    return _dataset("train", 300)


@pytest.fixture(scope="session")
def test_ds() -> TensorImageDataset:
    """200 real test images, 20 per class."""
    return _dataset("test", 200)


@pytest.fixture(scope="session")
def batch(train_ds):
    """One fixed batch of 16 real images (x, y)."""
    return next(iter(DataLoader(train_ds, batch_size=16, shuffle=False)))


def loader(ds, batch_size: int = 50, shuffle: bool = False, n: int | None = None) -> DataLoader:
    if n is not None:
        ds = torch.utils.data.Subset(ds, range(n))
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle)


@pytest.fixture(scope="session")
def make_loader():
    return loader


@pytest.fixture(scope="session")
def pretrained_state(train_ds):
    """TinyNet trained on the 300 images (it fits them well), as a state dict: the 'owner's model'."""
    torch.manual_seed(0)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    dl = loader(train_ds, batch_size=50, shuffle=True)
    for _ in range(6):
        for x, y in dl:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return copy.deepcopy(model.eval().state_dict())


@pytest.fixture
def pretrained(pretrained_state) -> TinyNet:
    """A fresh copy of the trained TinyNet (tests may change it in place)."""
    model = TinyNet()
    model.load_state_dict(pretrained_state)
    return model.eval()


@pytest.fixture(scope="session")
def wrapped(pretrained_state, train_ds, test_ds):
    """One box wrapped from the trained TinyNet on 200 real images (1 epoch). Treat as read-only."""
    from sdbox import SafeBox

    torch.manual_seed(0)
    model = TinyNet()
    model.load_state_dict(pretrained_state)
    model.eval()  # the owner's trained model, ready for inference: wrap hands it back in this mode
    box = SafeBox.wrap(
        model, loader(train_ds, n=200), val_loader=loader(test_ds, n=100), epochs=1, lr=0.01,
        max_accuracy_drop=100, device="cpu", progress=False, mean=CIFAR10_MEAN, std=CIFAR10_STD,
    )
    return box


def key_windows(key_bytes: bytes, width: int = 32):
    """Aligned ``width``-byte slices of the key. Any 2·width-byte run of the key contains one of them,
    so finding none in a file rules out every 64-byte window (for width 32)."""
    return [key_bytes[i : i + width] for i in range(0, len(key_bytes) - width + 1, width)]


@pytest.fixture(scope="session")
def windows():
    return key_windows


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """huggingface_hub's real client talking to an in-memory Hub (tests/fake_hub.py), with its own cache."""
    import huggingface_hub
    from huggingface_hub.utils._http import default_client_factory

    from fake_hub import FakeHub

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    huggingface_hub.set_client_factory(hub.client)
    yield hub
    huggingface_hub.set_client_factory(default_client_factory)
