"""Naming a model so ``from_pretrained`` can rebuild it: timm and torchvision by name, else custom."""

from __future__ import annotations

import torch
import torch.nn as nn


def describe(model: nn.Module, num_classes: int) -> tuple[str, str]:
    """Return ``(library, architecture)`` for ``model``.

    timm models carry their name in ``pretrained_cfg``. torchvision classes (``ResNet``) cover
    many names (resnet18, resnet34, …), so the name is found by building each candidate on the
    meta device (no memory, no weights) and comparing parameter names and shapes.
    """
    module = type(model).__module__
    if module.startswith("timm."):
        cfg = getattr(model, "pretrained_cfg", None) or {}
        name = cfg.get("architecture")
        if name:
            return "timm", name
    if module.startswith("torchvision.models"):
        name = _torchvision_name(model, num_classes)
        if name:
            return "torchvision", name
    return "custom", f"{module}.{type(model).__qualname__}"


def _torchvision_name(model: nn.Module, num_classes: int) -> str | None:
    import torchvision.models as tvm

    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    prefix = type(model).__name__.lower()[:3]
    for name in tvm.list_models(module=tvm):
        if not name.replace("_", "").startswith(prefix):
            continue
        try:
            with torch.device("meta"):
                candidate = tvm.get_model(name, weights=None, num_classes=num_classes)
        except Exception:  # some builders reject num_classes or need extra arguments
            continue
        if type(candidate) is type(model) and {k: tuple(v.shape) for k, v in candidate.state_dict().items()} == want:
            return name
    return None


def build(library: str, architecture: str, num_classes: int) -> nn.Module:
    """Rebuild an untrained model of the named architecture (weights come from the bundle).

    Only names the library registers are built: timm also reads ``hf-hub:`` and ``local-dir:``
    prefixes, which would let a bundle make sdbox fetch another repo or read another folder.
    """
    if library == "timm":
        import timm

        if ":" in architecture or not timm.is_model(architecture):
            raise ValueError(f"timm has no model named {architecture!r}: upgrade timm, or pass an instance with `model=`.")
        return timm.create_model(architecture, pretrained=False, num_classes=num_classes)
    if library == "torchvision":
        import torchvision.models as tvm

        if architecture not in tvm.list_models(module=tvm):
            raise ValueError(f"torchvision has no model named {architecture!r}: upgrade torchvision, or pass an instance with `model=`.")
        return tvm.get_model(architecture, weights=None, num_classes=num_classes)
    raise ValueError(
        f"This box wraps a custom model ({architecture}); sdbox cannot rebuild it by name. "
        "Pass an instance: `SafeBox.from_pretrained(path, model=MyModel(...))`."
    )
