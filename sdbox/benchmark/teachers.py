"""The benchmark's teacher: trained once per machine and recipe, or brought by the user.

Training the teacher on the whole training set is the slowest step of a benchmark on a CPU, and
its result depends only on the recipe (architecture, the exact images, epochs, lr, seed). It is
therefore cached under the recipe's hash in ``$SDBOX_CACHE/teachers`` (default
``~/.cache/sdbox``), so every later run on the machine starts from it. An interrupted training
resumes from its last finished epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError

from ..data import cache_dir
from ..errors import InputError
from . import models
from .accel import fast_path
from .presets import Preset
from .store import load_weights, read_json, save_weights, write_json
from .tensordata import Split, batches
from .train import train_classifier

RECIPE_VERSION = 1  # bump when train_classifier's behaviour changes, so old cached teachers are not reused


@dataclass
class Teacher:
    """The trained model and where it came from ("cache", "trained" or the user's path)."""

    model: nn.Module
    source: str
    path: Path
    train_s: float | None = None  # seconds its training took (in this run or when it was cached); None: the user's


def recipe(p: Preset, pool: Split) -> dict[str, Any]:
    """Everything the teacher's weights depend on; the images enter as a hash of their bytes, and
    a fast path (bf16 numerics) only when the preset has one, so CPU teachers keep their cache."""
    digest = hashlib.sha256(pool.images.cpu().numpy().tobytes())
    digest.update(pool.labels.cpu().numpy().tobytes())
    rec = {"version": RECIPE_VERSION, "architecture": p.teacher, "epochs": p.teacher_epochs, "lr": p.teacher_lr,
           "milestones": list(p.teacher_milestones or ()), "batch_size": p.batch_size, "seed": 0,
           "images": len(pool), "data_sha256": digest.hexdigest()}
    fast = fast_path(p)
    if fast is not None:
        rec["fast"] = {"amp": fast.amp, "channels_last": fast.channels_last}
    return rec


def recipe_path(rec: dict[str, Any]) -> Path:
    name = hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "teachers" / f"{rec['architecture']}-{name}.safetensors"


def obtain_teacher(p: Preset, pool: Split, device: torch.device, *, path: str | os.PathLike | None = None,
                   progress: bool = True, log=print) -> Teacher:
    """The user's teacher at ``path``, else the cached one for this recipe, else train and cache it."""
    if path is not None:
        return Teacher(load_teacher(p.teacher, path, device), "user", Path(path))
    rec = recipe(p, pool)
    target = recipe_path(rec)
    model = models.create(p.teacher)
    if target.exists():
        log(f"teacher: cached {target} (trained once on this machine; delete it to retrain)")
        record = target.with_suffix(".json")
        train_s = read_json(record).get("train_s") if record.exists() else None
        return Teacher(load_weights(model, target, str(device)).to(device).eval(), "cache", target, train_s)
    log(f"teacher: training {p.teacher} on {len(pool)} images for {p.teacher_epochs} epochs (once per machine; "
        f"cached at {target})")
    start = time.time()
    torch.manual_seed(rec["seed"])
    model = models.create(p.teacher)
    partial = target.with_suffix(".partial.pt")
    train_classifier(model, batches(pool, p.batch_size, train=True, device=device, seed=rec["seed"]), epochs=p.teacher_epochs,
                     lr=p.teacher_lr, milestones=p.teacher_milestones, device=device, progress=progress, checkpoint=partial,
                     fast=fast_path(p), log=log)
    save_weights(model, target)
    write_json(target.with_suffix(".json"), {"recipe": rec, "train_s": round(time.time() - start, 1)})
    partial.unlink(missing_ok=True)
    return Teacher(model.eval(), "trained", target, round(time.time() - start, 1))


def load_teacher(architecture: str, path: str | os.PathLike, device: torch.device) -> nn.Module:
    """Weights of ``architecture`` from a safetensors file, or a folder holding ``model.safetensors``."""
    path = Path(path)
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"No teacher weights at {file}: pass a .safetensors file, or a folder that holds model.safetensors.")
    model = models.create(architecture)
    try:
        load_weights(model, file, str(device))
    except (RuntimeError, SafetensorError, OSError) as e:
        raise InputError(f"{file} does not hold `{architecture}` weights ({str(e).splitlines()[0]}): pass a teacher of the "
                         "preset's architecture, or pick the preset whose teacher it is.") from None
    return model.to(device).eval()
