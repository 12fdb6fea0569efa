"""The SDB loss terms (Ye et al., AAAI 2022, Eq. 4–11), one small pure function each.

Notation: ``z`` = T⊖(x) and ``z_proxy`` = T⊖(x̃) are the trainable box's logits on the clean and
the proxy stream; ``z_teacher`` = T(x) comes from the frozen original model; ``z_teacher_proxy``
= T(x̃) and ``z_random_proxy`` = T0(x̃) from the frozen original and the frozen random copy.
Every function returns a scalar tensor; none syncs with the host.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 4.0) -> torch.Tensor:
    """Hinton KD: ``T² · KL(σ(z_t/T) ‖ σ(z_s/T))``, averaged over the batch.

    The T² factor keeps the gradient scale independent of T (Hinton et al., 2015); it is the
    ``L_kd`` of the paper's Eq. 2/3 and of Nasty Teacher's adversarial term.
    """
    log_p_student = F.log_softmax(student_logits / T, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / T, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (T * T)


def classification_loss(z: torch.Tensor, z_proxy: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Key embedding, Eq. 6: ``L_cls = CE(T⊖(x), y) + CE(T⊖(x̃), y)``.

    Both streams must predict the label, so the box stays a working classifier on x (fidelity)
    and learns to read x̃ (the key holder's stream). The official code weighs the clean CE twice;
    we follow the paper.
    """
    return F.cross_entropy(z, y) + F.cross_entropy(z_proxy, y)


def disturbance_loss(
    z: torch.Tensor,
    z_proxy: torch.Tensor | None,
    z_teacher: torch.Tensor,
    omega: float,
    t_dis: float = 4.0,
) -> torch.Tensor:
    """Knowledge disturbance, Eq. 7, on the clean stream only.

    ``L_dis = −ω·L_kd(z_T(x)/T_dis, z/T_dis) + ω·L_kd(z_proxy.detach(), z)``

    The first term is Nasty Teacher's: push the clean soft labels *away* from the original
    model's at temperature T_dis, so a student distilled from x learns a misleading shape. The
    second pulls the clean stream toward the (detached) proxy stream at T = 1, which keeps the
    clean top-1 on the right class while the tail is scrambled. ``z_proxy=None`` gives plain
    Nasty Teacher (no key stream). Both terms carry the T² scale of :func:`kd_loss`.
    """
    loss = -omega * kd_loss(z, z_teacher, t_dis)
    if z_proxy is not None:
        loss = loss + omega * kd_loss(z, z_proxy.detach(), 1.0)
    return loss


def confusion_loss(z: torch.Tensor, y: torch.Tensor, omega: float, t_dis: float = 4.0, share: float = 0.4) -> torch.Tensor:
    """A bounded alternative to Eq. 7's push (not in the paper): pull the clean stream at T_dis onto
    a *confusing* target, ``ω·T²·KL(target ‖ σ(z/T_dis))``.

    The target gives the true class ``1 − share − 0.1``, one fixed wrong class per true class
    (the next one, ``(y + 1) mod C``) ``share``, and spreads 0.1 over the rest. Its top-1 stays
    right (at T = 1 the gap widens T_dis-fold), while a student matching it at T_dis learns that
    every class looks like its neighbour. Unlike −KL it has a minimum, so a large ω cannot run away.
    """
    c = z.shape[1]
    rest = 0.1 / max(c - 2, 1)
    target = torch.full_like(z, rest)
    target.scatter_(1, y.view(-1, 1), 1.0 - share - 0.1)
    target.scatter_(1, ((y + 1) % c).view(-1, 1), share)
    log_p = F.log_softmax(z / t_dis, dim=1)
    return omega * F.kl_div(log_p, target, reduction="batchmean") * (t_dis * t_dis)


