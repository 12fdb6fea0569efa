"""The ``sdbox`` command (also ``python -m sdbox``): the owner's wrap, inspect, verify, push and
distill, and demo, benchmark, attack, speed. Each subcommand lives with its module.

Exit codes: 0 done, 1 an error sdbox names (one line: the problem and the fix; ``verify``: the
key does not open the box), 2 a usage error. The error line is escaped
(:func:`~sdbox.terminal.escaped`): it can quote a bundle's strings or file names.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import owner_cli, speed
from .errors import SdboxError
from .terminal import escaped
from .attacks import cli as attack_cli
from .benchmark import cli as benchmark_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sdbox", description="Safe Distillation Box: publish a classifier that only key holders can distil.")
    sub = parser.add_subparsers(dest="command", required=True)
    owner_cli.add_parsers(sub)  # wrap, inspect, verify, push, distill
    benchmark_cli.add_parsers(sub)  # demo, benchmark
    attack_cli.add_parsers(sub)  # attack
    speed.add_parsers(sub)  # speed
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (SdboxError, ValueError, OSError) as e:  # sdbox's own and its argument checks: messages that name the fix
        print(escaped(f"sdbox {args.command}: error: {e}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: one line saying what was kept, and the shell's exit code for it
        print(escaped(f"sdbox {args.command}: interrupted; {interrupted_note(args)}"), file=sys.stderr)
        return 130


def interrupted_note(args: argparse.Namespace) -> str:
    """What an interrupted command kept, and how to go on."""
    folder = getattr(args, "checkpoint_dir", None) or (getattr(args, "out", None) if args.command in ("demo", "benchmark") else None)
    if folder and os.path.isdir(folder):
        return f"{folder} keeps what was finished: rerun the same command to resume, or delete it to start over."
    return "nothing was kept: rerun the command to start again."


if __name__ == "__main__":
    sys.exit(main())
