"""The attacks by name, without importing them (so ``sdbox attack --help`` needs no torch).

Each name is a module of this package with ``GRID``, ``QUICK_GRID``, ``attack(box, data,
student_factory, budget, **settings)`` and, for the benchmark's regime, ``recipe(box, data,
budget, **settings)``.
"""

from __future__ import annotations

# Black-box attacks read only the box's outputs; white-box ones read its weights, features or
# normalisation, or train it (the threat model's attacker holds the weights).
BLACK_BOX = ("temperature", "random_keys", "topk", "hard_label", "skeptical", "logit_repair", "label_smoothing", "class_repair")
WHITE_BOX = ("key_search", "restat_keys", "feature_kd", "wash")
ATTACK_NAMES = ("temperature", "random_keys", "topk", "hard_label", "skeptical", "logit_repair", "key_search",
                "label_smoothing", "restat_keys", "feature_kd", "wash", "class_repair")


def load(name: str):
    """The attack module called ``name``."""
    import importlib

    if name not in ATTACK_NAMES:
        raise ValueError(f"Expected attack names from {list(ATTACK_NAMES)}, but got {name!r}.")
    return importlib.import_module(f"{__package__}.{name}")
