"""SafeBox: the wrapped model, its public config, and save / load / push (ModelHubMixin contract).

A bundle is three fixed files, like a PEFT adapter: ``config.json`` (timm layout + ``sdbox``
section), ``model.safetensors`` and ``README.md``. The key is never an ``__init__`` argument (the
mixin copies those into config.json), never an attribute the bundle reads, never a file in it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn as nn
from huggingface_hub import ModelHubMixin, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HFValidationError, LocalEntryNotFoundError
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from . import __version__, architecture, distributed
from .card import fidelity_markdown, model_card
from .config import BoxConfig, read_config
from .formats import CONFIG_NAME, WEIGHTS_NAME, file_sha256
from .preprocessing import Normalization, resolve_normalization
from .preprocessing import EvalPipeline, eval_pipeline, layer_names, resolve_label_names
from .evaluate import evaluate
from .errors import BundleError, InputError, SdboxError, WrongKeyError
from .key import Key
from .publish import find_secret_files
from .fastpath import FastPath
from .checkpoint import CHECKPOINT_NAME
from .files import atomic_path, folder_lock, write_text
from .inputs import check_batch_of_one, check_classifier, check_labels, check_trainable, finite_number, first_batch, split_holdout
from .settings import SDBSettings
from .wrap import WrapResult, fine_tune, saved_key

CARD_NAME = "README.md"
# Never uploaded, whatever the folder holds: key files, wrap checkpoints (they hold the key) and
# hidden files (the atomic writer's temporary files).
KEY_FILE_PATTERNS = ["*.key", "*.key.*", f"*{CHECKPOINT_NAME}", ".*", "*/.*"]
# The smallest wrap that protected in our measurements (demo regime, issue 18: 12 epochs over
# all 49,000 training images at lr 0.05; 2 and 6 epochs did not).
PROTECTING_EPOCHS = 12
# Models a wrap has turned into a box: wrap fine-tunes in place, so wrapping one again would
# silently rewrite the first box's weights.
_WRAPPED_MODELS: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


class SafeBox(nn.Module, ModelHubMixin, tags=["sdbox", "safe-distillation-box"]):
    """A classifier whose soft labels only teach through its key. ``box(x)`` predicts as usual."""

    holds_classifier = True  # keyed normalisation states are named relative to ``self.model``

    def __init__(self, model: nn.Module, box_config: BoxConfig):
        super().__init__()
        self.model = model
        self.box_config = box_config
        self._key: Key | None = None
        self.wrap_result: WrapResult | None = None
        self.report_markdown: str | None = None
        self._card_repo_id: str | None = None  # set while push_to_hub writes the card for its repo

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @property
    def key(self) -> Key:
        """The key this box was wrapped with — only in the session that wrapped it."""
        if self._key is None:
            raise SdboxError(
                "This box has no key attached: bundles never contain one. Load the owner's key "
                "with `Key.load(path)` and pass it to `KeyedTeacher(box, key)`."
            )
        return self._key

    def __getstate__(self) -> dict[str, Any]:
        """Pickling (``torch.save(box)``, multiprocessing, ``copy.deepcopy``) never carries the key:
        a pickled box is as public as a bundle. Attach the key again with ``KeyedTeacher(box, key)``."""
        return {**super().__getstate__(), "_key": None}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------------------------ wrap
    @classmethod
    def wrap(
        cls,
        model: nn.Module,
        loader: Iterable,
        *,
        val_loader: Iterable | None = None,
        key: Key | None = None,
        epochs: int = 12,
        lr: float = 0.05,
        lam: float | None = None,
        omega: float | None = None,
        eta: float | None = None,
        t_dis: float | None = None,
        max_accuracy_drop: float = 3.0,
        device: str | torch.device | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        keep_checkpoint: bool = False,
        progress: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        weights: Any = None,
        settings: SDBSettings | None = None,
        fast: FastPath | None = None,
        label_names: Sequence[str] | None = None,
        model_args: dict[str, Any] | None = None,
    ) -> "SafeBox":
        """Fine-tune ``model`` **in place** into a box and pair it with a fresh (or given) key.

        ``loader`` yields normalised (images, labels) batches. Without ``val_loader``, 10% of
        ``loader``'s dataset is held out for the fidelity guard. The key is drawn in the space
        the inputs were normalised into, and the bundle publishes that preprocessing: it is read
        from the loader's own transform (a ``Normalize``, timm's ``create_transform``), else from
        mean/std (or torchvision ``weights``), else timm's ``pretrained_cfg`` or the data's range;
        ``box_config.normalization_source`` says which. Interpolation and crop are read from
        ``val_loader``'s (else ``loader``'s) Resize / CenterCrop; class names from ``label_names``,
        the dataset's ``classes`` or ``weights.meta["categories"]``. ``model_args`` are the
        constructor arguments that rebuild the model (timm records its own; give them for a
        custom model so ``from_pretrained(path, model_class=Cls)`` can build ``Cls(**model_args)``).
        ``settings`` (an :class:`~sdbox.settings.SDBSettings`) holds every method option; ``lam``,
        ``omega``, ``eta`` and ``t_dis`` override its fields when given.

        **Protection needs a budget.** The defaults (12 epochs at lr 0.05 over the owner's whole
        training set, a 3-point fidelity guard) are the first budget whose boxes protected in our
        measurements: the same recipe over 2–6 epochs left students without the key as good as
        or better than scratch (docs/benchmark.md, "The recipe that protects"). Fewer epochs warn. A wrap epoch
        costs about 3.5 training epochs of the model (measured for a cnn5 on 2 CPU cores: 2.4 min against 0.7).
        ``fast`` (a :class:`~sdbox.fastpath.FastPath`) sets bf16 autocast, channels_last and
        torch.compile; by default the first two are on for CUDA and everything is off on CPU.

        The model comes back in the train/eval mode it came in, and so does the box (which holds
        it): call ``box.eval()`` before inference if it was training. If wrap fails (the fidelity
        guard, a non-finite loss, Ctrl-C) the model gets its original weights back.
        ``checkpoint_dir`` makes an interrupted wrap resume; the checkpoint holds the key and
        the original model, so it is deleted once the wrap succeeds unless ``keep_checkpoint``
        (``box.wrap_result.kept_checkpoint`` says where it stays).
        """
        overrides = {k: v for k, v in (("lam", lam), ("t_dis", t_dis), ("omega", omega), ("eta", eta)) if v is not None}
        if key is not None and "lam" not in overrides and settings is None:
            overrides["lam"] = key.lam  # a given key brings its own λ
        settings = dataclasses.replace(settings or SDBSettings(), **overrides)
        if epochs is not None and isinstance(epochs, int) and epochs < PROTECTING_EPOCHS and settings.disturbance:
            warnings.warn(
                f"Wrapping for {epochs} epochs: in our measurements wraps of fewer than {PROTECTING_EPOCHS} epochs over the "
                "owner's whole training set did not protect (students without the key learnt as well as from scratch or "
                f"better; docs/benchmark.md, 'The recipe that protects'). Pass epochs={PROTECTING_EPOCHS} or more to protect.", stacklevel=2)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if not finite_number(max_accuracy_drop) or not 0 <= max_accuracy_drop <= 100:
            raise ValueError(f"Expected `max_accuracy_drop` in [0, 100] points, but got {max_accuracy_drop!r}.")
        if model in _WRAPPED_MODELS:
            raise InputError("This model is already a box's (wrap fine-tunes it in place, and the box holds it): wrapping it "
                             "again would rewrite that box. Wrap a copy, `SafeBox.wrap(copy.deepcopy(model), ...)`.")
        if checkpoint_dir is not None and os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
            raise InputError(f"Expected `checkpoint_dir` to be a folder, but {checkpoint_dir} is a file: pass a folder path.")
        check_trainable(model)
        x, y = first_batch(loader)
        num_classes = check_classifier(model.to(device), x.to(device))
        check_labels(y, num_classes, always=True)
        user_loader, user_val_loader = loader, val_loader
        if val_loader is None:
            loader, val_loader = split_holdout(loader)
        else:
            check_labels(first_batch(val_loader, "val_loader")[1], num_classes, always=True)
        check_batch_of_one(loader, model)
        norm = resolve_normalization(model, x, mean, std, weights, loader=user_loader)
        input_size = tuple(x.shape[1:])
        pipeline = eval_pipeline(user_val_loader if user_val_loader is not None else user_loader, input_size)
        names = resolve_label_names(label_names, user_loader, weights, num_classes)
        def new_key() -> Key:
            # resuming an interrupted wrap: same key; else a fresh one (only rank 0 draws under torchrun)
            saved = saved_key(checkpoint_dir) if checkpoint_dir is not None else None
            tile = settings.key_tile if settings.key_tile and input_size[1] % settings.key_tile == 0 and input_size[2] % settings.key_tile == 0 else None
            return saved if saved is not None else Key.generate(input_size, settings.lam, norm.mean, norm.std, tile=tile)

        key = distributed.broadcast_key(key, new_key, device)
        if key.shape != input_size:
            raise ValueError(f"Expected a key of shape {input_size} (one input from the loader), but got {key.shape}.")
        if key.lam != settings.lam:
            raise ValueError(f"The key was made for lam={key.lam} but wrap was asked for lam={settings.lam}: pass the same `lam`.")
        result = fine_tune(
            model, loader, val_loader, key, settings, num_classes=num_classes, epochs=epochs, lr=lr,
            max_accuracy_drop=max_accuracy_drop, device=device, checkpoint_dir=checkpoint_dir,
            keep_checkpoint=keep_checkpoint, progress=progress, fast=fast,
        )
        library, name = architecture.describe(model, num_classes)
        config = BoxConfig(
            architecture=name, num_classes=num_classes, input_size=input_size, mean=norm.mean, std=norm.std,
            key_fingerprint=key.fingerprint, model_library=library, normalization_source=norm.source,
            interpolation=pipeline.interpolation, crop_pct=pipeline.crop_pct, crop_mode=pipeline.crop_mode, label_names=names,
            **model_description(model, library, num_classes, norm, pipeline, input_size, names, model_args),
            keyed_norm=result.keyed_norm is not None,
            lam=settings.lam, t_dis=settings.t_dis, omega=settings.omega if settings.disturbance else 0.0,
            eta=settings.eta if settings.preservation else 0.0,
            sdbox_version=__version__,
            method={**dataclasses.asdict(settings), "epochs": epochs, "lr": lr, "max_accuracy_drop": max_accuracy_drop,
                    "kept_epoch": "closest to the decoy target" if settings.decoys else "most divergent"},
            fidelity={
                "clean_acc_before": result.clean_acc_before,
                "clean_acc_after": result.clean_acc_after,
                "keyed_acc_after": result.keyed_acc_after,
                "best_epoch": result.best_epoch,
                "images": result.images,
            },
        )
        config.validate("the wrapped model's description")
        box = cls(model, config)
        box.training = model.training  # the box's own flag only: the model keeps each submodule's mode
        _WRAPPED_MODELS.add(model)
        box._key = key.with_norm(result.keyed_norm)  # what opens this box: κ, λ and the keyed normalisation
        box.wrap_result = result
        return box

    # ------------------------------------------------------------------------------ evaluate
    def evaluate(self, loader: Iterable, key: Key | None = None, *, original: nn.Module | None = None) -> dict[str, float]:
        """Top-1 on ``loader`` (clean; keyed with ``key``; the ``original`` model's for comparison).

        The figures go into ``box_config.report`` and the model card, so ``save_pretrained``
        publishes what was measured rather than what was promised.
        """

        device = self.device
        clean = evaluate(self, loader, device=device)
        result = {"clean_acc": clean["acc"]}
        if key is not None:
            if key.fingerprint != self.box_config.key_fingerprint:
                raise WrongKeyError("This key does not open this box: pass the key file saved when the box was wrapped.")
            result["keyed_acc"] = evaluate(self, loader, key=key, device=device)["acc"]
        if original is not None:
            result["original_acc"] = evaluate(original.to(device), loader, device=device)["acc"]
        result["images"] = clean["images"]
        self.box_config.report = {**(self.box_config.report or {}), "evaluation": result}
        self.report_markdown = fidelity_markdown(result)
        return result

    # ------------------------------------------------------------------------ save and load
    def save_pretrained(self, save_directory: str | os.PathLike, *, allow_key_in_folder: bool = False, push_to_hub: bool = False,
                        repo_id: str | None = None, **kwargs: Any) -> str | None:
        """Write the bundle (config.json, model.safetensors, README.md) into ``save_directory``.

        Refuses a folder that holds a secret (a key file by name or content, a wrap checkpoint
        under any name, a symlink to either) unless ``allow_key_in_folder=True``: uploading the
        folder would publish it. The bundle is written whole into a hidden staging folder, then
        moved in file by file, config.json last, under a lock on the folder: a full disk or a
        crash leaves the previous bundle loadable (huggingface_hub's own ``save_pretrained``
        deletes config.json first), and two saves into one folder never mix two boxes.
        ``push_to_hub=True`` then pushes to ``repo_id`` (default: the folder's name), never a key file.
        """
        folder = Path(save_directory)
        secrets = find_secret_files(folder) if folder.is_dir() else {}
        if secrets and not allow_key_in_folder:
            name, kind = next(iter(sorted(secrets.items())))
            raise FileExistsError(
                f"Refusing to save the bundle into {folder}, which holds a secret ({name}: {kind}): uploading the "
                "folder (`hf upload`, `HfApi().upload_folder`) would publish it. Move it out of the folder, save the "
                "bundle elsewhere, or pass `allow_key_in_folder=True` if you really mean it."
            )
        folder.mkdir(parents=True, exist_ok=True)
        with folder_lock(folder):
            staging = Path(tempfile.mkdtemp(prefix=".sdbox-save-", dir=folder))  # hidden: never uploaded
            try:
                self._save_pretrained(staging)
                for name in (WEIGHTS_NAME, CARD_NAME, CONFIG_NAME):  # config last: it names the weights' checksum
                    os.replace(staging / name, folder / name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        if push_to_hub:
            kwargs.pop("config", None), kwargs.pop("model_card_kwargs", None)
            return self.push_to_hub(repo_id or folder.name, **kwargs)
        return None

    def push_to_hub(self, repo_id: str, *, ignore_patterns: list[str] | str | None = None, **kwargs: Any) -> str:
        """Upload the bundle to the Hub in one commit (huggingface_hub's mixin), never a key file."""
        extra = [ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or [])
        self._card_repo_id = repo_id  # the mixin does not pass the repo id on to save_pretrained
        try:
            return super().push_to_hub(repo_id, ignore_patterns=[*KEY_FILE_PATTERNS, *extra], **kwargs)
        finally:
            self._card_repo_id = None

    def _save_pretrained(self, save_directory: Path) -> None:
        save_directory = Path(save_directory)
        weights = save_directory / WEIGHTS_NAME
        with atomic_path(weights) as tmp:
            save_model(self.model, str(tmp))
        self.box_config.weights_sha256 = file_sha256(weights)
        write_text(save_directory / CONFIG_NAME, json.dumps(self.box_config.to_json(), indent=2))
        write_text(save_directory / CARD_NAME, model_card(self.box_config, self.report_markdown, repo_id=self._card_repo_id))

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        **model_kwargs: Any,
    ) -> "SafeBox":
        """Load a box from a folder written by ``save_pretrained`` or a Hub repo id.

        Goes straight to :meth:`_from_pretrained`: the mixin's generic version would read and
        download config.json itself, raising raw JSON / Hub errors instead of BundleError and
        feeding config values into the constructor.
        """
        return cls._from_pretrained(
            model_id=str(pretrained_model_name_or_path), revision=revision, cache_dir=cache_dir,
            force_download=force_download, local_files_only=local_files_only, token=token, **model_kwargs,
        )

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        model: nn.Module | None = None,
        model_class: Callable[..., nn.Module] | None = None,
        map_location: str | torch.device = "cpu",
        **_: Any,
    ) -> "SafeBox":
        """Rebuild the model by name and constructor arguments (a custom one as ``model_class(**model_args)``),
        or fill the given ``model``, and load the weights, unpickling nothing."""

        def fetch(filename: str) -> Path:
            if os.path.isdir(model_id):
                path = Path(model_id) / filename
                if not path.is_file():
                    raise BundleError(f"{model_id} has no {filename}: is it a folder written by `box.save_pretrained`?")
                return path
            try:
                return Path(hf_hub_download(
                    repo_id=model_id, filename=filename, revision=revision, cache_dir=cache_dir,
                    force_download=force_download, local_files_only=local_files_only, token=token,
                ))
            except (EntryNotFoundError, LocalEntryNotFoundError) as e:
                raise BundleError(f"Could not get {filename} of {model_id!r} ({type(e).__name__}): check the repo id, or your network / HF_HUB_OFFLINE.") from None
            except HFValidationError:
                raise BundleError(f"{model_id!r} is neither a local folder nor a Hub repo id ('org/name'): check the path.") from None

        config = read_config(fetch(CONFIG_NAME))
        weights_path = fetch(WEIGHTS_NAME)
        if config.weights_sha256 is not None and file_sha256(weights_path) != config.weights_sha256:
            raise BundleError(f"{weights_path} does not match the checksum in config.json: the weights file is damaged or was replaced; download the bundle again.")
        if model is None:
            model = build_model(config, weights_path, model_class)
        load_weights(model, weights_path, config.architecture, map_location)
        return cls(model.to(map_location), config).eval()


def build_model(config: BoxConfig, weights_path: Path, model_class: Callable[..., nn.Module] | None = None) -> nn.Module:
    """Rebuild the bundle's model from its name and model_args, which are untrusted: first on the
    meta device (no memory), refused unless its tensors fit in the weights file, so that no
    model_args (``img_size``, widths, depths) can make this allocate more than the bundle holds."""

    def build() -> nn.Module:
        try:
            return architecture.build(config.model_library, config.architecture, config.num_classes, config.model_args, model_class)
        except ValueError as e:
            raise BundleError(str(e)) from None
        except Exception as e:  # a library's builder rejecting the bundle's model_args in its own way
            raise BundleError(f"Could not build {config.architecture} with the bundle's model_args {str(config.model_args)[:200]} "
                              f"({type(e).__name__}: {str(e)[:200]}): {_RESTORE_BUNDLE}") from None

    with torch.device("meta"):
        probe = build()
    needed = sum(t.numel() * t.element_size() for t in probe.state_dict().values())
    if needed > weights_path.stat().st_size:
        raise BundleError(f"config.json describes a {config.architecture} of {needed:,} bytes of weights, but {weights_path.name} holds "
                          f"{weights_path.stat().st_size:,}: its model_args do not describe these weights. {_RESTORE_BUNDLE}")
    # Buffers that are not saved (attention-bias tables, position indices) are sized by model_args
    # alone, and so are the activations of one forward: both are bounded before anything is allocated.
    unsaved = sum(b.numel() * b.element_size() for b in probe.buffers()) - sum(
        t.numel() * t.element_size() for name, t in probe.state_dict().items() if name not in dict(probe.named_parameters()))
    if unsaved > MAX_UNSAVED_BUFFER_BYTES:
        raise BundleError(f"config.json's model_args make {config.architecture} declare {unsaved:,} bytes of buffers that no weights file "
                          f"holds, more than sdbox allows ({MAX_UNSAVED_BUFFER_BYTES:,}). {_RESTORE_BUNDLE}")
    activations = _meta_activation_bytes(probe, tuple(config.input_size))
    if activations > MAX_ACTIVATION_BYTES:
        raise BundleError(f"config.json's model_args make one {config.input_size} input of {config.architecture} produce {activations:,} "
                          f"bytes of activations, more than sdbox allows ({MAX_ACTIVATION_BYTES:,}). {_RESTORE_BUNDLE}")
    return build()


# Ceilings for what a bundle's model_args alone can make sdbox allocate: far above any image
# classifier sdbox wraps (summed over every op, one image of a ViT-L/16 at 384 px makes a few GB).
MAX_UNSAVED_BUFFER_BYTES = 256 << 20
MAX_ACTIVATION_BYTES = 16 << 30


def _meta_activation_bytes(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """Bytes of every tensor one forward of one input makes (every op, functional ones included;
    an upper bound of the peak), on the meta device: nothing is allocated. 0 when the model cannot
    run on meta tensors (then only the weights bound it)."""
    from torch.overrides import TorchFunctionMode

    class Counting(TorchFunctionMode):
        total = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in (out if isinstance(out, (tuple, list)) else [out]):
                if isinstance(tensor, torch.Tensor):
                    Counting.total += tensor.numel() * tensor.element_size()
            return out

    try:
        with torch.no_grad(), Counting():
            model.eval()(torch.empty((1, *input_size), device="meta"))
    except Exception:  # an op without a meta kernel: the check cannot run, the weights bound still holds
        return 0
    return Counting.total


_RESTORE_BUNDLE = "the bundle is damaged or was edited; download it again, or pass the matching `model=`."


def model_description(model: nn.Module, library: str, num_classes: int, norm: Normalization, pipeline: EvalPipeline,
                      input_size: tuple[int, ...], label_names: list[str] | None, model_args: dict[str, Any] | None) -> dict[str, Any]:
    """The BoxConfig fields that let timm and sdbox rebuild the model: for timm, what timm's own
    writer records (model_args, num_features, global_pool, first_conv, classifier, ...) with the
    box's true preprocessing; else the layer names and the given (or num_classes) model_args."""
    if library == "timm":
        data_config = {"input_size": input_size, "mean": norm.mean, "std": norm.std, "interpolation": pipeline.interpolation,
                       "crop_pct": pipeline.crop_pct, "crop_mode": pipeline.crop_mode}
        written = architecture.timm_fields(model, data_config, label_names)
        cfg = written["pretrained_cfg"]
        extra = {k: v for k, v in cfg.items() if k not in {"input_size", "mean", "std", "num_classes", "interpolation", "crop_pct", "crop_mode", "first_conv", "classifier"}}
        return {"first_conv": cfg.get("first_conv"), "classifier": cfg.get("classifier"), "num_features": written.get("num_features"),
                "global_pool": written.get("global_pool"), "model_args": {**written.get("model_args", {}), **(model_args or {})},
                "pretrained_extra": extra}
    first_conv, classifier = layer_names(model)
    args = dict(model_args) if model_args is not None else ({"num_classes": num_classes} if library == "torchvision" else {})
    return {"first_conv": first_conv, "classifier": classifier, "model_args": json.loads(json.dumps(args))}


def load_weights(model: nn.Module, path: Path, architecture_name: str, map_location: str | torch.device = "cpu") -> None:
    """Fill ``model`` from a bundle's model.safetensors (no pickle); any damage is a BundleError.

    safetensors checks the header against the file's length before it reads a tensor, so a
    hostile header cannot make this allocate more than the file holds.
    """
    try:
        load_model(model, str(path), strict=True, device=str(map_location))
    except (SafetensorError, ValueError, OSError) as e:
        raise BundleError(f"{path} is not a readable safetensors file ({str(e)[:200]}): download the bundle again.") from None
    except RuntimeError as e:
        raise BundleError(f"The weights in {path} do not fit the model {architecture_name}: {str(e).splitlines()[0][:300]}. Pass the matching `model=`.") from None
