"""A distilled student is saved like a box: timm's own writer, and plain timm loads it as itself."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import load_file
from timm.data import resolve_data_config
from torchvision import transforms as T

from sdbox import InputError
from sdbox.architecture import box_data_config, build, save_student
from sdbox.config import BoxConfig
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD

from test_timm_roundtrip import real_images


def box_config(channels: int) -> BoxConfig:
    """The config of a box trained at Resize(36) + CenterCrop(32): what its students saw."""
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if channels == 3 else ((0.48,), (0.24,))
    return BoxConfig(architecture="resnet18", num_classes=10, input_size=(channels, 32, 32), mean=mean, std=std,
                     key_fingerprint="0" * 64, model_library="timm", interpolation="bicubic", crop_pct=0.88, crop_mode="center",
                     label_names=[f"class{i}" for i in range(10)])


def images(channels: int) -> torch.Tensor:
    steps = [T.Grayscale()] if channels == 1 else []
    config = box_config(channels)
    transform = T.Compose([*steps, T.Resize(36), T.CenterCrop(32), T.ToTensor(), T.Normalize(config.mean, config.std)])
    return torch.stack([transform(image) for image in real_images(10)])


@pytest.mark.parametrize("channels", [3, 1])
def test_plain_timm_loads_a_saved_student_with_identical_logits_and_the_boxs_preprocessing(tmp_path, channels):
    torch.manual_seed(0)
    student = timm.create_model("resnet18", num_classes=10, in_chans=channels).eval()
    config = box_config(channels)
    save_student(student, tmp_path / "student", box_data_config(config), label_names=config.label_names,
                 provenance={"teacher": "org/box", "keyed": True})
    loaded = timm.create_model(f"local-dir:{tmp_path / 'student'}", pretrained=True).eval()
    x = images(channels)
    with torch.no_grad():
        assert torch.equal(loaded(x), student(x))
    data = resolve_data_config(model=loaded)
    assert (data["input_size"], data["crop_pct"], data["interpolation"], tuple(data["mean"])) == ((channels, 32, 32), 0.88, "bicubic", config.mean)
    written = json.loads((tmp_path / "student" / "config.json").read_text())
    assert written["model_args"]["in_chans"] == channels and written["label_names"][0] == "class0"
    assert written["sdbox_student"] == {"teacher": "org/box", "keyed": True}
    assert loaded.pretrained_cfg["label_names"][:2] == ["class0", "class1"]
    # A hand-built config without `classifier` (what `sdbox distill` wrote before) fails here
    # with a size mismatch: timm needs it to drop the old head when fine-tuning to other classes.
    assert timm.create_model(f"local-dir:{tmp_path / 'student'}", pretrained=True, num_classes=5).get_classifier().out_features == 5


def test_a_torchvision_student_is_saved_by_name_and_rebuilds_with_identical_logits(tmp_path):
    import torchvision

    torch.manual_seed(0)
    student = torchvision.models.resnet18(num_classes=10).eval()
    save_student(student, tmp_path / "tv", box_data_config(box_config(3)))
    written = json.loads((tmp_path / "tv" / "config.json").read_text())
    assert (written["architecture"], written["model_library"], written["model_args"]) == ("resnet18", "torchvision", {"num_classes": 10})
    assert written["pretrained_cfg"]["crop_pct"] == 0.88
    rebuilt = build("torchvision", written["architecture"], written["num_classes"], written["model_args"])
    rebuilt.load_state_dict(load_file(tmp_path / "tv" / "model.safetensors"))
    x = images(3)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), student(x))


def test_a_custom_student_is_refused_with_what_to_do(tmp_path, tiny_cls):
    with pytest.raises(InputError, match="timm or torchvision student.*safetensors"):
        save_student(tiny_cls(), tmp_path / "custom", box_data_config(box_config(3)))
    assert not (tmp_path / "custom" / "model.safetensors").exists()
