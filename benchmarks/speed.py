"""Time an SDB step against a plain step, and keyed against plain teaching: `python benchmarks/speed.py --help`."""

import sys

from sdbox.speed import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
