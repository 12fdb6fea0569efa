"""The ``sdbox`` command: demo, benchmark, attack, speed. Each subcommand lives with its module."""

from __future__ import annotations

import argparse
import sys

from . import speed
from .attacks import cli as attack_cli
from .benchmark import cli as benchmark_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sdbox", description="Safe Distillation Box: measure what a box protects.")
    sub = parser.add_subparsers(dest="command", required=True)
    benchmark_cli.add_parsers(sub)  # demo, benchmark
    attack_cli.add_parsers(sub)  # attack
    speed.add_parsers(sub)  # speed
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
