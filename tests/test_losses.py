"""mix (Eq. 5) and each SDB loss term (Eq. 6–11) against a hand computation of its equation."""

from __future__ import annotations

import math

import pytest
import torch

from sdbox import mix
from sdbox.losses import (
    augmentation_loss,
    classification_loss,
    disturbance_loss,
    kd_loss,
    preservation_loss,
)

torch.set_default_dtype(torch.float32)


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(5, 7, generator=g, dtype=torch.float64) * 3 for _ in range(4)]


def softmax(z):
    e = [[math.exp(v) for v in row] for row in z.tolist()]
    return [[v / sum(row) for v in row] for row in e]


def kl_by_hand(student, teacher, T):
    """T² · mean over rows of Σ p_t (log p_t − log p_s), in plain Python."""
    ps, pt = softmax(student / T), softmax(teacher / T)
    rows = [sum(t * (math.log(t) - math.log(s)) for s, t in zip(rs, rt)) for rs, rt in zip(ps, pt)]
    return T * T * sum(rows) / len(rows)


def ce_by_hand(z, y):
    p = softmax(z)
    return -sum(math.log(p[i][c]) for i, c in enumerate(y.tolist())) / len(p)


# ------------------------------------------------------------------------------------------ mix
def test_mix_is_lambda_x_plus_one_minus_lambda_key():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 5, 6, generator=g)
    key = torch.randn(3, 5, 6, generator=g)
    for lam in (0.5, 0.3, 0.9):
        out = mix(x, key, lam)
        assert out.shape == x.shape
        for i in range(len(x)):  # the key broadcasts over the batch: each sample gets the same κ
            torch.testing.assert_close(out[i], lam * x[i] + (1 - lam) * key, rtol=1e-6, atol=1e-6)
    # gradients flow to x (the student side may need them), weighted by λ
    x.requires_grad_(True)
    mix(x, key, 0.3).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.3))


def test_mix_does_not_modify_inputs():
    x, key = torch.randn(2, 3, 4, 4), torch.randn(3, 4, 4)
    x0, k0 = x.clone(), key.clone()
    mix(x, key, 0.5)
    assert torch.equal(x, x0) and torch.equal(key, k0)


# ---------------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("T", [1.0, 4.0, 20.0])
def test_kd_loss_is_T_squared_kl(logits, T):
    s, t = logits[0], logits[1]
    assert kd_loss(s, t, T).item() == pytest.approx(kl_by_hand(s, t, T), rel=1e-9)
    assert kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-12)


def test_classification_loss_is_two_cross_entropies(logits):
    z, zp = logits[0], logits[1]
    y = torch.tensor([0, 3, 6, 2, 2])
    expected = ce_by_hand(z, y) + ce_by_hand(zp, y)
    assert classification_loss(z, zp, y).item() == pytest.approx(expected, rel=1e-9)


def test_disturbance_loss_by_hand(logits):
    z, zp, zt = logits[0], logits[1], logits[2]
    omega, t_dis = 0.7, 4.0
    expected = -omega * kl_by_hand(z, zt, t_dis) + omega * kl_by_hand(z, zp, 1.0)
    assert disturbance_loss(z, zp, zt, omega, t_dis).item() == pytest.approx(expected, rel=1e-9)


def test_disturbance_loss_without_proxy_is_nasty_teacher(logits):
    z, zt = logits[0], logits[2]
    got = disturbance_loss(z, None, zt, 0.3, 4.0)
    assert got.item() == pytest.approx(-0.3 * kd_loss(z, zt, 4.0).item(), rel=1e-12)
    assert got.item() < 0


def test_disturbance_loss_sends_no_gradient_into_proxy(logits):
    z, zp, zt = (t.clone().requires_grad_(True) for t in logits[:3])
    disturbance_loss(z, zp, zt, 1.0, 4.0).backward()
    assert zp.grad is None or torch.count_nonzero(zp.grad) == 0
    assert z.grad is not None and torch.count_nonzero(z.grad) > 0


def test_preservation_loss_is_squared_l2_of_soft_labels(logits):
    zp, zt = logits[0], logits[1]
    t_dis = 4.0
    a, b = softmax(zp / t_dis), softmax(zt / t_dis)
    expected = sum(sum((u - v) ** 2 for u, v in zip(ra, rb)) for ra, rb in zip(a, b)) / len(a)
    assert preservation_loss(zp, zt, t_dis).item() == pytest.approx(expected, rel=1e-9)
    assert preservation_loss(zt, zt, t_dis).item() == 0.0


