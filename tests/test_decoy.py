"""The decoy disturbance at a small real size: the box's tail leaves the original's and follows the decoy.

A box protects only through the tail of its clean soft labels (everything but the top-1). With
the decoy on, a wrap must move that tail off the original's ranking and onto the decoy's; with
the disturbance off, the same fine-tune must leave it where it was. If the decoy target or its
loss stops reaching the clean stream, the first half of this test fails.
"""

from __future__ import annotations

import pytest
import torch

from sdbox import Key, SafeBox, SDBSettings
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD
from sdbox.evaluate import tail_rank_correlation
from sdbox.losses import decoy_target
from sdbox.frozen import PixelDecoy
from sdbox.key import normalize


def test_tail_rank_correlation_by_hand():
    reference = torch.tensor([[9.0, 1.0, 2.0, 3.0], [0.0, 5.0, 1.0, 2.0]])
    same_order = torch.tensor([[0.0, 10.0, 20.0, 30.0], [1.0, -5.0, 2.0, 3.0]])  # top-1 may differ: only the tail counts
    reversed_tail = torch.tensor([[9.0, 3.0, 2.0, 1.0], [2.0, 5.0, 1.0, 0.0]])
    assert tail_rank_correlation(same_order, reference) == pytest.approx(1.0)
    assert tail_rank_correlation(reversed_tail, reference) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="of one shape"):
        tail_rank_correlation(reference, reference[:, :3])


@pytest.mark.parametrize("disturbance", [True, False])
def test_the_decoy_moves_the_clean_tail_off_the_original_and_onto_the_decoy(pretrained_state, tiny_cls, train_ds, test_ds, make_loader, disturbance):
    original = tiny_cls()
    original.load_state_dict(pretrained_state)
    original.eval()
    model = tiny_cls()
    model.load_state_dict(pretrained_state)
    pixels = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))  # Key.generate's family, repeatable
    key = Key(normalize(pixels, CIFAR10_MEAN, CIFAR10_STD), 0.9)
    torch.manual_seed(0)
    # No key stream: this is about the clean stream alone (the key stream's conflict is measured in docs/benchmark.md).
    settings = SDBSettings(lam=0.9, omega=1.0, disturbance=disturbance, disturbance_form="decoy", decoy_source="pixels",
                           key_embedding=False, preservation=False)
    box = SafeBox.wrap(model.eval(), make_loader(train_ds, shuffle=True), val_loader=make_loader(test_ds, n=100), key=key, epochs=10,
                       lr=0.01, max_accuracy_drop=100, device="cpu", progress=False, mean=CIFAR10_MEAN, std=CIFAR10_STD, settings=settings)
    x = torch.stack([test_ds[i][0] for i in range(len(test_ds))])
    with torch.no_grad():
        z_box, z_original, decoy = box(x), original(x), PixelDecoy(key.tensor, 10)(x)
    toward_decoy = tail_rank_correlation(z_box, decoy) - tail_rank_correlation(z_original, decoy)
    to_original = tail_rank_correlation(z_box, z_original)
    # Measured over 6 keys: with the decoy, the tail gained 0.28–0.42 toward the decoy and kept
    # 0.35–0.51 of the original's ranking; without it, −0.03–0.02 and 0.88–0.90.
    # The wrap's own record of target reach (validation images, every epoch) tells the same story.
    if disturbance:
        assert toward_decoy > 0.2 and to_original < 0.65, (toward_decoy, to_original)
        val = x[:100]
        with torch.no_grad():
            target = decoy_target(original(val), PixelDecoy(key.tensor, 10)(val), settings.decoy_share)
            reached, at_start = tail_rank_correlation(box(val), target.log()), tail_rank_correlation(original(val), target.log())
        kept = box.wrap_result.epochs[box.wrap_result.best_epoch - 1]
        assert kept["target_tail_corr"] == pytest.approx(reached, abs=1e-4)
        assert reached > at_start + 0.2, (reached, at_start)
    else:
        assert abs(toward_decoy) < 0.1 and to_original > 0.8, (toward_decoy, to_original)
