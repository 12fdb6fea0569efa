"""Wrap under torch.distributed: 2 CPU processes on gloo, spawned by torch.multiprocessing.

Each job runs in both ranks and leaves what it measured in ``out/<rank>.pt``; the tests compare
the ranks with each other and with a single-process wrap.
"""

from __future__ import annotations

import copy
import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from sdbox import SafeBox, SDBSettings
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD
from sdbox.errors import InputError
from sdbox.key import Key

NORM = dict(mean=CIFAR10_MEAN, std=CIFAR10_STD)
PER_RANK_BATCH = 16


class PlainNet(nn.Module):
    """A tiny conv + linear model *without* BatchNorm: DDP averages gradients, so a 2-rank step over
    a global batch equals a 1-rank step over the same batch only if the loss is a per-sample mean;
    BatchNorm's batch statistics (per shard vs per global batch) would break that equality."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8 * 16 * 16, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, job, out: Path, args: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        torch.save(job(rank, **args), out / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


def _spawn(job, tmp: Path, world: int = 2, **args) -> list[dict]:
    out = tmp / f"out-{job.__name__}-{len(list(tmp.glob('out-*')))}"
    out.mkdir(parents=True)
    mp.spawn(_worker, args=(world, _free_port(), job, out, args), nprocs=world, join=True)
    return [torch.load(out / f"{r}.pt", weights_only=False) for r in range(world)]


def _wrap_plain(state: dict, data: TensorDataset, val: TensorDataset, key: Key | None, batch_size: int, **kwargs) -> SafeBox:
    """PlainNet wrapped without T0 (η = 0: T0's random init is rank 0's under DDP, the process's
    own otherwise). lr 0.01: at 0.05 the unbounded disturbance term amplifies float rounding
    (the 1- and 2-rank weights were 1e-4 apart after 6 steps, while one step's gradients agree to ~1e-7)."""
    model = PlainNet()
    model.load_state_dict(state)
    return SafeBox.wrap(
        model, DataLoader(data, batch_size=batch_size), val_loader=DataLoader(val, batch_size=50), key=key,
        settings=SDBSettings(eta=0.0, omega=0.1, disturbance_form="push"),  # the push needs no T0
        lr=0.01, max_accuracy_drop=100, device="cpu", progress=False, **NORM, **kwargs,
    )


# ------------------------------------------------------------------------------------- jobs


def _job_tinynet(rank: int, state: dict, data: TensorDataset, val: TensorDataset) -> dict:
    """A default wrap (key drawn by wrap, BatchNorm, T0 for L_aug, shuffled loader), then the refusals."""
    from conftest import TinyNet

    torch.manual_seed(rank)  # different RNG per rank: wrap must not depend on it agreeing
    model = TinyNet()
    model.load_state_dict(state)
    box = SafeBox.wrap(model, DataLoader(data, batch_size=PER_RANK_BATCH, shuffle=True), val_loader=DataLoader(val, batch_size=50),
                       epochs=2, lr=0.01, max_accuracy_drop=100, device="cpu", progress=False, **NORM)
    errors = {}
    try:  # each rank loads a different key file
        _wrap_plain(PlainNet().state_dict(), data, val, Key.generate((3, 32, 32), 0.5), PER_RANK_BATCH, epochs=1)
    except ValueError as e:
        errors["keys"] = str(e)

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(zip(data.tensors[0], data.tensors[1]))

    try:
        SafeBox.wrap(PlainNet(), DataLoader(Stream(), batch_size=8), val_loader=DataLoader(val, batch_size=50),
                     epochs=1, max_accuracy_drop=100, device="cpu", progress=False, **NORM)
    except InputError as e:
        errors["iterable"] = str(e)
    return {"weights": box.state_dict(), "fingerprint": box.key.fingerprint, "result": box.wrap_result.to_dict(), "errors": errors}


def _job_plain(rank: int, state: dict, data: TensorDataset, val: TensorDataset, key: Key, ckpt: str | None = None,
               crash_at_step: int | None = None) -> dict:
    """The no-BatchNorm wrap over a fixed key; ``crash_at_step``: rank 1 dies at that training step."""
    if crash_at_step is not None and rank == 1:
        import sdbox.wrap

        real, calls = sdbox.wrap.sdb_step, [0]

        def dying(*a, **kw):
            calls[0] += 1
            if calls[0] == crash_at_step:
                raise RuntimeError("rank 1 killed mid-epoch")
            return real(*a, **kw)

        sdbox.wrap.sdb_step = dying
    box = _wrap_plain(state, data, val, key, PER_RANK_BATCH, epochs=2, checkpoint_dir=ckpt, keep_checkpoint=ckpt is not None)
    return {"weights": box.state_dict(), "fingerprint": box.key.fingerprint, "result": box.wrap_result.to_dict()}


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def data(train_ds, test_ds):
    """96 training and 60 held-out real CIFAR-10 images as plain tensors (picklable for the ranks)."""
    x, y = zip(*(train_ds[i] for i in range(96)))
    vx, vy = zip(*(test_ds[i] for i in range(60)))
    return TensorDataset(torch.stack(x), torch.tensor(y)), TensorDataset(torch.stack(vx), torch.tensor(vy))


@pytest.fixture(scope="module")
def plain_state():
    torch.manual_seed(0)
    return copy.deepcopy(PlainNet().state_dict())


@pytest.fixture(scope="module")
def plain_key():
    return Key.generate((3, 32, 32), 0.5, CIFAR10_MEAN, CIFAR10_STD)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, data, plain_state, plain_key):
    """One uninterrupted 2-rank wrap of PlainNet: the reference for equality and resume."""
    return _spawn(_job_plain, tmp_path_factory.mktemp("plain"), state=plain_state, data=data[0], val=data[1], key=plain_key)


