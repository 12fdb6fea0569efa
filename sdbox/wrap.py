"""The SDB fine-tune: turn a trained classifier T into a box T⊖ (paper Eq. 4).

:func:`fine_tune` runs the epochs of :func:`~sdbox.step.sdb_step`, the fidelity guard that keeps
a user's model useful, checkpoint/resume and the non-finite-loss check.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn as nn

from . import checkpoint, distributed, keyed_norm
from .errors import CheckpointError, FidelityError, InputError, NonFiniteLossError, ResumeWarning
from .evaluate import evaluate, tail_rank_correlation
from .losses import decoy_target
from .fastpath import FastPath
from .frozen import FrozenModels, is_channels_last
from .inputs import batch_of_one_message, check_batch_of_one, check_labels, checked_batches, finite_number, has_batchnorm, length
from .key import Key
from .progress import progress_bar
from .restoring import eval_mode, modes_kept
from .settings import SDBSettings
from .step import sdb_step


_NONFINITE_FIXES = {
    "dis": "lower `omega` (the disturbance term pushes soft labels apart without bound)",
    "kp_aug": "lower `eta` or set it to 0 (L_aug is unbounded below)",
    "kp_main": "lower `lr`",
    "wrong": "lower `wrong_keys`, `omega` or `lr`",
    "cls": "lower `lr`, and check the inputs for NaN/inf values",
    "total": "lower `lr`",
}


_RETRY = ("Your model keeps its original weights; wrap it again with the new value (and an empty `checkpoint_dir`: "
          "a checkpoint resumes only the same model and arguments).")


@dataclass
class WrapResult:
    """What the fine-tune measured: the fidelity figures, the chosen epoch and the curves.

    ``kept_checkpoint``: the checkpoint file left on disk (it holds the key and the original
    model: guard it like the key file), or None when there was none or it was deleted.
    ``keyed_norm``: the chosen epoch's keyed normalisation state (secret: it goes into the key,
    never into ``to_dict``), or None when the wrap trained none.
    """

    clean_acc_before: float
    clean_acc_after: float
    keyed_acc_after: float
    divergence_after: float
    best_epoch: int
    epochs: list[dict[str, float]]
    curves: list[dict[str, float]]
    kept_checkpoint: str | None = None
    images: int = 0  # held-out images the fidelity figures were measured on
    keyed_norm: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The public figures (JSON-ready); never the keyed normalisation state."""
        return {k: v for k, v in asdict(self).items() if k != "keyed_norm"}


