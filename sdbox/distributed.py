"""Wrap under torchrun / DistributedDataParallel: one key, one set of weights, one epoch for all ranks.

Everything here is a no-op in a single process. When the caller has initialised a process group
(``torch.distributed.init_process_group``, as every torchrun or ``accelerate launch`` script does),
wrap must behave as *one* wrap spread over the ranks, not N independent ones: the key is drawn once
on rank 0 and broadcast, each rank reads its own shard of the data, the fidelity guard's figures
are summed over ranks (so every rank keeps the same epoch), and only rank 0 writes files.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

from .errors import InputError
from .inputs import length
from .key import Key


def is_distributed() -> bool:
    """Whether a process group is initialised: the only signal wrap needs (torchrun sets no flag of ours)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes checkpoints, bundles and key files."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def init_from_env(device: str | None) -> str | None:
    """Join the process group torchrun describes (WORLD_SIZE > 1 in the environment), for the CLI;
    a script calls ``init_process_group`` itself. Returns the device this rank should use."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return device


def _comm_device(device: torch.device) -> torch.device:
    """NCCL moves CUDA tensors only; gloo moves CPU tensors."""
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_key(key: Key | None, make: Callable[[], Key], device: torch.device) -> Key:
    """The one key of this wrap on every rank.

    A key passed by the user must be the same on every rank (each rank loads the same key file),
    else the ranks would train towards different keys. Without one, rank 0 alone calls ``make``
    (read an interrupted wrap's checkpoint, or draw from OS randomness) and sends it to the rest:
    a key drawn on every rank would differ on every rank.
    """
    if not is_distributed():
        return key if key is not None else make()
    prints: list[str | None] = [None] * world_size()
    dist.all_gather_object(prints, key.fingerprint if key is not None else None)
    if any(p is not None for p in prints):
        if any(p != prints[0] for p in prints):
            ranks = ", ".join(f"rank {i}: {p[:12] if p else 'none'}" for i, p in enumerate(prints))
            raise ValueError(
                f"Expected the same key on every rank, but got different key fingerprints ({ranks}): load the same key "
                "file on every rank, or pass no key and let rank 0 draw it."
            )
        return key  # type: ignore[return-value]
    made = make() if is_main_process() else None
    shape = [torch.zeros(3, dtype=torch.int64)]
    if made is not None:
        shape = [torch.tensor(made.shape, dtype=torch.int64)]
    comm = _comm_device(device)
    shape_t = shape[0].to(comm)
    dist.broadcast(shape_t, src=0)
    tensor = made.tensor.to(comm) if made is not None else torch.empty(*shape_t.tolist(), device=comm)
    lam = torch.tensor([made.lam if made is not None else 0.0], dtype=torch.float64, device=comm)
    dist.broadcast(tensor, src=0)
    dist.broadcast(lam, src=0)
    return made if made is not None else Key(tensor.cpu(), float(lam.item()))


def broadcast_tensors(tensors: Iterable[torch.Tensor], device: torch.device) -> None:
    """Give every rank rank 0's values of ``tensors`` (in place). Used for the model before the
    frozen copies are made (DDP only syncs the trainable one, and T0's random init differs per
    rank), and for BatchNorm's running statistics after each epoch: DDP sends rank 0's buffers at
    the start of each forward, so after the last one every rank holds its own shard's."""
    if not is_distributed():
        return
    comm = _comm_device(device)
    with torch.no_grad():
        for value in tensors:
            moved = value.to(comm)
            dist.broadcast(moved, src=0)
            if moved is not value:
                value.copy_(moved)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a checkpoint read on rank 0 only: other machines may not see its disk)."""
    if not is_distributed():
        return obj
    box = [obj if is_main_process() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``values`` summed over ranks (a copy; unchanged in a single process)."""
    if not is_distributed():
        return values
    comm = _comm_device(device)
    summed = values.detach().to(comm, torch.float64, copy=True)
    dist.all_reduce(summed)
    return summed.to(values.device, values.dtype)


def average_gradients(parameters: Iterable[torch.Tensor], device: torch.device) -> None:
    """Average the gradients of parameters DistributedDataParallel does not hold (the keyed
    normalisation state) over ranks, in place; a no-op in a single process."""
    if not is_distributed():
        return
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.grad.copy_(all_reduce_sum(parameter.grad, device) / world_size())


def all_reduce_evaluation(result: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """One rank's :func:`~sdbox.evaluate.evaluate` figures on its shard → the figures over all shards.

    Correct counts, image counts and divergence sums are summed, then divided: every rank gets the
    same accuracy and divergence, so the fidelity guard keeps the same epoch everywhere.
    """
    if not is_distributed():
        return result
    images = result["images"]
    figures = [result["acc"] * images / 100.0, images, result.get("divergence", 0.0) * images]
    correct, images, divergence = all_reduce_sum(torch.tensor(figures, dtype=torch.float64), device).tolist()
    reduced = {**result, "acc": 100.0 * correct / images, "images": int(round(images))}
    if "divergence" in result:
        reduced["divergence"] = divergence / images
    return reduced


def _map_style(loader: Iterable, name: str) -> DataLoader:
    if not isinstance(loader, DataLoader) or loader.batch_size is None or length(loader.dataset) is None:
        raise InputError(
            f"Expected `{name}` to be a DataLoader over a map-style dataset (with len and a batch_size) when wrapping under "
            f"torch.distributed, but got {type(loader).__name__}{' over an iterable dataset' if isinstance(loader, DataLoader) else ''}: "
            "each rank must read its own shard, so pass a DataLoader over a map-style dataset (wrap rebuilds it with a "
            "DistributedSampler), or a DataLoader that already uses a DistributedSampler."
        )
    return loader


def _rebuild(loader: DataLoader, dataset: Any, sampler: Any) -> DataLoader:
    return DataLoader(
        dataset, batch_size=loader.batch_size, sampler=sampler, drop_last=loader.drop_last, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False,
    )


def shard_train_loader(loader: Iterable) -> Iterable:
    """This rank's shard of the training data: ``batch_size`` stays per rank, so the global batch is N×.

    A loader that shuffled keeps shuffling (the same permutation on all ranks, reseeded by
    :func:`set_epoch`); one with a DistributedSampler already is used as it is.
    """
    if not is_distributed():
        return loader
    if isinstance(loader, DataLoader) and isinstance(loader.sampler, DistributedSampler):
        return loader
    loader = _map_style(loader, "loader")
    sampler = DistributedSampler(loader.dataset, num_replicas=world_size(), rank=rank(),
                                 shuffle=isinstance(loader.sampler, RandomSampler), drop_last=loader.drop_last)
    return _rebuild(loader, loader.dataset, sampler)


def shard_eval_loader(loader: Iterable) -> Iterable:
    """This rank's slice of the held-out data (image i goes to rank i mod N), without the padding
    a DistributedSampler adds: a duplicated image would be counted twice by the guard."""
    if not is_distributed():
        return loader
    loader = _map_style(loader, "val_loader")
    n = len(loader.dataset)
    if n < world_size():
        raise InputError(f"Expected at least one held-out image per rank, but `val_loader` holds {n} for {world_size()} ranks: pass a larger `val_loader`.")
    return _rebuild(loader, Subset(loader.dataset, range(rank(), n, world_size())), None)


def set_epoch(loader: Iterable, epoch: int) -> None:
    """Reseed a DistributedSampler's shuffle: without it every epoch repeats the first one's order."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
