"""A box publishes the preprocessing its owner really used, and comes back as the same function:
with plain timm (``local-dir:``), with ``SafeBox.from_pretrained``, with its constructor
arguments, and through timm's ``resolve_data_config`` + ``create_transform`` on real images."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import pytest
import timm
import torch
import torch.nn as nn
from timm.data import create_transform, resolve_data_config
from torch.utils.data import DataLoader, Subset
from torchvision import transforms as T
from torchvision.transforms import v2

from sdbox import InputError, SafeBox
from sdbox.hub import push_folder
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD, balanced_picks
from sdbox.preprocessing import resolve_normalization
from sdbox.preprocessing import EvalPipeline, eval_pipeline, resolve_label_names, transform_normalization

from conftest import DATA

CIFAR_TRANSFORM = T.Compose([T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])


@functools.lru_cache(maxsize=2)
def scanned(split: str):
    from torchvision.datasets import ImageFolder

    if not (DATA / split).is_dir():
        pytest.skip(f"CIFAR-10 ImageFolder tree not found at {DATA / split}")
    return ImageFolder(str(DATA / split))


def image_folder(split: str, transform, n: int, seed: int = 0) -> Subset:
    """``n`` class-balanced real CIFAR-10 images of ``split`` (an ImageFolder) through ``transform``."""
    folder = copy.copy(scanned(split))
    folder.transform = transform
    return Subset(folder, balanced_picks(torch.tensor(folder.targets), [n], seed)[0].tolist())


def wrap(model: nn.Module, transform, **kwargs) -> SafeBox:
    torch.manual_seed(0)
    train = DataLoader(image_folder("train", transform, 60), batch_size=20, shuffle=True)
    val = DataLoader(image_folder("test", transform, 40), batch_size=40)
    return SafeBox.wrap(model, train, val_loader=val, epochs=1, max_accuracy_drop=100, device="cpu", progress=False, **kwargs)


@pytest.fixture(scope="module")
def timm_bundle(tmp_path_factory) -> tuple[SafeBox, Path]:
    """The issue's case: a timm resnet18 wrapped on CIFAR-10 images normalised with CIFAR's mean/std."""
    box = wrap(timm.create_model("resnet18", pretrained=False, num_classes=10), CIFAR_TRANSFORM)
    out = tmp_path_factory.mktemp("timm") / "out"
    box.eval().save_pretrained(out)
    return box, out


def test_the_loaders_normalisation_wins_over_timms_defaults(timm_bundle):
    box, out = timm_bundle
    config = json.loads((out / "config.json").read_text())
    cfg = config["pretrained_cfg"]
    assert cfg["mean"] == list(CIFAR10_MEAN) and cfg["std"] == list(CIFAR10_STD)  # not ImageNet's
    assert config["sdbox"]["normalization_source"] == "transform:transforms.Normalize"
    assert (cfg["input_size"], cfg["crop_pct"], cfg["crop_mode"], cfg["interpolation"]) == ([3, 32, 32], 1.0, "center", "bilinear")
    assert (cfg["first_conv"], cfg["classifier"], cfg["num_classes"]) == ("conv1", "fc", 10)
    assert (config["num_features"], config["global_pool"]) == (512, "avg")
    assert config["model_args"] == {"num_classes": 10, "in_chans": 3, "global_pool": "avg"}
    assert config["label_names"][:3] == ["airplane", "automobile", "bird"] and len(config["label_names"]) == 10
    assert not {"tag", "hf_hub_id", "license", "origin_url"} & set(cfg)  # timm's source weights are not the box's


def test_the_card_of_a_timm_box_promises_timms_snippet(timm_bundle):
    from huggingface_hub import ModelCard

    box, out = timm_bundle
    box.box_config.license, box.box_config.base_model, box.box_config.datasets = "apache-2.0", "timm/resnet18.a1_in1k", ["cifar10"]
    try:
        box.save_pretrained(out.parent / "carded")
    finally:
        box.box_config.license = box.box_config.base_model = box.box_config.datasets = None
    card = ModelCard.load(out.parent / "carded" / "README.md")
    assert (card.data.library_name, card.data.license, card.data.base_model, card.data.datasets) == ("timm", "apache-2.0", "timm/resnet18.a1_in1k", ["cifar10"])
    assert 'timm.create_model("hf-hub:ORG/NAME", pretrained=True)' in card.text and "resolve_data_config" in card.text
    assert "airplane, automobile" in card.text and "crop_pct 1.0" in card.text


def test_plain_timm_and_sdbox_load_the_box_with_identical_logits(timm_bundle):
    box, out = timm_bundle
    x = torch.stack([image_folder("test", CIFAR_TRANSFORM, 20, seed=1)[i][0] for i in range(20)])
    by_timm = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    by_sdbox = SafeBox.from_pretrained(out)
    with torch.no_grad():
        expected = box(x)
        assert torch.equal(by_timm(x), expected)
        assert torch.equal(by_sdbox(x), expected)
    assert by_timm.pretrained_cfg["label_names"][0] == "airplane"


def test_plain_timm_and_sdbox_load_the_pushed_box_from_the_hub(timm_bundle, fake_hub):
    """``hf-hub:`` through huggingface_hub's real client; only its transport is faked."""
    box, out = timm_bundle
    push_folder(out, "org/tbox", token="hf_owner")
    x = torch.stack([image_folder("test", CIFAR_TRANSFORM, 10, seed=4)[i][0] for i in range(10)])
    by_timm = timm.create_model("hf-hub:org/tbox", pretrained=True).eval()
    by_sdbox = SafeBox.from_pretrained("org/tbox")
    with torch.no_grad():
        assert torch.equal(by_timm(x), box(x)) and torch.equal(by_sdbox(x), box(x))
    downloads = {path.rsplit("/", 1)[-1] for method, path, _ in fake_hub.requests if "/resolve/" in path}
    assert downloads == {"config.json", "model.safetensors"}