def decoy_target(z_teacher: torch.Tensor, decoy_scores: torch.Tensor, share: float) -> torch.Tensor:
    """The clean stream's target under the ``decoy`` disturbance (not in the paper): probabilities.

    ``1 − share`` stays on the original model's top-1, so the box answers as the original does;
    ``share`` is spread over the other classes by ``softmax(2·standardise(decoy_scores))``,
    scores that are a deterministic function of the image with nothing to do with its class (a
    random copy T0's logits, or a random map of its pooled pixels). A student that matches these
    soft labels learns the decoy's ranking of the wrong classes — learnable, so it fits it, and
    misleading, so it generalises worse than from labels alone (benchmarks/poison_ceiling.py).
    """
    top = z_teacher.argmax(dim=1, keepdim=True)
    is_top = torch.zeros_like(z_teacher, dtype=torch.bool).scatter_(1, top, True)
    scores = (decoy_scores - decoy_scores.mean(1, keepdim=True)) / (decoy_scores.std(1, keepdim=True) + 1e-6)
    decoy = F.softmax((2 * scores).masked_fill(is_top, float("-inf")), dim=1)
    return share * decoy + (1 - share) * is_top.to(decoy.dtype)


def decoy_loss(z: torch.Tensor, target: torch.Tensor, omega: float, t_dis: float = 4.0) -> torch.Tensor:
    """``ω·[KL(target ‖ σ(z)) + T_dis²·KL(target_T ‖ σ(z/T_dis))]``: pull a stream onto :func:`decoy_target`.

    ``target_T`` is the target's own softening, ``softmax(log(target)/T_dis)``. The T = 1 term
    puts the decoy in the sharpest soft labels a student can ask for; the T_dis term makes the
    box follow it in the small probabilities too, which T = 1 barely weighs and a student at
    T_dis reads (without it a box kept the original's ranking of its tail: docs/benchmark.md).
    Bounded below (0 at the target), unlike Eq. 7's push.
    """
    log_target = target.clamp_min(1e-8).log()
    sharp = F.kl_div(F.log_softmax(z, dim=1), log_target, reduction="batchmean", log_target=True)
    soft = F.kl_div(F.log_softmax(z / t_dis, dim=1), F.log_softmax(log_target / t_dis, dim=1), reduction="batchmean",
                    log_target=True)
    return omega * (sharp + t_dis * t_dis * soft)


def preservation_loss(z_proxy: torch.Tensor, z_teacher: torch.Tensor, t_dis: float = 4.0) -> torch.Tensor:
    """Knowledge preservation, Eq. 9: ``L_main = ‖σ(z̃/T_dis) − σ(z_T(x)/T_dis)‖²``.

    Keeps the proxy stream's soft labels on the original model's, so the key holder distils what
    the owner's model knew. Squared L2 summed over classes, averaged over the batch.
    """
    diff = F.softmax(z_proxy / t_dis, dim=1) - F.softmax(z_teacher / t_dis, dim=1)
    return diff.pow(2).sum(dim=1).mean()


def augmentation_loss(
    z_proxy: torch.Tensor, z_teacher_proxy: torch.Tensor, z_random_proxy: torch.Tensor
) -> torch.Tensor:
    """Knowledge augmentation in its T_aug → ∞ form, Eq. 11.

    ``L_aug = −½‖z_T(x̃) − z̃‖² + ½‖z_T0(x̃) − z̃‖²`` (summed over classes, batch mean).

    Expanding the squares, the z̃² terms cancel: ``L_aug = z̃·(z_T(x̃) − z_T0(x̃)) + const``, which
    is linear in z̃ and so *unbounded below*: left alone it drives the proxy logits to infinity
    along ``z_T0 − z_T``. It only makes sense as a small nudge (``η`` ≪ 1) under ``L_main`` and
    ``L_cls``, which bound the softmax outputs. We keep the paper's quadratic form for the value
    (it equals the paper's figures) — its gradient is that of the linear form.
    """
    to_original = (z_teacher_proxy - z_proxy).pow(2).sum(dim=1)
    to_random = (z_random_proxy - z_proxy).pow(2).sum(dim=1)
    return (0.5 * (to_random - to_original)).mean()
