"""The modules a quick command needs import no heavy package until a function needs it.

`sdbox --help`, `inspect` and `verify` spend seconds importing torch before their first line
(issue 21, item 8; benchmarks/cli_latency.py measures it). These modules only name torch, timm
and huggingface_hub in functions, so a command that imports them stays fast once the package's
own ``__init__`` and the CLI import lazily too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIGHT_MODULES = ["sdbox.preprocessing", "sdbox.card", "sdbox.architecture", "sdbox.data", "sdbox.progress"]
HEAVY = ["torch", "torchvision", "timm", "huggingface_hub", "safetensors", "numpy", "tqdm"]


def test_the_light_modules_import_no_heavy_package():
    # `sdbox` as a bare package, so that its __init__ (which imports the box and torch) is not what is measured
    code = f"""
import json, sys, types
package = types.ModuleType("sdbox")
package.__path__ = [{str(REPO / "sdbox")!r}]
sys.modules["sdbox"] = package
for name in {LIGHT_MODULES!r}:
    __import__(name)
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
