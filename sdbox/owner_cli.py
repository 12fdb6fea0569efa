"""The owner's commands: ``sdbox wrap | inspect | verify | push | distill``.

Everything an owner (or a key holder) does, without writing a script: wrap a trained model on an
ImageFolder tree into a bundle and a key file kept apart, look at what a bundle publishes, check
that a key opens a box (without printing it), publish a bundle with no key file in it, and
distil a student from a box. Errors are one line naming the problem and the fix, exit code 1;
usage errors exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset

from . import architecture, distributed
from .box import CONFIG_NAME, WEIGHTS_NAME, SafeBox, read_config
from .data import balanced_picks, image_folder
from .errors import InputError
from .files import atomic_path, write_text
from .key import Key, find_key_files


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
        from safetensors.torch import load_file

        model.load_state_dict(load_file(weights))
    return model, base


def data_transform(model: nn.Module, args: argparse.Namespace) -> Any:
    """timm's eval transform for ``model`` (its own data config, overridden by --input-size/--crop-pct/--mean/--std)."""
    from timm.data import create_transform, resolve_data_config

    overrides = {k: v for k, v in (("input_size", args.input_size), ("crop_pct", args.crop_pct), ("mean", args.mean), ("std", args.std)) if v}
    return create_transform(**resolve_data_config(overrides, model=model))


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
    if limit is None or limit >= len(dataset):
        return dataset
    return Subset(dataset, balanced_picks(torch.tensor(dataset.targets), [limit], seed)[0].tolist())


# ---------------------------------------------------------------------------------- commands
def run_wrap(args: argparse.Namespace) -> int:
    device = distributed.init_from_env(args.device)  # under torchrun: one wrap over all ranks
    out, key_out = Path(args.out), Path(args.key_out)
    if key_out.resolve().parent == out.resolve() or out.resolve() in key_out.resolve().parents:
        raise InputError(f"Expected --key-out outside --out, but {key_out} is inside {out}: uploading the bundle folder would publish the key.")
    if key_out.exists():
        raise FileExistsError(f"Refusing to overwrite the key file {key_out}: it may open boxes you published. Choose another path.")
    train, _ = splits(args.data, None, None)
    num_classes = len(train.classes)
    model, base = load_model(args.model, pretrained=args.pretrained, weights=args.weights, num_classes=num_classes)
    train, held = splits(args.data, data_transform(model, args), args.limit)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, num_workers=args.workers)
    val_loader = DataLoader(held, batch_size=args.batch_size, num_workers=args.workers) if held is not None else None
    if distributed.is_main_process():
        print(f"wrapping {args.model} on {len(train)} images of {args.data} ({num_classes} classes) for {args.epochs} epoch(s)", file=sys.stderr)
    box = SafeBox.wrap(model, loader, val_loader=val_loader, epochs=args.epochs, lr=args.lr, lam=args.lam,
                       max_accuracy_drop=args.max_accuracy_drop, device=device, progress=not args.no_progress,
                       checkpoint_dir=args.checkpoint_dir)
    if not distributed.is_main_process():
        return 0  # rank 0 writes the key and the bundle
    box.box_config.license, box.box_config.base_model = args.license, base
    box.box_config.datasets = [args.dataset_name] if args.dataset_name else None
    box.key.save(key_out)  # first: a wrap whose key is lost is lost
    box.eval().save_pretrained(out)
    fid = box.box_config.fidelity
    print(f"box: {out}  (clean top-1 {fid['clean_acc_before']:.2f}% → {fid['clean_acc_after']:.2f}%, keyed {fid['keyed_acc_after']:.2f}%)")
    print(f"key: {key_out}  (fingerprint {box.key.fingerprint[:12]}…; keep it private and backed up)")
    print(f"next: sdbox inspect {out}  |  sdbox push {out} ORG/NAME --private")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    folder = Path(args.box)
    config = read_config(_config_path(folder))
    if args.json:
        print(json.dumps(config.to_json(), indent=2))
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
        f"settings          t_dis {config.t_dis}, ω {config.omega}, η {config.eta}",
        "fidelity          " + (", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in config.fidelity.items()) or "(none)"),
        f"report            {', '.join(sorted(config.report)) if config.report else '(no protection report run)'}",
        f"card metadata     license {config.license or 'unknown'}, base_model {config.base_model or '-'}, datasets {config.datasets or '-'}",
    ]
    print("\n".join(lines))
    keys = find_key_files(folder) if folder.is_dir() else []
    if keys:
        print(f"WARNING: {folder} holds key file(s) {[p.name for p in keys]}: move them out before uploading the folder.", file=sys.stderr)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    config = read_config(_config_path(Path(args.box)))
    key = Key.load(args.key)
    if key.shape != config.key_shape or key.fingerprint != config.key_fingerprint:
        print(f"NO: this key (fingerprint {key.fingerprint[:12]}…) does not open {args.box} (expects {config.key_fingerprint[:12]}…).")
        return 1
    print(f"OK: this key opens {args.box} (fingerprint {key.fingerprint[:12]}…, λ = {key.lam}).")
    return 0