def test_timms_data_config_reproduces_the_training_pipeline(timm_bundle):
    """The issue measured 73% agreement: ImageNet mean/std and crop_pct=0.875 (resize to 36, crop 32)."""
    box, out = timm_bundle
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    timm_transform = create_transform(**resolve_data_config(model=model))
    images = image_folder("test", None, 50, seed=2)
    ours = torch.stack([CIFAR_TRANSFORM(images[i][0]) for i in range(len(images))])
    theirs = torch.stack([timm_transform(images[i][0]) for i in range(len(images))])
    torch.testing.assert_close(theirs, ours)
    with torch.no_grad():
        assert torch.equal(model(theirs).argmax(1), box(ours).argmax(1))


def test_a_key_holder_fine_tunes_the_box_to_other_classes_with_plain_timm(timm_bundle):
    _, out = timm_bundle
    model = timm.create_model(f"local-dir:{out}", pretrained=True, num_classes=5)  # needs `classifier` in the config
    assert model.get_classifier().out_features == 5
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 5)


def test_a_one_channel_timm_box_reloads_as_itself(tmp_path):
    gray = T.Compose([T.Grayscale(), T.ToTensor(), T.Normalize((0.48,), (0.24,))])
    box = wrap(timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=1), gray).eval()
    box.save_pretrained(tmp_path / "gray")
    x = torch.stack([image_folder("test", gray, 10, seed=3)[i][0] for i in range(10)])
    for loaded in (SafeBox.from_pretrained(tmp_path / "gray").model, timm.create_model(f"local-dir:{tmp_path / 'gray'}", pretrained=True).eval()):
        assert loaded.conv1.in_channels == 1
        with torch.no_grad():
            assert torch.equal(loaded(x), box(x))
    assert box.box_config.mean == (0.48,) and box.box_config.key_shape == (1, 32, 32)


class WideNet(nn.Module):
    """A custom model whose constructor argument changes its shape."""

    def __init__(self, width: int = 8, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.conv(x).relu().mean((2, 3)))


def test_a_custom_box_reloads_from_its_class_and_recorded_arguments(tmp_path):
    box = wrap(WideNet(width=12), CIFAR_TRANSFORM, model_args={"width": 12, "num_classes": 10}).eval()
    box.save_pretrained(tmp_path / "custom")
    config = json.loads((tmp_path / "custom" / "config.json").read_text())
    assert config["model_args"] == {"width": 12, "num_classes": 10}
    assert (config["pretrained_cfg"]["first_conv"], config["pretrained_cfg"]["classifier"]) == ("conv", "head")
    loaded = SafeBox.from_pretrained(tmp_path / "custom", model_class=WideNet)
    assert loaded.model.conv.out_channels == 12  # WideNet() would have 8 and not fit the weights
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), box(x))


