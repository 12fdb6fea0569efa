"""Naming a model so ``from_pretrained`` (and plain timm) can rebuild it: timm and torchvision by
name and constructor arguments, else custom (the user's class, with its recorded arguments).
A distilled student is saved the same way (:func:`save_student`), by timm's own writer."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .errors import InputError
from .files import atomic_path, write_text

if TYPE_CHECKING:  # torch is imported where a model is built or saved, not with the CLI's --help
    import torch.nn as nn

    from .config import BoxConfig

# timm's pretrained_cfg fields that describe where *its* source weights came from, not the box's.
_SOURCE_FIELDS = ("tag", "hf_hub_id", "hf_hub_filename", "url", "file", "source", "origin_url", "paper_ids", "paper_name",
                  "notes", "license", "state_dict", "architecture", "label_names", "label_descriptions", "label_offset")


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
    import torch
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


def timm_fields(model: nn.Module, data_config: dict[str, Any], label_names: list[str] | None) -> dict[str, Any]:
    """The config.json timm itself writes for ``model`` (its ``save_config_for_hf``): model_args,
    num_features, global_pool, first_conv, classifier, ... with ``data_config`` (the box's true
    preprocessing) in its pretrained_cfg. Fields naming timm's own source weights are dropped."""
    from timm.models._hub import save_config_for_hf

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.json"
        save_config_for_hf(model, str(path), model_config={"label_names": label_names} if label_names else None, data_config=data_config)
        written = json.loads(path.read_text())
    cfg = written["pretrained_cfg"]
    for name in _SOURCE_FIELDS:
        cfg.pop(name, None)
    return written


def build(library: str, architecture: str, num_classes: int, model_args: dict[str, Any] | None = None,
          model_class: Callable[..., nn.Module] | None = None) -> nn.Module:
    """Rebuild an untrained model of the named architecture with its recorded constructor arguments
    (weights come from the bundle), so that e.g. an ``in_chans=1`` model comes back as itself.

    Only names the library registers are built: timm also reads ``hf-hub:`` and ``local-dir:``
    prefixes, which would let a bundle make sdbox fetch another repo or read another folder; and
    ``model_args`` never include loading arguments (``BoxConfig.validate`` refuses them).
    """
    args = dict(model_args or {})
    if library == "custom" and model_class is not None:
        try:
            return model_class(**args)
        except TypeError as e:
            raise ValueError(f"Could not build {getattr(model_class, '__name__', model_class)}(**{args}) from the bundle's "
                             f"model_args ({e}): pass an instance with `model=` instead.") from None
    if library == "timm":
        import timm

        if ":" in architecture or not timm.is_model(architecture):
            raise ValueError(f"timm has no model named {architecture!r}: upgrade timm, or pass an instance with `model=`.")
        return timm.create_model(architecture, pretrained=False, **{**args, "num_classes": num_classes})
    if library == "torchvision":
        import torchvision.models as tvm

        if architecture not in tvm.list_models(module=tvm):
            raise ValueError(f"torchvision has no model named {architecture!r}: upgrade torchvision, or pass an instance with `model=`.")
        return tvm.get_model(architecture, weights=None, **{**args, "num_classes": num_classes})
    raise ValueError(
        f"This box wraps a custom model ({architecture}); sdbox cannot rebuild it by name. "
        "Pass its class, `SafeBox.from_pretrained(path, model_class=MyModel)` (built with the saved model_args), "
        "or an instance, `model=MyModel(...)`."
    )


# The timm data-config keys of a box's eval preprocessing: what a student distilled through the box saw.
_DATA_CONFIG_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")
STUDENT_WEIGHTS_NAME = "model.safetensors"
STUDENT_CONFIG_NAME = "config.json"


def box_data_config(config: BoxConfig) -> dict[str, Any]:
    """The box's eval preprocessing as timm's data config (input_size, interpolation, crop_pct,
    crop_mode, mean, std): the inputs a student distilled through the box was trained on."""
    cfg = config.to_json()["pretrained_cfg"]
    return {k: cfg[k] for k in _DATA_CONFIG_KEYS if k in cfg}


def save_student(model: nn.Module, folder: str | os.PathLike, data_config: dict[str, Any], *,
                 label_names: list[str] | None = None, provenance: dict[str, Any] | None = None) -> Path:
    """Write a distilled student into ``folder`` as model.safetensors + config.json, like a box.

    A timm student's config.json is written by timm's own ``save_config_for_hf`` (the writer of
    its ``save_for_hf``): ``model_args`` (``in_chans`` of a one-channel student included),
    ``num_features``, ``global_pool``, ``label_names`` and a ``pretrained_cfg`` with
    ``data_config``, so plain ``timm.create_model("local-dir:FOLDER", pretrained=True)`` rebuilds
    the same function and ``resolve_data_config`` its preprocessing. The weights are
    ``model.state_dict()`` in safetensors, as timm saves them. A torchvision student gets the same
    files with ``model_library: torchvision``; :func:`build` rebuilds it by name.
    ``provenance`` (e.g. the teacher and whether the key was used) is stored as ``sdbox_student``.
    Files are replaced atomically: an interrupted save leaves the old ones or none.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    num_classes = getattr(model, "num_classes", None) or _outputs(model)  # timm models say; torchvision ones have a last Linear
    library, name = describe(model, num_classes)
    if library == "custom":
        raise InputError(f"Expected a timm or torchvision student, but got {name}: save it with `safetensors.torch.save_model` "
                         "and rebuild it from your own class.")
    with atomic_path(folder / STUDENT_WEIGHTS_NAME) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    extra = {"sdbox_student": provenance} if provenance else {}
    if library == "timm":
        from timm.models._hub import save_config_for_hf

        with atomic_path(folder / STUDENT_CONFIG_NAME) as tmp:
            save_config_for_hf(model, str(tmp), model_config={**({"label_names": label_names} if label_names else {}), **extra},
                               data_config=data_config)
    else:
        config = {"architecture": name, "num_classes": num_classes, "model_library": library,
                  "model_args": {"num_classes": num_classes}, **({"label_names": label_names} if label_names else {}),
                  "pretrained_cfg": {**data_config, "num_classes": num_classes}, **extra}
        write_text(folder / STUDENT_CONFIG_NAME, json.dumps(config, indent=2))
    return folder


def _outputs(model: nn.Module) -> int:
    """The width of the model's last Linear layer: its number of classes."""
    import torch.nn as nn

    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise InputError(f"Expected a classifier whose last layer is a Linear (its width is the number of classes), but "
                         f"{type(model).__name__} has none: pick a timm or torchvision model with a linear head.")
    return last[-1].out_features
