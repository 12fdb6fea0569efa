"""A small bundle whose model_args alone would make sdbox allocate gigabytes is refused before any allocation."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from sdbox import SafeBox
from sdbox.errors import BundleError


def write_bundle(folder, architecture, state, model_args, input_size, library):
    folder.mkdir()
    save_file({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in state.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "architecture": architecture, "num_classes": 10, "model_args": model_args,
        "pretrained_cfg": {"input_size": input_size, "mean": [0.5] * 3, "std": [0.5] * 3, "num_classes": 10},
        "sdbox": {"format_version": 1, "key_fingerprint": "0" * 64, "model_library": library}}))


def test_buffers_that_no_weights_file_holds_are_bounded(tmp_path):
    """levit at 2048 px: 30 MB of weights, 5.3 GB of attention-bias index buffers (issue 20, item 4)."""
    with torch.device("meta"):
        levit = timm.create_model("levit_128s", num_classes=10, img_size=2048)
    write_bundle(tmp_path / "box", "levit_128s", levit.state_dict(), {"img_size": 2048}, [3, 2048, 2048], "timm")
    with pytest.raises(BundleError, match=r"5,301,600,256 bytes of buffers that no weights file holds"):
        SafeBox.from_pretrained(tmp_path / "box")


class Blowup(nn.Module):
    """A model whose one constructor argument sizes its activations, not its weights."""

    def __init__(self, num_classes: int = 10, scale: int = 1):
        super().__init__()
        self.scale = scale
        self.head = nn.Linear(3, num_classes)

    def forward(self, x):
        return self.head(F.interpolate(x, scale_factor=self.scale).mean((2, 3)))


def test_activations_sized_by_model_args_are_bounded(tmp_path):
    write_bundle(tmp_path / "box", "test_hostile_bundles.Blowup", Blowup().state_dict(), {"num_classes": 10, "scale": 2048},
                 [3, 32, 32], "custom")
    with pytest.raises(BundleError, match=r"bytes of activations, more than sdbox allows"):
        SafeBox.from_pretrained(tmp_path / "box", model_class=Blowup)
    write_bundle(tmp_path / "small", "test_hostile_bundles.Blowup", Blowup().state_dict(), {"num_classes": 10, "scale": 2},
                 [3, 32, 32], "custom")
    assert SafeBox.from_pretrained(tmp_path / "small", model_class=Blowup).model.scale == 2
