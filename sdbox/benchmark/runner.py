"""run_benchmark: the SDB paper's CIFAR-10 experiments (Tables 3, 5, 6) in a data-limited regime.

The teacher learns from the whole training set (once per machine: see :mod:`.teachers`); the owner
wraps it once per method; then, per seed, every distiller holds the same small slice of the
training set and trains a student from scratch, from the original teacher, from each box without
and with the key, at other temperatures (Table 5) and through freshly drawn keys (Table 6). All
students of a seed share initial weights and batch order, so rows are compared seed by seed.
Every model and figure is saved under ``out`` as it is made; a rerun skips what is there.
"""

from __future__ import annotations

import copy
import hashlib
import os
import platform
import statistics
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from .. import __version__
from ..box import SafeBox
from ..data import CIFAR10_MEAN, CIFAR10_STD, balanced_picks
from ..distill import distill
from ..errors import FidelityError, InputError
from ..evaluate import evaluate
from ..key import Key
from ..keyed_norm import applied, estimate_statistics, root
from ..proxy import mix
from ..restoring import global_rng_kept
from ..teacher import KeyedTeacher
from . import models
from .accel import fast_path, fast_teacher, student_batch_size
from .compare import compare
from .presets import Preset, get_preset, method_settings
from .store import cached_json, read_json, save_dir_atomically, save_weights, write_json
from .tensordata import Split, batches, load_cifar10
from .teachers import Teacher, obtain_teacher

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
WRAP_SEED = 0  # each box is wrapped once; seeds vary the students


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def log(message: str) -> None:
    print(f"[sdbox {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class BenchmarkData:
    """The fixed split: the teacher's images, the owner's wrap slice and the distiller's slice (both
    drawn from the teacher's), the validation slice (guard, settings) and the evaluation images."""

    teacher: Split
    wrap: Split
    distill: Split
    val: Split
    evaluation: Split

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in ("teacher", "wrap", "distill", "val", "evaluation")}


def load_data(data: str | os.PathLike | None, p: Preset, device: torch.device) -> BenchmarkData:
    """Decode the preset's split once; the slices are class-balanced and the same for every run."""
    pool, val, test = load_cifar10(data, p.n_teacher, p.n_val, p.n_test)
    wrap_idx = balanced_picks(pool.labels, [p.n_wrap], seed=1)[0] if p.n_wrap is not None and p.n_wrap < len(pool) else None
    distill_idx = balanced_picks(pool.labels, [p.n_distill], seed=2)[0] if p.n_distill is not None and p.n_distill < len(pool) else None
    take = lambda s, idx: s if idx is None else Split(s.images[idx], s.labels[idx])  # noqa: E731
    splits = [pool, take(pool, wrap_idx), take(pool, distill_idx), val, test if p.eval_split == "test" else val]
    return BenchmarkData(*(Split(s.images.to(device), s.labels.to(device)) for s in splits))


@global_rng_kept()  # the steps seed torch for reproducible runs; the caller's random stream is left as found
def run_benchmark(
    data: str | os.PathLike | None = None,
    preset: str | Preset = "cpu",
    seeds: int | Sequence[int] = 3,
    out: str | os.PathLike = "runs/benchmark",
    *,
    teacher: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) a benchmark; write ``out/results.json``, ``out/report.md`` and the figures.

    ``data`` is a CIFAR-10 ImageFolder root (``train/``, ``test/``); None downloads it with
    torchvision. ``seeds``: how many (0 … N−1), or which. ``teacher``: a safetensors file (or a
    folder holding ``model.safetensors``) of the preset's teacher architecture to use instead of
    the cached or freshly trained one. ``threads`` sets torch's CPU threads. Returns the results
    dict that ``results.json`` holds.
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
    splits = load_data(data, p, device)
    log("images: " + ", ".join(f"{n} {k}" for k, n in splits.sizes().items()) + f" on {device}")
    t = obtain_teacher(p, splits.teacher, device, path=teacher, progress=progress, log=log)
    run = _Run(p, out, splits, device, progress)
    teacher_entry = run.teacher(t)
    boxes = {m: run.box(m, t.model) for m in p.methods}
    per_seed = {str(seed): run.seed(seed, t.model, boxes) for seed in seeds}  # students are cached one by one
    correct = {str(seed): run.per_image(seed) for seed in seeds}
    sdb = boxes.get("SDB")
    if sdb is not None and sdb[0] is not None:
        cached_json(out / "soft_labels.json", lambda: run.soft_labels(t.model, sdb[0]))
    results = {
        "preset": p.name,
        "regime": regime(p, splits),
        "settings": p.to_dict(),
        "sdb_settings": asdict(p.sdb_settings()),
        "data": {"source": str(data) if data is not None else "torchvision", **splits.sizes(), "eval_split": p.eval_split},
        "versions": {"torch": torch.__version__, "sdbox": __version__, "python": platform.python_version()},
        "device": _describe(device),
        "teacher": teacher_entry,
        "boxes": {m: entry for m, (_, entry) in boxes.items()},
        "seeds": per_seed,
        "mean": aggregate(list(per_seed.values())),
        "wall_time_s": round(time.time() - start, 1),
        "compute_s": {"teacher": t.train_s, "wraps": round(sum(e.get("wrap_s") or 0.0 for _, e in boxes.values()), 1),
                      "students": round(sum(r["wall_time_s"] for r in per_seed.values()), 1)},
        "load_average": {"start": load_start, "end": os.getloadavg()},
    }
    results["comparisons"] = [c.to_dict() for c in compare(results, {**correct, "owner": run.owner_correct})]
    write_json(out / "results.json", results)
    from .report import publish_box, write_report

    report_path = write_report(results, out)
    publish_box(results, out, models.create(p.teacher))
    log(f"done in {results['wall_time_s']:.0f} s: {report_path}")
    return results


