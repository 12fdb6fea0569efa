"""run_benchmark: the SDB paper's CIFAR-10 experiments (Tables 3, 5, 6) on one fixed split.

Per seed: train the teacher, wrap it once per method (Table 3's rows), distil every student
without and with the key, then attack the SDB box with other temperatures (Table 5) and with
freshly drawn keys (Table 6). Every model and figure is saved under ``out`` as it is made, and a
rerun skips whatever is already there, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import time
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from .. import __version__
from ..box import SafeBox
from ..data import CIFAR10_MEAN, CIFAR10_STD
from ..distill import distill
from ..errors import FidelityError
from ..evaluate import evaluate
from ..key import Key
from ..proxy import mix
from ..restoring import global_rng_kept
from ..teacher import KeyedTeacher
from . import models
from .presets import Preset, get_preset, method_settings
from .store import cached_json, load_weights, read_json, save_dir_atomically, save_weights, write_json
from .tensordata import Split, batches, load_cifar10
from .train import train_classifier

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
KEYED = ("KE", "Nasty+KE", "SDB")  # methods trained with a key stream


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def log(message: str) -> None:
    print(f"[sdbox {time.strftime('%H:%M:%S')}] {message}", flush=True)


@global_rng_kept()  # the steps seed torch for reproducible runs; the caller's random stream is left as found
def run_benchmark(
    data: str | os.PathLike | None = None,
    preset: str | Preset = "cpu",
    seeds: int | Sequence[int] = 2,
    out: str | os.PathLike = "runs/benchmark",
    *,
    device: str | torch.device = "auto",
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) a benchmark; write ``out/results.json``, ``out/report.md`` and the figures.

    ``data`` is a CIFAR-10 ImageFolder root (``train/``, ``test/``); None downloads it with
    torchvision. ``seeds``: how many (0 … N−1), or which seeds; processes that run different seeds
    into the same ``out`` can share a machine, and a last call over all seeds combines them.
    ``threads`` sets torch's CPU threads: on a CPU shared with other jobs, 1 thread
    ran 3× faster than 2 in our measurements. Returns the results dict that ``results.json`` holds.
    """
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"Expected `seeds` ≥ 1, but got {seeds}.")
        seeds = range(seeds)
    elif not seeds:
        raise ValueError("Expected at least one seed in `seeds`, but got none.")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"Expected `threads` ≥ 1, but got {threads}.")
        torch.set_num_threads(threads)
    p = get_preset(preset) if isinstance(preset, str) else preset
    device = resolve_device(device)
    out = Path(out)
    start, load_start = time.time(), os.getloadavg()
    log(f"preset {p.name}: loading CIFAR-10 from {data or 'torchvision (download)'}")
    splits = [_to(s, device) for s in load_cifar10(data, p.n_train, p.n_val, p.n_test)]
    train, val, test = splits
    evaluation = test if p.eval_split == "test" else val
    log(f"{len(train)} train / {len(val)} validation / {len(evaluation)} {p.eval_split} images on {device}")
    per_seed = {}
    for seed in seeds:
        run = _SeedRun(p, seed, out / f"seed{seed}", train, val, evaluation, device, progress)
        per_seed[str(seed)] = cached_json(out / f"seed{seed}" / "results.json", run.run)
    results = {
        "preset": p.name,
        "settings": p.to_dict(),
        "sdb_settings": asdict(p.sdb_settings()),
        "data": {"source": str(data) if data is not None else "torchvision", "train": len(train), "val": len(val),
                 "eval": len(evaluation), "eval_split": p.eval_split},
        "versions": {"torch": torch.__version__, "sdbox": __version__, "python": platform.python_version()},
        "device": _describe(device),
        "seeds": per_seed,
        "mean": aggregate(list(per_seed.values())),
        "wall_time_s": round(time.time() - start, 1),
        "seed_wall_time_s": {s: r.get("wall_time_s") for s, r in per_seed.items()},
        "load_average": {"start": load_start, "end": os.getloadavg()},
    }
    write_json(out / "results.json", results)
    from ..report import write_report, publish_box

    report_path = write_report(results, out)
    publish_box(results, out, models.create(p.teacher))
    log(f"done in {results['wall_time_s']:.0f} s: {report_path}")
    return results


