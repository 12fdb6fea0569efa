"""What a box publishes about its inputs: read from the pipeline the owner actually used.

A box is only as usable as its preprocessing is true. timm's ``resolve_data_config`` +
``create_transform`` rebuild the eval pipeline from ``pretrained_cfg`` (input size,
interpolation, ``crop_pct``, mean/std), so those values must come from the owner's own loader,
not from the library defaults of the architecture: a timm ``resnet18`` fine-tuned on CIFAR-10
with CIFAR's mean/std, published with ImageNet's mean and ``crop_pct=0.875``, agreed with its
own training pipeline on 73% of predictions.

This module reads the loader (its dataset's transform: torchvision ``Normalize`` / v2, timm's
``create_transform``, or sdbox's own tensor datasets), finds class names, and decides the
precedence of mean/std sources (:func:`resolve_normalization`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .errors import InputError

if TYPE_CHECKING:  # torch is imported by the functions that use it: `sdbox --help` needs none of it
    import torch
    import torch.nn as nn

@dataclass(frozen=True)
class Normalization:
    """Per-channel ``mean``/``std`` that map [0, 1] pixels to model inputs, and where they came from."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-channel range that normalised [0, 1] pixels can take: ((0−m)/s, (1−m)/s)."""
        import torch

        mean, std = torch.tensor(self.mean), torch.tensor(self.std)
        return (0 - mean) / std, (1 - mean) / std


def resolve_normalization(
    model: nn.Module,
    sample: torch.Tensor,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    weights: Any = None,
    loader: Any = None,
) -> Normalization:
    """Find the mean/std the model's inputs were normalised with (see the module docstring).

    ``loader``'s transform is read first (:func:`~sdbox.preprocessing.transform_normalization`);
    explicit ``mean``/``std`` that disagree with it are an error, since one of them is wrong.
    ``weights`` is a torchvision weights enum (e.g. ``ResNet18_Weights.DEFAULT``). ``sample`` is
    one batch from the loader: the fallback maps [0, 1] onto its per-channel min/max.
    """

    channels = sample.shape[1]
    if (mean is None) != (std is None):
        raise ValueError("Expected both `mean` and `std`, but got only one of them.")
    read = transform_normalization(loader) if loader is not None else None
    if read is not None:
        found = _checked(read[0], read[1], channels, read[2])
        if mean is None:
            return found
        given = _checked(mean, std, channels, read[2])
        if not _same(found, given):
            raise InputError(
                f"Expected `mean`/`std` to match the loader's own normalisation ({read[2]}: mean={list(found.mean)}, "
                f"std={list(found.std)}), but got mean={list(mean)}, std={list(std)}: drop the arguments, or fix the transform."
            )
        return given  # the same normalisation; the arguments' digits, where the loader kept float32 ones
    if mean is not None:
        return _checked(mean, std, channels, "user")
    if weights is not None:
        transforms = weights.transforms()
        return _checked(transforms.mean, transforms.std, channels, f"torchvision:{weights}")
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(cfg, dict) and "mean" in cfg and "std" in cfg and len(cfg["mean"]) == channels:
        return _checked(cfg["mean"], cfg["std"], channels, "timm:pretrained_cfg")
    flat = sample.transpose(0, 1).reshape(channels, -1).float()
    lo, hi = flat.min(1).values, flat.max(1).values
    span = (hi - lo).clamp_min(1e-6)
    return _checked((-lo / span).tolist(), (1 / span).tolist(), channels, "estimated from the data")


def _same(a: Normalization, b: Normalization, tol: float = 1e-6) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a.mean + a.std, b.mean + b.std))


def _checked(mean: Sequence[float], std: Sequence[float], channels: int, source: str) -> Normalization:
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != channels or len(std) != channels:
        raise InputError(f"Expected mean/std with {channels} values (one per input channel), but got {len(mean)} and {len(std)} ({source}).")
    if any(s <= 0 for s in std):
        raise InputError(f"Expected every `std` value > 0, but got {std} ({source}).")
    return Normalization(mean, std, source)


