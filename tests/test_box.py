"""SafeBox end to end (timm, torchvision, custom models) and the bundle: what is saved, pushed and
loaded, that the key never leaves the owner's machine, and that damaged bundles are refused."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import huggingface_hub
import pytest
import torch
import torch.nn as nn

import sdbox.box
from sdbox import BundleError, Key, KeyedTeacher, SafeBox, SDBSettings, distill
from sdbox.config import BoxConfig
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD

BUNDLE_FILES = {"config.json", "model.safetensors", "README.md"}


def key_bytes(key: Key) -> bytes:
    return key.tensor.contiguous().numpy().astype("<f4").tobytes()


def assert_no_key_bytes(data: bytes, key: Key, windows, where: str) -> None:
    kb = key_bytes(key)
    assert kb not in data, f"the whole key is in {where}"
    for w in windows(kb, 32):  # rules out any 64-byte window of the key
        assert w not in data, f"key bytes found in {where}"


@pytest.fixture(scope="module")
def bundle(wrapped, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "box"
    wrapped.save_pretrained(out)
    return out


@pytest.fixture
def damaged(bundle, tmp_path) -> Path:
    """A fresh copy of the bundle, free to break."""
    return Path(shutil.copytree(bundle, tmp_path / "box"))


def edit_config(folder: Path, change) -> None:
    path = folder / "config.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------------------- end to end
def test_issue_snippet_timm_resnet18(train_ds, test_ds, make_loader, tmp_path, monkeypatch, windows):
    """The issue's snippet with timm's resnet18 on real CIFAR-10 images, on CPU."""
    import timm

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    train_loader = make_loader(train_ds, n=200, batch_size=50, shuffle=True)

    box = SafeBox.wrap(model, train_loader, epochs=1, max_accuracy_drop=100, device="cpu", progress=False)
    box.save_pretrained("out/")
    box.key.save("owner.key")

    assert {p.name for p in Path("out").iterdir()} == BUNDLE_FILES
    config = json.loads(Path("out/config.json").read_text())
    assert config["architecture"] == "resnet18" and config["sdbox"]["model_library"] == "timm"
    for f in Path("out").iterdir():
        assert_no_key_bytes(f.read_bytes(), box.key, windows, f.name)

    box2 = SafeBox.from_pretrained("out/")  # rebuilt by name, no model= needed
    x, _ = next(iter(make_loader(test_ds, n=20, batch_size=20)))
    box.eval()
    with torch.no_grad():
        assert torch.equal(box2(x), box(x))
    teacher = KeyedTeacher(box2, Key.load("owner.key"))
    soft = teacher.soft_labels(x, T=4)
    assert soft.shape == (20, 10)
    torch.testing.assert_close(soft.sum(1), torch.ones(20))
    student = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    before = student[1].weight.clone()
    distill(student, teacher, make_loader(train_ds, n=50, batch_size=25), epochs=1, T=4, alpha=0.9, progress=False)
    assert not torch.equal(student[1].weight, before)


def test_torchvision_model_round_trip(train_ds, test_ds, make_loader, tmp_path):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    box = SafeBox.wrap(model, make_loader(train_ds, n=100, batch_size=50), val_loader=make_loader(test_ds, n=50), epochs=1,
                       max_accuracy_drop=100, device="cpu", progress=False, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    assert (box.box_config.model_library, box.box_config.architecture) == ("torchvision", "resnet18")
    assert box.box_config.normalization_source == "loader:TensorImageDataset"  # the loader's own, which the arguments agree with
    assert box.wrap_result.best_epoch == 1
    box.save_pretrained(tmp_path / "tv")
    loaded = SafeBox.from_pretrained(tmp_path / "tv")
    assert isinstance(loaded.model, torchvision.models.ResNet)
    x, _ = next(iter(make_loader(test_ds, n=10, batch_size=10)))
    with torch.no_grad():
        assert torch.equal(loaded(x), box.eval()(x))


def test_wrapped_box_describes_itself(wrapped):
    cfg = wrapped.box_config
    assert cfg.model_library == "custom" and cfg.architecture.endswith("TinyNet")
    assert cfg.key_fingerprint == wrapped.key.fingerprint
    assert cfg.input_size == (3, 32, 32) and cfg.num_classes == 10
    assert tuple(cfg.mean) == CIFAR10_MEAN and tuple(cfg.std) == CIFAR10_STD
    assert set(cfg.fidelity) >= {"clean_acc_before", "clean_acc_after", "keyed_acc_after", "best_epoch"}
    assert not wrapped.training


# ---------------------------------------------------------------------------------- saving
def test_save_pretrained_writes_exactly_three_files(bundle):
    assert {p.name for p in bundle.iterdir()} == BUNDLE_FILES


def test_config_json_layout(bundle, wrapped):
    config = json.loads((bundle / "config.json").read_text())
    assert config["num_classes"] == 10
    assert config["architecture"] == wrapped.box_config.architecture
    assert config["pretrained_cfg"] == {"input_size": [3, 32, 32], "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center",
                                        "mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD), "num_classes": 10,
                                        "first_conv": "features.0", "classifier": "fc"}
    sd = config["sdbox"]
    for name in ("format_version", "lam", "t_dis", "omega", "eta", "key_fingerprint", "key_shape", "fidelity"):
        assert name in sd, name
    assert sd["key_fingerprint"] == wrapped.key.fingerprint
    assert sd["key_shape"] == [3, 32, 32]
    assert sd["lam"] == 0.5
    assert sd["format_version"] == 1
    result = wrapped.wrap_result
    assert sd["fidelity"] == {"clean_acc_before": result.clean_acc_before, "clean_acc_after": result.clean_acc_after,
                              "keyed_acc_after": result.keyed_acc_after, "best_epoch": result.best_epoch,
                              "images": result.images}
    assert result.images > 0 and sd["keyed_norm"] is True
    import hashlib
    assert sd["weights_sha256"] == hashlib.sha256((bundle / "model.safetensors").read_bytes()).hexdigest()
    assert wrapped.key.fingerprint in (bundle / "README.md").read_text()


def test_no_key_bytes_in_any_saved_file(bundle, wrapped, windows):
    kb = key_bytes(wrapped.key)
    assert len(kb) == 3 * 32 * 32 * 4
    for f in bundle.iterdir():
        data = f.read_bytes()
        assert_no_key_bytes(data, wrapped.key, windows, f.name)
        text = data.decode("utf-8", errors="ignore")
        assert not any(f"{v:.6f}" in text for v in wrapped.key.tensor.flatten()[:20].tolist())


def test_push_to_hub_uploads_the_bundle_and_never_the_key(wrapped, fake_hub, windows):
    """Through huggingface_hub's real client: the visibility asked for, the token, one commit, the exact files."""
    wrapped.push_to_hub("org/name", private=True, token="hf_owner")
    assert fake_hub.repos["org/name"]["visibility"] == "private"
    assert fake_hub.tokens("/api/repos/create", "/preupload/", "/commit/") == {"hf_owner"}
    assert [repo for repo, _ in fake_hub.commits] == ["org/name"]
    uploaded = fake_hub.commits[0][1]
    assert set(uploaded) == BUNDLE_FILES
    for name, data in uploaded.items():
        assert_no_key_bytes(data, wrapped.key, windows, f"uploaded {name}")
    assert json.loads(uploaded["config.json"])["sdbox"]["key_fingerprint"] == wrapped.key.fingerprint


