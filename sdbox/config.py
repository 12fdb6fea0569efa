"""The public description of a box: what ``config.json`` holds, in timm's layout.

Everything here is published. The key itself never is: only its SHA-256 fingerprint and shape.
Loading tolerates unknown keys (a newer sdbox may add fields) and rejects damaged values with a
:class:`~sdbox.errors.BundleError` that says what is wrong.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import BundleError
from .formats import MAX_CHANNELS, MAX_CONFIG_BYTES, MAX_SIDE
from .inputs import finite_number

BOX_FORMAT_VERSION = 1


@dataclass
class BoxConfig:
    """What a loader needs to rebuild the model and what a key holder needs to check a key."""

    architecture: str = field(metadata={"help": "timm / torchvision model name, or module.Class for a custom model."})
    num_classes: int = field(metadata={"help": "Number of output logits."})
    input_size: tuple[int, int, int] = field(metadata={"help": "(C, H, W) of one input; also the key's shape."})
    mean: tuple[float, ...] = field(metadata={"help": "Per-channel mean the inputs are normalised with."})
    std: tuple[float, ...] = field(metadata={"help": "Per-channel std the inputs are normalised with."})
    key_fingerprint: str = field(metadata={"help": "SHA-256 of the key (see Key.fingerprint); public."})
    model_library: str = field(default="custom", metadata={"help": "'timm', 'torchvision' or 'custom' (needs `model=` on load)."})
    normalization_source: str = field(default="user", metadata={"help": "Where mean/std came from."})
    lam: float = field(default=0.5, metadata={"help": "Key mixing weight λ."})
    t_dis: float = field(default=4.0, metadata={"help": "Temperature the box was disturbed at."})
    omega: float = field(default=0.0, metadata={"help": "Disturbance weight ω used in the fine-tune."})
    eta: float = field(default=0.0, metadata={"help": "Augmentation weight η used in the fine-tune."})
    keyed_norm: bool = field(default=False, metadata={"help": "The keyed stream has its own normalisation state, carried by the key file (sdbox.keyed_norm)."})
    fidelity: dict[str, float] = field(default_factory=dict, metadata={"help": "Measured clean/keyed accuracy before and after wrapping."})
    report: dict[str, Any] | None = field(default=None, metadata={"help": "Measured protection report, when one was run."})
    weights_sha256: str | None = field(default=None, metadata={"help": "SHA-256 of model.safetensors, to detect a damaged file."})
    format_version: int = field(default=BOX_FORMAT_VERSION, metadata={"help": "sdbox bundle format."})
    # How to rebuild the model and its eval pipeline: timm's config.json fields, so that timm's
    # `resolve_data_config` + `create_transform` reproduce the owner's preprocessing.
    interpolation: str | None = field(default=None, metadata={"help": "Eval resize interpolation (timm's names)."})
    crop_pct: float | None = field(default=None, metadata={"help": "Eval centre crop / resize (1.0: resize to the input size)."})
    crop_mode: str | None = field(default=None, metadata={"help": "Eval crop mode: center, squash or border."})
    first_conv: str | None = field(default=None, metadata={"help": "Name of the first convolution (timm adapts in_chans there)."})
    classifier: str | None = field(default=None, metadata={"help": "Name of the classifier layer (timm resets it for fine-tuning)."})
    num_features: int | None = field(default=None, metadata={"help": "Width of the pooled features (informational)."})
    global_pool: str | None = field(default=None, metadata={"help": "Global pooling type (informational)."})
    model_args: dict[str, Any] = field(default_factory=dict, metadata={"help": "Constructor arguments that rebuild the same function."})
    label_names: list[str] | None = field(default=None, metadata={"help": "Class name of each output."})
    pretrained_extra: dict[str, Any] = field(default_factory=dict, metadata={"help": "Other pretrained_cfg fields timm wrote."})
    license: str | None = field(default=None, metadata={"help": "License of the published weights (Hub identifier)."})
    base_model: str | None = field(default=None, metadata={"help": "Hub id of the model the box was wrapped from."})
    datasets: list[str] | None = field(default=None, metadata={"help": "Names of the data the box was wrapped and measured on."})
    # What made the box: the version, and every setting of the method and its budget (λ, T_dis, ω
    # and η above stay where older bundles and readers find them).
    sdbox_version: str | None = field(default=None, metadata={"help": "The sdbox that wrapped the box (None: one from before versions were stamped)."})
    method: dict[str, Any] = field(default_factory=dict, metadata={"help": "Every setting of the wrap: SDBSettings, epochs, lr, the guard and how it chose the epoch."})

    @property
    def key_shape(self) -> tuple[int, int, int]:
        return tuple(self.input_size)  # type: ignore[return-value]

    def to_json(self) -> dict[str, Any]:
        """timm's layout (architecture, num_classes, ..., pretrained_cfg) plus an ``sdbox`` section.

        Fields that are None are left out, as timm's own writer does.
        """
        pretrained_cfg = {
            **self.pretrained_extra,
            "input_size": list(self.input_size), "interpolation": self.interpolation, "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode, "mean": list(self.mean), "std": list(self.std), "num_classes": self.num_classes,
            "first_conv": self.first_conv, "classifier": self.classifier,
        }
        top = {
            "architecture": self.architecture, "num_classes": self.num_classes, "num_features": self.num_features,
            "global_pool": self.global_pool, "label_names": self.label_names, "model_args": self.model_args or None,
        }
        return {
            **{k: v for k, v in top.items() if v is not None},
            "pretrained_cfg": {k: v for k, v in pretrained_cfg.items() if v is not None},
            "sdbox": {
                "format_version": self.format_version,
                "model_library": self.model_library,
                "normalization_source": self.normalization_source,
                "lam": self.lam,
                "t_dis": self.t_dis,
                "omega": self.omega,
                "eta": self.eta,
                "key_fingerprint": self.key_fingerprint,
                "key_shape": list(self.input_size),
                "keyed_norm": self.keyed_norm,
                "fidelity": self.fidelity,
                "report": self.report,
                "weights_sha256": self.weights_sha256,
                "sdbox_version": self.sdbox_version,
                "method": self.method,
                **{k: v for k, v in (("license", self.license), ("base_model", self.base_model), ("datasets", self.datasets)) if v is not None},
            },
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "config.json") -> "BoxConfig":
        """Build a config from parsed JSON, which is untrusted: a bundle can come from anyone.

        Every field's type and range is checked before anything uses it (:meth:`validate`), so a
        hand-edited or hostile config fails here with a BundleError naming the field, never later
        in torch, timm or the model card.
        """
        if not isinstance(data, dict) or not isinstance(data.get("sdbox"), dict) or not isinstance(data.get("pretrained_cfg"), dict):
            raise BundleError(f"{source} is not an sdbox config (no `sdbox` and `pretrained_cfg` sections): load a folder that `save_pretrained` wrote.")
        sd, cfg = data["sdbox"], data["pretrained_cfg"]
        missing = [name for name in ("architecture", "num_classes") if name not in data]
        missing += [name for name in ("input_size", "mean", "std") if name not in cfg]
        missing += [name for name in ("key_fingerprint",) if name not in sd]
        if missing:
            raise BundleError(f"{source} is not an sdbox config (missing {missing}): load a folder that `save_pretrained` wrote.")
        known = {f.name for f in fields(cls)}
        unknown = set(sd) - known - {"key_shape"}
        if unknown:
            warnings.warn(f"{source}: ignoring unknown sdbox fields {sorted(map(str, unknown))[:10]} (written by a newer sdbox?)", stacklevel=3)
        if "sdbox_version" not in sd:
            warnings.warn(f"{source} was written by an sdbox that stamped no version: of its wrap's settings only λ, T_dis, ω and η "
                          "are recorded (rewrap with this sdbox to record them all).", stacklevel=3)
        values = {k: v for k, v in sd.items() if k in known}
        values.update(architecture=data["architecture"], num_classes=data["num_classes"],
                      input_size=cfg["input_size"], mean=cfg["mean"], std=cfg["std"])  # pretrained_cfg wins
        values.update({k: data[k] for k in _TOP_LEVEL if k in data})
        values.update({k: cfg[k] for k in _PRETRAINED_FIELDS if k in cfg})
        values["pretrained_extra"] = {k: v for k, v in cfg.items() if k not in _PRETRAINED_FIELDS | {"input_size", "mean", "std", "num_classes"}}
        config = cls(**values)
        config.validate(source)
        if "num_classes" in cfg and cfg["num_classes"] != config.num_classes:
            raise BundleError(f"{source} is inconsistent: pretrained_cfg.num_classes {str(cfg['num_classes'])[:20]} ≠ num_classes {config.num_classes}. {_RESTORE.capitalize()}")
        config.input_size = tuple(config.input_size)
        config.mean, config.std = tuple(float(m) for m in config.mean), tuple(float(s) for s in config.std)
        if "key_shape" in sd and sd["key_shape"] != list(config.input_size):
            raise BundleError(f"{source} is inconsistent: key_shape {str(sd['key_shape'])[:40]} ≠ input_size {list(config.input_size)}. The file was edited; {_RESTORE}")
        return config

    def validate(self, source: str = "config") -> None:
        """Reject values no sdbox writes: a damaged or hand-edited config fails here, not in torch."""
        _check(_is_int(self.format_version) and 1 <= self.format_version, source, "format_version", "an integer ≥ 1", self.format_version)
        if self.format_version > BOX_FORMAT_VERSION:
            raise BundleError(f"{source} has format_version {self.format_version}, newer than this sdbox ({BOX_FORMAT_VERSION}): upgrade sdbox.")
        _check(isinstance(self.architecture, str) and _PLAIN_NAME.fullmatch(self.architecture) is not None, source, "architecture",
               "a plain model name (letters, digits, `_ . -`; no `hf-hub:`/`local-dir:` prefix or path)", self.architecture)
        _check(_is_int(self.num_classes) and 2 <= self.num_classes <= MAX_CLASSES, source, "num_classes", f"an integer in [2, {MAX_CLASSES}]", self.num_classes)
        size = self.input_size
        _check(isinstance(size, (list, tuple)) and len(size) == 3 and all(_is_int(v) and v > 0 for v in size)
               and size[0] <= MAX_CHANNELS and size[1] <= MAX_SIDE and size[2] <= MAX_SIDE, source, "input_size",
               f"3 positive integers (C, H, W) with C ≤ {MAX_CHANNELS} and H, W ≤ {MAX_SIDE}", size)
        for name in ("mean", "std"):
            values = getattr(self, name)
            _check(isinstance(values, (list, tuple)) and len(values) == size[0] and all(finite_number(v) for v in values),
                   source, name, f"{size[0]} finite numbers (one per channel)", values)
        _check(all(v > 0 for v in self.std), source, "std", "values > 0", self.std)
        _check(finite_number(self.lam) and 0 < self.lam < 1, source, "lam", "a number in (0, 1)", self.lam)
        _check(finite_number(self.t_dis) and self.t_dis > 0, source, "t_dis", "a finite number > 0", self.t_dis)
        for name in ("omega", "eta"):
            _check(finite_number(getattr(self, name)) and getattr(self, name) >= 0, source, name, "a finite number ≥ 0", getattr(self, name))
        _check(isinstance(self.key_fingerprint, str) and _SHA256.fullmatch(self.key_fingerprint) is not None,
               source, "key_fingerprint", "64 hex digits", self.key_fingerprint)
        _check(self.weights_sha256 is None or (isinstance(self.weights_sha256, str) and _SHA256.fullmatch(self.weights_sha256) is not None),
               source, "weights_sha256", "64 hex digits or null", self.weights_sha256)
        _check(self.model_library in ("timm", "torchvision", "custom"), source, "model_library", "timm, torchvision or custom", self.model_library)
        _check(isinstance(self.normalization_source, str) and len(self.normalization_source) <= 200, source, "normalization_source",
               "a short string", self.normalization_source)
        _check(isinstance(self.keyed_norm, bool), source, "keyed_norm", "true or false", self.keyed_norm)
        _check(isinstance(self.fidelity, dict) and all(isinstance(k, str) and finite_number(v) for k, v in self.fidelity.items()),
               source, "fidelity", "a map of names to finite numbers", self.fidelity)
        _check(self.report is None or isinstance(self.report, dict), source, "report", "an object or null", self.report)
        evaluation = (self.report or {}).get("evaluation")
        _check(evaluation is None or (isinstance(evaluation, dict) and all(
            isinstance(k, str) and finite_number(v) for k, v in evaluation.items())), source, "report.evaluation",
            "a map of names to finite numbers", evaluation)
        _check(self.interpolation is None or self.interpolation in _INTERPOLATIONS, source, "interpolation",
               f"one of {list(_INTERPOLATIONS)}", self.interpolation)
        _check(self.crop_pct is None or (finite_number(self.crop_pct) and 0 < self.crop_pct <= 2), source, "crop_pct",
               "a number in (0, 2]", self.crop_pct)
        _check(self.crop_mode is None or self.crop_mode in ("center", "squash", "border"), source, "crop_mode", "center, squash or border", self.crop_mode)
        for name in ("first_conv", "classifier", "global_pool"):
            value = getattr(self, name)
            _check(value is None or (isinstance(value, str) and _MODULE_NAME.fullmatch(value) is not None), source, name,
                   "a module name (letters, digits, `_ .`) or null", value)
        _check(self.num_features is None or (_is_int(self.num_features) and 0 < self.num_features <= 1 << 20), source,
               "num_features", "a positive integer or null", self.num_features)
        _check(isinstance(self.model_args, dict) and len(self.model_args) <= 64 and all(
            isinstance(k, str) and _ARG_NAME.fullmatch(k) is not None and k not in LOADING_ARGS and _plain_value(v)
            for k, v in self.model_args.items()), source, "model_args",
            f"a map of constructor argument names to numbers, strings or short lists (none of {sorted(LOADING_ARGS)})", self.model_args)
        _check(self.model_args.get("num_classes", self.num_classes) == self.num_classes, source, "model_args",
               f"num_classes {self.num_classes}, like the config", self.model_args)
        _check(self.label_names is None or (isinstance(self.label_names, list) and len(self.label_names) == self.num_classes
               and all(isinstance(n, str) and len(n) <= 200 for n in self.label_names)), source, "label_names",
               f"null or {self.num_classes} strings (one per class)", self.label_names)
        _check(isinstance(self.pretrained_extra, dict) and len(self.pretrained_extra) <= 64 and all(
            isinstance(k, str) and len(k) <= 64 and _plain_value(v) for k, v in self.pretrained_extra.items()),
            source, "pretrained_cfg", "a map of names to numbers, strings or short lists", self.pretrained_extra)
        for name in ("license", "base_model"):
            value = getattr(self, name)
            _check(value is None or (isinstance(value, str) and _HUB_NAME.fullmatch(value) is not None), source, name,
                   "null or a Hub identifier (letters, digits, `_ . - /`)", value)
        _check(self.sdbox_version is None or (isinstance(self.sdbox_version, str) and _VERSION.fullmatch(self.sdbox_version) is not None),
               source, "sdbox_version", "null or a version such as 0.1.0", self.sdbox_version)
        _check(isinstance(self.method, dict) and len(self.method) <= 64 and all(
            isinstance(k, str) and _ARG_NAME.fullmatch(k) is not None and _plain_value(v) for k, v in self.method.items()),
            source, "method", "a map of setting names to numbers, strings or short lists", self.method)
        _check(self.datasets is None or (isinstance(self.datasets, list) and len(self.datasets) <= 16 and all(
            isinstance(d, str) and _HUB_NAME.fullmatch(d) is not None for d in self.datasets)), source, "datasets",
            "null or a list of dataset names", self.datasets)


_RESTORE = "restore it from the published bundle (download it again)."
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.<>\-]{0,199}")  # timm, torchvision or module.Class names
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MODULE_NAME = re.compile(r"[A-Za-z0-9_.]{1,200}")
_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_VERSION = re.compile(r"[0-9A-Za-z.+\-]{1,40}")
_HUB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,199}")
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos", "random")
_TOP_LEVEL = ("num_features", "global_pool", "model_args", "label_names")
_PRETRAINED_FIELDS = {"interpolation", "crop_pct", "crop_mode", "first_conv", "classifier"}
# Constructor arguments that would make a builder fetch or read weights, or change where the
# model lives: a bundle is untrusted, its model_args only shape the architecture.
LOADING_ARGS = frozenset({
    "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict", "checkpoint_path", "cache_dir",
    "weights", "weights_backbone", "progress", "features_only", "device", "dtype", "scriptable", "exportable", "no_jit",
})
# 100,000 classes is five times ImageNet-21k's; 10**9 would ask for terabytes of logits layer.
MAX_CLASSES = 100_000


def _plain_value(value: Any) -> bool:
    """A JSON scalar (finite numbers, strings up to 200 characters) or a list of up to 16 of them."""
    if isinstance(value, list):
        return len(value) <= 16 and all(_plain_value(v) and not isinstance(v, list) for v in value)
    return value is None or isinstance(value, bool) or finite_number(value) or (isinstance(value, str) and len(value) <= 200)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(ok: bool, source: str, name: str, expected: str, got: Any) -> None:
    if not ok:
        shown = repr(got)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise BundleError(f"{source} is not a valid sdbox config: expected `{name}` to be {expected}, but got {shown}. {_RESTORE.capitalize()}")


def read_config(path: Path) -> BoxConfig:
    """Parse a bundle's config.json: bounded in size, every field checked (:meth:`BoxConfig.from_json`)."""
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise BundleError(f"{path} is {path.stat().st_size} bytes, more than any sdbox config ({MAX_CONFIG_BYTES}): the bundle is damaged; download it again.")
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # JSONDecodeError, too many digits, too deep
        raise BundleError(f"{path} is not valid JSON ({type(e).__name__}: {str(e)[:100]}): the bundle is damaged; download it again.") from None
    return BoxConfig.from_json(raw, str(path))
