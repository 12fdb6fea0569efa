"""Attacks on a box without its key: does any of them teach a student better than scratch?

Every attack has one signature, ``attack(box, data, student_factory, budget, **settings) ->
AttackResult``; :func:`run_attacks` runs them all with Scratch and key-holder reference rows.
"""

from .base import AttackData, AttackResult, Budget
from .report import attacks_markdown
from .runner import ATTACKS, QUICK_BUDGET, key_distance, plan, run_attacks, write_json

__all__ = ["AttackData", "AttackResult", "Budget", "ATTACKS", "QUICK_BUDGET", "run_attacks", "attacks_markdown", "plan", "key_distance", "write_json"]