# --------------------------------------------------------------------------------- loading
def test_from_pretrained_local_folder_offline(bundle, wrapped, tiny_cls, batch, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def no_download(*args, **kwargs):
        raise AssertionError("a local folder must load without the Hub")

    monkeypatch.setattr(sdbox.box, "hf_hub_download", no_download)
    monkeypatch.setattr(huggingface_hub.hub_mixin, "hf_hub_download", no_download)
    loaded = SafeBox.from_pretrained(str(bundle), model=tiny_cls())
    assert not loaded.training
    assert loaded.box_config.key_fingerprint == wrapped.key.fingerprint
    x, _ = batch
    with torch.no_grad():
        assert torch.equal(loaded(x), wrapped(x))
    with pytest.raises(Exception, match="no key attached"):
        loaded.key  # bundles never carry the key


def test_from_pretrained_hub_id(bundle, wrapped, tiny_cls, batch, fake_hub):
    from sdbox.hub import push_folder

    push_folder(bundle, "org/name")
    loaded = SafeBox.from_pretrained("org/name", model=tiny_cls())
    assert {path.rsplit("/", 1)[-1] for _, path, _ in fake_hub.requests if "/resolve/" in path} == {"config.json", "model.safetensors"}
    x, _ = batch
    with torch.no_grad():
        assert torch.equal(loaded(x), wrapped(x))


def test_loaded_box_saves_the_same_bundle(bundle, tiny_cls, tmp_path):
    loaded = SafeBox.from_pretrained(bundle, model=tiny_cls())
    loaded.save_pretrained(tmp_path / "again")
    assert {p.name for p in (tmp_path / "again").iterdir()} == BUNDLE_FILES
    for name in BUNDLE_FILES:
        assert (tmp_path / "again" / name).read_bytes() == (bundle / name).read_bytes(), name


def test_hub_download_failure_is_a_bundle_error(monkeypatch, tiny_cls):
    def missing(repo_id, filename, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("not in cache and offline")

    monkeypatch.setattr(sdbox.box, "hf_hub_download", missing)
    monkeypatch.setattr(huggingface_hub.hub_mixin, "hf_hub_download", missing)
    with pytest.raises(BundleError, match="org/absent"):
        SafeBox.from_pretrained("org/absent", model=tiny_cls())


def test_custom_model_needs_model_argument(bundle):
    with pytest.raises(BundleError, match=r"model=") as info:
        SafeBox.from_pretrained(bundle)
    assert "custom" in str(info.value)


def test_wrong_model_instance_is_a_bundle_error(bundle, tiny_cls):
    with pytest.raises(BundleError, match="do not fit"):
        SafeBox.from_pretrained(bundle, model=tiny_cls(num_classes=5))


def test_unknown_sdbox_fields_only_warn(damaged, tiny_cls):
    edit_config(damaged, lambda c: c["sdbox"].update({"from_the_future": 1, "another": "x"}))
    with pytest.warns(UserWarning, match="from_the_future"):
        box = SafeBox.from_pretrained(damaged, model=tiny_cls())
    assert box.box_config.num_classes == 10


def test_the_bundle_records_the_version_and_every_method_setting(bundle, damaged, tiny_cls):
    import sdbox
    from dataclasses import fields as dataclass_fields

    config = SafeBox.from_pretrained(bundle, model=tiny_cls()).box_config
    assert config.sdbox_version == sdbox.__version__
    assert {f.name for f in dataclass_fields(SDBSettings)} | {"epochs", "lr", "max_accuracy_drop", "kept_epoch"} == set(config.method)
    assert config.method["main_loss"] == SDBSettings().main_loss and config.method["kept_epoch"] == "closest to the decoy target"
    # An older bundle (no version stamp) still loads, with one warning saying what it lacks.
    edit_config(damaged, lambda c: [c["sdbox"].pop(k) for k in ("sdbox_version", "method")])
    with pytest.warns(UserWarning, match="stamped no version") as caught:
        old = SafeBox.from_pretrained(damaged, model=tiny_cls())
    assert len(caught) == 1 and old.box_config.method == {} and old.box_config.sdbox_version is None


@pytest.mark.parametrize("field, value", [("method", {"main_loss": {"nested": 1}}), ("method", ["kl"]), ("method", {"bad name": 1}),
                                          ("sdbox_version", "0.1.0; rm -rf /"), ("sdbox_version", 3)])
def test_a_hostile_method_record_is_a_named_bundle_error(damaged, tiny_cls, field, value):
    edit_config(damaged, lambda c: c["sdbox"].update({field: value}))
    with pytest.raises(BundleError, match=f"`{field}`"):
        SafeBox.from_pretrained(damaged, model=tiny_cls())


def test_clean_bundle_loads_without_warnings(bundle, tiny_cls):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SafeBox.from_pretrained(bundle, model=tiny_cls())


# ------------------------------------------------------------------------- damaged bundles
def test_truncated_weights_fail_the_checksum(damaged, tiny_cls):
    w = damaged / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(BundleError, match="checksum"):
        SafeBox.from_pretrained(damaged, model=tiny_cls())


def test_replaced_weights_fail_the_checksum(damaged, tiny_cls):
    from safetensors.torch import save_model
    save_model(tiny_cls(), str(damaged / "model.safetensors"))  # valid file, other weights
    with pytest.raises(BundleError, match="checksum"):
        SafeBox.from_pretrained(damaged, model=tiny_cls())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_unreadable_weights_without_checksum(damaged, tiny_cls, damage):
    edit_config(damaged, lambda c: c["sdbox"].update({"weights_sha256": None}))
    w = damaged / "model.safetensors"
    data = {"truncated": w.read_bytes()[: len(w.read_bytes()) // 2], "garbage": b"\x12\x00\x00\x00\x00\x00\x00\x00{bad json" + b"\x00" * 50, "empty": b""}[damage]
    w.write_bytes(data)
    with pytest.raises(BundleError):
        SafeBox.from_pretrained(damaged, model=tiny_cls())


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2, 3]", "\"a string\"", "{\"architecture\": \"x\"}"])
def test_invalid_config_json(damaged, tiny_cls, text):
    (damaged / "config.json").write_text(text)
    with pytest.raises(BundleError):
        SafeBox.from_pretrained(damaged, model=tiny_cls())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["sdbox"].update({"lam": 1.5}), "lam"),
        (lambda c: c["sdbox"].update({"lam": "0.5"}), "lam"),
        (lambda c: c["sdbox"].update({"key_fingerprint": "abc"}), "key_fingerprint"),
        (lambda c: c["sdbox"].update({"key_fingerprint": "Z" * 64}), "key_fingerprint"),
        (lambda c: c["sdbox"].update({"key_shape": [3, 16, 16]}), "key_shape"),
        (lambda c: c["pretrained_cfg"].update({"input_size": [3, 16, 16]}), "key_shape"),
        (lambda c: c["sdbox"].update({"t_dis": -1}), "t_dis"),
        (lambda c: c["sdbox"].update({"format_version": 99}), "upgrade"),
        (lambda c: c["sdbox"].update({"model_library": "pickle"}), "model_library"),
        (lambda c: c.update({"num_classes": 1}), "num_classes"),
        (lambda c: c["pretrained_cfg"].update({"std": [0.2, 0.0, 0.2]}), "std"),
        (lambda c: c["pretrained_cfg"].update({"mean": [0.5]}), "mean"),
        (lambda c: c.pop("sdbox"), "not an sdbox config"),
        (lambda c: c.update({"sdbox": ["lam", "omega"]}), "not an sdbox config"),
        (lambda c: c["sdbox"].update({"key_shape": 3}), "key_shape"),
        (lambda c: c["pretrained_cfg"].update({"mean": ["a", "b", "c"]}), "mean"),
        (lambda c: c["pretrained_cfg"].update({"std": [0.2, float("inf"), 0.2]}), "std"),
        (lambda c: c.update({"pretrained_cfg": {"input_size": 32, "mean": [0.5] * 3, "std": [0.2] * 3}}), "sdbox config"),
        # what the issue's probes found: raw TypeError / AttributeError, a late crash, or nothing at all
        (lambda c: c["sdbox"].update({"format_version": "1"}), "`format_version`"),
        (lambda c: c["sdbox"].update({"format_version": 0}), "`format_version`"),
        (lambda c: c.update({"architecture": [1, 2]}), "`architecture`"),
        (lambda c: c.update({"architecture": "local-dir:/elsewhere"}), "`architecture`"),
        (lambda c: c.update({"architecture": "hf-hub:someone/repo"}), "`architecture`"),
        (lambda c: c.update({"architecture": "../../etc/passwd"}), "`architecture`"),
        (lambda c: c.update({"num_classes": 10**9}), r"`num_classes` to be an integer in \[2, 100000\]"),
        (lambda c: c.update({"num_classes": "10"}), "`num_classes`"),
        (lambda c: c.update({"num_classes": True}), "`num_classes`"),
        (lambda c: c["pretrained_cfg"].update({"input_size": [3, 100000, 100000]}), "`input_size`"),
        (lambda c: c["sdbox"].update({"fidelity": {"clean_acc_after": "high"}}), "`fidelity`"),
        (lambda c: c["sdbox"].update({"omega": "lots"}), "`omega`"),
        (lambda c: c["sdbox"].update({"eta": float("nan")}), "`eta`"),
        (lambda c: c["sdbox"].update({"weights_sha256": 123}), "`weights_sha256`"),
        (lambda c: c["sdbox"].update({"report": "see elsewhere"}), "`report`"),
        (lambda c: c["sdbox"].update({"normalization_source": ["x"]}), "`normalization_source`"),
        # the fields that rebuild the model and its pipeline: they reach timm's and torchvision's builders
        (lambda c: c.update({"model_args": {"pretrained": True}}), "`model_args`"),
        (lambda c: c.update({"model_args": {"pretrained_cfg_overlay": {"file": "/etc/passwd"}}}), "`model_args`"),
        (lambda c: c.update({"model_args": {"num_classes": 3}}), "`model_args`"),
        (lambda c: c.update({"model_args": ["in_chans", 1]}), "`model_args`"),
        (lambda c: c.update({"label_names": ["cat", "dog"]}), "`label_names`"),
        (lambda c: c["pretrained_cfg"].update({"crop_pct": 0}), "`crop_pct`"),
        (lambda c: c["pretrained_cfg"].update({"interpolation": "magic"}), "`interpolation`"),
        (lambda c: c["pretrained_cfg"].update({"classifier": "../fc"}), "`classifier`"),
        (lambda c: c["pretrained_cfg"].update({"num_classes": 11}), "inconsistent"),
        (lambda c: c["pretrained_cfg"].update({"deep": {"a": [1]}}), "`pretrained_cfg`"),
        (lambda c: c["sdbox"].update({"license": "mit; rm -rf"}), "`license`"),
    ],
)
def test_tampered_config(damaged, tiny_cls, change, message):
    edit_config(damaged, change)
    with pytest.raises(BundleError, match=message):
        SafeBox.from_pretrained(damaged, model=tiny_cls())


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_missing_files(damaged, tiny_cls, missing):
    (damaged / missing).unlink()
    with pytest.raises(BundleError, match=missing.replace(".", r"\.")):
        SafeBox.from_pretrained(damaged, model=tiny_cls())


