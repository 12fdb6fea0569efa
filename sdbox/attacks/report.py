"""The attacks table in markdown, for the benchmark report and the CLI's summary."""

from __future__ import annotations

from typing import Any


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _settings(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "–"


def attacks_markdown(results: list[dict[str, Any]] | dict[str, Any]) -> str:
    """A markdown table of attack rows (attacks.json, or the dict :func:`run_attacks` returns).

    Columns: attack, settings, student accuracy (%), gap to scratch and to the key holder
    (points); the strongest attack's row is bold. A positive gap to scratch means the attack
    got knowledge out of the box without its key.
    """
    rows = results["results"] if isinstance(results, dict) else results
    lines = [
        "| attack | settings | student acc (%) | gap to scratch | gap to key holder |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        cells = [r["attack"], _settings(r["settings"]), _fmt(r["student_acc"]),
                 _fmt(r["gap_to_scratch"], True), _fmt(r["gap_to_key_holder"], True)]
        if r.get("strongest"):
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
