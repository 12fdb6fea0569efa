"""Distillation (paper Eq. 2/3): Hinton KD by hand, and the student loop from a plain model, a
KeyedTeacher and no teacher, on real images."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sdbox import KeyedTeacher, distill, kd_loss, keyed_norm, mix
from sdbox.distill import distill_step


def student_net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 10))


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def changed(before, model) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_kd_loss_is_T_squared_kl_by_hand(T):
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(6, 10, generator=g, dtype=torch.float64), torch.randn(6, 10, generator=g, dtype=torch.float64)
    p_t = torch.exp(t / T) / torch.exp(t / T).sum(1, keepdim=True)
    p_s = torch.exp(s / T) / torch.exp(s / T).sum(1, keepdim=True)
    by_hand = T * T * (p_t * (p_t.log() - p_s.log())).sum(1).mean()
    torch.testing.assert_close(kd_loss(s, t, T), by_hand)
    assert kd_loss(s, t, T) > 0 and kd_loss(t, t, T).abs() < 1e-12


def test_distill_step_mixes_ce_and_kd(batch):
    x, y = batch
    student = student_net()
    teacher_logits = torch.randn(len(x), 10)
    z, terms = distill_step(student, teacher_logits, x, y, alpha=0.7, T=3.0)
    torch.testing.assert_close(terms["ce"], F.cross_entropy(z, y))
    torch.testing.assert_close(terms["kd"], kd_loss(z, teacher_logits, 3.0))
    torch.testing.assert_close(terms["total"], 0.3 * terms["ce"] + 0.7 * terms["kd"])


def test_distill_from_a_plain_model_moves_the_student_toward_it(pretrained, train_ds, make_loader):
    dl = make_loader(train_ds, n=100, batch_size=25, shuffle=True)
    x, _ = next(iter(make_loader(train_ds, n=100, batch_size=100)))
    teacher = pretrained
    teacher_before = copy.deepcopy(teacher.state_dict())
    student = student_net()
    before = weights(student)
    with torch.no_grad():
        gap_before = kd_loss(student(x), teacher(x), 4.0).item()
    result = distill(student, teacher, dl, epochs=3, alpha=1.0, T=4.0, lr=3e-3, progress=False)
    assert changed(before, student)
    assert len(result.losses) == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    with torch.no_grad():
        gap_after = kd_loss(student(x), teacher(x), 4.0).item()
    assert gap_after < gap_before
    assert not student.training and not teacher.training
    for k, v in teacher.state_dict().items():  # the teacher is only read
        assert torch.equal(v, teacher_before[k]), k


def test_distill_from_a_keyed_teacher(wrapped, train_ds, make_loader, monkeypatch):
    """The student must be taught the box's logits on x̃ = mix(augment(x), κ, λ): a teacher that
    ignored the key (or the augmentation) would hand over other targets and fail here."""
    import importlib

    distill_module = importlib.import_module("sdbox.distill")  # `sdbox.distill` is the function
    box = copy.deepcopy(wrapped)
    teacher = KeyedTeacher(box, wrapped.key)
    student = student_net()
    before = weights(student)
    seen, targets, totals = [], [], []

    def augment(x):
        seen.append(x)
        return torch.flip(x, dims=[3])

    def spy(student, teacher_logits, x, y, alpha, T):
        targets.append(teacher_logits.clone())
        z, terms = distill_step(student, teacher_logits, x, y, alpha, T)
        totals.append(terms["total"].item())
        return z, terms

    monkeypatch.setattr(distill_module, "distill_step", spy)
    result = distill(student, teacher, make_loader(train_ds, n=100, batch_size=50), epochs=1, progress=False, augment=augment)
    assert changed(before, student)
    assert [len(x) for x in seen] == [50, 50] and len(targets) == 2
    key = wrapped.key
    with torch.no_grad():
        for x, target in zip(seen, targets):
            with keyed_norm.applied(box.model, key.norm):
                keyed = box.eval()(mix(torch.flip(x, dims=[3]), key.tensor, key.lam))
            torch.testing.assert_close(target, keyed)
            assert not torch.allclose(target, box(torch.flip(x, dims=[3])), atol=1e-3)  # the key made a difference
    assert result.losses == [pytest.approx(sum(totals) / 2)]  # the epoch's mean loss, as recorded


def test_distill_leaves_the_teacher_trainable_and_in_its_mode(pretrained, train_ds, test_ds, make_loader):
    """Measuring KD from the original, then wrapping it, used to die in autograd: distill had
    switched requires_grad off on the teacher for good."""
    from sdbox import SafeBox
    from sdbox.data import CIFAR10_MEAN, CIFAR10_STD

    pretrained.train()
    before = copy.deepcopy(pretrained.state_dict())
    distill(student_net(), pretrained, make_loader(train_ds, n=50, batch_size=25), epochs=1, progress=False)
    assert all(p.requires_grad for p in pretrained.parameters())
    assert pretrained.training and all(m.training for m in pretrained.modules())
    for k, v in pretrained.state_dict().items():  # taught in eval mode: BatchNorm statistics untouched
        assert torch.equal(v, before[k]), k
    box = SafeBox.wrap(pretrained, make_loader(train_ds, n=50), val_loader=make_loader(test_ds, n=50), epochs=1,
                       max_accuracy_drop=100, device="cpu", progress=False, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    assert box.wrap_result.best_epoch == 1


def bn_student() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))


def test_distill_input_errors_are_named(train_ds, make_loader):
    from sdbox import InputError

    x, y = next(iter(make_loader(train_ds, n=8, batch_size=8)))
    with pytest.raises(InputError, match=r"labels in \[0, num_classes\).*Target 12 is out of bounds"):
        distill(student_net(), None, [(x, torch.full_like(y, 12))], epochs=1, progress=False)
    with pytest.raises(InputError, match="batch of one.*drop_last=True"):
        distill(bn_student(), None, [(x, y), (x[:1], y[:1])], epochs=1, progress=False)
    with pytest.raises(InputError, match="re-iterable"):
        distill(student_net(), None, ((x, y) for _ in range(2)), epochs=2, progress=False)


def test_distill_without_teacher_is_plain_training(train_ds, make_loader):
    dl = make_loader(train_ds, n=100, batch_size=25)
    student = student_net()
    before = weights(student)
    result = distill(student, None, dl, epochs=2, lr=3e-3, progress=False)
    assert changed(before, student)
    assert len(result.losses) == 2 and result.losses[1] < result.losses[0]


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": -0.1}, "alpha"), ({"alpha": 1.5}, "alpha"), ({"T": 0.0}, "T"), ({"T": -2.0}, "T"),
    ({"T": float("inf")}, "`T` to be a finite number"), ({"alpha": "0.9"}, "alpha"),
])
def test_distill_validation(train_ds, make_loader, kwargs, message):
    student = student_net()
    before = weights(student)
    with pytest.raises(ValueError, match=message):
        distill(student, None, make_loader(train_ds, n=10), epochs=1, progress=False, **kwargs)
    assert not changed(before, student)


def test_distill_rejects_an_empty_loader(pretrained):
    from sdbox import InputError

    with pytest.raises(InputError, match="empty"):
        distill(copy.deepcopy(pretrained), pretrained, [], epochs=1, progress=False)
