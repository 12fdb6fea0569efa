"""The owner's commands: ``sdbox wrap | inspect | verify | push | distill``.

Everything an owner (or a key holder) does, without writing a script: wrap a trained model on an
ImageFolder tree into a bundle and a key file kept apart, look at what a bundle publishes, check
that a key opens a box (without printing it), publish a bundle with no key file in it, and
distil a student from a box. Errors are one line naming the problem and the fix, exit code 1;
usage errors exit 2 (argparse). Every flag, output path and value bound for config.json is
checked before any training, with the rules the bundle loader applies, so that a wrap never
trains for an hour and then fails to write, or writes a bundle sdbox itself refuses. Every line
printed goes through :func:`~sdbox.terminal.escaped`: a bundle's strings are anyone's.

torch, timm and the modules built on them are imported inside the commands that use them: the
``sdbox`` parser imports this module, and ``sdbox --help`` answers before torch could load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import architecture
from .card import license_warning
from .data import balanced_picks, image_folder
from .errors import BundleError, FidelityError, InputError, PublishError, ResumeWarning, SaveError, SdboxError
from .progress import OverallProgress
from .terminal import escaped

if TYPE_CHECKING:
    import torch.nn as nn


# ------------------------------------------------------------------------------------ models
def load_model(spec: str, *, pretrained: bool, weights: str | None, num_classes: int) -> tuple[nn.Module, str | None]:
    """The owner's trained model, and its Hub id when it came from the Hub (the card's base_model).

    ``hf-hub:ORG/NAME`` and ``local-dir:PATH`` load a timm model with its weights; a timm or
    torchvision name needs ``--weights FILE.safetensors`` (your trained weights) or
    ``--pretrained`` (the library's): wrapping an untrained model protects nothing.
    """
    import timm
    import torchvision.models as tvm

    if spec.startswith(("hf-hub:", "local-dir:")):
        model = timm.create_model(spec, pretrained=True)
        return model, spec.removeprefix("hf-hub:") if spec.startswith("hf-hub:") else None
    if weights is None and not pretrained:
        raise InputError(f"Expected trained weights for {spec!r}: pass `--weights FILE.safetensors` (your model's state dict), "
                         "`--pretrained` (the library's weights), or a `hf-hub:`/`local-dir:` model.")
    library, _, name = spec.rpartition(":") if spec.startswith(("timm:", "torchvision:")) else ("", "", spec)
    if library != "torchvision" and timm.is_model(name):  # a name both libraries know is timm's unless prefixed
        model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes)
        base = model.pretrained_cfg.get("hf_hub_id") if pretrained else None
    elif library != "timm" and name in tvm.list_models(module=tvm):
        model = tvm.get_model(name, weights="DEFAULT" if pretrained else None, **({} if pretrained else {"num_classes": num_classes}))
        base = None
    else:
        raise InputError(f"Expected MODEL to be a timm or torchvision model name (`torchvision:NAME` where both have it), "
                         f"`hf-hub:ORG/NAME` or `local-dir:PATH`, but got {spec!r}.")
    if weights is not None:
        _load_weights(model, spec, weights, num_classes)
    return model, base


def _load_weights(model: nn.Module, spec: str, weights: str, num_classes: int) -> None:
    """Fill ``model`` from the ``--weights`` safetensors file, with errors that say which fix applies."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(
            f"Expected --weights to be a safetensors state dict, but {weights} is not one ({str(e)[:120]}): convert a torch "
            "checkpoint with `safetensors.torch.save_file(torch.load(PATH, weights_only=True), 'weights.safetensors')`."
        ) from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise InputError(f"The weights in {weights} do not fit {spec} with {num_classes} classes ({str(e).splitlines()[0][:200]}): "
                         "pass the weights of this architecture, trained for the data's classes.") from None


