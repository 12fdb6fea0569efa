"""Property-based tests of the three loaders a stranger's file reaches: key file, config.json, weights.

Random byte flips, truncations, appended bytes, header edits and type swaps must end in
``KeyFileError`` / ``BundleError`` or a valid object: never another exception, a hang or a huge
allocation. CI runs ``SDBOX_FUZZ_EXAMPLES`` examples per loader (default 100, derandomised so a
run is repeatable); a longer, randomised run, with a tally of what each example became::

    SDBOX_FUZZ_EXAMPLES=5000 SDBOX_FUZZ_REPORT=fuzz.json \
        python -m pytest -q tests/test_fuzz_loaders.py --hypothesis-show-statistics
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdbox import BundleError, Key, KeyFileError, SafeBox
from sdbox.config import BoxConfig

EXAMPLES = int(os.environ.get("SDBOX_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize="SDBOX_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TALLY: dict[str, Counter] = {"key": Counter(), "config": Counter(), "weights": Counter()}

# Values a hostile or careless edit puts where a field was: every JSON type, and strings that
# mean something to safetensors, timm or float().
ODD_STRINGS = st.sampled_from(["F16", "BF16", "I64", "U8", "F32", "F64", "BOOL", "local-dir:/etc", "hf-hub:someone/repo",
                               "abc", "1", "0", "-1", "nan", "inf", "1e400", "", "key", "0.5", "../x", "__metadata__"])
SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.sampled_from([0, 1, 2, 3, -1, 10**9, 2**63, 10**400])
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12) | ODD_STRINGS)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | ODD_STRINGS, inner, max_size=4),
                           max_leaves=8)


@pytest.fixture(scope="module", autouse=True)
def report_tally():
    """With SDBOX_FUZZ_REPORT=path, write {loader: {outcome: count}} there after the run."""
    yield
    if os.environ.get("SDBOX_FUZZ_REPORT"):
        Path(os.environ["SDBOX_FUZZ_REPORT"]).write_text(json.dumps({k: dict(v) for k, v in TALLY.items()}, indent=2))


def outcome(load: Callable[[], Any], allowed: type[Exception], loader: str) -> str:
    """Run ``load``; return "valid" or the allowed error's name; fail on any other exception."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown config fields only warn
            load()
        result = "valid"
    except allowed:
        result = allowed.__name__
    except Exception as e:  # the property under test: nothing else may escape
        TALLY[loader][f"raw {type(e).__name__}"] += 1
        raise AssertionError(f"{loader} loader raised {type(e).__name__}: {e}") from e
    TALLY[loader][result] += 1
    return result


# ---------------------------------------------------------------------------- safetensors bytes
def split_safetensors(raw: bytes) -> tuple[dict[str, Any], bytes]:
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def join_safetensors(header: dict[str, Any], data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@st.composite
def header_edit(draw, raw: bytes) -> bytes:
    """Change, add or delete one entry of the safetensors header (a tensor's dtype, shape or
    offsets, a metadata value, a whole tensor), keeping the file otherwise well-formed."""
    header, data = split_safetensors(raw)
    names = sorted(header)
    target = draw(st.sampled_from(names + ["new_tensor"]))
    if target == "new_tensor":
        header[draw(st.text(min_size=1, max_size=6) | ODD_STRINGS)] = draw(
            st.fixed_dictionaries({"dtype": ODD_STRINGS, "shape": st.lists(st.integers(0, 2**40), max_size=4),
                                   "data_offsets": st.lists(st.integers(0, 2**40), min_size=2, max_size=2)}) | JSON_VALUES)
    elif draw(st.booleans()) and isinstance(header[target], dict) and header[target]:
        field = draw(st.sampled_from(sorted(header[target]) + ["extra"]))
        header[target][field] = draw(JSON_VALUES | type_swap(header[target].get(field)))
    elif draw(st.booleans()):
        del header[target]
    else:
        header[target] = draw(JSON_VALUES)
    return join_safetensors(header, data)


def type_swap(value: Any) -> st.SearchStrategy:
    """The same value in another JSON type: 3 → "3", [3] or {"v": 3}; "F32" → ["F32"]."""
    return st.sampled_from([str(value), [value], {"v": value}, json.dumps(value) if value is not None else 0])


@st.composite
def mutated(draw, raw: bytes, safetensors: bool = True) -> bytes:
    """One of: byte flips, a truncation, appended bytes and, for safetensors, a new length
    prefix or a header edit."""
    kinds = ["flip", "truncate", "append"] + (["length", "header", "header"] if safetensors else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "flip":
        data = bytearray(raw)
        for index, value in draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), min_size=1, max_size=8)):
            data[index] = value
        return bytes(data)
    if kind == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == "append":
        return raw + draw(st.binary(min_size=1, max_size=64))
    if kind == "length":
        return struct.pack("<Q", draw(st.integers(0, 2**64 - 1))) + raw[8:]
    return draw(header_edit(raw))


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def key_file_bytes() -> bytes:
    folder = Path(tempfile.mkdtemp())
    try:
        Key.generate((3, 4, 4), 0.5).save(folder / "owner.key")
        return (folder / "owner.key").read_bytes()
    finally:
        shutil.rmtree(folder)


