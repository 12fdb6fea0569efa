"""Wrap throughput on 1 and N gloo CPU ranks: `python benchmarks/distributed_speed.py --help`.

Times ``SafeBox.wrap`` end to end (training, the guard's evaluation, the syncs) inside each rank,
after the process group is up, on a tiny 2-conv CNN with BatchNorm and random 32×32 images:
what the speed-up of wrap itself is, without process start-up or data decoding.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from sdbox import SafeBox


def tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(4),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )


def _rank(rank: int, world: int, port: int, args: argparse.Namespace, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(minutes=10))
    try:
        g = torch.Generator().manual_seed(0)
        train = TensorDataset(torch.randn(args.images, 3, 32, 32, generator=g), torch.randint(0, 10, (args.images,), generator=g))
        val = TensorDataset(torch.randn(200, 3, 32, 32, generator=g), torch.randint(0, 10, (200,), generator=g))
        torch.manual_seed(0)
        dist.barrier()
        start = time.perf_counter()
        SafeBox.wrap(tiny_net(), DataLoader(train, batch_size=args.batch_size, shuffle=True), val_loader=DataLoader(val, batch_size=100),
                     epochs=args.epochs, max_accuracy_drop=100, device="cpu", progress=False, mean=[0.0] * 3, std=[1.0] * 3)
        dist.barrier()
        if rank == 0:
            out[world] = time.perf_counter() - start
    finally:
        dist.destroy_process_group()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="rank counts to time (default: 1 2)")
    parser.add_argument("--images", type=int, default=2048, help="training images (the whole set, split over the ranks)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    args = parser.parse_args(argv)
    with mp.Manager() as manager:
        times = manager.dict()
        for world in args.ranks:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            mp.spawn(_rank, args=(world, port, args, times), nprocs=world, join=True)
        base = args.images * args.epochs / times[args.ranks[0]]
        print(f"cpus: {os.cpu_count()}  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  threads/rank: {args.threads}")
        print("ranks  seconds  images/s  per rank  speed-up  efficiency")
        for world in args.ranks:
            rate = args.images * args.epochs / times[world]
            print(f"{world:5d}  {times[world]:7.1f}  {rate:8.0f}  {rate / world:8.0f}  {rate / base:7.2f}×  {rate / base / world * args.ranks[0]:9.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