def run_push(args: argparse.Namespace) -> int:
    from .hub import push_folder

    commit = push_folder(args.box, args.repo, private=args.private, token=args.token)
    print(f"pushed {args.box} to {args.repo} ({'private' if args.private else 'visibility as the Hub defaults'}): {commit.commit_url}")
    return 0


def run_distill(args: argparse.Namespace) -> int:
    from .distill import distill
    from .evaluate import evaluate
    from .teacher import KeyedTeacher

    box = SafeBox.from_pretrained(args.box)
    config = box.box_config
    teacher = KeyedTeacher(box, Key.load(args.key)) if args.key else box
    student = architecture.build("timm" if _is_timm(args.student) else "torchvision", args.student, config.num_classes,
                                 {"in_chans": config.input_size[0]} if _is_timm(args.student) else None)
    train, held = splits(args.data, transform_of(config), args.limit)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=len(train) > args.batch_size, num_workers=args.workers)
    print(f"distilling {args.student} from {args.box} ({'with the key' if args.key else 'WITHOUT a key: what anyone gets'})", file=sys.stderr)
    distill(student, teacher, loader, T=args.T, alpha=args.alpha, epochs=args.epochs, lr=args.lr, device=args.device, progress=not args.no_progress)
    out = Path(args.out)
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        from safetensors.torch import save_model

        save_model(student.cpu(), str(tmp))
    write_text(out / CONFIG_NAME, json.dumps({"architecture": args.student, "num_classes": config.num_classes,
                                              "label_names": config.label_names, "teacher": args.box, "keyed": bool(args.key),
                                              "pretrained_cfg": {k: v for k, v in config.to_json()["pretrained_cfg"].items()
                                                                 if k not in ("first_conv", "classifier")}}, indent=2))
    if held is not None:
        acc = evaluate(student, DataLoader(held, batch_size=args.batch_size), device=args.device)["acc"]
        print(f"student top-1 on {len(held)} held-out images: {acc:.2f}%")
    print(f"student: {out}")
    return 0


def _is_timm(name: str) -> bool:
    import timm

    return timm.is_model(name)


def _config_path(folder: Path) -> Path:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise InputError(f"{folder} holds no {CONFIG_NAME}: pass a folder written by `sdbox wrap --out` or `box.save_pretrained`.")
    return path


# ------------------------------------------------------------------------------------ parsers
def _common(p: argparse.ArgumentParser, lr: float) -> None:
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=lr, help=f"Learning rate (default {lr}).")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, help="Use a class-balanced subset of this many training images (quick runs).")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes.")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
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
    p.add_argument("--max-accuracy-drop", type=float, default=1.0, help="Fidelity guard, in top-1 points (default 1.0).")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), help="Override the model's input size.")
    p.add_argument("--crop-pct", type=float, help="Override the model's eval crop_pct.")
    p.add_argument("--mean", type=float, nargs="+", help="Override the model's normalisation mean.")
    p.add_argument("--std", type=float, nargs="+", help="Override the model's normalisation std.")
    p.add_argument("--license", help="License of the published weights, a Hub identifier (e.g. apache-2.0).")
    p.add_argument("--dataset-name", help="Name of the data, for the card (e.g. cifar10).")
    p.add_argument("--checkpoint-dir", help="Resume an interrupted wrap from here (the checkpoint holds the key: guard it).")
    _common(p, lr=0.01)
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
    _common(p, lr=1e-3)
    p.set_defaults(run=run_distill)
