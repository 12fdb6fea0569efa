"""CIFAR-sized networks for the benchmark: the students of Nasty Teacher / SDB and the teachers.

Created by name with :func:`create`, as timm does, so presets and reports refer to them by name.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn
import torch.nn.functional as F


class CNN5(nn.Module):
    """Nasty Teacher's 5-layer CNN: 3 × [conv3×3 → BN → max-pool → ReLU] (32/64/128), fc128+BN+ReLU, fc."""

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        c1, c2, c3 = width, 2 * width, 4 * width
        layers = []
        for cin, cout in ((3, c1), (c1, c2), (c2, c3)):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.MaxPool2d(2), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c3 * 4 * 4, 128), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Linear(128, num_classes)
        )

    def forward(self, x):
        return self.head(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32×32 inputs: a 3×3 stem, no max-pool, stages of basic blocks, global pool, fc."""

    def __init__(self, blocks: tuple[int, ...], widths: tuple[int, ...], num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            for j in range(n):
                stages.append(_BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


MODELS: dict[str, Callable[[int], nn.Module]] = {
    "cnn5": lambda n: CNN5(n),
    "cnn5_wide": lambda n: CNN5(n, width=64),  # the `cpu` preset's teacher: 2 cores train it in minutes
    "resnet20": lambda n: CifarResNet((3, 3, 3), (16, 32, 64), n),
    "resnet8": lambda n: CifarResNet((1, 1, 1), (16, 32, 64), n),
    "resnet18_cifar": lambda n: CifarResNet((2, 2, 2, 2), (64, 128, 256, 512), n),
}


def create(name: str, num_classes: int = 10) -> nn.Module:
    """Build a CIFAR network by name (see ``MODELS``)."""
    if name not in MODELS:
        raise ValueError(f"Expected a model name in {sorted(MODELS)}, but got {name!r}.")
    return MODELS[name](num_classes)
