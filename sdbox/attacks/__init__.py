"""Attacks on a box without its key: does any of them teach a student better than scratch?

Every attack has one signature, ``attack(box, data, student_factory, budget, **settings) ->
AttackResult``; :func:`run_attacks` runs them all with Scratch and key-holder reference rows, and
:func:`run_in_regime` runs them in a benchmark's own regime (its slice, student, epochs and
seeds), so that an attack row is paired with the benchmark's scratch and key-holder rows.

Nothing here imports torch until a name is used (``sdbox attack --help`` stays fast).
"""

from __future__ import annotations

from .registry import ATTACK_NAMES

_EXPORTS = {
    "AttackData": "base", "AttackResult": "base", "Budget": "base", "Recipe": "base",
    "attacks_markdown": "report",
    "ATTACKS": "runner", "QUICK_BUDGET": "runner", "run_attacks": "runner", "plan": "runner", "key_distance": "runner",
    "write_json": "runner",
    "run_in_regime": "regime", "regime_markdown": "regime", "strongest_attack": "regime", "DEFAULT_PLAN": "regime",
}

__all__ = ["ATTACK_NAMES", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
