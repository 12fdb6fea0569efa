"""Plain timm rebuilds a box's eval preprocessing to the pixel.

A box publishes its owner's Resize + CenterCrop as timm's ``crop_pct``; timm's
``resolve_data_config`` + ``create_transform`` turn it back into a resize of
``floor(crop / crop_pct)``. These tests take the value sdbox writes into config.json through
timm's own functions and compare the tensors they produce on real CIFAR-10 images with the
training pipeline's: the very same tensor, not only the same prediction.
"""

from __future__ import annotations

import json
import math

import pytest
import timm
import torch
from timm.data import create_transform, resolve_data_config
from torch.utils.data import DataLoader
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms._presets import ImageClassification

from sdbox import SafeBox
from sdbox.config import BoxConfig
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD
from sdbox.preprocessing import eval_pipeline, timm_crop_pct

from test_preprocessing import image_folder, loader_over

# (crop, resize): CIFAR's 32/36, ImageNet's 224/256, 384/438 and 96/110 as the issue lists them,
# Inception's 299/342, and sizes whose plain ratio float division puts under the resize (14/25).
SIZES = [(32, 36), (224, 256), (384, 438), (96, 110), (299, 342), (64, 73), (160, 182), (28, 32), (14, 25), (32, 32)]


def real_images(n: int = 10) -> list:
    """``n`` (a multiple of 10) class-balanced CIFAR-10 test images as PIL images (32×32, so every size is an upscale)."""
    images = image_folder("test", None, n, seed=5)
    return [images[i][0] for i in range(n)]


def published_cfg(crop: int, pipeline) -> dict:
    """The pretrained_cfg a box with this eval pipeline writes into config.json, read back from JSON."""
    config = BoxConfig(architecture="resnet18", num_classes=10, input_size=(3, crop, crop), mean=CIFAR10_MEAN, std=CIFAR10_STD,
                       key_fingerprint="0" * 64, model_library="timm", interpolation=pipeline.interpolation,
                       crop_pct=pipeline.crop_pct, crop_mode=pipeline.crop_mode)
    return json.loads(json.dumps(config.to_json()))["pretrained_cfg"]


@pytest.mark.parametrize("crop,resize", SIZES)
def test_timms_transform_gives_the_training_tensor_for_resize_then_crop(crop, resize):
    interpolation = "bicubic" if crop % 2 else "bilinear"
    training = T.Compose([T.Resize(resize, interpolation=InterpolationMode(interpolation)), T.CenterCrop(crop),
                          T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    cfg = published_cfg(crop, eval_pipeline(loader_over(training), (3, crop, crop)))
    by_timm = create_transform(**resolve_data_config(pretrained_cfg=cfg))
    assert math.floor(crop / cfg["crop_pct"]) == resize
    for image in real_images():
        assert torch.equal(by_timm(image), training(image))


@pytest.mark.parametrize("crop,resize", [(224, 256), (32, 36), (384, 438)])
def test_timms_transform_gives_the_tensor_of_torchvisions_weights_transforms(crop, resize):
    """``weights.transforms()`` (torchvision's preset) is read as Resize + CenterCrop too."""
    training = ImageClassification(crop_size=crop, resize_size=resize, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    cfg = published_cfg(crop, eval_pipeline(loader_over(training), (3, crop, crop)))
    by_timm = create_transform(**resolve_data_config(pretrained_cfg=cfg))
    for image in real_images(10):
        assert torch.equal(by_timm(image), training(image))


def test_every_crop_pct_written_gives_back_its_resize():
    """A sweep beyond the listed sizes: every crop up to 512 pixels, resized 0–25% larger."""
    for crop in range(1, 513):
        for resize in range(crop, crop + crop // 4 + 1):
            pct = timm_crop_pct(crop, resize)
            assert math.floor(crop / pct) == resize, (crop, resize, pct)
            assert len(repr(pct)) <= 7, (crop, resize, pct)  # at most 5 decimals: a value a person can read


def test_a_box_trained_at_resize_36_crop_32_loads_in_plain_timm_with_its_own_tensors(tmp_path):
    """The issue's case end to end: wrap, save, ``local-dir:`` in plain timm, its data config."""
    training = T.Compose([T.Resize(36), T.CenterCrop(32), T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    torch.manual_seed(0)
    train = DataLoader(image_folder("train", training, 40), batch_size=20, shuffle=True)
    val = DataLoader(image_folder("test", training, 20), batch_size=20)
    box = SafeBox.wrap(timm.create_model("resnet18", num_classes=10), train, val_loader=val, epochs=1,
                       max_accuracy_drop=100, device="cpu", progress=False).eval()
    box.save_pretrained(tmp_path / "box")
    model = timm.create_model(f"local-dir:{tmp_path / 'box'}", pretrained=True).eval()
    by_timm = create_transform(**resolve_data_config(model=model))
    images = real_images(20)
    theirs = torch.stack([by_timm(image) for image in images])
    ours = torch.stack([training(image) for image in images])
    assert torch.equal(theirs, ours)
    with torch.no_grad():
        assert torch.equal(model(theirs), box(ours))


def test_a_size_of_zero_is_refused_with_what_to_check():
    from sdbox import InputError

    with pytest.raises(InputError, match="positive crop and resize"):
        timm_crop_pct(0, 36)