def test_a_torchvision_box_records_its_constructor_arguments(tmp_path):
    import torchvision

    box = wrap(torchvision.models.resnet18(num_classes=10), CIFAR_TRANSFORM).eval()
    config = box.box_config
    assert (config.model_library, config.model_args, config.first_conv, config.classifier) == ("torchvision", {"num_classes": 10}, "conv1", "fc")
    box.save_pretrained(tmp_path / "tv")
    loaded = SafeBox.from_pretrained(tmp_path / "tv")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), box(x))


# --------------------------------------------------------------------------- reading loaders
def loader_over(transform) -> DataLoader:
    class Images(torch.utils.data.Dataset):
        def __init__(self):
            self.transform = transform

        def __len__(self):
            return 1

    return DataLoader(Subset(Images(), [0]))


@pytest.mark.parametrize("normalize", [T.Normalize((0.1, 0.2, 0.3), (0.4, 0.5, 0.6)), v2.Normalize((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))])
def test_normalize_is_read_from_v1_and_v2_transforms(normalize):
    mean, std, source = transform_normalization(loader_over(T.Compose([T.ToTensor(), T.Compose([normalize])])))
    assert (mean, std) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6)) and source.endswith("Normalize")


def test_timms_own_eval_transform_is_read_back():
    transform = create_transform(input_size=(3, 32, 32), crop_pct=0.8, interpolation="bicubic", mean=CIFAR10_MEAN, std=CIFAR10_STD)
    loader = loader_over(transform)
    assert eval_pipeline(loader, (3, 32, 32)) == EvalPipeline("bicubic", 0.8, "center", "transform:Resize+CenterCrop")
    assert transform_normalization(loader)[:2] == (CIFAR10_MEAN, CIFAR10_STD)


def test_torchvision_weights_transforms_are_read_back():
    from torchvision.models import ResNet18_Weights

    loader = loader_over(ResNet18_Weights.DEFAULT.transforms())
    assert eval_pipeline(loader, (3, 224, 224)) == EvalPipeline("bilinear", 0.875, "center", "transform:weights.transforms()")
    assert transform_normalization(loader) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "transform:weights.transforms()")


def test_arguments_that_contradict_the_loaders_normalisation_are_refused():
    loader = loader_over(CIFAR_TRANSFORM)
    sample = torch.zeros(2, 3, 32, 32)
    assert resolve_normalization(nn.Identity(), sample, CIFAR10_MEAN, CIFAR10_STD, loader=loader).source.startswith("transform:")
    with pytest.raises(InputError, match=r"match the loader's own normalisation .*drop the arguments"):
        resolve_normalization(nn.Identity(), sample, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), loader=loader)


def test_label_names_come_from_the_user_the_dataset_or_the_weights():
    class Weights:
        meta = {"categories": [f"c{i}" for i in range(3)]}

    assert resolve_label_names(None, [], Weights(), 3) == ["c0", "c1", "c2"]
    assert resolve_label_names(None, [], Weights(), 10) is None  # 1,000 ImageNet names for a 10-class head: none
    assert resolve_label_names(["a", "b"], [], Weights(), 2) == ["a", "b"]
    with pytest.raises(ValueError, match="`label_names` to be 3 strings"):
        resolve_label_names(["a"], [], None, 3)


def test_sdboxs_own_tensor_loaders_say_how_they_normalise():
    from sdbox.data import TensorImageDataset, TensorLoader

    images, labels = torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long)
    assert transform_normalization(TensorLoader(images, labels, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), batch_size=2)) == (
        (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "loader:TensorLoader")
    dataset = TensorImageDataset(images, labels, CIFAR10_MEAN, CIFAR10_STD)
    assert transform_normalization(DataLoader(Subset(dataset, [0, 1]))) == (CIFAR10_MEAN, CIFAR10_STD, "loader:TensorImageDataset")
