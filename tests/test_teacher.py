"""KeyedTeacher: only the box's own key opens it; inputs are validated; it is frozen and no-grad."""

from __future__ import annotations

import copy

import pytest
import torch

from sdbox import InputError, Key, KeyedTeacher, WrongKeyError, keyed_norm, mix
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD


@pytest.fixture
def box(wrapped):
    """A private copy of the session box (tests change its mode)."""
    b = copy.deepcopy(wrapped)
    b._key = wrapped.key
    return b


def test_right_key_matches_box_on_mixed_input(box, batch):
    x, _ = batch
    teacher = KeyedTeacher(box, box.key)
    out = teacher(x)
    with torch.no_grad():
        with keyed_norm.applied(box.model, box.key.norm):
            expected = box(mix(x, box.key.tensor, box.key.lam))
        public_norm = box(mix(x, box.key.tensor, box.key.lam))
        clean = box(x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(teacher.logits(x), expected)
    assert not torch.allclose(out, clean)  # the key really changes what the box sees
    assert not torch.allclose(out, public_norm, atol=1e-3)  # and so does its keyed normalisation
    torch.testing.assert_close(box(x), clean)  # which is swapped back out after each call


def test_key_loaded_from_file_opens_the_box(box, batch, tmp_path):
    x, _ = batch
    loaded = Key.load(box.key.save(tmp_path / "owner.key"))
    torch.testing.assert_close(KeyedTeacher(box, loaded)(x), KeyedTeacher(box, box.key)(x))


def test_another_key_is_refused(box):
    other = Key.generate((3, 32, 32), box.key.lam, CIFAR10_MEAN, CIFAR10_STD)
    with pytest.raises(WrongKeyError, match="does not open this box") as info:
        KeyedTeacher(box, other)
    assert isinstance(info.value, ValueError)
    assert other.fingerprint[:12] in str(info.value) and box.key.fingerprint[:12] in str(info.value)
    # same pixels, other λ: also another key
    with pytest.raises(WrongKeyError):
        KeyedTeacher(box, Key(box.key.tensor, 0.3))


def test_wrong_shape_key_is_refused(box):
    with pytest.raises(WrongKeyError, match=r"shape \(3, 16, 16\)"):
        KeyedTeacher(box, Key.generate((3, 16, 16)))
    with pytest.raises(TypeError, match="sdbox.Key"):
        KeyedTeacher(box, box.key.tensor)  # type: ignore[arg-type]


def test_wrong_input_shape(box, batch):
    teacher = KeyedTeacher(box, box.key)
    x, _ = batch
    with pytest.raises(InputError, match=r"\(N, 3, 32, 32\).*\(16, 3, 16, 16\)"):
        teacher(x[:, :, :16, :16])
    with pytest.raises(InputError, match=r"\(N, 3, 32, 32\)"):
        teacher(x[0])  # a single image without its batch dimension
    with pytest.raises(InputError):
        teacher(x.numpy())  # type: ignore[arg-type]


def test_uint8_input(box, batch):
    teacher = KeyedTeacher(box, box.key)
    x = (torch.rand(4, 3, 32, 32) * 255).to(torch.uint8)
    with pytest.raises(InputError, match=r"torch.uint8.*mean=.*std="):
        teacher(x)


def test_raw_pixel_range_input(box, batch):
    teacher = KeyedTeacher(box, box.key)
    raw = torch.rand(4, 3, 32, 32) * 255
    with pytest.raises(InputError, match="outside the range"):
        teacher(raw)
    # being refused once must not disarm the check: the same bad batch is refused again
    with pytest.raises(InputError, match="outside the range"):
        teacher(raw)
    with pytest.raises(InputError, match="outside the range"):
        teacher.soft_labels(-raw)

def test_unnormalised_unit_pixels_pass_and_check_can_be_off(box, batch):
    x, _ = batch
    teacher = KeyedTeacher(box, box.key, check_inputs=False)
    assert teacher(torch.rand(2, 3, 32, 32) * 255).shape == (2, 10)
    always = KeyedTeacher(box, box.key, check_inputs="always")
    always(x)
    with pytest.raises(InputError, match="outside the range"):
        always(x * 100)  # later batches are checked too with "always"
    with pytest.raises(ValueError, match="check_inputs"):
        KeyedTeacher(box, box.key, check_inputs="sometimes")  # type: ignore[arg-type]


def test_soft_labels(box, batch):
    x, _ = batch
    teacher = KeyedTeacher(box, box.key)
    for T in (1.0, 4.0):
        soft = teacher.soft_labels(x, T=T)
        assert soft.shape == (len(x), 10) and (soft >= 0).all()
        torch.testing.assert_close(soft.sum(1), torch.ones(len(x)))
        torch.testing.assert_close(soft, torch.softmax(teacher(x) / T, 1))
    entropy = lambda p: -(p * p.log()).sum(1).mean()
    assert entropy(teacher.soft_labels(x, T=8)) > entropy(teacher.soft_labels(x, T=1))
    with pytest.raises(ValueError, match="T"):
        teacher.soft_labels(x, T=0)


def test_teacher_reads_the_box_in_eval_mode_without_freezing_it(box, batch):
    """It used to freeze the box in place for good (eval mode, requires_grad off)."""
    x, _ = batch
    box.train()
    before = copy.deepcopy(box.state_dict())
    with torch.no_grad():
        reference = copy.deepcopy(box).eval()
        with keyed_norm.applied(reference.model, box.key.norm):
            expected = reference(mix(x, box.key.tensor, box.key.lam))
    teacher = KeyedTeacher(box, box.key)
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        out = teacher(x)
        soft = teacher.soft_labels(x)
    torch.testing.assert_close(out, expected)  # eval-mode BatchNorm, though the box is training
    assert not out.requires_grad and not soft.requires_grad
    assert box.training and all(m.training for m in box.modules())  # its modes given back
    assert all(p.requires_grad for p in box.parameters())  # and never frozen
    for k, v in box.state_dict().items():  # BatchNorm statistics untouched by teaching
        assert torch.equal(v, before[k]), k


def test_a_plain_module_is_refused_with_the_fix(box):
    with pytest.raises(TypeError, match=r"Expected a SafeBox.*distill"):
        KeyedTeacher(box.model, box.key)  # type: ignore[arg-type]


def test_nan_inputs_are_refused_even_when_checking_every_batch(box, batch):
    """NaN compares false with both bounds, so a range check alone let it through to NaN soft labels."""
    x, _ = batch
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    always = KeyedTeacher(box, box.key, check_inputs="always")
    always(x)
    with pytest.raises(InputError, match="NaN or infinite"):
        always(bad)
    with pytest.raises(InputError, match="NaN or infinite"):
        KeyedTeacher(box, box.key)(bad)  # the default checks the first batch


@pytest.mark.parametrize("T", [float("inf"), float("nan"), 0.0, "4"])
def test_soft_labels_temperature_must_be_finite_and_positive(box, batch, T):
    with pytest.raises(ValueError, match=r"Expected `T` to be a finite number > 0"):
        KeyedTeacher(box, box.key).soft_labels(batch[0], T=T)


def test_keyed_teacher_is_the_teacher_of_timms_distillation_task(box, batch):
    """timm's LogitDistillationTask takes it as any frozen teacher module, and distils the keyed logits."""
    import timm
    from timm.task import LogitDistillationTask

    torch.manual_seed(0)
    student = timm.create_model("test_resnet", num_classes=10, pretrained_cfg_overlay=dict(mean=CIFAR10_MEAN, std=CIFAR10_STD))
    teacher = KeyedTeacher(box, box.key)
    assert isinstance(teacher, torch.nn.Module) and teacher.pretrained_cfg["mean"] == CIFAR10_MEAN
    task = LogitDistillationTask(student, teacher, temperature=4.0, task_loss_weight=0.5, verbose=False)
    task.train()
    assert task.teacher.model is teacher and not teacher.training and student.training
    before = copy.deepcopy(box.state_dict())
    x, y = batch
    out = task(x, y)
    with torch.no_grad():
        with keyed_norm.applied(box.model, box.key.norm):
            keyed = box.eval()(mix(x, box.key.tensor, box.key.lam))
        expected_kd = torch.nn.functional.kl_div(torch.log_softmax(out["output"] / 4, 1), torch.log_softmax(keyed / 4, 1),
                                                 reduction="batchmean", log_target=True) * 16
    torch.testing.assert_close(out["kd_loss"], expected_kd)  # the student learns from x̃, not x
    out["loss"].backward()
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    assert all(p.grad is None for p in box.parameters())  # the teacher is never trained
    for k, v in box.state_dict().items():
        assert torch.equal(v, before[k]), k
    key_bytes = box.key.tensor.numpy().tobytes()
    assert not any(k.endswith("key") or v.numpy().tobytes() == key_bytes for k, v in task.state_dict().items())  # checkpoints never hold it


def test_keyed_teacher_stays_in_eval_mode_and_never_persists_its_key(box, batch):
    box.train()
    teacher = KeyedTeacher(box, box.key)
    teacher.train()
    assert not teacher.training and box.training  # train() changes neither
    assert "key" in dict(teacher.named_buffers()) and "key" not in teacher.state_dict()  # moves with .to(), never saved
    torch.testing.assert_close(teacher(batch[0]), teacher.logits(batch[0]))