def test_missing_folder(tmp_path, tiny_cls, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises((BundleError, OSError)):
        SafeBox.from_pretrained(str(tmp_path / "nope"), model=tiny_cls(), local_files_only=True)


def test_box_config_round_trips(wrapped):
    data = json.loads(json.dumps(wrapped.box_config.to_json()))
    again = BoxConfig.from_json(data)
    assert again.to_json() == wrapped.box_config.to_json()


def test_pickling_a_box_never_carries_the_key(wrapped, windows, batch):
    import io
    import pickle

    buffer = io.BytesIO()
    torch.save(wrapped, buffer)
    assert_no_key_bytes(buffer.getvalue(), wrapped.key, windows, "torch.save(box)")
    assert_no_key_bytes(pickle.dumps(wrapped), wrapped.key, windows, "pickle.dumps(box)")
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    assert restored._key is None
    with pytest.raises(Exception, match="no key attached"):
        restored.key
    x, _ = batch
    with torch.no_grad():
        assert torch.equal(restored(x), wrapped(x))  # everything else survives
    assert wrapped.key is not None  # and the box pickled keeps its own key


@pytest.mark.parametrize("library, name", [("timm", "hf-hub:someone/repo"), ("timm", "local-dir:/elsewhere"), ("timm", "no_such_model"),
                                           ("torchvision", "no_such_model")])
def test_architecture_names_never_reach_the_network_or_other_folders(damaged, monkeypatch, library, name):
    import timm

    def refuse(*args, **kwargs):
        raise AssertionError("the bundle's name reached a model builder or the Hub")

    monkeypatch.setattr(timm, "create_model", refuse)
    monkeypatch.setattr(sdbox.box, "hf_hub_download", refuse)
    edit_config(damaged, lambda c: (c.update({"architecture": name}), c["sdbox"].update({"model_library": library})))
    with pytest.raises(BundleError, match="architecture|no model named"):
        SafeBox.from_pretrained(damaged)


class Wide(nn.Module):
    def __init__(self, width: int = 8, num_classes: int = 10):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, width, 3), nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


