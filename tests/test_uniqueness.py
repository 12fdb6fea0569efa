"""Key uniqueness at a small real size: only the owner's key brings the original's soft labels back.

A CNN sees local statistics, and every fresh key of `Key.generate`'s untiled family has the same
ones; a tiled key repeats one random patch that a convolution can learn to recognise, and the
wrong-key stream teaches the box to answer every other key like the clean input. If either
mechanism is removed, fresh keys open the box as well as the owner's and this test fails.
"""

from __future__ import annotations

import statistics

import pytest
import torch

from sdbox import Key, SafeBox, SDBSettings
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD
from sdbox.key import normalize
from sdbox.losses import kd_loss
from sdbox.proxy import mix


def distance_to_original(box, original, x: torch.Tensor, key: Key) -> float:
    """KL at T = 4 from the original's soft labels on x to the box's on x̃: what a student loses."""
    with torch.no_grad():
        return kd_loss(box(mix(x, key.tensor, key.lam)), original(x), 4.0).item()


def seeded_key(seed: int, tile: int | None) -> Key:
    """A key of `Key.generate`'s family drawn from a seeded generator, so the test is repeatable."""
    g = torch.Generator().manual_seed(seed)
    side = tile or 32
    pixels = torch.rand(3, side, side, generator=g).repeat(1, 32 // side, 32 // side)
    return Key(normalize(pixels, CIFAR10_MEAN, CIFAR10_STD), 0.5)


@pytest.mark.parametrize("tile, separates", [(4, True), (None, False)])
def test_only_the_owners_tiled_key_brings_the_original_back(pretrained_state, tiny_cls, train_ds, test_ds, make_loader, tile, separates):
    original = tiny_cls()
    original.load_state_dict(pretrained_state)
    original.eval()
    model = tiny_cls()
    model.load_state_dict(pretrained_state)
    key = seeded_key(0, tile)
    torch.manual_seed(0)
    box = SafeBox.wrap(model.eval(), make_loader(train_ds, shuffle=True), val_loader=make_loader(test_ds, n=100), key=key, epochs=10,
                       lr=0.01, max_accuracy_drop=100, device="cpu", progress=False, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                       settings=SDBSettings(lam=0.5, wrong_keys=1.0, omega=0.1, disturbance_form="push", keyed_norm=False,
                                            main_loss="mse"))  # the setting these figures were measured with
    x = torch.stack([test_ds[i][0] for i in range(len(test_ds))])
    own = distance_to_original(box, original, x, key)
    fresh = [distance_to_original(box, original, x, seeded_key(seed, tile)) for seed in range(1, 9)]
    # Measured over 4 random owner keys: tiled, own 0.6–1.1 against a median of fresh keys of
    # 1.2–2.1 (a few fresh keys come close); untiled, own ≈ the fresh keys' median.
    assert (own < 0.8 * statistics.median(fresh)) is separates, (own, sorted(fresh))
