"""sdbox: publish an image classifier for everyone's inference; let only key holders distil it.

Data flows key → proxy input → losses → wrap → box → bundle → keyed teacher → student.

The public names are imported on first use (PEP 562): ``import sdbox`` alone loads neither torch
nor timm, so the ``sdbox`` command's parser (``--help``, a usage error) answers without the
seconds they take to import (issue 21, item 8). ``from sdbox import SafeBox`` works as it always did.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from .errors import (
    BundleError,
    CheckpointError,
    FidelityError,
    InputError,
    KeyFileError,
    NonFiniteLossError,
    ResumeWarning,
    SdboxError,
    WrongKeyError,
)

__version__ = "0.1.0"

__all__ = [
    "SafeBox", "Key", "KeyedTeacher", "SDBSettings", "FastPath", "mix", "kd_loss", "distill",
    "SdboxError", "WrongKeyError", "KeyFileError", "BundleError", "CheckpointError", "FidelityError", "NonFiniteLossError", "InputError",
    "ResumeWarning",
]

# Each lazily imported public name and the submodule that defines it.
_LAZY = {
    "SafeBox": "box", "Key": "key", "KeyedTeacher": "teacher", "SDBSettings": "settings", "FastPath": "fastpath",
    "mix": "proxy", "kd_loss": "distill", "distill": "distill",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'sdbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # once: later look-ups find it without this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package, which keeps ``sdbox.distill`` the function.

    Importing a submodule binds it on its package, so the first ``import sdbox.distill`` (the
    module) would hide ``sdbox.distill`` (the function) from ``from sdbox import distill``. The
    eager import this package had bound the function after the module; this keeps it so.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