def _assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=atol, msg=lambda m: f"{name}: {m}")


# ------------------------------------------------------------------------------------ tests


def test_two_ranks_end_with_one_key_and_identical_weights(tmp_path, pretrained_state, data):
    ranks = _spawn(_job_tinynet, tmp_path, state=pretrained_state, data=data[0], val=data[1])
    assert ranks[0]["fingerprint"] == ranks[1]["fingerprint"]
    _assert_same_weights(ranks[0]["weights"], ranks[1]["weights"])
    assert ranks[0]["result"] == ranks[1]["result"]  # same figures, same chosen epoch
    assert ranks[0]["result"]["epochs"][0]["loss_total"] == ranks[1]["result"]["epochs"][0]["loss_total"]
    for r in ranks:
        assert "Expected the same key on every rank" in r["errors"]["keys"]
        assert "DistributedSampler" in r["errors"]["iterable"] and "map-style" in r["errors"]["iterable"]


def test_two_ranks_match_one_rank_over_the_same_global_batches(two_ranks, data, plain_state, plain_key):
    # Unshuffled: rank r reads images r, r+2, ... so global batch k of 2×16 is the 1-rank batch k of 32.
    one = _wrap_plain(plain_state, data[0], data[1], plain_key, 2 * PER_RANK_BATCH, epochs=2)
    _assert_same_weights(one.state_dict(), two_ranks[0]["weights"], atol=1e-5)
    _assert_same_weights(two_ranks[0]["weights"], two_ranks[1]["weights"])
    assert two_ranks[0]["fingerprint"] == plain_key.fingerprint
    for mine, theirs in zip(one.wrap_result.epochs, two_ranks[0]["result"]["epochs"]):
        assert mine["clean_acc"] == theirs["clean_acc"] and mine["keyed_acc"] == theirs["keyed_acc"]
        assert mine["divergence"] == pytest.approx(theirs["divergence"], rel=1e-4)
        assert mine["loss_total"] == pytest.approx(theirs["loss_total"], rel=1e-4)


def test_a_rank_killed_mid_epoch_resumes_from_the_last_checkpoint(tmp_path, two_ranks, data, plain_state, plain_key):
    ckpt = tmp_path / "ckpt"
    kwargs = dict(state=plain_state, data=data[0], val=data[1], key=plain_key, ckpt=str(ckpt))
    steps_per_epoch = 96 // (2 * PER_RANK_BATCH)
    with pytest.raises(mp.ProcessRaisedException, match="rank 1 killed mid-epoch"):
        _spawn(_job_plain, tmp_path, crash_at_step=steps_per_epoch + 2, **kwargs)
    saved = torch.load(ckpt / "wrap_state.pt", weights_only=True)
    assert saved["state"]["epoch"] == 1  # epoch 1 was written by rank 0; epoch 2 died half-way

    resumed = _spawn(_job_plain, tmp_path, **kwargs)
    _assert_same_weights(resumed[0]["weights"], two_ranks[0]["weights"])
    _assert_same_weights(resumed[1]["weights"], two_ranks[0]["weights"])
    assert resumed[0]["result"]["epochs"] == two_ranks[0]["result"]["epochs"]


def test_a_two_rank_checkpoint_resumes_on_one_rank(tmp_path, data, plain_state, plain_key):
    """The checkpoint holds the unwrapped model and the whole loader's identity: any rank count resumes it."""
    ckpt = tmp_path / "ckpt"
    kwargs = dict(state=plain_state, data=data[0], val=data[1], key=plain_key, ckpt=str(ckpt))
    with pytest.raises(mp.ProcessRaisedException):
        _spawn(_job_plain, tmp_path, crash_at_step=96 // (2 * PER_RANK_BATCH) + 1, **kwargs)
    first = torch.load(ckpt / "wrap_state.pt", weights_only=True)["state"]["epochs"][0]
    box = _wrap_plain(plain_state, data[0], data[1], None, PER_RANK_BATCH, epochs=2, checkpoint_dir=ckpt)
    assert box.key.fingerprint == plain_key.fingerprint  # the checkpoint's key
    assert [e["epoch"] for e in box.wrap_result.epochs] == [1, 2] and box.wrap_result.epochs[0] == first
    assert not (ckpt / "wrap_state.pt").exists()  # a successful wrap deletes it


def test_a_resume_on_another_rank_count_puts_the_cosine_schedule_at_the_same_fraction():
    """2 ranks: 3 steps an epoch; 1 rank: 6. After epoch 1 of 2 the lr must be the half-way lr either way."""
    from sdbox.wrap import _rescale_schedule

    def scheduler(steps: int, done: int):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2 * steps)
        for _ in range(done):
            opt.step()
            sched.step()
        return opt, sched

    opt, sched = scheduler(3, 3)
    _rescale_schedule(sched, 6, 12)
    ref_opt, ref_sched = scheduler(6, 6)
    for _ in range(6):  # and it goes on from there as a 12-step schedule would
        assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], abs=1e-12)
        opt.step(), sched.step(), ref_opt.step(), ref_sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
