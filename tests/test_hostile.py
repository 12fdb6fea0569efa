"""Issue 20: what a careless or hostile caller hands sdbox becomes a named error that says the fix.

Each case raised a raw torch error, or nothing at all, before: 3-tuples from a loader, int32 or
bool labels, as many labels as images or not, a shape change mid-loader, a float64 or bf16 model,
0–255 pixels, a NaN batch or a huge learning rate in distill (item 10). Real CIFAR-10 images.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import TinyNet
from sdbox import SafeBox, distill
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD
from sdbox.errors import InputError, NonFiniteLossError, SdboxError

NORM = dict(mean=CIFAR10_MEAN, std=CIFAR10_STD)


@pytest.fixture(scope="module")
def images(train_ds) -> tuple[torch.Tensor, torch.Tensor]:
    """40 real, normalised CIFAR-10 training images and their int64 labels."""
    x, y = next(iter(DataLoader(train_ds, batch_size=40)))
    return x, y


def pairs(x: torch.Tensor, y: torch.Tensor, size: int = 20) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def wrap(model, batches, **kwargs):
    return SafeBox.wrap(model, batches, val_loader=kwargs.pop("val_loader", batches), epochs=1, max_accuracy_drop=100,
                        device="cpu", progress=False, **NORM, **kwargs)


def bad_loaders(x, y) -> dict[str, tuple[list, str]]:
    """Each malformed loader, and what the error must say (the problem and the fix)."""
    return {
        "3-tuples": ([(a, b, b) for a, b in pairs(x, y)], r"yield \(images, labels\) pairs.*holds 3 items.*collate_fn"),
        "int32 labels": (pairs(x, y.int()), r"int64.*torch\.int32.*\.long\(\)"),
        "bool labels": (pairs(x, y > 4), r"int64.*torch\.bool.*\.long\(\)"),
        "fewer labels": ([(x[:20], y[:19]), (x[20:], y[20:])], r"as many labels as images.*20 images and 19 labels"),
        "empty batch": ([(x[:0], y[:0]), *pairs(x, y)], r"as many labels as images \(at least one\).*0 images"),
        "float64 images": (pairs(x.double(), y), r"float32 images.*torch\.float64.*\.float\(\)"),
        "0-255 pixels": (pairs((x * 60 + 120).round().clamp(0, 255), y), r"raw 0–255 pixels.*ToTensor\(\)"),
    }


@pytest.mark.parametrize("case", list(bad_loaders(torch.zeros(40, 3, 4, 4), torch.zeros(40, dtype=torch.long))))
def test_wrap_names_a_malformed_loader_before_training(case, images):
    loader, message = bad_loaders(*images)[case]
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InputError, match=message) as info:
        wrap(model, loader)
    assert isinstance(info.value, SdboxError) and isinstance(info.value, ValueError)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # refused before any training step


@pytest.mark.parametrize("case", ["3-tuples", "int32 labels", "bool labels", "fewer labels", "float64 images"])
def test_distill_names_a_malformed_loader(case, images):
    loader, message = bad_loaders(*images)[case]
    with pytest.raises(InputError, match=message):
        distill(TinyNet(), TinyNet().eval(), loader, epochs=1, progress=False)


def test_a_shape_change_mid_loader_is_named_in_distill(images):
    x, y = images
    loader = [(x[:20], y[:20]), (x[20:, :, :16, :16], y[20:])]
    with pytest.raises(InputError, match=r"first batch's shape \(3, 32, 32\).*later batch has \(3, 16, 16\).*one size"):
        distill(TinyNet(), None, loader, epochs=1, progress=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_wrap_refuses_a_model_that_is_not_float32(dtype, images):
    model = TinyNet().to(dtype)
    with pytest.raises(InputError, match=rf"float32 model.*{dtype}.*model\.float\(\)"):
        wrap(model, pairs(*images))


def test_uint8_labels_still_work(images):
    x, y = images
    result = distill(TinyNet(), TinyNet().eval(), pairs(x, y.to(torch.uint8)), epochs=1, progress=False)
    assert len(result.losses) == 1 and torch.isfinite(torch.tensor(result.losses)).all()


# ------------------------------------------------------------------- item 10: non-finite distill
def test_distill_refuses_a_nan_batch_instead_of_returning_a_nan_student(images):
    x, y = images
    nan_batch = x[20:].clone()
    nan_batch[:, :, :4, :4] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"distillation loss became nan in epoch 1.*lower `lr`.*NaN or infinite") as info:
        distill(TinyNet(), TinyNet().eval(), [(x[:20], y[:20]), (nan_batch, y[20:])], epochs=1, progress=False)
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, SdboxError)


def test_distill_refuses_a_huge_lr(images):
    with pytest.raises(NonFiniteLossError, match=r"lower `lr` \(now 1e\+30"):
        distill(TinyNet(), TinyNet().eval(), pairs(*images), lr=1e30, epochs=2, progress=False)


def test_distill_checks_the_weights_when_the_last_step_breaks_them(images):
    """One batch: its loss is computed before the step that breaks the weights, so it is finite."""
    x, y = images
    student = TinyNet()
    overflowing = torch.optim.SGD(student.parameters(), lr=1e38, weight_decay=1e38)  # 1e38 · 1e38·w is inf in float32
    with pytest.raises(NonFiniteLossError, match=r"of the student's weight tensors became NaN or infinite in epoch 1.*lower `lr`"):
        distill(student, None, [(x[:20], y[:20])], optimizer=overflowing, epochs=1, progress=False)


def test_an_adam_step_that_overflows_float32_is_named(images):
    with pytest.raises(NonFiniteLossError, match=r"step overflowed float32.*lower `lr` \(now 1e\+39"):
        distill(TinyNet(), None, pairs(*images), lr=1e39, epochs=1, progress=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=1.5), r"`alpha` in \[0, 1\]"), (dict(T=0), r"`T` to be a finite number > 0"),
    (dict(lr=float("nan")), r"`lr` to be a finite number > 0"), (dict(epochs=0), r"`epochs` to be an integer ≥ 1"),
])
def test_distill_arguments_are_named_errors(kwargs, message, images):
    with pytest.raises(InputError, match=message):
        distill(TinyNet(), None, pairs(*images), progress=False, **kwargs)