@pytest.fixture(scope="module")
def bundle_copy(wrapped, tmp_path_factory) -> Path:
    """A bundle folder the tests rewrite file by file (one example at a time)."""
    folder = tmp_path_factory.mktemp("fuzz") / "box"
    wrapped.save_pretrained(folder)
    return folder


# -------------------------------------------------------------------------------------- tests
@FUZZ
@given(data=st.data())
def test_key_loader_ends_in_a_key_or_key_file_error(key_file_bytes, data):
    raw = data.draw(mutated(key_file_bytes))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "owner.key"
        path.write_bytes(raw)
        result = outcome(lambda: Key.load(path), KeyFileError, "key")
    if raw == key_file_bytes:
        assert result == "valid"


@st.composite
def config_edit(draw, config: dict[str, Any]) -> dict[str, Any]:
    """Set, type-swap or delete one field at any depth of config.json."""
    config = json.loads(json.dumps(config))
    node, path = config, []
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        path.append(key)
        if not isinstance(node[key], (dict, list)) or draw(st.booleans()):
            break
        node = node[key]
    action = draw(st.sampled_from(["set", "swap", "delete", "add"]))
    if action == "add" and isinstance(node, dict):
        node[draw(st.text(max_size=8) | ODD_STRINGS)] = draw(JSON_VALUES)
    elif action == "delete" and isinstance(node, dict) and path:
        del node[path[-1]]
    elif path:
        node[path[-1]] = draw(type_swap(node[path[-1]]) if action == "swap" else JSON_VALUES)
    return config


@FUZZ
@given(data=st.data())
def test_config_loader_ends_in_a_box_or_bundle_error(bundle_copy, tiny_cls, data):
    original = json.loads((bundle_copy / "config.json").read_text())
    text = json.dumps(original)
    if data.draw(st.booleans()):
        raw = json.dumps(data.draw(config_edit(original)), allow_nan=True).encode()
    else:  # bytes of the text itself: broken JSON, odd unicode, cut short
        raw = data.draw(mutated(text.encode(), safetensors=False) if data.draw(st.booleans()) else st.just(text.encode()))
    build_by_name = data.draw(st.booleans())  # without model=, the config's architecture is looked up
    (bundle_copy / "config.json").write_bytes(raw)
    try:
        outcome(lambda: SafeBox.from_pretrained(bundle_copy, model=None if build_by_name else tiny_cls()), BundleError, "config")
    finally:
        (bundle_copy / "config.json").write_text(text)


@FUZZ
@given(data=st.data())
def test_weights_loader_ends_in_a_box_or_bundle_error(bundle_copy, tiny_cls, data):
    weights = bundle_copy / "model.safetensors"
    original, config_text = weights.read_bytes(), (bundle_copy / "config.json").read_text()
    raw = data.draw(mutated(original))
    config = json.loads(config_text)
    # Without a checksum (or with the new file's) the safetensors parser itself meets the bytes.
    config["sdbox"]["weights_sha256"] = data.draw(st.sampled_from([None, hashlib.sha256(raw).hexdigest()]))
    weights.write_bytes(raw)
    (bundle_copy / "config.json").write_text(json.dumps(config))
    try:
        result = outcome(lambda: SafeBox.from_pretrained(bundle_copy, model=tiny_cls()), BundleError, "weights")
    finally:
        weights.write_bytes(original)
        (bundle_copy / "config.json").write_text(config_text)
    if raw == original:
        assert result == "valid"


def test_the_fuzzed_config_is_the_real_one(bundle_copy):
    """The fuzzers start from a bundle sdbox wrote, which loads: mutations, not setup, cause failures."""
    BoxConfig.from_json(json.loads((bundle_copy / "config.json").read_text()))