# timm's names for torchvision's InterpolationMode values (timm.data.transforms.str_to_interp_mode).
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")


@dataclass(frozen=True)
class EvalPipeline:
    """The eval preprocessing in timm's terms, and where it was read from.

    ``crop_pct`` is crop / resize (1.0: the image is resized straight to the input size, which is
    what a loader that hands over images already at the input size does).
    """

    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    crop_mode: str = "center"
    source: str = "loader images at the input size"


def dataset_of(loader: Iterable) -> Any:
    """The innermost dataset behind a loader (through ``Subset`` and similar wrappers), or None."""
    dataset = getattr(loader, "dataset", None)
    for _ in range(8):  # Subset of Subset of ...: a bounded walk
        inner = getattr(dataset, "dataset", None)
        if inner is None or getattr(dataset, "transform", None) is not None:
            break
        dataset = inner
    return dataset


def _steps(transform: Any) -> list[Any]:
    """The flat list of steps of a (possibly nested) Compose."""
    inner = getattr(transform, "transforms", None)
    if isinstance(inner, (list, tuple)):
        return [step for t in inner for step in _steps(t)]
    return [transform] if transform is not None else []


def transform_normalization(loader: Iterable) -> tuple[tuple[float, ...], tuple[float, ...], str] | None:
    """(mean, std, source) of the normalisation the loader applies, or None if it says nothing.

    Reads torchvision ``Normalize`` (v1 and v2, which timm's ``create_transform`` uses too) in the
    dataset's transform, and sdbox's own ``TensorImageDataset`` / ``TensorLoader``.
    """
    import torch
    from torchvision.transforms import Normalize
    from torchvision.transforms import v2
    from torchvision.transforms._presets import ImageClassification  # what `weights.transforms()` returns

    from .data import TensorImageDataset, TensorLoader

    if isinstance(loader, TensorLoader):
        return loader.mean, loader.std, "loader:TensorLoader"
    dataset = dataset_of(loader)
    if isinstance(dataset, TensorImageDataset):
        return _float32s(dataset.mean.flatten().tolist()), _float32s(dataset.std.flatten().tolist()), "loader:TensorImageDataset"
    found = [s for s in _steps(getattr(dataset, "transform", None)) if isinstance(s, (Normalize, v2.Normalize, ImageClassification))]
    if not found:
        return None
    if len(found) > 1:
        raise InputError(f"Expected at most one Normalize in the loader's transform, but found {len(found)}: "
                         "sdbox cannot tell which one the model sees; pass `mean=`/`std=` and a transform with one.")
    mean, std = found[0].mean, found[0].std
    read = _float32s if isinstance(mean, torch.Tensor) else _floats  # timm hands Normalize float32 tensors
    name = "weights.transforms()" if isinstance(found[0], ImageClassification) else f"{type(found[0]).__module__.split('.')[1]}.Normalize"
    return read(mean), read(std), f"transform:{name}"


def eval_pipeline(loader: Iterable, input_size: Sequence[int]) -> EvalPipeline:
    """Interpolation and crop of the loader's transform (Resize then CenterCrop), in timm's terms.

    Without a Resize, the loader hands over images at the input size: ``crop_pct=1.0``, so timm's
    eval transform resizes straight to the input size (a no-op on images already that size).
    """
    from torchvision import transforms as T
    from torchvision.transforms import v2

    from torchvision.transforms._presets import ImageClassification

    steps = _steps(getattr(dataset_of(loader), "transform", None))
    preset = next((s for s in steps if isinstance(s, ImageClassification)), None)
    if preset is not None:  # torchvision's `weights.transforms()`: resize, centre crop, normalise in one
        interpolation = preset.interpolation.value if preset.interpolation.value in _INTERPOLATIONS else "bilinear"
        return EvalPipeline(interpolation, timm_crop_pct(preset.crop_size[0], preset.resize_size[0]), "center", "transform:weights.transforms()")
    resize = next((s for s in steps if isinstance(s, (T.Resize, v2.Resize))), None)
    crop = next((s for s in steps if isinstance(s, (T.CenterCrop, v2.CenterCrop))), None)
    if resize is None:
        return EvalPipeline()
    interpolation = getattr(resize.interpolation, "value", str(resize.interpolation))
    interpolation = interpolation if interpolation in _INTERPOLATIONS else "bilinear"
    size = resize.size if isinstance(resize.size, int) else (resize.size[0] if resize.size and len(resize.size) == 1 else None)
    if size is None:  # Resize((h, w)): a squash to a fixed size
        return EvalPipeline(interpolation, 1.0, "squash", "transform:Resize((h, w))")
    crop_side = crop.size[0] if crop is not None else min(input_size[1:])
    return EvalPipeline(interpolation, timm_crop_pct(crop_side, size), "center", "transform:Resize+CenterCrop")


