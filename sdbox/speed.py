"""Speed: the fast-path options of a wrap (:class:`FastPath`) and ``sdbox speed``, which times them.

An SDB step costs (6 + f)/3 plain steps by arithmetic: the trainable model runs forward and
backward on two streams (2 × 3 forward passes' worth) and the frozen models forward f times
(T on x, T0 on x̃, and T on x̃ where L_aug needs it: f = 2 or 3). A keyed teacher adds one
multiply-add per input. ``sdbox speed`` measures how close the code comes to those bounds, side by
side in one process (paired repetitions, medians), so a shared or throttled machine moves both
sides of each ratio alike.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from typing import TYPE_CHECKING, Any, Callable

from .files import write_text

if TYPE_CHECKING:  # imported where used: the `sdbox` parser imports this module, and `--help` must not wait for torch
    import torch
    import torch.nn as nn

    from .fastpath import FastPath


# --------------------------------------------------------------------------------------------
# Timing

_CPU_BATCH = {"resnet18_cifar": 32}  # a ResNet-18 step on 2 CPU cores takes seconds at 128
_CPU_REPS = {"resnet18_cifar": 5}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def paired_medians(fns: dict[str, Callable[[], Any]], reps: int, device: torch.device, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, run in turn within each repetition (A B A B …).

    Interleaving means a neighbour's load or a clock change hits every function alike, so the
    ratios hold on a shared machine even when the absolute times wander.
    """
    if reps < 1:
        raise ValueError(f"Expected `reps` ≥ 1, but got {reps}.")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(
    model_name: str, batch_size: int, reps: int, device: torch.device, fast: FastPath, kd_batches: int = 8
) -> dict[str, Any]:
    """Time plain vs SDB training steps, plain vs keyed teachers and plain vs keyed KD epochs."""
    import torch

    from .restoring import global_rng_kept

    if reps < 1:
        raise ValueError(f"Expected `reps` ≥ 1, but got {reps}.")
    fast = fast.resolve(device)
    with global_rng_kept():  # it seeds torch for paired, reproducible timings; the caller's stream is left as found
        torch.manual_seed(0)
        with fast.running_on(device):
            return _measure(model_name, batch_size, reps, device, fast, kd_batches)


def _measure(model_name: str, batch_size: int, reps: int, device: torch.device, fast: FastPath, kd_batches: int) -> dict[str, Any]:
    import torch
    import torch.nn as nn

    from .benchmark.models import create
    from .box import SafeBox
    from .config import BoxConfig
    from .data import CIFAR10_MEAN, CIFAR10_STD, TensorLoader
    from .distill import distill
    from .key import Key
    from .teacher import KeyedTeacher
    from .frozen import FrozenModels
    from .settings import SDBSettings
    from .step import sdb_step

    settings = SDBSettings()
    shape = (3, 32, 32)
    key = Key.generate(shape, settings.lam, CIFAR10_MEAN, CIFAR10_STD)
    n_images = batch_size * kd_batches
    images = torch.randint(0, 256, (n_images, *shape), dtype=torch.uint8)
    labels = torch.randint(0, 10, (n_images,))
    loader = TensorLoader(images, labels, CIFAR10_MEAN, CIFAR10_STD, batch_size=batch_size, shuffle=True, augment=True, device=device)
    x, y = next(iter(loader))
    x = fast.inputs(x)

    def trainer(model: nn.Module) -> tuple[nn.Module, torch.optim.Optimizer]:
        model = fast.compiled(fast.prepare(model.to(device).train()))
        return model, torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    teacher = create(model_name).to(device).eval()
    plain, plain_opt = trainer(copy.deepcopy(teacher))
    boxed, boxed_opt = trainer(copy.deepcopy(teacher))
    with_random = settings.preservation and settings.eta > 0
    frozen = FrozenModels.from_model(teacher, with_random=with_random, seed=0)
    fast.prepare(frozen.original)
    if frozen.random is not None:
        fast.prepare(frozen.random)
    key_tensor = key.tensor.to(device)
    f = 3 if settings.key_embedding and with_random else 2
    streams = 3 if settings.key_embedding and settings.wrong_keys > 0 else 2  # x, x̃ and the wrong-key stream

    def plain_step() -> None:
        with fast.autocast(device):
            loss = nn.functional.cross_entropy(plain(x), y)
        plain_opt.zero_grad(set_to_none=True)
        loss.backward()
        plain_opt.step()

    def sdb_train_step() -> None:
        with fast.autocast(device):
            _, losses = sdb_step(boxed, frozen, x, y, key_tensor, settings)
        boxed_opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        boxed_opt.step()

    train = paired_medians({"plain": plain_step, "sdb": sdb_train_step}, reps, device)

    config = BoxConfig(architecture=model_name, num_classes=10, input_size=shape, mean=CIFAR10_MEAN, std=CIFAR10_STD, key_fingerprint=key.fingerprint)
    box = SafeBox(fast.prepare(copy.deepcopy(teacher)), config)
    keyed = KeyedTeacher(box, key)

    @torch.inference_mode()
    def plain_soft_labels() -> torch.Tensor:
        return torch.softmax(box(x) / 4.0, dim=1)

    teach = paired_medians({"plain": plain_soft_labels, "keyed": lambda: keyed.soft_labels(x)}, reps, device)

    def kd_epoch(source: nn.Module | KeyedTeacher) -> Callable[[], Any]:
        student = create("cnn5").to(device)
        return lambda: distill(student, source, loader, epochs=1, device=device, progress=False)

    kd = paired_medians({"plain": kd_epoch(box), "keyed": kd_epoch(keyed)}, reps, device)

    def row(times: dict[str, float], images_per_call: int) -> dict[str, Any]:
        return {name: {"seconds": t, "images_per_s": images_per_call / t} for name, t in times.items()}

    return {
        "model": model_name, "batch_size": batch_size, "reps": reps, "device": str(device), "threads": torch.get_num_threads(),
        "fast": {"amp": fast.amp, "channels_last": fast.channels_last, "compile": fast.compile},
        # "measured_bound": the same count with this machine's costs, streams + f·(eval forward / plain step).
        "train_step": {**row(train, batch_size), "ratio": train["sdb"] / train["plain"], "f": f, "streams": streams,
                       "bound": (3 * streams + f) / 3, "measured_bound": streams + f * teach["plain"] / train["plain"]},
        "teacher": {**row(teach, batch_size), "ratio": teach["keyed"] / teach["plain"]},
        "kd_epoch": {**row(kd, n_images), "ratio": kd["keyed"] / kd["plain"], "batches": kd_batches},
    }