def fine_tune(
    model: nn.Module,
    loader: Iterable,
    val_loader: Iterable,
    key: Key,
    settings: SDBSettings,
    *,
    num_classes: int,
    epochs: int,
    lr: float,
    max_accuracy_drop: float,
    device: torch.device,
    checkpoint_dir: str | os.PathLike | None = None,
    keep_checkpoint: bool = False,
    progress: bool = True,
    log_every: int = 20,
    fast: FastPath | None = None,
) -> WrapResult:
    """Fine-tune ``model`` in place into an SDB box; keep the best epoch that passes the guard.

    "Best", among the epochs within ``max_accuracy_drop`` points of the original's clean accuracy
    (and with keyed accuracy within the same margin), is the epoch whose clean tail is closest to
    its decoy target (``target_tail_corr``) when the disturbance has one, else the one whose clean
    soft labels sit furthest from the original's (the largest divergence). The divergence from
    the original plateaus within a few percent after the first epochs, so it picked early epochs
    still recovering from the disturbance (clean 2–3 points under the last epochs on validation,
    the keyed stream further from the original), while the target's reach kept rising to the end
    (docs/benchmark.md, "Round 5"). ``fast`` picks
    bf16 autocast, channels_last and torch.compile (default: the first two on CUDA only).

    On success the model holds the chosen epoch's weights; on any failure (FidelityError,
    NonFiniteLossError, Ctrl-C) it gets its original weights back, so a retry starts from the
    same model. Either way it keeps its train/eval mode and memory layout. The checkpoint in
    ``checkpoint_dir`` is deleted after success unless ``keep_checkpoint``.

    Under torch.distributed (a process group initialised, e.g. by torchrun) this is one wrap over
    all ranks: the trainable model runs in DistributedDataParallel, each rank reads its shard of
    ``loader`` and ``val_loader`` (``batch_size`` per rank), the guard's figures are summed over
    ranks, and only rank 0 writes the checkpoint. ``key`` must be the same on every rank
    (:func:`~sdbox.distributed.broadcast_key`).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"Expected `epochs` to be an integer ≥ 1, but got {epochs!r}.")
    if not finite_number(lr) or lr <= 0:
        raise ValueError(f"Expected `lr` to be a finite number > 0, but got {lr!r}.")
    fast = (fast or FastPath()).resolve(device)
    came_channels_last = is_channels_last(model)
    progress = progress and distributed.is_main_process()
    distributed.broadcast_tensors(model.state_dict().values(), device)  # one starting point, so one identity and one T for all ranks
    ckpt = checkpoint.checkpoint_path(checkpoint_dir) if checkpoint_dir is not None else None
    # The identity reads the whole loader, not a shard: a checkpoint resumes on any number of ranks.
    identity = checkpoint.belongs_to(model, settings, lr, epochs, loader) if ckpt is not None else {}
    made_folder = ckpt is not None and distributed.broadcast_object(not ckpt.parent.exists())
    loader, val_loader = distributed.shard_train_loader(loader), distributed.shard_eval_loader(val_loader)
    if distributed.is_distributed():
        check_batch_of_one(loader, model)
    with fast.running_on(device), modes_kept(model):
        fast.prepare(model.to(device))
        frozen = FrozenModels.from_model(model, with_random=settings.needs_random_copy)
        if frozen.random is not None:
            distributed.broadcast_tensors(frozen.random.state_dict().values(), device)
        # The keyed stream's own normalisation, starting as a copy of the model's (after the frozen
        # copies, which must not carry it).
        keyed = (keyed_norm.TrainableNormState(model).to(device)
                 if settings.keyed_norm and settings.key_embedding and keyed_norm.has_norm_layers(model) else None)
        if keyed is not None:
            distributed.broadcast_tensors(keyed.state().values(), device)
        try:
            state = _train(model, frozen, keyed, loader, val_loader, key, settings, num_classes=num_classes, epochs=epochs, lr=lr,
                           max_accuracy_drop=max_accuracy_drop, device=device, ckpt=ckpt, identity=identity,
                           progress=progress, log_every=log_every, fast=fast)
            model.load_state_dict(state.best_weights)
        except BaseException:
            model.load_state_dict(frozen.original.state_dict())
            raise
        finally:
            if fast.channels_last and not came_channels_last:  # hand the model back in the layout it came in
                model.to(memory_format=torch.contiguous_format)
    kept = None
    if ckpt is not None:
        if keep_checkpoint:
            kept = str(ckpt)
        elif distributed.is_main_process():
            checkpoint.remove(ckpt, remove_folder=made_folder)
        distributed.barrier()
    chosen = state.epochs[state.best_epoch - 1]
    return WrapResult(
        clean_acc_before=state.clean_acc_before,
        clean_acc_after=chosen["clean_acc"],
        keyed_acc_after=chosen["keyed_acc"],
        divergence_after=chosen["divergence"],
        best_epoch=state.best_epoch,
        epochs=state.epochs,
        curves=state.curves,
        kept_checkpoint=kept,
        images=state.val_images,
        keyed_norm=state.best_norm,
    )


@dataclass
class _TrainState:
    epoch: int
    best_epoch: int
    best_score: float
    epochs: list[dict[str, float]]
    curves: list[dict[str, float]]
    best_weights: dict[str, torch.Tensor] | None
    clean_acc_before: float = float("nan")
    val_images: int = 0
    best_norm: dict[str, torch.Tensor] | None = None


def _train(
    model: nn.Module, frozen: FrozenModels, keyed: keyed_norm.TrainableNormState | None, loader: Iterable, val_loader: Iterable, key: Key, settings: SDBSettings, *,
    num_classes: int, epochs: int, lr: float, max_accuracy_drop: float, device: torch.device, ckpt: Path | None,
    identity: dict[str, Any], progress: bool, log_every: int, fast: FastPath,
) -> _TrainState:
    """The epochs, resumed from ``ckpt`` when it exists; raises FidelityError if none qualifies."""
    fast.compiled(model)  # after the frozen copies: they run under inference_mode, uncompiled
    trainable = _data_parallel(model, device)
    key_tensor = key.tensor.to(device)
    params = [*model.parameters(), *(keyed.parameters() if keyed is not None else ())]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    norm_state = keyed.state() if keyed is not None else None
    steps_per_epoch = length(loader)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * (steps_per_epoch or 1))
    state = _TrainState(epoch=0, best_epoch=-1, best_score=-math.inf, epochs=[], curves=[], best_weights=None)
    needs_pairs = has_batchnorm(model)

    payload = _read_checkpoint(ckpt) if ckpt is not None else None
    if payload is not None:
        _resume(ckpt, payload, model, frozen, keyed, optimizer, scheduler, state, key, identity, steps_per_epoch or 1, epochs)
        if state.best_epoch > 0:  # scored again by this sdbox's rule: a checkpoint from before it stored another score
            state.best_score = _score(state.epochs[state.best_epoch - 1], settings)
    else:
        base = _evaluate(frozen.original, val_loader, device=device)
        state.clean_acc_before, state.val_images = base["acc"], base["images"]

    for epoch in range(state.epoch, epochs):
        model.train()
        distributed.set_epoch(loader, epoch)
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        bar = progress_bar(checked_batches(loader), total=steps_per_epoch, desc=f"wrap epoch {epoch + 1}/{epochs}", enabled=progress)
        for x, y in bar:
            if needs_pairs and len(x) < 2:
                raise InputError(batch_of_one_message())
            check_labels(y, num_classes)
            x, y = fast.inputs(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            with fast.autocast(device):
                _, losses = sdb_step(trainable, frozen, x, y, key_tensor, settings, norm_state)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            if keyed is not None:
                distributed.average_gradients(keyed.parameters(), device)  # DDP reduces the model's only
            optimizer.step()
            if steps_per_epoch is not None:
                scheduler.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.detach()
            steps += 1
            if steps % log_every == 0:
                means = _read_means(sums, steps, device)
                state.curves.append({"epoch": epoch + steps / (steps_per_epoch or steps), **means})
                bar.set_postfix({k: f"{v:.3f}" for k, v in means.items()})
        if steps == 0:
            raise InputError(f"Expected `loader` to yield batches in every epoch, but epoch {epoch + 1} got none: pass a re-iterable loader.")
        if steps_per_epoch is None:
            scheduler.step()
        means = _read_means(sums, steps, device)
        distributed.broadcast_tensors(model.buffers(), device)  # one set of BatchNorm statistics to evaluate and keep
        if keyed is not None:
            distributed.broadcast_tensors(keyed.buffers(), device)
        clean = _evaluate(model, val_loader, reference=frozen.original, t_dis=settings.t_dis, device=device)
        opened = _evaluate(model, val_loader, key=key_tensor, lam=settings.lam, norm=norm_state, reference=frozen.original,
                           t_dis=settings.t_dis, device=device)
        record = {"epoch": epoch + 1, **{f"loss_{k}": v for k, v in means.items()},
                  "clean_acc": clean["acc"], "keyed_acc": opened["acc"], "divergence": clean["divergence"],
                  "keyed_divergence": opened["divergence"]}
        if settings.decoys:
            record.update(_target_reach(model, frozen, val_loader, key_tensor, settings, device))
        state.epochs.append(record)
        floor = state.clean_acc_before - max_accuracy_drop
        # Without a key stream (plain Nasty Teacher) nobody reads x̃: only clean accuracy is guarded.
        keyed_ok = opened["acc"] >= floor or not settings.key_embedding
        score = _score(record, settings)
        if clean["acc"] >= floor and keyed_ok and score > state.best_score:
            state.best_epoch, state.best_score = epoch + 1, score
            state.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            state.best_norm = keyed.snapshot() if keyed is not None else None
        state.epoch = epoch + 1
        if ckpt is not None:
            if distributed.is_main_process():
                _save_checkpoint(ckpt, model, frozen, keyed, optimizer, scheduler, state, key, identity)
            distributed.barrier()  # no rank runs ahead of a checkpoint that a relaunch would resume from

    if state.best_weights is None:
        best = max(state.epochs, key=lambda r: min(r["clean_acc"], r["keyed_acc"]) if settings.key_embedding else r["clean_acc"])
        raise FidelityError(
            f"No epoch kept accuracy within {max_accuracy_drop} points of the original "
            f"({state.clean_acc_before:.2f}%): the closest was epoch {best['epoch']} with clean "
            f"{best['clean_acc']:.2f}% and keyed {best['keyed_acc']:.2f}%. Lower `omega` "
            f"(now {settings.omega}) or `lr` (now {lr}), train more `epochs`, raise `lam` (now {settings.lam}; "
            "0.9 lets the keyed stream learn faster, at the cost of a key that random keys imitate more easily), "
            "or allow a larger `max_accuracy_drop`. Your model keeps its original weights; retry with an empty "
            "`checkpoint_dir` if you change any of these.",
            accuracy_before=state.clean_acc_before, closest=best,
        )
    return state


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel under torch.distributed, else ``model`` itself.

    Only the trainable model: the frozen T and T0 take no gradients, so DDP would only add
    syncs. :func:`sdb_step` calls the DDP module once per stream (clean, proxy, wrong key) before one
    backward, rather than one forward over the concatenated streams, because each stream must
    keep its own BatchNorm batch statistics. That is correct without ``static_graph``: every
    stream uses every parameter, and autograd sums a parameter's gradients from all streams
    before its one AccumulateGrad hook fires, so DDP's reducer sees each parameter ready once,
    with the full gradient, and averages it over ranks. Checkpoints and evaluation use the
    unwrapped ``model`` (the same parameters), so a checkpoint is the same on any rank count.
    """
    if not distributed.is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def _evaluate(model: nn.Module, loader: Iterable, *, device: torch.device, **kwargs: Any) -> dict[str, Any]:
    """:func:`~sdbox.evaluate.evaluate` on this rank's shard, summed over ranks."""
    return distributed.all_reduce_evaluation(evaluate(model, loader, device=device, **kwargs), device)


