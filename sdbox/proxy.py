"""The proxy input x̃ = λx + (1−λ)κ (SDB paper, Eq. 5): one function for training and teaching.

Both sides of the box (the owner's fine-tune and the key holder's ``KeyedTeacher``) call this, so
they can never disagree on how the key is applied.
"""

from __future__ import annotations

import torch


def mix(x: torch.Tensor, key: torch.Tensor, lam: float) -> torch.Tensor:
    """Return ``λ·x + (1−λ)·κ`` for a batch ``x`` (N, C, H, W) and one key ``κ`` (C, H, W).

    ``torch.lerp(κ, x, λ) = κ + λ(x − κ)`` is the same sum in one fused kernel; the key broadcasts
    over the batch, so it is never copied per sample. The key must already sit on ``x``'s device
    and dtype (``KeyedTeacher`` and ``wrap`` move it once, not every batch).
    """
    return torch.lerp(key, x, lam)