def regime(p: Preset, splits: BenchmarkData) -> str:
    """One sentence a reader needs before any table: who saw how many images."""
    if len(splits.distill) >= len(splits.teacher):
        return (f"Full-data regime: the teacher and every distiller learn from the same {len(splits.teacher):,} images "
                "(the paper's setting).")
    return (f"Data-limited regime: the teacher learnt from {len(splits.teacher):,} images; every distiller (scratch, KD, "
            f"attacks) holds the same {len(splits.distill):,} of them, so KD from a good teacher beats training alone and "
            "a box protects only if KD from it does not.")


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


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {platform.processor() or platform.machine()}"


def _subseed(seed: int, name: str) -> int:
    """A stable seed per (seed, job): a resumed run trains each model exactly as a fresh run would."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31


def _weights_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class _Run:
    """The steps of one benchmark folder; each reads its saved output when it exists."""

    def __init__(self, p: Preset, out: Path, splits: BenchmarkData, device: torch.device, progress: bool):
        self.p, self.out, self.splits, self.device, self.progress = p, out, splits, device, progress
        self.val_loader = batches(splits.val, 256, device=device)
        self.eval_loader = batches(splits.evaluation, 256, device=device)
        self._key: Key | None = None
        self._box_keys: dict[str, Key] = {}  # read once from boxes/<method>.key
        self.owner_correct: dict[str, str] = {}  # per-image records of the teacher and the SDB box

    def score(self, model: Callable, key: Key | None = None) -> dict[str, Any]:
        """Accuracy on the evaluation images, with the per-image record paired comparisons need
        (through the key, with its keyed normalisation, when one is given)."""
        r = evaluate(model, self.eval_loader, device=self.device, per_image=True, key=key)
        return {"acc": r["acc"], "correct": r["correct"]}

    # ------------------------------------------------------------------------------ owner side
    def teacher(self, t: Teacher) -> dict[str, Any]:
        """The teacher's accuracy, tied to its weights: results of another teacher are refused."""
        sha = _weights_sha256(t.model)
        path = self.out / "teacher.json"
        if path.exists() and read_json(path)["weights_sha256"] != sha:
            raise InputError(f"{self.out} holds results made with another teacher: pass a new `out` folder "
                             "(or delete this one) to benchmark this teacher.")
        entry = cached_json(path, lambda: {"weights_sha256": sha, **self.score(t.model)})
        self.owner_correct["teacher"] = entry["correct"]
        log(f"teacher {self.p.teacher} ({t.source}): {entry['acc']:.2f}% on {len(self.splits.evaluation)} {self.p.eval_split} images")
        return {"acc": entry["acc"], "source": t.source, "path": str(t.path), "train_s": t.train_s}

    def key(self) -> Key:
        """The owner's key, shared by every box of the run (saved 0600 beside the results)."""
        if self._key is None:
            path = self.out / "key.key"
            if path.exists():
                self._key = Key.load(path)
            else:
                self._key = Key.generate((3, 32, 32), self.p.lam, CIFAR10_MEAN, CIFAR10_STD, tile=self.p.key_tile)
                self.out.mkdir(parents=True, exist_ok=True)
                self._key.save(path)
        return self._key

    def box_key(self, method: str) -> Key:
        """What opens a method's box: the owner's key with the keyed normalisation its wrap trained
        (saved 0600 beside the box); the bare owner's key for the original and for boxes without it."""
        if method not in self._box_keys:
            path = self.out / "boxes" / f"{method}.key"
            if not path.exists():
                return self.key()  # not (yet) wrapped, or without keyed normalisation: nothing to remember
            self._box_keys[method] = Key.load(path)
        return self._box_keys[method]

    def box(self, method: str, teacher: torch.nn.Module) -> tuple[torch.nn.Module | None, dict[str, Any]]:
        """What a method hands out — the original, or a box wrapped once — and its accuracy."""
        if method == "Normal":
            model, extra = teacher, {}
        else:
            model, extra = self._wrap(method, teacher)
            if model is None:
                return None, extra
        key = self.box_key(method)
        entry = cached_json(self.out / "boxes" / f"{method}.json",
                            lambda: {"clean": self.score(model), "keyed": self.score(model, key)})
        log(f"{method}: {entry['clean']['acc']:.2f}% without key, {entry['keyed']['acc']:.2f}% with")
        if method == "SDB":
            self.owner_correct.update({"box": entry["clean"]["correct"], "box+key": entry["keyed"]["correct"]})
        return model, {"clean_acc": entry["clean"]["acc"], "keyed_acc": entry["keyed"]["acc"], **extra}

    def _wrap(self, method: str, teacher: torch.nn.Module) -> tuple[SafeBox | None, dict[str, Any]]:
        p, folder = self.p, self.out / "boxes" / method
        error_path = folder.with_name(method + ".error.json")
        if error_path.exists():
            return None, read_json(error_path)
        if folder.exists():
            box = SafeBox.from_pretrained(folder, model=models.create(p.teacher), map_location=self.device)
            return box, {"wrap_s": read_json(folder / "wrap_result.json").get("wrap_s")}
        log(f"wrapping {method} on {len(self.splits.wrap)} images ({p.wrap_epochs} epochs, ω={p.omega}, η={p.eta}, λ={p.lam})")
        start = time.time()
        model = copy.deepcopy(teacher)
        try:
            torch.manual_seed(_subseed(WRAP_SEED, f"wrap/{method}"))  # T0's draw (run_benchmark gives the caller's RNG back)
            box = SafeBox.wrap(
                model, batches(self.splits.wrap, p.batch_size, train=True, device=self.device, seed=_subseed(WRAP_SEED, f"wrap/{method}")),
                val_loader=self.val_loader, key=self.key(), epochs=p.wrap_epochs, lr=p.wrap_lr,
                max_accuracy_drop=p.max_accuracy_drop, device=self.device, checkpoint_dir=folder.with_name(method + ".ckpt"),
                progress=self.progress, mean=CIFAR10_MEAN, std=CIFAR10_STD, settings=method_settings(method, p.sdb_settings()),
                fast=fast_path(p),
            )
        except FidelityError as e:
            log(f"{method}: the fidelity guard refused every epoch: {e}")
            write_json(error_path, {"error": str(e)})
            return None, {"error": str(e)}
        wrap_s = round(time.time() - start, 1)

        def fill(tmp: Path) -> None:
            box.save_pretrained(tmp)
            write_json(tmp / "wrap_result.json", {**box.wrap_result.to_dict(), "wrap_s": wrap_s})

        if box.key.norm is not None:
            box.key.save(folder.with_name(method + ".key"), overwrite=True)  # before the box: a saved box always has its key
        save_dir_atomically(folder, fill)
        return box, {"wrap_s": wrap_s}

    # ------------------------------------------------------------------------------ distiller side
    def seed(self, seed: int, teacher: torch.nn.Module, boxes: dict[str, tuple[Any, dict]]) -> dict[str, Any]:
        """Every student of one seed, in the results layout; ``wall_time_s`` adds up their training
        times, whichever run trained them (a rerun adds rows a changed preset asks for)."""
        p, cnn = self.p, self.p.students[0]
        result: dict[str, Any] = {"scratch": {}, "methods": {m: {} for m in p.methods}, "temperature_attack": {},
                                  "random_key_attack": [], "random_key_restat_attack": []}
        seconds = []

        def student(row: str, arch: str, source: Callable | None, T: float | None = None) -> float:
            record = self.student(seed, f"{arch}/{row}", arch, source, T)
            seconds.append(record.get("train_s", 0.0))
            return record["acc"]

        for arch in p.students:
            result["scratch"][arch] = student("scratch", arch, None)
            for m in p.student_methods(arch):
                model = boxes[m][0]
                if model is None:
                    continue
                entry = {"no_key": student(m, arch, model)}
                if p.has_key_row(m):
                    key = self.box_key(m)
                    entry["key"] = student(f"{m}+key", arch, KeyedTeacher(model, key) if isinstance(model, SafeBox) else through_key(model, key))
                result["methods"][m][arch] = entry
        sdb = boxes.get("SDB", (None,))[0]
        if sdb is not None:
            for T in p.temperatures:
                row = "SDB" if T == p.T else f"SDB@T{T:g}"
                result["temperature_attack"][f"{T:g}"] = student(row, cnn, sdb, T)
            for i in range(p.random_keys):
                other = self.random_key(seed, i)
                result["random_key_attack"].append(student(f"random_key_{i}", cnn, through_key(sdb, other)))
                if self.box_key("SDB").norm is not None:  # the attacker re-estimates statistics for its own key
                    result["random_key_restat_attack"].append(
                        student(f"random_key_restat_{i}", cnn, through_key(sdb, other, self.restat(sdb, other))))
        result["wall_time_s"] = round(sum(seconds), 1)
        return result

    def per_image(self, seed: int) -> dict[str, str]:
        """The per-image records of one seed's CNN students, by row (what one-seed intervals use)."""
        folder = self.out / f"seed{seed}" / "students" / self.p.students[0]
        return {path.stem: read_json(path)["correct"] for path in folder.glob("*.json")}

    def random_key(self, seed: int, i: int) -> Key:
        """A fresh key from `Key.generate`'s own distribution: what a guessing attacker would draw."""
        path = self.out / f"seed{seed}" / f"random_key_{i}.key"
        if path.exists():
            return Key.load(path)
        key = Key.generate((3, 32, 32), self.p.lam, CIFAR10_MEAN, CIFAR10_STD, tile=self.p.key_tile)
        path.parent.mkdir(parents=True, exist_ok=True)
        key.save(path)
        return key

    def restat(self, box: torch.nn.Module, key: Key) -> dict[str, torch.Tensor]:
        """The box's BatchNorm statistics re-estimated on the distiller's own images mixed with
        ``key``: the best public normalisation a holder of a fresh key can give its stream."""
        mixed = (key.mix(x) for x, _ in batches(self.splits.distill, 256, device=self.device))
        return estimate_statistics(root(box), mixed)

    def student(self, seed: int, name: str, arch: str, teacher: Callable | None, T: float | None = None) -> dict[str, Any]:
        p, path = self.p, self.out / f"seed{seed}" / "students" / f"{name}.json"
        if path.exists():
            return read_json(path)
        T = p.T if T is None else T
        log(f"seed {seed}: distilling {name} (T={T:g}, {p.student_epochs} epochs on {len(self.splits.distill)} images)")
        # Every student of an architecture and seed starts from the same weights and sees the same
        # batches (common random numbers): differences between rows then measure the teachers.
        torch.manual_seed(_subseed(seed, f"student/{arch}"))
        model = models.create(arch)
        loader = batches(self.splits.distill, student_batch_size(p), train=True, device=self.device, seed=_subseed(seed, f"student/{arch}"))
        start = time.time()
        distill(model, fast_teacher(teacher, p, self.device), loader, epochs=p.student_epochs, alpha=p.alpha, T=T, lr=p.student_lr, device=self.device, progress=self.progress)
        save_weights(model, path.with_suffix(".safetensors"))
        record = {**self.score(model), "T": T, "train_s": round(time.time() - start, 1)}
        write_json(path, record)
        log(f"seed {seed}: {name}: {record['acc']:.2f}%")
        return record

    @torch.inference_mode()
    def soft_labels(self, teacher: torch.nn.Module, box: torch.nn.Module, n: int = 4) -> dict[str, Any]:
        """Paper Fig. 3: soft labels at T = 4 of the original, the closed (x) and the open (x̃) stream."""
        evaluation, key = self.splits.evaluation, self.box_key("SDB")
        # Evenly spaced picks: the split is sorted by class, so these are n different classes.
        index = torch.arange(n, device=self.device) * (len(evaluation) // n)
        mean, std = (torch.tensor(v, device=self.device).view(1, -1, 1, 1) for v in (CIFAR10_MEAN, CIFAR10_STD))
        x = (evaluation.images[index].float() / 255 - mean) / std
        soft = lambda z: F.softmax(z / self.p.T, dim=1).cpu().tolist()  # noqa: E731
        return {"classes": list(CIFAR10_CLASSES), "labels": evaluation.labels[index].cpu().tolist(), "T": self.p.T,
                "original": soft(teacher(x)), "closed": soft(box(x)), "open": soft(KeyedTeacher(box, key)(x))}


def through_key(model: torch.nn.Module, key: Key, norm: dict[str, torch.Tensor] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A teacher that sees x̃ = λx + (1−λ)κ for any key κ (a random key's attack, or Normal's key
    column), with the model's public normalisation or the given ``norm`` (re-estimated statistics)."""
    model.eval()
    device = next(model.parameters()).device
    k = key.tensor.to(device)
    inner = root(model)
    norm = {name: t.to(device) for name, t in norm.items()} if norm is not None else None

    def logits(x: torch.Tensor) -> torch.Tensor:
        if norm is None:
            return model(mix(x, k, key.lam))
        with applied(inner, norm):
            return model(mix(x, k, key.lam))

    return logits
