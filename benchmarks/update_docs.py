"""Regenerate the measured blocks of README.md and docs/benchmark.md from benchmark results.

    sdbox demo --out runs/demo
    sdbox benchmark --preset cpu --seeds 3 --out runs/cpu
    python benchmarks/update_docs.py runs/cpu runs/demo

Each block sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` (NAME: the
preset's name); a block whose markers are missing is reported, and the file is left alone.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from sdbox.benchmark.report import summary_markdown

REPO = Path(__file__).resolve().parents[1]
TARGETS = {REPO / "README.md": True, REPO / "docs" / "benchmark.md": False}  # file -> compact block


def replace_block(text: str, name: str, body: str) -> tuple[str, bool]:
    pattern = re.compile(rf"(<!-- results:{re.escape(name)} -->\n).*?(\n<!-- /results:{re.escape(name)} -->)", re.S)
    new, count = pattern.subn(lambda m: m.group(1) + body + m.group(2), text)
    return new, count > 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="Benchmark output folders (each holding results.json).")
    args = parser.parse_args(argv)
    status = 0
    for run in map(Path, args.runs):
        results = json.loads((run / "results.json").read_text())
        for target, compact in TARGETS.items():
            text, found = replace_block(target.read_text(), results["preset"], summary_markdown(results, compact))
            if found:
                target.write_text(text)
                print(f"updated the {results['preset']} block of {target.relative_to(REPO)}")
            else:
                print(f"no <!-- results:{results['preset']} --> block in {target.relative_to(REPO)}", file=sys.stderr)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
