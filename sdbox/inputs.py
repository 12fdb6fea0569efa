"""Checking what a user hands to wrap and distill: loaders, batches, labels, models.

Each check turns a mistake that would otherwise surface as a traceback deep inside torch (or
as a silently wrong result) into an :class:`~sdbox.errors.InputError` that names the problem
and the fix. Checks that cost a host-device sync run on the first batch only, or on tensors
still on the CPU.

torch is imported inside the functions that need it: :mod:`sdbox.settings` (and through it the
CLI's parsers) imports :func:`finite_number` from here, and ``sdbox --help`` must not wait for torch.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .errors import InputError

if TYPE_CHECKING:
    import torch
    import torch.nn as nn
    from torch.utils.data import DataLoader


def finite_number(value: Any) -> bool:
    """A real, finite number, and not a bool (``True`` is an int to Python, never a setting).

    An int too large for a float (JSON allows 4,300 digits) is not finite for sdbox's purposes.
    """
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_temperature(T: Any, name: str = "T") -> float:
    """A softmax temperature: finite and > 0 (T = inf makes every soft label uniform)."""
    if not finite_number(T) or not T > 0:
        raise InputError(f"Expected `{name}` to be a finite number > 0, but got {T!r}: pass e.g. {name}=4.")
    return float(T)


def length(obj: Any) -> int | None:
    """``len(obj)``, or None where it has none (an IterableDataset's DataLoader raises TypeError)."""
    try:
        return len(obj)
    except TypeError:
        return None


def check_reiterable(loader: Iterable, name: str = "loader") -> None:
    """Refuse one-shot iterators: wrap reads a loader once per epoch (and peeks at it first), so
    a generator would lose its first batch to the peek and be empty from the second pass on."""
    if iter(loader) is loader:
        raise InputError(
            f"Expected `{name}` to be re-iterable (a DataLoader or a list of batches), but got a one-shot "
            f"{type(loader).__name__} that is empty after one pass: pass a DataLoader, or `list(...)` of the batches."
        )


def first_batch(loader: Iterable, name: str = "loader") -> tuple[torch.Tensor, torch.Tensor]:
    """The loader's first (x, y), validated: a clear error beats a traceback deep in torch.

    Beyond :func:`check_batch` (the structure every batch must have), the values: finite, and not
    raw 0–255 pixels (whole numbers ≥ 0 reaching past 1), which a model trained on normalised
    inputs would take without complaint and answer wrongly.
    """
    import torch

    check_reiterable(loader, name)
    try:
        batch = next(iter(loader))
    except StopIteration:
        raise InputError(f"Expected `{name}` to yield at least one batch, but it is empty: check the dataset path and filters.") from None
    x, y = check_batch(batch, name)
    if not torch.isfinite(x).all():
        raise InputError(f"Expected finite pixel values, but the first batch of `{name}` holds NaN or infinite values: check the dataset and its transforms.")
    if x.min() >= 0 and x.max() > 1 and torch.equal(x, x.round()):
        raise InputError(
            f"Expected normalised images, but the first batch of `{name}` holds whole numbers from {x.min():.0f} to {x.max():.0f}, "
            "raw 0–255 pixels: add transforms.ToTensor() (which scales to [0, 1]) and Normalize(mean, std)."
        )
    return x, y


def check_batch(batch: Any, name: str = "loader", image_shape: tuple[int, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's structure: an (images, labels) pair of a float32 (N, C, H, W) tensor and int64
    (or uint8) (N,) labels, N ≥ 1, and images of ``image_shape`` (C, H, W) when given (the first batch's).

    Reads shapes and dtypes only, never values: no host-device sync, so it can run on every batch.
    """
    import torch

    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        got = f"{len(batch)} items" if isinstance(batch, (tuple, list)) else f"a {type(batch).__name__}"
        raise InputError(f"Expected `{name}` to yield (images, labels) pairs, e.g. a DataLoader over an ImageFolder, but a batch "
                         f"holds {got}: return (image, label) from the dataset, or drop the rest in a collate_fn.")
    x, y = batch
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise InputError(
            "Expected image batches as float tensors of shape (N, C, H, W), but got "
            f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))} {getattr(x, 'dtype', '')}: add transforms.ToTensor() and Normalize."
        )
    if x.dtype != torch.float32:
        raise InputError(f"Expected float32 images, but `{name}` yields {x.dtype}: convert them with `.float()` "
                         "(bf16 runs under autocast with `fast=FastPath(amp=True)`, on float32 inputs).")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.is_floating_point():
        raise InputError(f"Expected integer class labels of shape (N,), but got {getattr(y, 'dtype', type(y))} {tuple(getattr(y, 'shape', ()))}.")
    if y.dtype not in (torch.int64, torch.uint8):  # what cross-entropy takes as class indices
        raise InputError(f"Expected class labels as int64 (or uint8), but `{name}` yields {y.dtype}: convert them with `.long()` "
                         "in the dataset or a collate_fn.")
    if len(x) != len(y) or len(x) == 0:
        raise InputError(f"Expected as many labels as images (at least one), but a batch of `{name}` holds {len(x)} images "
                         f"and {len(y)} labels: check the dataset's __getitem__ and the collate_fn.")
    if image_shape is not None and tuple(x.shape[1:]) != tuple(image_shape):
        raise InputError(f"Expected every image of `{name}` to have the first batch's shape {tuple(image_shape)}, but a later "
                         f"batch has {tuple(x.shape[1:])}: resize and crop every image to one size in the transform.")
    return x, y


def checked_batches(loader: Iterable, name: str = "loader") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The (x, y) batches of ``loader``, each checked by :func:`check_batch` against the first one's
    image shape: a malformed batch mid-epoch is a named error, not a traceback from inside the model."""
    image_shape = None
    for batch in loader:
        x, y = check_batch(batch, name, image_shape)
        image_shape = tuple(x.shape[1:])
        yield x, y


def check_labels(y: torch.Tensor, num_classes: int, *, always: bool = False) -> None:
    """Labels must index the model's logits. Checked where free (``y`` still on the CPU) or
    when ``always``; on an accelerator a bad label is a device-side assert, not an exception."""
    if not (always or y.device.type == "cpu") or len(y) == 0:
        return
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise InputError(
            f"Expected class labels in [0, {num_classes}) for a model with {num_classes} outputs, but got labels from "
            f"{low} to {high}: check the dataset's class mapping, or give the model {high + 1} outputs."
        )


def has_batchnorm(model: nn.Module) -> bool:
    import torch.nn as nn

    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def check_batch_of_one(loader: Iterable, model: nn.Module, name: str = "loader") -> None:
    """A training batch of one image breaks BatchNorm's batch statistics; for a DataLoader this is
    known before the first epoch (the last batch of ``len(dataset) % batch_size == 1``)."""
    from torch.utils.data import DataLoader

    if not isinstance(loader, DataLoader) or loader.batch_size is None or loader.drop_last or not has_batchnorm(model):
        return
    size = length(loader.sampler)  # this rank's shard under a DistributedSampler, else the dataset
    if size is not None and size % loader.batch_size == 1:
        raise InputError(batch_of_one_message(name))


def batch_of_one_message(name: str = "loader") -> str:
    return (
        f"Expected training batches of at least 2 images (BatchNorm needs two to compute batch statistics), but `{name}` "
        "yields a batch of one: pass `drop_last=True` to the DataLoader, or change `batch_size`."
    )


def check_trainable(model: nn.Module) -> None:
    if not any(p.requires_grad for p in model.parameters()):
        raise InputError(
            "Expected a model with trainable parameters, but every parameter has requires_grad=False "
            "(frozen by another tool?): call `model.requires_grad_(True)` before wrapping it."
        )


def check_classifier(model: nn.Module, x: torch.Tensor) -> int:
    """Run two images through ``model``; return the number of classes or raise InputError.

    The model must be float32, like the key it is wrapped with: a float64 or bf16 model would fail
    inside the key mixing (``lerp``) with a dtype error that names neither the model nor the fix.
    """
    import torch

    from .restoring import eval_mode

    dtypes = {str(p.dtype) for p in model.parameters() if p.is_floating_point() and p.dtype != torch.float32}
    if dtypes:
        raise InputError(f"Expected a float32 model, but some of its parameters are {', '.join(sorted(dtypes))}: call "
                         "`model.float()` first (for bf16 speed, pass `fast=FastPath(amp=True)`: it autocasts a float32 model).")
    try:
        with torch.inference_mode(), eval_mode(model):
            out = model(x[:2])
    except Exception as e:  # the user's model may fail in any way; say what we tried
        raise InputError(f"The model failed on a batch of shape {tuple(x[:2].shape)} from the loader: {e}") from e
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(x[:2]) or out.shape[1] < 2:
        raise InputError(
            "Expected a classifier that maps (N, C, H, W) images to (N, num_classes) logits, but the "
            f"model returned {type(out).__name__} {tuple(getattr(out, 'shape', ()))}: wrap a model whose forward returns logits."
        )
    return int(out.shape[1])


def split_holdout(loader: DataLoader, fraction: float = 0.1, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """Carve a held-out slice off a map-style loader, for the fidelity guard without val_loader."""
    import torch
    from torch.utils.data import DataLoader, Subset

    dataset = getattr(loader, "dataset", None)
    if dataset is None or (length(dataset) or 0) < 20:
        raise InputError("Pass `val_loader=`: the fidelity guard needs held-out images and this loader's dataset cannot be split.")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(10, int(len(dataset) * fraction))
    kwargs = dict(batch_size=loader.batch_size, num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory)
    train = DataLoader(Subset(dataset, order[n_val:]), shuffle=True, drop_last=loader.drop_last, **kwargs)
    val = DataLoader(Subset(dataset, order[:n_val]), shuffle=False, **kwargs)
    return train, val