def _score(record: dict[str, Any], settings: SDBSettings) -> float:
    """What the guard maximises among qualifying epochs: closeness to the decoy target, else divergence."""
    if settings.decoys:
        return record.get("target_tail_corr", -math.inf)  # an epoch recorded before the reach was measured never wins
    return record["divergence"]


@torch.inference_mode()
def _target_reach(model: nn.Module, frozen: FrozenModels, loader: Iterable, key: torch.Tensor, settings: SDBSettings,
                  device: torch.device) -> dict[str, float]:
    """How far the clean stream has reached its decoy target (issue 18, item 3), over all ranks.

    ``target_tail_corr``: the rank correlation of the box's tail with the target's (1: the tail
    a student reads is the decoy's; the original's own tail scores near 0). ``target_top2``: how
    often the box's second class is the target's. The divergence alone cannot say this: a box can
    move far from the original without moving toward anything a student is misled by.
    """
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    with eval_mode(model):
        for x, _ in loader:
            x = x.to(device, non_blocking=True)
            z_teacher = frozen.run("original", x).float()
            target = decoy_target(z_teacher, frozen.decoy_scores(x, key, settings.decoy_source).float(), settings.decoy_share)
            z = model(x).float()
            second = lambda scores: scores.topk(2, dim=1).indices[:, 1]  # noqa: E731
            sums += torch.tensor([tail_rank_correlation(z, target.log()) * len(x), (second(z) == second(target)).sum().item(), len(x)],
                                 dtype=torch.float64, device=device)
    corr, top2, images = distributed.all_reduce_sum(sums, device).tolist()
    return {"target_tail_corr": corr / images, "target_top2": top2 / images}


