"""KeyedTeacher: what a key holder distils from — the box on x̃ = λx + (1−λ)κ, read-only.

An ``nn.Module`` (forward = keyed logits), so it goes wherever a frozen teacher module does:
timm's ``LogitDistillationTask(student, teacher_model=KeyedTeacher(box, key))``, other KD
trainers, ``.to(device)``. Like timm's teacher it stays in eval mode (``train()`` is a no-op)
and computes without a graph, and it carries what it needs to prepare its own inputs: the key,
a non-persistent buffer, so ``state_dict()`` and checkpoints of a training task never hold it
(pickling the teacher itself, ``torch.save(teacher)``, does: it is the key holder's object).
It publishes the box's ``pretrained_cfg`` (mean/std) so timm re-normalises a student's inputs
for it. It does not freeze the box it is given: each call runs the box in eval mode under
inference mode and gives it back its own modes, so the same box can still be evaluated,
trained or wrapped.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import keyed_norm
from .box import SafeBox
from .preprocessing import Normalization
from .errors import InputError, WrongKeyError
from .inputs import check_temperature
from .key import Key
from .proxy import mix
from .restoring import eval_mode


class KeyedTeacher(nn.Module):
    """Frozen teacher view of a :class:`SafeBox` opened with its key.

    ``check_inputs`` checks the *first* batch against the range of normalised [0, 1] pixels,
    which catches the usual mistakes (raw 0–255 values, another normalisation) without costing
    every batch a host sync and two passes over the input (6% of a CNN forward on 2 CPU cores).
    Set it to ``"always"`` to check every batch, or ``False`` for none.
    """

    def __init__(self, box: SafeBox, key: Key, *, check_inputs: bool | Literal["always"] = True, range_margin: float = 0.05):
        if not isinstance(box, SafeBox):
            raise TypeError(
                f"Expected a SafeBox (e.g. `SafeBox.from_pretrained(path)`), but got {type(box).__name__}: "
                "a plain model needs no key; pass it to `distill` directly."
            )
        config = box.box_config
        if not isinstance(key, Key):
            raise TypeError(f"Expected a sdbox.Key (e.g. `Key.load('owner.key')`), but got {type(key).__name__}.")
        if key.shape != config.key_shape:
            raise WrongKeyError(f"This key has shape {key.shape} but the box takes inputs of shape {config.key_shape}: it is not this box's key.")
        if key.fingerprint != config.key_fingerprint:
            raise WrongKeyError(
                f"This key (fingerprint {key.fingerprint[:12]}…) does not open this box (which expects "
                f"{config.key_fingerprint[:12]}…): use the key file saved when the box was wrapped."
            )
        if config.keyed_norm and key.norm is None:
            raise WrongKeyError(
                "This box was wrapped with keyed normalisation, but this key file carries none (a key saved before the wrap "
                "finished, or by sdbox 0.1): use the key file written after the wrap (`box.key.save(...)`, `sdbox wrap --key-out`)."
            )
        if key.norm is not None:
            keyed_norm.check_state(key.norm, box.model)
        if check_inputs not in (True, False, "always"):
            raise ValueError(f"Expected `check_inputs` True, False or 'always', but got {check_inputs!r}.")
        super().__init__()
        self.box = box
        self.lam = key.lam
        device = box.device
        self.register_buffer("key", key.tensor.to(device), persistent=False)  # moves with .to(); never in state_dict
        # The keyed normalisation, swapped into the box for each call; moved to the inputs' device on use.
        self._norm = dict(key.norm) if key.norm is not None else None
        self.check_inputs = check_inputs
        lo, hi = Normalization(config.mean, config.std, "config").bounds()
        self.register_buffer("_lo", (lo - range_margin).view(1, -1, 1, 1).to(device), persistent=False)
        self.register_buffer("_hi", (hi + range_margin).view(1, -1, 1, 1).to(device), persistent=False)
        self.pretrained_cfg = {"input_size": config.input_size, "mean": config.mean, "std": config.std, "num_classes": config.num_classes}
        self.num_classes = config.num_classes
        self.training = False  # its own flag only: the box keeps its modes

    @property
    def device(self) -> torch.device:
        return self.key.device

    def train(self, mode: bool = True) -> "KeyedTeacher":
        """A teacher is always in eval mode: ``train()`` changes neither it nor the box it reads."""
        return self

    def _validate(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise InputError(f"Expected a tensor of images, but got {type(x).__name__}.")
        expected = tuple(self.key.shape)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise InputError(f"Expected inputs of shape (N, {', '.join(map(str, expected))}), but got {tuple(x.shape)}.")
        if not x.is_floating_point():
            raise InputError(
                f"Expected normalised float inputs, but got {x.dtype}: convert with "
                f"`(x.float() / 255 - mean) / std` using mean={list(self.box.box_config.mean)}, std={list(self.box.box_config.std)}."
            )
        x = x.to(self.device, self.key.dtype, non_blocking=True)
        if self.check_inputs:
            # NaN compares false with everything: "not inside" catches it, "below or above" did not.
            if not bool(((x >= self._lo) & (x <= self._hi)).all()):  # a host sync, hence not every batch by default
                if not bool(torch.isfinite(x).all()):
                    raise InputError("Inputs contain NaN or infinite values: check the images and the transforms that made them.")
                raise InputError(
                    "Inputs fall outside the range of [0, 1] pixels normalised with "
                    f"mean={list(self.box.box_config.mean)}, std={list(self.box.box_config.std)} "
                    "(raw 0–255 values, or a different normalisation?): normalise them the way the box expects, "
                    "or pass `check_inputs=False` if your augmentation leaves that range on purpose."
                )
            if self.check_inputs is True:
                self.check_inputs = False  # the first *accepted* batch only: see the class docstring
        return x

    @torch.inference_mode()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw logits of the box on the keyed input x̃."""
        x = self._validate(x)
        with eval_mode(self.box), self._opened():
            return self.box(mix(x, self.key, self.lam))

    def _opened(self):
        """The box's normalisation layers read the key's keyed state (a no-op for a key without one)."""
        if self._norm is None:
            return contextlib.nullcontext()
        if next(iter(self._norm.values())).device != self.device:
            self._norm = {name: t.to(self.device) for name, t in self._norm.items()}
        return keyed_norm.applied(self.box.model, self._norm)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        """The keyed logits (``return_features`` is timm's teacher signature; features are not offered)."""
        if return_features:
            raise NotImplementedError("A KeyedTeacher gives logits only: use logit distillation (timm's LogitDistillationTask).")
        return self.logits(x)

    def soft_labels(self, x: torch.Tensor, T: float = 4.0) -> torch.Tensor:
        """Softmax of the keyed logits at temperature ``T``: the knowledge a student distils."""
        return F.softmax(self.logits(x) / check_temperature(T), dim=1)
