"""Key: generation from OS randomness, validation, owner-only save, integrity-checked load."""

from __future__ import annotations

import hashlib
import json
import stat
import struct

import pytest
import torch
from safetensors.torch import save_file

from sdbox import Key, KeyFileError
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD


@pytest.fixture
def key() -> Key:
    return Key.generate((3, 32, 32), lam=0.5, mean=CIFAR10_MEAN, std=CIFAR10_STD)


def test_generated_keys_differ_and_live_in_model_input_space(key):
    other = Key.generate((3, 32, 32), lam=0.5, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    assert not torch.equal(key.tensor, other.tensor)
    assert key.fingerprint != other.fingerprint
    assert key.shape == (3, 32, 32) and key.tensor.dtype == torch.float32
    # uniform [0, 1) pixels normalised with mean/std: back in pixel space they span [0, 1)
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(3, 1, 1)
    pixels = key.tensor * std + mean
    assert pixels.min() >= -1e-5 and pixels.max() < 1 + 1e-5
    assert pixels.min() < 0.01 and pixels.max() > 0.99  # it is noise over the whole range
    # not reproducible by seeding torch
    torch.manual_seed(0)
    a = Key.generate((3, 4, 4))
    torch.manual_seed(0)
    b = Key.generate((3, 4, 4))
    assert not torch.equal(a.tensor, b.tensor)


@pytest.mark.parametrize("shape", [(3, 32), (3, 32, 32, 1), (0, 32, 32), (3, -1, 32)])
def test_generate_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"Expected `shape` to be \(C, H, W\)"):
        Key.generate(shape)


def test_constructor_rejects_non_chw_tensor():
    with pytest.raises(ValueError, match=r"shape \(C, H, W\)"):
        Key(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"shape \(C, H, W\)"):
        Key([[0.0]])  # type: ignore[arg-type]