def timm_crop_pct(crop: int, resize: int) -> float:
    """The ``crop_pct`` from which timm's own arithmetic gives back ``resize``, as short as it can be.

    timm's eval transform resizes to ``math.floor(crop / crop_pct)``. ``crop / resize`` rounded
    to the nearest 4 digits can land just above the true ratio (32/36 → 0.8889, and
    ``floor(32 / 0.8889) = 35``): a box trained at Resize(36) + CenterCrop(32) was then resized to
    35 by plain timm, and the two pipelines disagreed on about 5% of CIFAR-10 predictions. Every
    value in ``(crop / (resize + 1), crop / resize]`` gives back ``resize``; this returns the one
    with the fewest decimals, checked in the same float arithmetic timm does (0.88 for 32/36,
    0.875 for 224/256, 0.876 for 384/438).
    """
    if crop < 1 or resize < 1:
        raise InputError(f"Expected a positive crop and resize size, but got crop {crop} and resize {resize}: check the loader's Resize and CenterCrop.")
    ratio = crop / resize
    for digits in range(1, 18):
        scale = 10**digits
        below = math.floor(ratio * scale)
        # `below` can be the exact ratio (14/25 = 0.56) that float division puts a hair under
        # `resize` (floor(14 / 0.56) = 24): then one step further down at this precision.
        for pct in (below / scale, (below - 1) / scale):
            if pct > 0 and math.floor(crop / pct) == resize:
                return pct
    # Not reached for any crop up to 2048 pixels with crop_pct from 0.5 to 2 (all 3.1 million pairs,
    # checked once): kept so that a size past that fails here, not as a silent misresize.
    raise InputError(f"No crop_pct gives back a resize to {resize} for a {crop}-pixel crop in timm's arithmetic: "
                     "resize and crop the eval images to other sizes.")


def dataset_label_names(loader: Iterable) -> list[str] | None:
    """``classes`` of the loader's dataset (ImageFolder, torchvision CIFAR-10, ...), if it has them."""
    classes = getattr(dataset_of(loader), "classes", None)
    if isinstance(classes, (list, tuple)) and classes and all(isinstance(c, str) for c in classes):
        return list(classes)
    return None


def resolve_label_names(given: Sequence[str] | None, loader: Iterable, weights: Any, num_classes: int) -> list[str] | None:
    """Class names: the user's, else the dataset's ``classes``, else torchvision ``weights.meta["categories"]``."""
    if given is not None:
        names = list(given)
        if len(names) != num_classes or not all(isinstance(n, str) for n in names):
            raise ValueError(f"Expected `label_names` to be {num_classes} strings (one per output), but got {len(names)} items.")
        return names
    for names in (dataset_label_names(loader), list(getattr(weights, "meta", {}).get("categories", []) or [])):
        if names and len(names) == num_classes:
            return names
    return None


def layer_names(model: nn.Module) -> tuple[str | None, str | None]:
    """(first_conv, classifier): the module names timm uses to adapt input channels and reset the head."""
    import torch.nn as nn

    first_conv = next((name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    classifier = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            classifier = name
    return first_conv, classifier


def _floats(values: Iterable[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _float32s(values: Iterable[Any]) -> tuple[float, ...]:
    """Values read back from float32 tensors, to the 7 digits float32 holds (0.4914, not 0.49140000343322754)."""
    return tuple(float(f"{float(v):.7g}") for v in values)