def data_transform(model: nn.Module, args: argparse.Namespace, image_size: tuple[int, int] | None = None) -> Any:
    """timm's eval transform for ``model`` (its own data config, overridden by --input-size/--crop-pct/--mean/--std).

    Without --input-size, images that all share one ``image_size`` are taken at that size
    (no crop): a library's ImageNet default (224 px) would score CIFAR-sized images at chance.
    """
    from timm.data import create_transform, resolve_data_config

    default = resolve_data_config({}, model=model)["input_size"]
    channels = args.input_size[0] if args.input_size else default[0]
    check_preprocessing(args, channels)
    if not args.input_size and image_size is not None and tuple(default[1:]) != image_size:
        args.input_size = [channels, *image_size]
        args.crop_pct = args.crop_pct or 1.0
        _say(f"input size {args.input_size} from the data (every image is {image_size[1]}×{image_size[0]} px; "
             f"the model's default is {list(default)}): pass --input-size to choose another", err=True)
    overrides = {k: v for k, v in (("input_size", args.input_size), ("crop_pct", args.crop_pct), ("mean", args.mean), ("std", args.std)) if v}
    return create_transform(**resolve_data_config(overrides, model=model))


def shared_image_size(dataset: Any, sample: int = 50) -> tuple[int, int] | None:
    """(H, W) when the first ``sample`` images of an ImageFolder all have it (read from their headers), else None."""
    from PIL import Image

    sizes = set()
    for path, _ in dataset.samples[:: max(1, len(dataset.samples) // sample)][:sample]:
        with Image.open(path) as image:
            sizes.add((image.height, image.width))
    return sizes.pop() if len(sizes) == 1 else None


def check_not_at_chance(model: nn.Module, loader: Any, num_classes: int, device: str, args: argparse.Namespace, batches: int = 8) -> None:
    """Refuse to wrap an original that scores near chance on the owner's images: its preprocessing
    (size, mean/std) is almost certainly not the one it was trained with, and a box of it is useless."""
    from .evaluate import evaluate

    if args.allow_low_accuracy:
        return
    some = [batch for _, batch in zip(range(batches), loader)]
    accuracy = evaluate(model.to(device), some, device=device)["acc"]
    chance = 100.0 / num_classes
    if accuracy < 1.5 * chance:
        raise InputError(
            f"The original model scores {accuracy:.1f}% on {sum(len(y) for _, y in some)} of your images, near chance "
            f"({chance:.1f}%): the preprocessing is probably not the one it was trained with. Check --input-size, --mean and "
            "--std (and --weights), or pass --allow-low-accuracy to wrap it anyway.")


def transform_of(config: Any) -> Any:
    """The eval transform a bundle publishes (timm's create_transform from its config)."""
    from timm.data import create_transform

    return create_transform(input_size=config.input_size, interpolation=config.interpolation or "bilinear", crop_pct=config.crop_pct or 1.0,
                            crop_mode=config.crop_mode or "center", mean=config.mean, std=config.std)


def splits(root: str, transform: Any, limit: int | None, seed: int = 0) -> tuple[Any, Any | None]:
    """(train, held-out) ImageFolder datasets: ROOT/train and ROOT/val or ROOT/test when present, else ROOT alone."""
    root_path = Path(root)
    train_dir = root_path / "train" if (root_path / "train").is_dir() else root_path
    held_dir = next((root_path / d for d in ("val", "test") if (root_path / d).is_dir()), None) if train_dir != root_path else None
    train = _limited(image_folder(train_dir, transform), limit, seed)
    held = _limited(image_folder(held_dir, transform), max(limit // 5, 20) if limit else None, seed) if held_dir else None
    return train, held


def _limited(dataset: Any, limit: int | None, seed: int) -> Any:
    import torch
    from torch.utils.data import Subset

    if limit is None or limit >= len(dataset):
        return dataset
    return Subset(dataset, balanced_picks(torch.tensor(dataset.targets), [limit], seed)[0].tolist())


# ------------------------------------------------------------------------ checks before training
def check_options(args: argparse.Namespace) -> None:
    """The numeric flags and --device of wrap and distill, before anything is loaded."""
    for flag, value, low in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1), ("--workers", args.workers, 0)):
        if value < low:
            raise InputError(f"Expected {flag} to be an integer ≥ {low}, but got {value}.")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"Expected --limit to be a number of training images ≥ 1, but got {args.limit}: leave it out to use them all.")
    if not math.isfinite(args.lr) or args.lr <= 0:
        raise InputError(f"Expected --lr to be a finite number > 0, but got {args.lr}.")
    args.device = resolve_device(args.device)
    check_device(args.device)


def resolve_device(name: str) -> str:
    """``auto`` as cuda where this machine has it, else cpu; any other name as given. Resolved
    when a command runs, not as the parser's default: asking torch takes seconds of imports."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(name: str) -> None:
    """A device this machine has: an unknown type (``tpu``) or a missing one (``cuda`` without a
    GPU) would otherwise fail inside torch, after the data and model are loaded. Nothing is
    allocated: under torchrun each rank chooses its GPU later, and a probe would hold GPU 0."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    have = ["cpu"] + (["cuda"] if gpus == 1 else [f"cuda:0…{gpus - 1}"] if gpus else [])
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise InputError(f"Expected --device to be one this machine has ({', '.join(have)}), but got {name!r} "
                         f"({str(e).splitlines()[0][:80]}…).") from None
    if device.type == "cpu":
        return
    backend = torch.backends.mps if device.type == "mps" else getattr(torch, device.type, None)
    available = backend is not None and hasattr(backend, "is_available") and backend.is_available()
    count = torch.cuda.device_count() if device.type == "cuda" and available else 1
    if not available or (device.index or 0) >= count:
        raise InputError(f"Expected --device to be one this machine has ({', '.join(have)}), but got {name!r}: "
                         "pass one of those (the default picks cuda when there is one).")


def check_preprocessing(args: argparse.Namespace, channels: int) -> None:
    """--input-size, --crop-pct, --mean and --std against the model's channels and the bundle
    loader's rules; timm broadcasts one mean or std value to every channel."""
    for flag, values in (("--mean", args.mean), ("--std", args.std)):
        if values is not None and len(values) not in (1, channels):
            raise InputError(f"Expected {flag} to give 1 or {channels} values (one per input channel), but got {len(values)}: {values}.")
    mean = tuple(args.mean) * (channels // len(args.mean)) if args.mean else (0.0,) * channels
    std = tuple(args.std) * (channels // len(args.std)) if args.std else (1.0,) * channels
    size = tuple(args.input_size) if args.input_size else (channels, 1, 1)
    _check_for_config("--input-size", size, "3 positive integers C H W within the bounds of a key (C ≤ 64, H, W ≤ 2048)", input_size=size,
                      mean=(0.0,) * size[0], std=(1.0,) * size[0])
    _check_for_config("--mean", args.mean, "finite numbers", input_size=(channels, 1, 1), mean=mean, std=(1.0,) * channels)
    _check_for_config("--std", args.std, "finite numbers > 0", input_size=(channels, 1, 1), mean=(0.0,) * channels, std=std)
    _check_for_config("--crop-pct", args.crop_pct, "a number in (0, 2]", crop_pct=args.crop_pct)


def check_card_metadata(license: str | None, dataset_name: str | None) -> None:
    """--license and --dataset-name, checked with the bundle loader's rules before training: a
    wrap that writes "CIFAR 10" trains, then leaves a bundle that inspect, verify and push refuse."""
    _check_for_config("--license", license, "a Hub license identifier (letters, digits and `_ . - /`), e.g. `apache-2.0` or `mit`",
                      license=license)
    suggestion = re.sub(r"[^A-Za-z0-9_.\-/]+", "-", dataset_name or "").strip("-_./")
    _check_for_config("--dataset-name", dataset_name, "a Hub dataset name (letters, digits and `_ . - /`), e.g. "
                      + (f"`{suggestion}`" if suggestion else "`cifar10`"), datasets=[dataset_name] if dataset_name else None)


def finishing_wrap(key_out: Path, checkpoint_dir: str | None) -> bool:
    """Whether ``key_out`` holds the very key of the wrap checkpointed in ``checkpoint_dir``: a
    rerun after a save that failed past the key then finishes that wrap instead of refusing."""
    from .key import Key
    from .wrap import saved_key

    if checkpoint_dir is None or not key_out.is_file():
        return False
    try:
        stored = saved_key(checkpoint_dir)
        return stored is not None and Key.load(key_out).fingerprint == stored.fingerprint
    except (SdboxError, OSError, ValueError):
        return False


def check_outputs(out: Path, key_out: Path, checkpoint_dir: str | None) -> None:
    """Every path wrap will write, before training: an error found after an hour of training
    loses the hour (and, once the key is written, the rerun refuses to overwrite it)."""
    from .key import BUNDLE_MARKERS
    from .publish import find_secret_files

    if key_out.resolve().parent == out.resolve() or out.resolve() in key_out.resolve().parents:
        raise InputError(f"Expected --key-out outside --out, but {key_out} is inside {out}: uploading the bundle folder would publish the key.")
    if os.path.lexists(key_out) and not finishing_wrap(key_out, checkpoint_dir):
        raise FileExistsError(f"Refusing to overwrite the key file {key_out}: it may open boxes you published. Choose another path.")
    folders = [("--out", out), ("--key-out's folder", key_out.parent)]
    if checkpoint_dir is not None:
        folders.append(("--checkpoint-dir", Path(checkpoint_dir)))
        if Path(checkpoint_dir).resolve() == out.resolve() or out.resolve() in Path(checkpoint_dir).resolve().parents:
            raise InputError(f"Expected --checkpoint-dir outside --out, but {checkpoint_dir} is inside {out}: the checkpoint holds "
                             "the key and the original model, and an interrupted wrap leaves it there. Choose another folder.")
    for flag, folder in folders:
        if folder.exists() and not folder.is_dir():
            raise InputError(f"Expected {flag} to be a folder, but {folder} is a file: choose another path.")
    bundle_files = [name for name in BUNDLE_MARKERS if (key_out.parent / name).exists()]
    if bundle_files:
        raise InputError(f"Expected --key-out outside any bundle folder, but {key_out.parent} holds {', '.join(bundle_files)}: "
                         "uploading that folder would publish the key. Choose another folder.")
    secrets = find_secret_files(out) if out.is_dir() else {}
    if secrets:
        raise InputError(f"Expected --out to hold no key or checkpoint, but {out} holds {sorted(secrets)[:3]}: uploading the bundle "
                         "folder would publish them. Move them out, or choose another --out.")


def resumed_epochs(checkpoint_dir: str, epochs: int) -> int | None:
    """The epochs an interrupted wrap of these ``epochs`` finished in ``checkpoint_dir``, or None
    when there is nothing to resume: a resumed wrap says so on its first line, so that a person
    who reran the command after Ctrl-C sees at once that the finished epochs are kept. A damaged
    checkpoint or one started with other arguments is not announced: the wrap names its problem.
    """
    from . import checkpoint

    return checkpoint.epochs_done(checkpoint.checkpoint_path(checkpoint_dir), epochs)


def resume_note(checkpoint_dir: str, done: int, epochs: int) -> str:
    """The first line of a resumed wrap: the epoch it resumes from, and how to start over instead."""
    start_over = f"delete {checkpoint_dir} to start over"
    if done >= epochs:
        return f"sdbox wrap: resuming the finished wrap in {checkpoint_dir} ({done} of {epochs} epochs): nothing is trained again; {start_over}."
    return f"sdbox wrap: resuming from epoch {done + 1} of {epochs} ({done} done, kept in {checkpoint_dir}); {start_over}."


def check_label_names(classes: list[str]) -> None:
    """The data's class folder names become the bundle's label_names: same rules as the loader's."""
    _check_for_config("--data", classes, "2 to 100,000 class folders with names of at most 200 characters",
                      num_classes=len(classes), label_names=list(classes))


_STAND_IN = dict(architecture="stand_in", num_classes=2, input_size=(3, 1, 1), mean=(0.0,) * 3, std=(1.0,) * 3, key_fingerprint="0" * 64)


def _check_for_config(flag: str, value: Any, expected: str, **fields: Any) -> None:
    """Raise unless the bundle loader (:meth:`BoxConfig.validate`) accepts ``fields``, checked on a
    stand-in config: the CLI then accepts exactly what a bundle may hold, whatever the rules become."""
    from .config import BoxConfig

    if value is None:
        return
    try:
        BoxConfig(**{**_STAND_IN, **fields}).validate(flag)
    except BundleError:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise InputError(f"Expected {flag} to be {expected}, but got {shown}: a bundle holding it would not load "
                         "(`sdbox inspect`, `verify` and `push` refuse it).") from None


# ---------------------------------------------------------------------------------- commands
def run_wrap(args: argparse.Namespace) -> int:
    started = time.monotonic()

    from safetensors import SafetensorError
    from torch.utils.data import DataLoader

    from . import checkpoint, distributed
    from .box import CONFIG_NAME, SafeBox

    check_options(args)
    check_card_metadata(args.license, args.dataset_name)
    out, key_out = Path(args.out), Path(args.key_out)
    # Always checkpoint: Ctrl-C, a crash or a failed save then loses no finished epoch.
    args.checkpoint_dir = args.checkpoint_dir or str(key_out.with_name(key_out.name + ".checkpoint"))
    check_outputs(out, key_out, args.checkpoint_dir)
    if (out / CONFIG_NAME).exists() and not args.overwrite:
        raise FileExistsError(f"{out} already holds a bundle: pass --overwrite to replace it, or choose another --out.")
    device = distributed.init_from_env(args.device)  # under torchrun: one wrap over all ranks
    done = resumed_epochs(args.checkpoint_dir, args.epochs)
    if done is not None and distributed.is_main_process():
        _say(resume_note(args.checkpoint_dir, done, args.epochs), err=True)
    train, _ = splits(args.data, None, None)
    num_classes = len(train.classes)
    check_label_names(train.classes)
    model, base = load_model(args.model, pretrained=args.pretrained, weights=args.weights, num_classes=num_classes)
    _check_for_config("MODEL's Hub id", base, "a Hub repo id (letters, digits and `_ . - /`)", base_model=base)
    train, held = splits(args.data, data_transform(model, args, shared_image_size(train)), args.limit)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, num_workers=args.workers)
    val_loader = DataLoader(held, batch_size=args.batch_size, num_workers=args.workers) if held is not None else None
    check_not_at_chance(model, val_loader or DataLoader(train, batch_size=args.batch_size, shuffle=True), num_classes, device or args.device, args)
    if distributed.is_main_process():
        _say(f"wrapping {args.model} on {len(train)} images of {args.data} ({num_classes} classes) for {args.epochs} epoch(s)", err=True)
    # One bar over the epochs left (its stages are the wrap's epoch bars), and the wall time from the command's start.
    with OverallProgress(args.epochs - (done or 0), "sdbox wrap", unit="epoch", started=started,
                         enabled=not args.no_progress and distributed.is_main_process()):
        try:
            with warnings.catch_warnings():
                if done is not None:  # said on the first line already; the library's own warning would say it again, with a source line
                    warnings.simplefilter("ignore", ResumeWarning)
                box = SafeBox.wrap(model, loader, val_loader=val_loader, epochs=args.epochs, lr=args.lr, lam=args.lam,
                                   max_accuracy_drop=args.max_accuracy_drop, device=device, progress=not args.no_progress,
                                   checkpoint_dir=args.checkpoint_dir, keep_checkpoint=True)
        except FidelityError as e:
            raise FidelityError(
                f"No epoch kept accuracy within {args.max_accuracy_drop} points of the original ({e.accuracy_before:.2f}%): the closest "
                f"was epoch {e.closest['epoch']} with clean {e.closest['clean_acc']:.2f}% and keyed {e.closest['keyed_acc']:.2f}%. "
                f"Rerun with a larger --max-accuracy-drop, a lower --lr (now {args.lr}) or more --epochs (now {args.epochs}), after "
                f"deleting {args.checkpoint_dir} (it belongs to these settings). Your model is unchanged.") from None
        if not distributed.is_main_process():
            return 0  # rank 0 writes the key and the bundle
        box.box_config.license, box.box_config.base_model = args.license, base
        box.box_config.datasets = [args.dataset_name] if args.dataset_name else None
        kept = f"the checkpoint in {args.checkpoint_dir} keeps the finished wrap: free the space and rerun the same command"
        try:
            box.key.save(key_out, overwrite=finishing_wrap(key_out, args.checkpoint_dir))  # first: a wrap whose key is lost is lost
            box.eval().save_pretrained(out)
        except (OSError, SafetensorError) as e:
            raise SaveError(f"Could not write the key or the bundle ({e}); {kept} (it resumes without training).") from None
        checkpoint.remove(checkpoint.checkpoint_path(args.checkpoint_dir), remove_folder=True)  # it holds the key: gone once both are safe
        note = license_warning(box.box_config, fix="pass --license ID (e.g. apache-2.0)")
        if note:
            _say(f"sdbox wrap: warning: {note}", err=True)
        fid = box.box_config.fidelity
        _say(f"box: {out}  (clean top-1 {fid['clean_acc_before']:.2f}% → {fid['clean_acc_after']:.2f}%, keyed {fid['keyed_acc_after']:.2f}%)",
             f"key: {key_out}  (fingerprint {box.key.fingerprint[:12]}…; keep it private and backed up)",
             f"next: sdbox inspect {out}  |  sdbox push {out} ORG/NAME --private")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from .card import strongest_attack_line
    from .config import read_config

    folder = Path(args.box)
    config = read_config(_config_path(folder))
    if args.json:
        print(json.dumps(config.to_json(), indent=2))  # ensure_ascii: every control character is a \uXXXX escape
        return 0
    loadable = "plain timm: timm.create_model('local-dir:…' or 'hf-hub:…', pretrained=True)" if config.model_library == "timm" else (
        "sdbox: SafeBox.from_pretrained(path)" + ("" if config.model_library == "torchvision" else ", model_class=YourModel"))
    lines = [
        f"architecture      {config.architecture} ({config.model_library}), {config.num_classes} classes",
        f"loads with        {loadable}",
        f"input             {list(config.input_size)}, {config.interpolation or '?'} resize, crop_pct {config.crop_pct}, {config.crop_mode or '?'}",
        f"normalisation     mean {list(config.mean)}, std {list(config.std)} (from {config.normalization_source})",
        f"classes           {', '.join(config.label_names[:10]) + (' …' if len(config.label_names) > 10 else '') if config.label_names else '(not recorded)'}",
        f"model_args        {config.model_args or '{}'}",
        f"key fingerprint   {config.key_fingerprint}  (λ = {config.lam})",
        f"settings          t_dis {config.t_dis}, ω {config.omega}, η {config.eta}"
        + "".join(f", {k} {v}" for k, v in config.method.items() if k not in ("lam", "t_dis", "omega", "eta")),
        f"wrapped by        sdbox {config.sdbox_version or '(a version from before bundles were stamped)'}",
        "fidelity          " + (", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in config.fidelity.items()) or "(none)"),
        f"report            {', '.join(sorted(config.report)) if config.report else '(no protection report run)'}",
        *([f"strongest attack  {attack}"] if (attack := strongest_attack_line(config, markdown=False)) else []),
        f"card metadata     license {config.license or 'unknown'}, base_model {config.base_model or '-'}, datasets {config.datasets or '-'}",
    ]
    _say(*lines)
    _warn_about_secrets(folder)
    return 0


def _warn_about_secrets(folder: Path) -> None:
    """Say what in a bundle folder must not be published, and whether `sdbox push` would refuse it."""
    from .publish import find_secret_files, plan_upload

    if not folder.is_dir():
        return
    secrets = find_secret_files(folder)
    if secrets:
        shown = "; ".join(f"{name!r} ({kind})" for name, kind in list(secrets.items())[:5])
        _say(f"WARNING: {folder} holds {len(secrets)} secret file(s): {shown}. Move them out before uploading the folder "
             "(`sdbox push` leaves them out; `hf upload` would publish them).", err=True)
    try:
        plan_upload(folder)
    except PublishError as e:
        _say(f"WARNING: `sdbox push` would refuse this folder: {e}", err=True)


def run_verify(args: argparse.Namespace) -> int:
    from .config import read_config
    from .formats import CONFIG_NAME, WEIGHTS_NAME, file_sha256
    from .key import Key

    config = read_config(_config_path(Path(args.box)))
    key = Key.load(args.key)
    if key.shape != config.key_shape or key.fingerprint != config.key_fingerprint:
        _say(f"NO: this key (fingerprint {key.fingerprint[:12]}…) does not open {args.box} (expects {config.key_fingerprint[:12]}…).")
        return 1
    weights = Path(args.box) / WEIGHTS_NAME
    if not weights.is_file():
        _say(f"NO: {args.box} has no {WEIGHTS_NAME}: download the bundle again.")
        return 1
    if config.weights_sha256 is not None and file_sha256(weights) != config.weights_sha256:
        _say(f"NO: {weights} does not match the checksum in {CONFIG_NAME}: the weights were changed or damaged; download the bundle again.")
        return 1
    if config.keyed_norm and key.norm is None:
        _say(f"NO: {args.box} was wrapped with keyed normalisation, but {args.key} carries none: use the key file its wrap wrote.")
        return 1
    _say(f"OK: this key opens {args.box} (fingerprint {key.fingerprint[:12]}…, λ = {key.lam}), and its weights match their checksum.")
    return 0


def run_push(args: argparse.Namespace) -> int:
    from .hub import push_folder

    commit = push_folder(args.box, args.repo, private=args.private, token=args.token)
    _say(f"pushed {args.box} to {args.repo} ({'private' if args.private else 'visibility as the Hub defaults'}): {commit.commit_url}")
    return 0


def run_distill(args: argparse.Namespace) -> int:
    started = time.monotonic()

    from torch.utils.data import DataLoader

    from .box import SafeBox
    from .distill import distill
    from .evaluate import evaluate
    from .key import Key
    from .teacher import KeyedTeacher

    check_options(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"Expected --out to be a folder, but {out} is a file: choose another path.")
    box = SafeBox.from_pretrained(args.box)
    config = box.box_config
    teacher = KeyedTeacher(box, Key.load(args.key)) if args.key else box
    student = architecture.build("timm" if _is_timm(args.student) else "torchvision", args.student, config.num_classes,
                                 {"in_chans": config.input_size[0]} if _is_timm(args.student) else None)
    train, held = splits(args.data, transform_of(config), args.limit)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=len(train) > args.batch_size, num_workers=args.workers)
    _say(f"distilling {args.student} from {args.box} ({'with the key' if args.key else 'WITHOUT a key: what anyone gets'})", err=True)
    with OverallProgress(args.epochs, "sdbox distill", unit="epoch", started=started, enabled=not args.no_progress):
        distill(student, teacher, loader, T=args.T, alpha=args.alpha, epochs=args.epochs, lr=args.lr, device=args.device,
                progress=not args.no_progress)
        architecture.save_student(student.cpu(), out, architecture.box_data_config(config), label_names=config.label_names,
                                  provenance={"teacher": args.box, "keyed": bool(args.key)})
        if held is not None:
            acc = evaluate(student, DataLoader(held, batch_size=args.batch_size), device=args.device)["acc"]
            _say(f"student top-1 on {len(held)} held-out images: {acc:.2f}%")
        _say(f"student: {out}")
    return 0


def _say(*lines: str, err: bool = False) -> None:
    """Print each line escaped (:func:`~sdbox.terminal.escaped`), to stdout or stderr."""
    for line in lines:
        print(escaped(line), file=sys.stderr if err else sys.stdout)


def _is_timm(name: str) -> bool:
    import timm

    return timm.is_model(name)


def _config_path(folder: Path) -> Path:
    from .formats import CONFIG_NAME

    path = folder / CONFIG_NAME
    if not path.is_file():
        raise InputError(f"{folder} holds no {CONFIG_NAME}: pass a folder written by `sdbox wrap --out` or `box.save_pretrained`.")
    return path


# ------------------------------------------------------------------------------------ parsers
def _common(p: argparse.ArgumentParser, lr: float, epochs: int) -> None:
    p.add_argument("--epochs", type=int, default=epochs, help=f"Epochs (default {epochs}).")
    p.add_argument("--lr", type=float, default=lr, help=f"Learning rate (default {lr}).")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, help="Use a class-balanced subset of this many training images (quick runs).")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes.")
    p.add_argument("--device", default="auto", help="auto (cuda when this machine has it), cpu, cuda, cuda:1, …")
    p.add_argument("--no-progress", action="store_true", help="No progress bars.")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("wrap", help="Wrap a trained model into a box: a bundle folder to publish and a key file to keep.")
    p.add_argument("model", metavar="MODEL", help="hf-hub:ORG/NAME, local-dir:PATH (timm), or a timm / torchvision name "
                   "(torchvision:NAME where both libraries have it) with --weights or --pretrained.")
    p.add_argument("--data", required=True, help="ImageFolder root: DIR/<class>/<image>, or DIR/train (+ DIR/val or DIR/test held out).")
    p.add_argument("--out", required=True, help="Bundle folder to write (config.json, model.safetensors, README.md).")
    p.add_argument("--key-out", required=True, help="Key file to write, outside --out (mode 0600, never overwritten).")
    p.add_argument("--weights", help="Your trained weights (a safetensors state dict) for a timm / torchvision MODEL name.")
    p.add_argument("--pretrained", action="store_true", help="Start from the library's pretrained weights for MODEL.")
    p.add_argument("--lam", type=float, default=0.5, help="Key mixing weight λ (default 0.5).")
    p.add_argument("--max-accuracy-drop", type=float, default=3.0, help="Fidelity guard, in top-1 points on the held-out images (default 3.0).")
    p.add_argument("--overwrite", action="store_true", help="Replace a bundle already in --out.")
    p.add_argument("--allow-low-accuracy", action="store_true", help="Wrap even if the original scores near chance on your images.")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), help="Override the model's input size.")
    p.add_argument("--crop-pct", type=float, help="Override the model's eval crop_pct.")
    p.add_argument("--mean", type=float, nargs="+", help="Override the model's normalisation mean.")
    p.add_argument("--std", type=float, nargs="+", help="Override the model's normalisation std.")
    p.add_argument("--license", help="License of the published weights, a Hub identifier (e.g. apache-2.0).")
    p.add_argument("--dataset-name", help="Name of the data, for the card (e.g. cifar10).")
    p.add_argument("--checkpoint-dir", help="Where the wrap checkpoints each epoch, so that an interrupted wrap resumes (default: "
                   "KEY-OUT.checkpoint beside the key; it holds the key and the original model: guard it). Deleted once the key "
                   "and the bundle are written.")
    _common(p, lr=0.05, epochs=12)
    p.epilog = ("Protection needs a budget: the defaults (12 epochs at lr 0.05 over your whole training set) are the smallest "
                "wrap that protected in our measurements; shorter wraps did not (docs/benchmark.md).")
    p.set_defaults(run=run_wrap)

    p = sub.add_parser("inspect", help="Show what a bundle publishes: model, preprocessing, classes, fidelity, report.")
    p.add_argument("box", metavar="DIR")
    p.add_argument("--json", action="store_true", help="Print the parsed config.json instead.")
    p.set_defaults(run=run_inspect)

    p = sub.add_parser("verify", help="Does this key open this box? (exit 0 yes, 1 no; the key is never printed)")
    p.add_argument("box", metavar="DIR")
    p.add_argument("--key", required=True, metavar="FILE")
    p.set_defaults(run=run_verify)

    p = sub.add_parser("push", help="Upload a bundle folder to the Hugging Face Hub in one commit, key files left out.")
    p.add_argument("box", metavar="DIR")
    p.add_argument("repo", metavar="REPO", help="ORG/NAME on the Hub (created if absent).")
    p.add_argument("--private", action="store_true", help="Create the repo private.")
    p.add_argument("--token", default=os.environ.get("HF_TOKEN"), help="Hub token (default: $HF_TOKEN or `hf auth login`).")
    p.set_defaults(run=run_push)

    p = sub.add_parser("distill", help="Distil a student from a box: with --key as its owner, without as anyone else.")
    p.add_argument("box", metavar="BOX", help="Bundle folder or Hub repo id (timm or torchvision boxes).")
    p.add_argument("--key", metavar="FILE", help="The owner's key file (without it: what anyone distils).")
    p.add_argument("--data", required=True, help="ImageFolder root, as for `sdbox wrap`.")
    p.add_argument("--student", required=True, help="timm or torchvision model name, trained from scratch.")
    p.add_argument("--out", required=True, help="Folder for the student's model.safetensors and config.json.")
    p.add_argument("--T", type=float, default=4.0, help="Distillation temperature.")
    p.add_argument("--alpha", type=float, default=0.9, help="Weight of the distillation term.")
    _common(p, lr=1e-3, epochs=5)
    p.set_defaults(run=run_distill)
