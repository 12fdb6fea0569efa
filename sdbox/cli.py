"""The ``sdbox`` command: demo, benchmark, attack, speed. Each subcommand lives with its module."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sdbox", description="Safe Distillation Box: measure what a box protects.")
    sub = parser.add_subparsers(dest="command", required=True)
    from .benchmark import cli as benchmark_cli

    benchmark_cli.add_parsers(sub)  # demo, benchmark
    try:
        from .attacks import cli as attack_cli

        attack_cli.add_parsers(sub)  # attack
    except ImportError:
        pass
    try:
        from . import speed

        speed.add_parsers(sub)  # speed
    except ImportError:
        pass
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
