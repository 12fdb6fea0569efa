"""Keyed normalisation: trained for the keyed stream only, carried by the key file, never published."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sdbox import Key, KeyedTeacher, SafeBox, WrongKeyError, keyed_norm
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD
from sdbox.key import KEY_FORMAT_VERSION


def test_the_wrap_trains_a_keyed_state_that_differs_from_the_public_one(wrapped):
    norm = wrapped.key.norm
    public = keyed_norm.state_of(wrapped.model)
    assert wrapped.box_config.keyed_norm and set(norm) == set(public)
    assert any(name.endswith("running_mean") for name in norm) and any(name.endswith("weight") for name in norm)
    moved = [name for name in norm if not torch.allclose(norm[name], public[name])]
    assert len(moved) == len(norm)  # every tensor of the keyed set left the public one


def test_keyed_state_round_trips_through_the_key_file(wrapped, tmp_path, batch):
    path = wrapped.key.save(tmp_path / "owner.key")
    loaded = Key.load(path)
    assert loaded.fingerprint == wrapped.key.fingerprint
    assert set(loaded.norm) == set(wrapped.key.norm)
    for name, tensor in wrapped.key.norm.items():
        assert torch.equal(loaded.norm[name], tensor), name
    x, _ = batch
    torch.testing.assert_close(KeyedTeacher(wrapped, loaded)(x), KeyedTeacher(wrapped, wrapped.key)(x))
    with torch.no_grad():  # the same box and κ through the public normalisation
        public = wrapped.eval()(loaded.mix(x))
    assert not torch.allclose(KeyedTeacher(wrapped, loaded)(x), public, atol=1e-3)


def test_a_tampered_keyed_state_fails_the_integrity_check(wrapped, tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    path = wrapped.key.save(tmp_path / "owner.key")
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    name = next(n for n in tensors if n.startswith("norm/"))
    tensors[name] = tensors[name] + 0.5
    save_file(tensors, str(tmp_path / "edited.key"), metadata=metadata)
    with pytest.raises(OSError, match="integrity"):
        Key.load(tmp_path / "edited.key")


def test_the_public_bundle_holds_none_of_the_keyed_state(wrapped, tiny_cls, tmp_path):
    wrapped.save_pretrained(tmp_path / "box")
    published = b"".join(p.read_bytes() for p in (tmp_path / "box").iterdir())
    for name, tensor in wrapped.key.norm.items():
        if tensor.numel() >= 4:
            assert tensor.numpy().tobytes() not in published, name
    config = json.loads((tmp_path / "box" / "config.json").read_text())
    assert config["sdbox"]["keyed_norm"] is True
    reloaded = SafeBox.from_pretrained(tmp_path / "box", model_class=tiny_cls)
    assert reloaded.box_config.keyed_norm


def test_a_key_without_keyed_state_is_refused_by_a_box_that_needs_it(wrapped):
    bare = Key(wrapped.key.tensor, wrapped.key.lam)  # the same κ, as saved before the wrap finished
    assert bare.fingerprint == wrapped.key.fingerprint
    with pytest.raises(WrongKeyError, match="carries none.*key file written after the wrap"):
        KeyedTeacher(wrapped, bare)


def test_a_keyed_state_of_another_architecture_is_refused(wrapped):
    norm = dict(wrapped.key.norm)
    name = next(n for n in norm if n.endswith("running_mean"))
    norm[name] = torch.zeros(norm[name].numel() + 1)
    with pytest.raises(WrongKeyError, match=f"another architecture.*{name}"):
        KeyedTeacher(wrapped, wrapped.key.with_norm(norm))
    norm = dict(wrapped.key.norm)
    norm.pop(name)
    with pytest.raises(WrongKeyError, match="another architecture.*missing"):
        KeyedTeacher(wrapped, wrapped.key.with_norm(norm))


def test_an_old_key_file_loads_with_one_clear_message(wrapped, tmp_path):
    from safetensors.torch import save_file

    key = Key(wrapped.key.tensor, wrapped.key.lam)
    save_file({"key": key.tensor}, str(tmp_path / "old.key"), metadata={
        "format": "sdbox-key", "format_version": "1", "lam": repr(key.lam), "shape": json.dumps(list(key.shape)),
        "fingerprint": key.fingerprint})
    with pytest.warns(UserWarning, match="format 1.*no keyed normalisation") as record:
        old = Key.load(tmp_path / "old.key")
    assert len(record) == 1 and old.fingerprint == wrapped.key.fingerprint and old.norm is None
    assert KEY_FORMAT_VERSION == 2


@pytest.fixture(scope="module")
def trained_box(pretrained_state, tiny_cls, train_ds, test_ds, make_loader):
    """The trained TinyNet wrapped with the default recipe for 4 epochs over 300 real images (~20 s),
    with a seeded tiled key so that the test is repeatable."""
    from test_uniqueness import seeded_key

    model = tiny_cls()
    model.load_state_dict(pretrained_state)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="fewer than 12 epochs"):
        return SafeBox.wrap(model.eval(), make_loader(train_ds, shuffle=True), val_loader=make_loader(test_ds, n=100),
                            key=seeded_key(0, 4), epochs=4, lr=0.05, max_accuracy_drop=100, device="cpu", progress=False,
                            mean=CIFAR10_MEAN, std=CIFAR10_STD)


@pytest.mark.xfail(strict=True, reason=(
    "Known regression, left open in issue 18: since the guard keeps the epoch closest to its decoy target, this 4-epoch "
    "wrap of a 23% TinyNet keeps an epoch whose keyed stream is farther from the original (KL 0.24) than six fresh keys "
    "(0.088 each: a flat answer sits close to the original's flat T = 4 labels). At the cpu preset's scale every fresh "
    "key's student still falls 17+ points under the key holder's (docs/benchmark.md)."))
def test_a_wrong_key_is_farther_from_the_originals_soft_labels_than_the_owners(trained_box, pretrained_state, tiny_cls, test_ds):
    """Measured: the owner's key 0.041 from the original (KL at T = 4), six fresh tiled keys
    read with the public normalisation 0.049–0.059; after one epoch the two overlapped."""
    from test_uniqueness import seeded_key

    original = tiny_cls()
    original.load_state_dict(pretrained_state)
    x = torch.stack([test_ds[i][0] for i in range(len(test_ds))])
    with torch.no_grad():
        reference = F.log_softmax(original.eval()(x) / 4, 1)

    def distance(logits: torch.Tensor) -> float:
        return F.kl_div(F.log_softmax(logits / 4, 1), reference, log_target=True, reduction="batchmean").item()

    owner = distance(KeyedTeacher(trained_box, trained_box.key)(x))
    with torch.no_grad():
        wrong = [distance(trained_box.eval()(seeded_key(seed, 4).mix(x))) for seed in range(1, 7)]
    assert all(w > owner for w in wrong), (owner, wrong)


def test_applied_swaps_in_and_always_gives_the_model_its_own_state_back():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LayerNorm(4 * 30 * 30), nn.Linear(4 * 30 * 30, 2))
    own = keyed_norm.state_of(model)
    other = {name: torch.randn_like(t) for name, t in own.items()}
    other = {n: (t.abs() + 0.1 if n.endswith("running_var") else t) for n, t in other.items()}
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        plain = model(x)
        with keyed_norm.applied(model, other):
            swapped = model(x)
        with pytest.raises(RuntimeError), keyed_norm.applied(model, other):
            raise RuntimeError("inside")
        again = model(x)
    assert not torch.allclose(plain, swapped) and torch.equal(plain, again)
    assert all(torch.equal(keyed_norm.state_of(model)[n], own[n]) for n in own)


def test_training_through_a_trainable_state_leaves_the_models_own_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    own = keyed_norm.state_of(model)
    keyed = keyed_norm.TrainableNormState(model)
    optimizer = torch.optim.SGD(keyed.parameters(), lr=0.5)
    model.train()
    with keyed_norm.applied(model, keyed.state()):
        loss = model(torch.randn(8, 3, 8, 8) + 3).sum()
    loss.backward()
    optimizer.step()
    after = keyed_norm.state_of(model)
    assert all(torch.equal(after[n], own[n]) for n in own)  # gradients and statistics went to the keyed set
    snapshot = keyed.snapshot()
    assert not torch.equal(snapshot["1.running_mean"], own["1.running_mean"])
    assert not torch.equal(snapshot["1.weight"], own["1.weight"])


def test_estimate_statistics_matches_the_batch_statistics_it_saw():
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4))
    x = torch.randn(64, 3, 4, 4) * 2 + 1
    state = keyed_norm.estimate_statistics(model, [x[:32], x[32:]])
    features = model[0](x).detach()
    torch.testing.assert_close(state["1.running_mean"], features.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert torch.equal(model[1].running_mean, torch.zeros(4))  # the model's own statistics untouched


def test_a_short_wrap_warns_that_it_is_below_the_protecting_budget(pretrained, train_ds, make_loader):
    dl = make_loader(train_ds, n=50)
    with pytest.warns(UserWarning, match="fewer than 12 epochs.*did not protect"):
        SafeBox.wrap(copy.deepcopy(pretrained), dl, val_loader=dl, epochs=1, max_accuracy_drop=100, device="cpu",
                     progress=False, mean=CIFAR10_MEAN, std=CIFAR10_STD)


def test_a_resumed_wrap_ends_with_the_keyed_state_of_an_uninterrupted_one(pretrained_state, tiny_cls, train_ds, test_ds, make_loader, tmp_path):
    """The checkpoint carries the keyed set (and its optimiser state): losing it on resume would
    hand the key holder a keyed stream trained for only the epochs after the interruption."""
    from test_uniqueness import seeded_key
    from test_wrap import CountingLoader

    ckpt_dir = tmp_path / "ckpt"
    train, val = make_loader(train_ds, n=100, batch_size=25), make_loader(test_ds, n=50)
    kwargs = dict(val_loader=val, key=seeded_key(3, 4), epochs=2, lr=0.05, max_accuracy_drop=100, device="cpu", progress=False,
                  mean=CIFAR10_MEAN, std=CIFAR10_STD)

    def model():
        m = tiny_cls()
        m.load_state_dict(pretrained_state)
        return m.eval()

    torch.manual_seed(0)
    whole = SafeBox.wrap(model(), CountingLoader(train), **kwargs)
    torch.manual_seed(0)
    interrupted = model()
    with pytest.raises(KeyboardInterrupt):
        SafeBox.wrap(interrupted, CountingLoader(train, interrupt_when=(ckpt_dir / "wrap_state.pt").exists), checkpoint_dir=ckpt_dir, **kwargs)
    saved = torch.load(ckpt_dir / "wrap_state.pt", weights_only=True)["keyed_norm"]
    assert saved is not None and set(saved) == set(whole.key.norm)
    resumed = SafeBox.wrap(interrupted, CountingLoader(train), checkpoint_dir=ckpt_dir, **kwargs)
    for name, tensor in whole.key.norm.items():
        torch.testing.assert_close(resumed.key.norm[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_a_model_of_another_dtype_reads_the_float32_keyed_state(wrapped, batch):
    x, _ = batch
    model = copy.deepcopy(wrapped.model).double().eval()
    with torch.no_grad(), keyed_norm.applied(model, wrapped.key.norm):
        doubled = model(wrapped.key.mix(x).double())
    with torch.no_grad(), keyed_norm.applied(wrapped.model.eval(), wrapped.key.norm):
        single = wrapped.model(wrapped.key.mix(x))
    torch.testing.assert_close(doubled.float(), single, rtol=1e-4, atol=1e-4)
