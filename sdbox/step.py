"""One SDB training step (paper Eq. 4): the streams through the box and every named loss term.

:func:`sdb_step` returns the clean logits and a dict of the terms, so each can be logged and
plotted; :func:`wrong_key` draws the wrong keys the uniqueness stream reads.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import keyed_norm
from .frozen import FrozenModels
from .losses import (augmentation_loss, classification_loss, confusion_loss, decoy_loss, decoy_target, disturbance_loss, kd_loss,
                     preservation_loss)
from .proxy import mix
from .settings import SDBSettings


def sdb_step(
    model: nn.Module,
    frozen: FrozenModels,
    x: torch.Tensor,
    y: torch.Tensor,
    key: torch.Tensor | None,
    settings: SDBSettings,
    norm_state: keyed_norm.NormState | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward of L_all = L_cls + L_dis + L_kp (+ the wrong-key stream). Returns (clean logits, {term: value}).

    ``norm_state``: the keyed normalisation state (:mod:`sdbox.keyed_norm`) the proxy stream
    runs with; the clean and wrong-key streams keep the model's own, which is what the public
    and any attacker holding a fresh key read. ``losses["total"]`` is what to backpropagate; the
    other entries are for logging (kept on device: reading them every step would stall the accelerator).
    """
    s = settings
    need_proxy = s.key_embedding and key is not None
    x_proxy = mix(x, key, s.lam) if need_proxy else None
    need_teacher_proxy = need_proxy and s.preservation and s.eta > 0 and frozen.random is not None
    with torch.inference_mode():
        # One batched pass of the frozen T over [x; x̃] where L_aug needs T(x̃): exact, since
        # eval-mode BatchNorm uses fixed statistics.
        if need_teacher_proxy:
            both = frozen.run("original", torch.cat([x, x_proxy]))
            z_teacher, z_teacher_proxy = both[: len(x)], both[len(x) :]
            z_random_proxy = frozen.run("random", x_proxy)
        elif s.disturbance or (need_proxy and s.preservation):
            z_teacher = frozen.run("original", x)
        # The decoy target depends on x alone: every stream that must look clean (x, wrong keys) shares it.
        target = decoy_target(z_teacher.float(), frozen.decoy_scores(x, key, s.decoy_source).float(), s.decoy_share) if s.decoys else None
    # The trainable streams run separately so each keeps its own BatchNorm batch statistics.
    # Losses are taken in fp32 (``.float()`` is free when the logits already are).
    z = model(x).float()
    losses: dict[str, torch.Tensor] = {}
    if need_proxy:
        inner = getattr(model, "module", model)  # the model itself under DistributedDataParallel
        with keyed_norm.applied(inner, norm_state) if norm_state is not None else contextlib.nullcontext():
            z_proxy = model(x_proxy).float()
        losses["cls"] = classification_loss(z, z_proxy, y)
    else:
        z_proxy = None
        losses["cls"] = F.cross_entropy(z, y)

    def disturb(z_stream: torch.Tensor) -> torch.Tensor:
        if s.disturbance_form == "confuse":
            return confusion_loss(z_stream, y, s.omega, s.t_dis)
        if s.disturbance_form == "decoy":
            return decoy_loss(z_stream, target.clone(), s.omega, s.t_dis)
        return disturbance_loss(z_stream, z_proxy, z_teacher.float().clone(), s.omega, s.t_dis)

    if s.disturbance and s.omega > 0:
        losses["dis"] = disturb(z)
    if need_proxy and s.preservation:
        main = kd_loss if s.main_loss == "kl" else preservation_loss
        losses["kp_main"] = main(z_proxy, z_teacher.float().clone(), s.t_dis)
        if need_teacher_proxy:
            losses["kp_aug"] = augmentation_loss(z_proxy, z_teacher_proxy.float().clone(), z_random_proxy.float().clone())
    if need_proxy and s.wrong_keys > 0:
        # A wrong key's stream must look like the clean stream: right top-1, disturbed tail.
        z_wrong = model(mix(x, wrong_key(key), s.lam)).float()
        losses["wrong"] = F.cross_entropy(z_wrong, y)
        if s.disturbance and s.omega > 0:
            losses["wrong"] = losses["wrong"] + disturb(z_wrong)
    total = (losses["cls"] + losses.get("dis", 0.0) + losses.get("kp_main", 0.0)
             + s.eta * losses.get("kp_aug", 0.0) + s.wrong_keys * losses.get("wrong", 0.0))
    losses["total"] = total
    return z, losses


def wrong_key(key: torch.Tensor) -> torch.Tensor:
    """A wrong key from the real key's family: its values shuffled within each channel.

    For a tiled key (see ``Key.generate(tile=)``) the shuffle happens inside one tile, which is
    then repeated: the result is a fresh key of the same family. Fresh every step, so the box
    learns to reject the *family* of keys an attacker would draw, not one wrong key; same
    per-channel values, so it cannot be told apart by its histogram.
    """
    c, h, w = key.shape
    th, tw = _period(key, 1), _period(key, 2)
    flat = key[:, :th, :tw].reshape(c, -1)
    order = torch.argsort(torch.rand(flat.shape, device=key.device), dim=1)
    return flat.gather(1, order).view(c, th, tw).repeat(1, h // th, w // tw)


def _period(key: torch.Tensor, dim: int) -> int:
    """The smallest period of ``key`` along ``dim`` that divides its size (the size itself if none)."""
    n = key.shape[dim]
    return next(p for p in range(1, n + 1) if n % p == 0 and torch.equal(key, key.roll(p, dims=dim)))