def format_result(r: dict[str, Any]) -> str:
    """The table ``sdbox speed`` prints for one model."""
    t, te, kd = r["train_step"], r["teacher"], r["kd_epoch"]

    def cell(d: dict[str, float]) -> str:
        return f"{d['seconds'] * 1e3:9.1f} ms {d['images_per_s']:9.0f} img/s"

    return "\n".join([
        f"{r['model']}  batch {r['batch_size']}  device {r['device']} ({r['threads']} threads)  median of {r['reps']}  fast {r['fast']}",
        f"  train step   plain {cell(t['plain'])}   sdb   {cell(t['sdb'])}   ratio {t['ratio']:.2f}  (bound ({3 * t['streams']}+{t['f']})/3 = {t['bound']:.2f}; {t['streams']} + {t['f']}·forward/step = {t['measured_bound']:.2f})",
        f"  teacher      plain {cell(te['plain'])}   keyed {cell(te['keyed'])}   ratio {te['ratio']:.3f}  (target ≤ 1.03)",
        f"  KD epoch     plain {cell(kd['plain'])}   keyed {cell(kd['keyed'])}   ratio {kd['ratio']:.3f}  (target ≤ 1.03, {kd['batches']} batches)",
    ])


def run(args: argparse.Namespace) -> int:
    import torch

    from .fastpath import FastPath

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"Expected `threads` ≥ 1, but got {args.threads}.")
        torch.set_num_threads(args.threads)
    fast = FastPath(channels_last=False if args.no_channels_last else None, compile=args.compile)
    results = []
    for name in args.model:
        batch = args.batch_size or (_CPU_BATCH.get(name, 128) if device.type == "cpu" else 256)
        reps = args.reps if args.reps is not None else (_CPU_REPS.get(name, 7) if device.type == "cpu" else 20)
        result = measure(name, batch, reps, device, fast, args.kd_batches)
        print(format_result(result), flush=True)
        results.append(result)
    if args.json is not None:
        write_text(args.json, json.dumps(results, indent=2))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("speed", help="Time an SDB step against a plain step, and keyed against plain teaching.")
    p.add_argument("--model", nargs="+", default=["cnn5_wide", "resnet18_cifar"], help="benchmark model names (sdbox.benchmark.models)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 128 on CPU (32 for resnet18_cifar), 256 on CUDA")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions after one warm-up; medians are reported (default 7, 5 for resnet18_cifar on CPU)")
    p.add_argument("--kd-batches", type=int, default=8, help="batches in the timed KD epoch")
    p.add_argument("--threads", type=int, default=None, help="CPU threads; 1 gives steadier ratios on a machine shared with other jobs")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW (channels_last is the default everywhere)")
    p.add_argument("--compile", action="store_true", help="torch.compile the trained models (slow first steps)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON here")
    p.set_defaults(run=run)


def main(argv: list[str] | None = None) -> int:
    """``sdbox speed`` without the rest of the CLI (used by ``benchmarks/speed.py``)."""
    parser = argparse.ArgumentParser(prog="sdbox")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["speed", *(argv or [])])
    return args.run(args)