@pytest.mark.parametrize("args, message", [({"width": 10**7}, "do not describe these weights"), ({"depth": 3}, "Could not build")])
def test_model_args_cannot_make_loading_allocate_more_than_the_bundle_holds(tmp_path, args, message):
    """model_args reach the user's class (or timm / torchvision) from an untrusted file: sized on the meta device first."""
    box = SafeBox(Wide(width=8), BoxConfig(architecture="tests.Wide", num_classes=10, input_size=(3, 32, 32), mean=CIFAR10_MEAN,
                                           std=CIFAR10_STD, key_fingerprint="0" * 64, model_args={"width": 8}))
    box.save_pretrained(tmp_path / "wide")
    assert SafeBox.from_pretrained(tmp_path / "wide", model_class=Wide).model.conv.out_channels == 8
    edit_config(tmp_path / "wide", lambda c: c.update({"model_args": args}))
    with pytest.raises(BundleError, match=message):
        SafeBox.from_pretrained(tmp_path / "wide", model_class=Wide)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"num_classes": ' + "9" * 5000 + "}", "\ud800"])
def test_pathological_json_is_a_bundle_error(damaged, tiny_cls, text):
    (damaged / "config.json").write_text(text, errors="surrogatepass")
    with pytest.raises(BundleError, match="not valid JSON|sdbox config"):
        SafeBox.from_pretrained(damaged, model=tiny_cls())


def test_a_config_value_too_large_for_a_float_is_named(damaged, tiny_cls):
    edit_config(damaged, lambda c: c["pretrained_cfg"].update({"mean": [10**400, 0.5, 0.5]}))
    with pytest.raises(BundleError, match="`mean`"):
        SafeBox.from_pretrained(damaged, model=tiny_cls())


def test_model_card_is_hub_metadata_with_measured_fidelity(bundle, wrapped):
    from huggingface_hub import ModelCard

    card = ModelCard.load(bundle / "README.md")
    data = card.data.to_dict()
    assert "sdbox" in data["tags"] and data["pipeline_tag"] == "image-classification" and data["license"] == "unknown"
    assert "library_name" not in data  # a custom model: plain timm cannot load it, so no timm snippet is promised
    # No dataset name and no recorded sample size: the figures are in the text, not in model-index
    # (tests/test_card.py has the model-index cases).
    assert "model-index" not in data
    result = wrapped.wrap_result
    for figure in (result.clean_acc_before, result.clean_acc_after, result.keyed_acc_after):
        assert f"{figure:.2f}%" in card.text
    assert "KeyedTeacher(box, Key.load(" in card.text and "sdbox distill" in card.text
    assert "model_class=YourModel" in card.text
