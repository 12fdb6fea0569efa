"""``python -m sdbox``: the same command as ``sdbox``."""

import sys

from .cli import main

sys.exit(main())
