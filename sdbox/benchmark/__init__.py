"""The benchmark: the SDB paper's CIFAR-10 experiments as ``run_benchmark`` and ``sdbox benchmark``."""

from .presets import CPU, DEMO, PAPER, Preset, get_preset
from .runner import run_benchmark

__all__ = ["run_benchmark", "Preset", "get_preset", "CPU", "PAPER", "DEMO"]