def test_augmentation_loss_value_is_eq11(logits):
    zp, zt, z0 = logits[0], logits[1], logits[2]
    rows = []
    for p, t, r in zip(zp.tolist(), zt.tolist(), z0.tolist()):
        rows.append(-0.5 * sum((a - b) ** 2 for a, b in zip(t, p)) + 0.5 * sum((a - b) ** 2 for a, b in zip(r, p)))
    assert augmentation_loss(zp, zt, z0).item() == pytest.approx(sum(rows) / len(rows), rel=1e-9)


def test_augmentation_loss_gradient_is_linear_form_and_unbounded_below(logits):
    """L_aug = z̃·(z_T − z_T0) + const: its gradient in z̃ is (z_T − z_T0)/N, whatever z̃ is.

    Being linear in z̃, it is unbounded below: moving z̃ along z_T0 − z_T lowers it without end.
    That is why η stays small and L_main/L_cls must bound the proxy stream.
    """
    zt, z0 = logits[1], logits[2]
    n = len(zt)
    for zp0 in (logits[0], logits[3] * 10):
        zp = zp0.clone().requires_grad_(True)
        augmentation_loss(zp, zt, z0).backward()
        torch.testing.assert_close(zp.grad, (zt - z0) / n)
    direction = z0 - zt
    values = [augmentation_loss(logits[0] + s * direction, zt, z0).item() for s in (0, 10, 100, 1000)]
    assert all(b < a for a, b in zip(values, values[1:]))
    assert values[-1] < -1e4


def test_losses_are_scalars(logits):
    z, zp, zt, z0 = logits
    y = torch.zeros(5, dtype=torch.long)
    for value in (
        kd_loss(z, zt), classification_loss(z, zp, y), disturbance_loss(z, zp, zt, 1.0),
        preservation_loss(zp, zt), augmentation_loss(zp, zt, z0),
    ):
        assert value.dim() == 0


def test_confusion_loss_has_its_minimum_at_the_confusing_target():
    from sdbox.losses import confusion_loss

    y = torch.tensor([0, 3, 9])
    target = torch.full((3, 10), 0.1 / 8)
    target[torch.arange(3), y] = 0.5
    target[torch.arange(3), (y + 1) % 10] = 0.4
    at_target = (4.0 * target.log()).requires_grad_(True)  # logits whose T=4 softmax is the target
    loss = confusion_loss(at_target, y, omega=0.3, t_dis=4.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-5) and at_target.grad.abs().max() < 1e-5
    assert (at_target.argmax(1) == y).all()  # the target keeps the true class on top
    confident = torch.zeros(3, 10)
    confident[torch.arange(3), y] = 20.0  # the original's kind of output: one peak
    assert confusion_loss(confident, y, omega=0.3) > 1.0  # is pulled toward the confusion
    assert confusion_loss(confident, y, omega=0.6) == pytest.approx(2 * confusion_loss(confident, y, omega=0.3).item())


def test_decoy_target_keeps_the_originals_top1_and_moves_share_onto_the_random_copys_ranking(logits):
    from sdbox.losses import decoy_target

    z_teacher, z_random = logits[0].float(), logits[1].float()
    target = decoy_target(z_teacher, z_random, share=0.4)
    torch.testing.assert_close(target.sum(1), torch.ones(len(target)))
    top = z_teacher.argmax(1)
    torch.testing.assert_close(target[torch.arange(len(top)), top], torch.full((len(top),), 0.6))
    assert (target.argmax(1) == top).all()  # the box would answer as the original does
    # Off the top-1, the mass is ordered as T0 orders those classes — not as the original does.
    for row, t in enumerate(top.tolist()):
        others = [c for c in range(z_teacher.shape[1]) if c != t]
        by_target = sorted(others, key=lambda c: -target[row, c].item())
        by_random = sorted(others, key=lambda c: -z_random[row, c].item())
        assert by_target == by_random
    # T0's scale does not matter (its logits are standardised per image), its ranking does.
    torch.testing.assert_close(decoy_target(z_teacher, 10 * z_random + 3, share=0.4), target)


def test_decoy_loss_is_zero_at_its_target_and_scales_with_omega(logits):
    from sdbox.losses import decoy_loss, decoy_target

    target = decoy_target(logits[0].float(), logits[1].float(), share=0.5)
    at_target = target.log().requires_grad_(True)
    loss = decoy_loss(at_target, target, omega=2.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-5) and at_target.grad.abs().max() < 1e-5
    original = logits[0].float()
    assert decoy_loss(original, target, omega=1.0) > 0.1
    assert decoy_loss(original, target, omega=2.0).item() == pytest.approx(2 * decoy_loss(original, target, omega=1.0).item())
