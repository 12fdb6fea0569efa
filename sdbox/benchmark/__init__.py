"""The benchmark: the SDB paper's CIFAR-10 experiments as ``run_benchmark`` and ``sdbox benchmark``.

``run_benchmark`` is imported on first use (PEP 562): the presets are plain data, and the
``sdbox`` parser reads them without waiting for the runner's torch (issue 21, item 8).
"""

from __future__ import annotations

from typing import Any

from .presets import CPU, DEMO, PAPER, Preset, get_preset

__all__ = ["run_benchmark", "Preset", "get_preset", "CPU", "PAPER", "DEMO"]


def __getattr__(name: str) -> Any:
    if name != "run_benchmark":
        raise AttributeError(f"module 'sdbox.benchmark' has no attribute {name!r}")
    from .runner import run_benchmark

    return run_benchmark


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
