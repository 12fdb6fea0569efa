"""`sdbox --help` answers before torch could load: the parsers import no heavy package (issue 21, item 8).

torch alone takes 2–4 s to import on a 2-core machine; a command whose parser needed it made every
`--help` and every usage error wait that long. What is asserted is the behaviour (which packages
a fresh interpreter holds after building the parser), not a time: benchmarks/cli_latency.py
measures the time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

HEAVY = ["torch", "torchvision", "timm", "huggingface_hub", "safetensors", "numpy"]


def heavy_after(code: str) -> list[str]:
    """The heavy packages a fresh interpreter holds after running ``code`` (this tree's sdbox)."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_the_package_imports_without_torch_and_still_lists_its_public_names():
    assert heavy_after("import sdbox\nassert set(sdbox.__all__) <= set(dir(sdbox))") == []


def test_the_owner_benchmark_and_speed_parsers_import_no_heavy_package():
    code = """
import argparse
from sdbox import owner_cli, speed
from sdbox.benchmark import cli as benchmark_cli
sub = argparse.ArgumentParser(prog="sdbox").add_subparsers()
for module in (owner_cli, benchmark_cli, speed):
    module.add_parsers(sub)
"""
    assert heavy_after(code) == []


@pytest.mark.parametrize("argv", [["--help"], ["inspect", "--help"], ["verify", "--help"], ["wrap", "--help"]])
def test_help_imports_no_heavy_package(argv):
    code = f"""
import contextlib, io
import sdbox.cli
with contextlib.redirect_stdout(io.StringIO()):
    try:
        sdbox.cli.main({argv!r})
    except SystemExit as e:
        assert e.code == 0, e.code
"""
    assert heavy_after(code) == []


def test_the_public_names_are_the_same_objects_as_before():
    """Lazy names resolve to the very objects their modules define, and ``sdbox.distill`` stays
    the function even after ``import sdbox.distill`` (the submodule) ran first."""
    import importlib

    import sdbox
    import sdbox.distill  # noqa: F401  (binds the submodule on the package: what the lazy package must not let hide the function)
    from sdbox import distill

    assert callable(distill) and distill is importlib.import_module("sdbox.distill").distill
    for name, module in sdbox._LAZY.items():
        assert getattr(sdbox, name) is getattr(importlib.import_module(f"sdbox.{module}"), name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sdbox.nope  # noqa: B018


def test_inspect_reads_a_bundle_without_importing_torch(wrapped, tmp_path):
    """`sdbox inspect` only reads config.json (and looks for secrets beside it): no model runs, so
    no torch, timm or safetensors is imported and it answers at once."""
    wrapped.save_pretrained(tmp_path / "box")
    code = f"""
import contextlib, io
import sdbox.cli
shown = io.StringIO()
with contextlib.redirect_stdout(shown):
    assert sdbox.cli.main(["inspect", {str(tmp_path / "box")!r}]) == 0
assert "key fingerprint   {wrapped.box_config.key_fingerprint}" in shown.getvalue(), shown.getvalue()
"""
    assert heavy_after(code) == []
