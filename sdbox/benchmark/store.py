"""Everything a benchmark run writes, written atomically, so an interrupted run resumes.

A file either holds a finished result or does not exist: each writer fills a temporary name and
renames it into place. A run skips every step whose output is already there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn
from safetensors.torch import load_model, save_model

from ..files import atomic_path, write_text


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def cached_json(path: Path, compute: Callable[[], Any]) -> Any:
    """``compute()`` once: later calls (and resumed runs) read the saved result."""
    if path.exists():
        return read_json(path)
    result = compute()
    write_json(path, result)
    return result


def save_weights(model: nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_model(model, str(tmp))


def load_weights(model: nn.Module, path: Path, device: str = "cpu") -> nn.Module:
    load_model(model, str(path), strict=True, device=device)
    return model


def save_dir_atomically(path: Path, fill: Callable[[Path], None]) -> None:
    """Let ``fill`` populate a fresh temporary folder, then rename it to ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    fill(tmp)
    os.replace(tmp, path)