def aggregate(runs: list[Any]) -> Any:
    """Mean and (sample) std over seeds, leaf by leaf; leaves missing or non-numeric are skipped."""
    first = runs[0]
    if isinstance(first, dict):
        keys = [k for k in first if all(isinstance(r, dict) and k in r for r in runs)]
        return {k: aggregate([r[k] for r in runs]) for k in keys if k != "wall_time_s"}
    if isinstance(first, list):
        return [aggregate([r[i] for r in runs]) for i in range(min(len(r) for r in runs))]
    values = [v for v in runs if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def _to(split: Split, device: torch.device) -> Split:
    return Split(split.images.to(device), split.labels.to(device))


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {platform.processor() or platform.machine()}"


def _subseed(seed: int, name: str) -> int:
    """A stable seed per (seed, job): a resumed run trains each model exactly as a fresh run would."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31


class _SeedRun:
    """One seed's experiments; each step reads its saved output if it exists."""

    def __init__(self, p: Preset, seed: int, out: Path, train: Split, val: Split, evaluation: Split, device, progress: bool):
        self.p, self.seed, self.out, self.device, self.progress = p, seed, out, device, progress
        self.train, self.val_loader = train, batches(val, 256, device=device)
        self.eval_loader = batches(evaluation, 256, device=device)
        self.evaluation = evaluation

    def log(self, message: str) -> None:
        log(f"seed {self.seed}: {message}")

    def train_loader(self, name: str):
        return batches(self.train, self.p.batch_size, train=True, device=self.device, seed=_subseed(self.seed, name))

    def run(self) -> dict[str, Any]:
        p, start = self.p, time.time()
        teacher, teacher_acc = self.teacher()
        key = self.key("key")
        result: dict[str, Any] = {"teacher": {"clean_acc": teacher_acc}, "methods": {}, "scratch": {},
                                  "temperature_attack": {}, "random_key_attack": []}
        boxes: dict[str, torch.nn.Module | None] = {}
        for m in p.methods:
            boxes[m], entry = self.teacher_of(m, teacher, key)
            result["methods"][m] = entry
        for student in p.students:
            result["scratch"][student] = self.student(f"{student}/scratch", student, None)
            for m in p.student_methods(student):
                if boxes[m] is None:
                    continue
                result["methods"][m]["student"][student] = {
                    "no_key": self.student(f"{student}/{m}_no_key", student, boxes[m]),
                    "key": self.student(f"{student}/{m}_key", student, self.keyed(m, boxes[m], key)),
                }
        sdb, cnn = boxes.get("SDB"), p.students[0]
        if sdb is not None:
            for T in p.temperatures:
                name = f"{cnn}/SDB_no_key" if T == p.T else f"{cnn}/SDB_no_key_T{T:g}"
                result["temperature_attack"][f"{T:g}"] = self.student(name, cnn, sdb, T=T)
            for i in range(p.random_keys):
                other = self.key(f"random_key_{i}")
                result["random_key_attack"].append(self.student(f"{cnn}/SDB_random_key_{i}", cnn, through_key(sdb, other)))
            cached_json(self.out / "soft_labels.json", lambda: self.soft_labels(teacher, sdb, key))
        result["wall_time_s"] = round(time.time() - start, 1)
        return result

    # ------------------------------------------------------------------------------ steps
    def teacher(self) -> tuple[torch.nn.Module, float]:
        p, path = self.p, self.out / "teacher.safetensors"
        model = models.create(p.teacher)
        if path.exists():
            load_weights(model, path, str(self.device))
        else:
            self.log(f"training the {p.teacher} teacher ({p.teacher_epochs} epochs)")
            torch.manual_seed(_subseed(self.seed, "teacher"))
            model = models.create(p.teacher)
            train_classifier(model, self.train_loader("teacher"), epochs=p.teacher_epochs, lr=p.teacher_lr,
                             milestones=p.teacher_milestones, device=self.device, progress=self.progress)
            save_weights(model, path)
        model.to(self.device).eval()
        acc = cached_json(self.out / "teacher.json", lambda: {"clean_acc": evaluate(model, self.eval_loader, device=self.device)["acc"]})
        self.log(f"teacher clean accuracy {acc['clean_acc']:.2f}%")
        return model, acc["clean_acc"]

    def key(self, name: str) -> Key:
        path = self.out / f"{name}.key"
        if path.exists():
            return Key.load(path)
        key = Key.generate((3, 32, 32), self.p.lam, CIFAR10_MEAN, CIFAR10_STD)
        key.save(path)
        return key

    def teacher_of(self, method: str, teacher: torch.nn.Module, key: Key) -> tuple[torch.nn.Module | None, dict[str, Any]]:
        """The model a method hands out (the original, or a box wrapped with ``key``) and its accuracy."""
        entry: dict[str, Any] = {"teacher_acc": None, "student": {}}
        if method == "Normal":
            model = teacher
        else:
            model, error = self.box(method, teacher, key)
            if model is None:
                entry["error"] = error
                return None, entry
        entry["teacher_acc"] = cached_json(self.out / "methods" / f"{method}.json", lambda: {
            "no_key": evaluate(model, self.eval_loader, device=self.device)["acc"],
            "key": evaluate(model, self.eval_loader, key=key.tensor, lam=key.lam, device=self.device)["acc"],
        })
        self.log(f"{method}: teacher accuracy {entry['teacher_acc']['no_key']:.2f}% without key, {entry['teacher_acc']['key']:.2f}% with")
        return model, entry

    def box(self, method: str, teacher: torch.nn.Module, key: Key) -> tuple[SafeBox | None, str | None]:
        p, folder = self.p, self.out / "boxes" / method
        error_path = folder.with_name(method + ".error.json")
        if error_path.exists():
            return None, read_json(error_path)["error"]
        if folder.exists():
            return SafeBox.from_pretrained(folder, model=models.create(p.teacher), map_location=self.device), None
        self.log(f"wrapping {method} ({p.wrap_epochs} epochs, ω={p.omega}, η={p.eta}, λ={p.lam})")
        torch.manual_seed(_subseed(self.seed, f"wrap/{method}"))
        model = copy.deepcopy(teacher)
        for param in model.parameters():
            param.requires_grad_(True)
        try:
            box = SafeBox.wrap(
                model, self.train_loader(f"wrap/{method}"), val_loader=self.val_loader, key=key, epochs=p.wrap_epochs,
                lr=p.wrap_lr, max_accuracy_drop=p.max_accuracy_drop, device=self.device,
                checkpoint_dir=folder.with_name(method + ".ckpt"), progress=self.progress,
                mean=CIFAR10_MEAN, std=CIFAR10_STD, settings=method_settings(method, p.sdb_settings()),
            )
        except FidelityError as e:
            self.log(f"{method}: the fidelity guard refused every epoch: {e}")
            write_json(error_path, {"error": str(e)})
            return None, str(e)

        def fill(tmp: Path) -> None:
            box.save_pretrained(tmp)
            write_json(tmp / "wrap_result.json", box.wrap_result.to_dict())

        save_dir_atomically(folder, fill)
        return box, None

    def keyed(self, method: str, model: torch.nn.Module, key: Key) -> Callable[[torch.Tensor], torch.Tensor]:
        """The key holder's teacher: KeyedTeacher for a box; for the original model, the same x̃ anyway."""
        if isinstance(model, SafeBox):
            return KeyedTeacher(model, key)
        return through_key(model, key)

    def student(self, name: str, arch: str, teacher: Callable | None, T: float | None = None) -> float:
        p, path = self.p, self.out / "students" / f"{name}.json"
        if path.exists():
            return read_json(path)["acc"]
        T = p.T if T is None else T
        self.log(f"distilling {name} (T={T:g}, {p.student_epochs} epochs)")
        # Every student of an architecture starts from the same weights and sees the same batches
        # (common random numbers): differences between rows then measure the teachers, not the
        # luck of an initialisation, which for short runs is larger than the effects measured.
        torch.manual_seed(_subseed(self.seed, f"student/{arch}"))
        model = models.create(arch)
        distill(model, teacher, self.train_loader(f"student/{arch}"), epochs=p.student_epochs, alpha=p.alpha, T=T,
                lr=p.student_lr, device=self.device, progress=self.progress)
        save_weights(model, path.with_suffix(".safetensors"))
        acc = evaluate(model, self.eval_loader, device=self.device)["acc"]
        write_json(path, {"acc": acc, "T": T})
        self.log(f"{name}: {acc:.2f}%")
        return acc

    @torch.inference_mode()
    def soft_labels(self, teacher: torch.nn.Module, box: torch.nn.Module, key: Key, n: int = 4) -> dict[str, Any]:
        """Paper Fig. 3: soft labels at T = 4 of the original, the closed (x) and the open (x̃) stream."""
        # Evenly spaced picks: the split is sorted by class, so these are n different classes.
        index = torch.arange(n, device=self.device) * (len(self.evaluation) // n)
        mean, std = (torch.tensor(v, device=self.device).view(1, -1, 1, 1) for v in (CIFAR10_MEAN, CIFAR10_STD))
        x = (self.evaluation.images[index].float() / 255 - mean) / std
        y = self.evaluation.labels[index]
        k = key.tensor.to(self.device)
        soft = lambda z: F.softmax(z / self.p.T, dim=1).cpu().tolist()  # noqa: E731
        return {"classes": list(CIFAR10_CLASSES), "labels": y.cpu().tolist(), "T": self.p.T,
                "original": soft(teacher(x)), "closed": soft(box(x)), "open": soft(box(mix(x, k, key.lam)))}


def through_key(model: torch.nn.Module, key: Key) -> Callable[[torch.Tensor], torch.Tensor]:
    """A teacher that sees x̃ = λx + (1−λ)κ for any key κ (a random key's attack, or Normal's key column)."""
    model.eval()
    k = key.tensor.to(next(model.parameters()).device)

    def logits(x: torch.Tensor) -> torch.Tensor:
        return model(mix(x, k, key.lam))

    return logits