@pytest.mark.parametrize("lam", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_lam_validation(lam):
    with pytest.raises(ValueError, match=r"Expected `lam` in \(0, 1\)"):
        Key.generate((3, 4, 4), lam=lam)


def test_mean_std_length_validation():
    with pytest.raises(ValueError, match="one per channel"):
        Key.generate((3, 4, 4), mean=(0.5, 0.5), std=(0.2, 0.2))


def test_fingerprint_depends_on_lam_and_bytes(key):
    same = Key(key.tensor.clone(), key.lam)
    assert same.fingerprint == key.fingerprint
    assert Key(key.tensor, 0.3).fingerprint != key.fingerprint
    t = key.tensor.clone()
    t[0, 0, 0] = torch.nextafter(t[0, 0, 0], torch.tensor(10.0))  # one ulp
    assert Key(t, key.lam).fingerprint != key.fingerprint
    by_hand = hashlib.sha256(b"sdbox-key/v1" + struct.pack("<d", key.lam) + b"[3, 32, 32]" + key.tensor.numpy().astype("<f4").tobytes())
    assert key.fingerprint == by_hand.hexdigest()


def test_repr_hides_key_values(key):
    text = repr(key) + str(key)
    assert "fingerprint=" in text and key.fingerprint[:12] in text
    for value in key.tensor.flatten()[:50].tolist():
        assert f"{value:.4f}" not in text
    assert "tensor(" not in text


def test_save_is_owner_only_and_load_round_trips(key, tmp_path):
    path = key.save(tmp_path / "sub" / "owner.key")
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Key.load(path)
    assert torch.equal(loaded.tensor, key.tensor)
    assert loaded.lam == key.lam
    assert loaded.fingerprint == key.fingerprint
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_save_refuses_to_overwrite(key, tmp_path):
    path = tmp_path / "owner.key"
    key.save(path)
    before = path.read_bytes()
    other = Key.generate((3, 32, 32))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        other.save(path)
    assert path.read_bytes() == before
    path.chmod(0o644)
    other.save(path, overwrite=True)
    assert Key.load(path).fingerprint == other.fingerprint
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_load_missing_file(tmp_path):
    with pytest.raises(KeyFileError, match="No key file"):
        Key.load(tmp_path / "nope.key")
    with pytest.raises(KeyFileError):
        Key.load(tmp_path)  # a directory


def test_load_truncated(key, tmp_path):
    path = key.save(tmp_path / "owner.key")
    raw = path.read_bytes()
    for cut in (4, 100, len(raw) - 10):
        bad = tmp_path / f"cut{cut}.key"
        bad.write_bytes(raw[:cut])
        with pytest.raises(KeyFileError):
            Key.load(bad)


def test_load_garbage_and_empty(tmp_path):
    for name, data in {"garbage": b"\x00\xffnot a key at all" * 10, "empty": b"", "huge_header": struct.pack("<Q", 2**40) + b"{}"}.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(KeyFileError):
            Key.load(p)


def test_load_altered_tensor_bytes_fails_integrity(key, tmp_path):
    path = key.save(tmp_path / "owner.key")
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01  # flip one bit inside the tensor data
    path.write_bytes(bytes(raw))
    with pytest.raises(KeyFileError, match="integrity"):
        Key.load(path)


def test_load_altered_lam_fails_integrity(key, tmp_path):
    path = key.save(tmp_path / "owner.key")
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"]["lam"] = "0.25"
    new = json.dumps(header, separators=(",", ":")).encode()
    new += b" " * (n - len(new))  # keep the header length so offsets stay valid
    assert len(new) == n
    path.write_bytes(raw[:8] + new + raw[8 + n :])
    with pytest.raises(KeyFileError, match="integrity"):
        Key.load(path)


def test_load_other_safetensors_is_not_a_key(tmp_path):
    p = tmp_path / "weights.safetensors"
    save_file({"weight": torch.randn(3, 4, 4)}, str(p))
    with pytest.raises(KeyFileError, match="not an sdbox key"):
        Key.load(p)
    p2 = tmp_path / "fake.key"
    save_file({"key": torch.randn(3, 4, 4)}, str(p2), metadata={"format": "something-else"})
    with pytest.raises(KeyFileError, match="not an sdbox key"):
        Key.load(p2)


def test_load_damaged_header_values(tmp_path):
    p = tmp_path / "badlam.key"
    save_file({"key": torch.randn(3, 4, 4)}, str(p), metadata={"format": "sdbox-key", "format_version": "1", "lam": "2.0"})
    with pytest.raises(KeyFileError, match="damaged key header"):
        Key.load(p)
    p = tmp_path / "badshape.key"
    save_file({"key": torch.randn(4, 4)}, str(p), metadata={"format": "sdbox-key", "format_version": "1", "lam": "0.5"})
    with pytest.raises(KeyFileError):
        Key.load(p)
    p = tmp_path / "future.key"
    save_file({"key": torch.randn(3, 4, 4)}, str(p), metadata={"format": "sdbox-key", "format_version": "99", "lam": "0.5"})
    with pytest.raises(KeyFileError, match="upgrade sdbox"):
        Key.load(p)


def test_load_refuses_a_key_whose_fingerprint_was_stripped(tmp_path):
    """Without its stored fingerprint the integrity check could not run: refuse, don't skip it."""
    p = tmp_path / "stripped.key"
    save_file({"key": torch.randn(3, 4, 4)}, str(p), metadata={"format": "sdbox-key", "format_version": "1", "lam": "0.5"})
    with pytest.raises(KeyFileError, match="integrity"):
        Key.load(p)


def save_raw_key(path, tensors: dict, **metadata) -> None:
    """A key file written by hand, with the fingerprint a real key of the same values would carry."""
    base = {"format": "sdbox-key", "format_version": "1", "lam": "0.5"}
    key = tensors.get("key")
    if key is not None and key.dim() == 3 and torch.isfinite(key.float()).all() and max(key.shape) <= 2048:
        base["fingerprint"] = Key(key.float(), 0.5).fingerprint
    save_file(tensors, str(path), metadata={**base, **metadata})


@pytest.mark.parametrize("tensors, metadata, message", [
    ({"key": torch.rand(3, 4, 4).half()}, {}, "float32"),
    ({"key": torch.randint(0, 9, (3, 4, 4))}, {}, "float32"),
    ({"key": torch.rand(3, 4, 4), "extra": torch.zeros(1)}, {}, "one tensor named `key`"),
    ({"key": torch.rand(3, 4, 4), "norm/bn.weight": torch.zeros(4, dtype=torch.float64)}, {}, "keyed normalisation tensor"),
    ({"key": torch.rand(3, 4, 4), "norm/bn weight;": torch.zeros(4)}, {}, "keyed normalisation tensor"),
    ({"key": torch.rand(3, 4, 4), "norm/bn.weight": torch.zeros(4)}, {}, "integrity"),
    ({"key": torch.full((3, 4, 4), float("nan"))}, {}, "finite"),
    ({"key": torch.full((3, 4, 4), float("inf"))}, {}, "finite"),
    ({"key": torch.rand(3, 4, 4)}, {"format_version": "abc"}, "format_version"),
    ({"key": torch.rand(3, 4, 4)}, {"format_version": "0"}, "format_version"),
    ({"key": torch.rand(3, 4, 4)}, {"lam": "nan"}, "lam"),
    ({"key": torch.rand(3, 4, 4)}, {"lam": "lots"}, "lam|could not convert"),
    ({"key": torch.rand(1, 1, 4097)}, {}, "shape"),
])
def test_key_files_that_an_old_loader_accepted_or_crashed_on(tmp_path, tensors, metadata, message):
    path = tmp_path / "odd.key"
    save_raw_key(path, tensors, **metadata)
    with pytest.raises(KeyFileError, match=message):
        Key.load(path)


def test_a_header_claiming_a_huge_tensor_is_refused_before_any_allocation(key, tmp_path):
    path = key.save(tmp_path / "owner.key")
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    header["key"]["shape"] = [3, 100000, 100000]
    header["key"]["data_offsets"] = [0, 4 * 3 * 100000 * 100000]
    new = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])
    with pytest.raises(KeyFileError, match="shape"):
        Key.load(path)


def test_a_key_with_non_finite_values_is_refused_at_construction():
    """A NaN key used to reach wrap and come back as "lower `lr`"."""
    t = torch.rand(3, 4, 4)
    t[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite key values"):
        Key(t)
    with pytest.raises(ValueError, match="lam"):
        Key(torch.rand(3, 4, 4), "0.5")  # type: ignore[arg-type]


def test_a_tiled_key_repeats_one_random_patch():
    key = Key.generate((3, 32, 32), 0.5, tile=8)
    assert torch.equal(key.tensor, key.tensor.roll(8, dims=1)) and torch.equal(key.tensor, key.tensor.roll(8, dims=2))
    assert not torch.equal(key.tensor, key.tensor.roll(4, dims=1))  # the period is the tile, not less
    assert not torch.equal(Key.generate((3, 32, 32), 0.5, tile=8).tensor, key.tensor)
    for bad in (0, 5, 2.0):
        with pytest.raises(ValueError, match="`tile` to be a positive integer dividing"):
            Key.generate((3, 32, 32), 0.5, tile=bad)