def _read_means(sums: dict[str, torch.Tensor], steps: int, device: torch.device) -> dict[str, float]:
    """One host sync per log interval; raise on a non-finite term, naming it and its fix.

    Under torch.distributed the means are over all ranks, so a non-finite loss on one rank
    stops every rank at the same step instead of leaving the others waiting in a collective.
    """
    values = torch.stack([v.float() for v in sums.values()])
    values = (distributed.all_reduce_sum(values, device) / distributed.world_size()).cpu() / steps
    means = dict(zip(sums, values.tolist()))
    for name, value in means.items():
        if name != "total" and not math.isfinite(value):
            raise NonFiniteLossError(
                f"The loss term `{name}` became {value} during wrapping: {_NONFINITE_FIXES.get(name, 'lower `lr`')}. "
                f"{_RETRY}"
            )
    if not math.isfinite(means["total"]):
        raise NonFiniteLossError(f"The total loss became {means['total']}: {_NONFINITE_FIXES['total']}. {_RETRY}")
    return means


def _save_checkpoint(path: Path, model, frozen, keyed, optimizer, scheduler, state: _TrainState, key: Key, identity: dict[str, Any]) -> None:
    checkpoint.save(path, {
        "model": model.state_dict(),
        "keyed_norm": keyed.snapshot() if keyed is not None else None,
        "original": frozen.original.state_dict(),
        "random": frozen.random.state_dict() if frozen.random is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": {k: v for k, v in vars(state).items()},
        "key": {"tensor": key.tensor, "lam": key.lam},
        "belongs_to": identity,
    })


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None: read by rank 0 and sent to all ranks (other
    machines may not see its disk); a damaged one raises on every rank, not only on rank 0."""
    found: tuple[dict[str, Any] | None, BaseException | None] = (None, None)
    if distributed.is_main_process() and path.exists():
        try:
            found = (checkpoint.load(path), None)
        except CheckpointError as e:
            found = (None, e)
    payload, error = distributed.broadcast_object(found)
    if error is not None:
        raise error
    return payload


def _resume(path: Path, payload: dict[str, Any], model, frozen, keyed, optimizer, scheduler, state: _TrainState, key: Key,
            identity: dict[str, Any], steps_per_epoch: int, epochs: int) -> None:
    checkpoint.check_matches(payload, path, key, identity)
    try:
        model.load_state_dict(payload["model"])
        frozen.original.load_state_dict(payload["original"])
        if frozen.random is not None and payload["random"] is not None:
            frozen.random.load_state_dict(payload["random"])
        if keyed is not None:
            keyed.load(payload["keyed_norm"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} does not fit this model ({str(e).splitlines()[0][:200]}): point `checkpoint_dir` at an empty folder to start over.") from None
    frozen.folded.clear()  # folded copies hold the old weights
    for k, v in payload["state"].items():
        setattr(state, k, v)
    finished = " It had finished, so nothing is trained again." if state.epoch >= epochs else ""
    warnings.warn(f"Resuming the wrap checkpointed in {path.parent}: {state.epoch} of {epochs} epochs done, with the key "
                  f"{key.fingerprint[:12]}… it started with.{finished} Point `checkpoint_dir` at an empty folder to start over.",
                  ResumeWarning, stacklevel=4)
    _rescale_schedule(scheduler, state.epoch * steps_per_epoch, epochs * steps_per_epoch)


def _rescale_schedule(scheduler, done: int, total: int) -> None:
    """Put the cosine schedule at step ``done`` of ``total``: on another number of ranks an
    epoch has another number of steps, and the lr must follow the epochs, not the step count
    of the run that wrote the checkpoint. A no-op when the rank count is unchanged."""
    if scheduler.T_max == total and scheduler.last_epoch == done:
        return
    scheduler.T_max, scheduler.last_epoch = total, done
    lrs = [scheduler.eta_min + (base - scheduler.eta_min) * (1 + math.cos(math.pi * done / total)) / 2 for base in scheduler.base_lrs]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs


def saved_key(checkpoint_dir: str | os.PathLike) -> Key | None:
    """The key an interrupted wrap in ``checkpoint_dir`` was using, so a resume needs no key file."""
    path = checkpoint.checkpoint_path(checkpoint_dir)
    if not path.exists():
        return None
    return checkpoint.stored_key(checkpoint.load(path), path)
