"""The fast path changes speed, never results; the tensor loader feeds what a DataLoader would."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from sdbox.benchmark.models import create
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD, TensorImageDataset, TensorLoader
from sdbox.fastpath import FastPath
from sdbox.speed import main
from sdbox.frozen import FrozenModels
from sdbox.settings import SDBSettings
from sdbox.step import sdb_step


def test_fast_path_gives_the_plain_losses():
    torch.manual_seed(0)
    model = create("cnn5")
    frozen = FrozenModels.from_model(model, with_random=True, seed=0)
    x, y, key = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)), torch.randn(3, 32, 32)
    settings = SDBSettings(eta=0.01)
    _, plain = sdb_step(copy.deepcopy(model), frozen, x, y, key, settings)

    fast = FastPath(amp=False, channels_last=True).resolve("cpu")
    fast_frozen = FrozenModels(fast.prepare(copy.deepcopy(frozen.original)), fast.prepare(copy.deepcopy(frozen.random)))
    with fast.autocast("cpu"):
        _, quick = sdb_step(fast.prepare(copy.deepcopy(model)), fast_frozen, fast.inputs(x), y, key, settings)

    assert set(quick) == set(plain) == {"cls", "dis", "kp_main", "kp_aug", "total"}
    for name in plain:
        torch.testing.assert_close(quick[name], plain[name], rtol=1e-5, atol=1e-6)


def test_fast_path_defaults_follow_the_device():
    assert FastPath().resolve("cpu") == FastPath(amp=False, channels_last=True, compile=False)
    assert FastPath(amp=True).resolve("cpu").amp is True


def test_tensor_loader_normalises_like_the_dataset():
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(10)
    loader = TensorLoader(images, labels, CIFAR10_MEAN, CIFAR10_STD, batch_size=4)
    dataset = TensorImageDataset(images, labels, CIFAR10_MEAN, CIFAR10_STD)
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and [len(y) for _, y in batches] == [4, 4, 2]
    x = torch.cat([b[0] for b in batches])
    assert x.dtype == torch.float32 and x.shape == (10, 3, 32, 32)
    torch.testing.assert_close(x, torch.stack([dataset[i][0] for i in range(10)]))
    assert torch.equal(torch.cat([b[1] for b in batches]), labels)


def test_tensor_loader_crop_flip_keeps_shapes_and_labels():
    # Image i is the constant value 10·i: the centre pixel survives any crop of ≤ 4 pixels and
    # any flip, so it must still name the label; padding shows up as zeros at the border.
    labels = torch.arange(1, 21) % 10
    images = (labels * 10 + 5).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 32, 32).contiguous()
    loader = TensorLoader(images, labels, (0.0,) * 3, (1.0,) * 3, batch_size=8, shuffle=True, augment=True, seed=1)
    seen, padded = [], 0
    for x, y in loader:
        assert x.shape == (len(y), 3, 32, 32)
        pixels = (x * 255).round()
        assert torch.equal(pixels[:, :, 16, 16], (y * 10 + 5).float().view(-1, 1).expand(-1, 3))
        assert set(pixels.unique().tolist()) <= {0.0, *((y * 10 + 5).float().tolist())}
        padded += int((pixels == 0).any(dim=(1, 2, 3)).sum())
        seen += y.tolist()
    assert sorted(seen) == sorted(labels.tolist())
    assert padded > 0  # some crops moved off-centre


def test_tensor_loader_flips_and_crops_like_torchvision():
    # A horizontal ramp: a flip reverses it, a crop shifts it by at most the padding.
    ramp = torch.arange(32, dtype=torch.uint8).view(1, 1, 1, 32).expand(64, 3, 32, 32).contiguous()
    loader = TensorLoader(ramp, torch.zeros(64, dtype=torch.long), (0.0,) * 3, (1.0,) * 3, batch_size=64, augment=True, seed=0)
    x, _ = next(iter(loader))
    row = (x[:, 0, 16] * 255).round()
    step = row[:, 10] - row[:, 9]
    assert set(step.tolist()) == {1.0, -1.0}  # both orientations occur
    assert (row[:, 16] - 16).abs().max() <= 4  # shifted by at most the padding


def test_tensor_loader_rejects_float_images():
    with pytest.raises(Exception, match="uint8"):
        TensorLoader(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), (0.0,) * 3, (1.0,) * 3, batch_size=1)


def test_speed_command_prints_the_ratios(tmp_path, capsys):
    out = tmp_path / "speed.json"
    state = torch.random.get_rng_state()
    assert main(["--model", "cnn5", "--batch-size", "8", "--reps", "2", "--kd-batches", "2", "--device", "cpu", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for line in ("train step", "teacher", "KD epoch"):
        assert line in printed
    assert printed.count("ratio") == 3 and "bound (6+3)/3 = 3.00" in printed
    result = json.loads(out.read_text())[0]
    for row in ("train_step", "teacher", "kd_epoch"):  # each ratio is the quotient of its own timings
        timings = result[row]
        other = "sdb" if row == "train_step" else "keyed"
        assert timings["ratio"] == pytest.approx(timings[other]["seconds"] / timings["plain"]["seconds"])
    assert torch.equal(torch.random.get_rng_state(), state)  # timing seeds torch, but on a fork of the caller's generator


def test_speed_rejects_zero_reps():
    with pytest.raises(ValueError, match="Expected `reps` ≥ 1, but got 0."):
        main(["--model", "cnn5", "--batch-size", "4", "--reps", "0", "--device", "cpu"])
