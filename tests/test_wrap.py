"""The SDB fine-tune: one step's named losses, frozen models, flags, the fidelity guard, resume,
non-finite losses and input validation — on real CIFAR-10 images and a tiny CNN."""

from __future__ import annotations

import copy
import math
import re
import stat

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from sdbox import CheckpointError, FidelityError, InputError, Key, NonFiniteLossError, SafeBox, SDBSettings
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD
from sdbox.evaluate import evaluate
from sdbox.losses import augmentation_loss, classification_loss, decoy_loss, decoy_target, disturbance_loss, kd_loss, preservation_loss
from sdbox.frozen import FrozenModels, PixelDecoy
from sdbox.step import sdb_step, wrong_key

NORM = dict(mean=CIFAR10_MEAN, std=CIFAR10_STD)
ALL_TERMS = {"cls", "dis", "kp_main", "kp_aug", "total"}


@pytest.fixture
def key():
    return Key.generate((3, 32, 32), 0.5, CIFAR10_MEAN, CIFAR10_STD)


def bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


# ------------------------------------------------------------------------------------ sdb_step
def test_sdb_step_named_losses_match_the_equations(pretrained, batch, key):
    x, y = batch
    settings = SDBSettings(omega=0.3, eta=0.05, t_dis=4.0, disturbance_form="push", main_loss="mse")  # Eq. 9 as published
    frozen = FrozenModels.from_model(pretrained, with_random=True, seed=0)
    model = copy.deepcopy(pretrained).train()
    reference = copy.deepcopy(model)  # same weights and mode: recomputes the step by hand

    logits, losses = sdb_step(model, frozen, x, y, key.tensor, settings)
    assert set(losses) == ALL_TERMS
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert logits.shape == (len(x), 10)

    with torch.no_grad():
        z = reference(x)
        x_proxy = 0.5 * x + 0.5 * key.tensor
        zp = reference(x_proxy)
        zt = frozen.original(x)
        ztp = frozen.original(x_proxy)
        z0p = frozen.random(x_proxy)
    torch.testing.assert_close(logits.detach(), z)
    expected = {
        "cls": classification_loss(z, zp, y),
        "dis": disturbance_loss(z, zp, zt, 0.3, 4.0),
        "kp_main": preservation_loss(zp, zt, 4.0),
        "kp_aug": augmentation_loss(zp, ztp, z0p),
    }
    expected["total"] = expected["cls"] + expected["dis"] + expected["kp_main"] + 0.05 * expected["kp_aug"]
    for name, value in expected.items():
        torch.testing.assert_close(losses[name].detach(), value, rtol=1e-4, atol=1e-5, msg=name)
    # the random copy really is another network
    assert not torch.allclose(zt, frozen.random(x))


def test_frozen_models_stay_frozen_over_optimizer_steps(pretrained, train_ds, make_loader, key):
    settings = SDBSettings(omega=0.5, eta=0.01)
    frozen = FrozenModels.from_model(pretrained, with_random=True)
    original_state = copy.deepcopy(frozen.original.state_dict())
    random_state = copy.deepcopy(frozen.random.state_dict())
    model = copy.deepcopy(pretrained).train()
    trainable_bn = bn_buffers(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for x, y in make_loader(train_ds, batch_size=25, n=100):
        _, losses = sdb_step(model, frozen, x, y, key.tensor, settings)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
    for frozen_model, before in ((frozen.original, original_state), (frozen.random, random_state)):
        assert not frozen_model.training
        assert all(not m.training for m in frozen_model.modules())
        assert all(not p.requires_grad and p.grad is None for p in frozen_model.parameters())
        after = frozen_model.state_dict()
        for name, value in before.items():
            assert torch.equal(after[name], value), f"frozen {name} changed"
    # the check is not vacuous: the trainable copy's BatchNorm statistics and weights did move
    moved = bn_buffers(model)
    assert any(not torch.equal(moved[k], trainable_bn[k]) for k in trainable_bn)
    assert not torch.equal(model.fc.weight, pretrained.fc.weight)
    # and the original the user passed in was not touched by building the frozen copies
    assert torch.equal(pretrained.fc.weight, frozen.original.fc.weight)


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({}, ALL_TERMS),
        ({"disturbance": False}, ALL_TERMS - {"dis"}),
        ({"omega": 0.0}, ALL_TERMS - {"dis"}),
        ({"preservation": False}, {"cls", "dis", "total"}),
        ({"eta": 0.0}, ALL_TERMS - {"kp_aug"}),
        ({"key_embedding": False}, {"cls", "dis", "total"}),
        ({"key_embedding": False, "disturbance": False}, {"cls", "total"}),
    ],
)
def test_settings_flags_remove_terms(pretrained, batch, key, flags, expected):
    x, y = batch
    settings = SDBSettings(**{"omega": 0.2, "eta": 0.01, "disturbance_form": "push", **flags})
    frozen = FrozenModels.from_model(pretrained, with_random=settings.preservation and settings.eta > 0)
    model = copy.deepcopy(pretrained).train()
    z, losses = sdb_step(model, frozen, x, y, key.tensor, settings)
    assert set(losses) == expected
    total = losses["cls"] + losses.get("dis", 0.0) + losses.get("kp_main", 0.0) + settings.eta * losses.get("kp_aug", 0.0)
    torch.testing.assert_close(losses["total"], total)
    if not settings.key_embedding:  # no proxy stream: plain CE and plain Nasty Teacher
        torch.testing.assert_close(losses["cls"], F.cross_entropy(z, y))
        if "dis" in losses:
            torch.testing.assert_close(losses["dis"], disturbance_loss(z, None, frozen.original(x), 0.2), rtol=1e-4, atol=1e-6)


def test_sdb_step_without_key_is_nasty_teacher(pretrained, batch):
    x, y = batch
    frozen = FrozenModels.from_model(pretrained, with_random=True)
    _, losses = sdb_step(copy.deepcopy(pretrained).train(), frozen, x, y, None, SDBSettings())
    assert set(losses) == {"cls", "dis", "total"}


@pytest.mark.parametrize("kwargs, message", [
    ({"lam": 1.0}, "lam"), ({"lam": 0.0}, "lam"), ({"t_dis": 0.0}, "t_dis"), ({"omega": -1.0}, "omega"), ({"eta": -0.1}, "eta"),
])
def test_settings_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SDBSettings(**kwargs)


# ------------------------------------------------------------------------- the fidelity guard
def test_fidelity_guard_raises_with_the_figures(pretrained, train_ds, make_loader):
    val = make_loader(train_ds, n=100)  # images the owner's model knows well: any damage shows
    before = evaluate(pretrained, val)["acc"]
    assert before > 40, "the fixture model should fit its training images"
    with pytest.raises(FidelityError) as info:
        SafeBox.wrap(pretrained, make_loader(train_ds, n=100, shuffle=True), val_loader=val, epochs=1,
                     omega=100.0, lr=0.5, max_accuracy_drop=0, device="cpu", progress=False, **NORM)
    message = str(info.value)
    assert f"({before:.2f}%)" in message  # the original's accuracy
    assert re.search(r"epoch 1 with clean \d+\.\d\d% and keyed \d+\.\d\d%", message)
    assert "within 0 points" in message and "omega" in message and "100.0" in message and "0.5" in message
    assert isinstance(info.value, RuntimeError)


def test_wrap_with_the_guard_on_keeps_accuracy_within_the_allowed_drop(pretrained, train_ds, test_ds, make_loader):
    """The guard as users run it (every other wrap test switches it off or scripts the figures):
    a gentle fine-tune passes it, and the figures it reports are the box's measured accuracy."""
    torch.manual_seed(0)
    val = make_loader(test_ds, n=100)
    before = evaluate(pretrained, val)["acc"]
    box = SafeBox.wrap(pretrained, make_loader(train_ds, n=100, batch_size=25, shuffle=True), val_loader=val, epochs=1, lr=0.002,
                       omega=0.05, max_accuracy_drop=5.0, device="cpu", progress=False, **NORM)
    result = box.wrap_result
    assert result.clean_acc_before == pytest.approx(before) and result.best_epoch == 1
    assert result.clean_acc_after >= result.clean_acc_before - 5.0 and result.keyed_acc_after >= result.clean_acc_before - 5.0
    box.eval()
    assert evaluate(box, val)["acc"] == pytest.approx(result.clean_acc_after)
    assert evaluate(box, val, key=box.key)["acc"] == pytest.approx(result.keyed_acc_after)


def test_fidelity_guard_keeps_the_most_disturbed_qualifying_epoch(pretrained, train_ds, make_loader, monkeypatch):
    """Scripted figures: epoch 2 is the most disturbed but too inaccurate, so epoch 3 must win,
    and the model must end with epoch 3's weights, not the last or the first epoch's."""
    import sdbox.wrap as wrap_module

    script = iter([
        {"acc": 60.0, "images": 50},                        # the original, before wrapping
        {"acc": 60.0, "divergence": 0.1}, {"acc": 60.0, "divergence": 0.0},    # epoch 1: clean, keyed (+divergences)
        {"acc": 50.0, "divergence": 0.9}, {"acc": 60.0, "divergence": 0.0},    # epoch 2: most disturbed, 10 points lost
        {"acc": 59.5, "divergence": 0.3}, {"acc": 59.5, "divergence": 0.0},    # epoch 3: qualifies, most disturbed
        {"acc": 60.0, "divergence": 0.2}, {"acc": 60.0, "divergence": 0.0},    # epoch 4: qualifies, less disturbed
    ])
    snapshots = []

    def scripted_evaluate(model, loader, **kwargs):
        if kwargs.get("reference") is not None and kwargs.get("key") is None:
            snapshots.append(copy.deepcopy(model.state_dict()))
        return next(script)

    monkeypatch.setattr(wrap_module, "evaluate", scripted_evaluate)
    dl = make_loader(train_ds, n=50, shuffle=True)
    push = SDBSettings(disturbance_form="push")  # no decoy target: the divergence decides
    box = SafeBox.wrap(pretrained, dl, val_loader=dl, epochs=4, max_accuracy_drop=1.0, device="cpu", progress=False, settings=push, **NORM)
    result = box.wrap_result
    assert result.best_epoch == 3
    assert (result.clean_acc_before, result.clean_acc_after, result.divergence_after) == (60.0, 59.5, 0.3)
    assert box.box_config.fidelity["best_epoch"] == 3
    for name, value in box.model.state_dict().items():
        assert torch.equal(value, snapshots[2][name]), name
    assert any(not torch.equal(snapshots[2][n], snapshots[3][n]) for n in snapshots[2]), "epochs 3 and 4 must differ for this test to mean anything"


def test_with_a_decoy_the_guard_keeps_the_qualifying_epoch_closest_to_its_target(pretrained, train_ds, make_loader, monkeypatch):
    """Scripted figures: epoch 2 is the most divergent, epoch 3 the closest to the decoy target,
    epoch 4 closer still but too inaccurate: epoch 3 must win, with its weights."""
    import sdbox.wrap as wrap_module

    script = iter([
        {"acc": 60.0, "images": 50},
        {"acc": 60.0, "divergence": 0.1}, {"acc": 60.0, "divergence": 0.0},
        {"acc": 60.0, "divergence": 0.9}, {"acc": 60.0, "divergence": 0.0},
        {"acc": 59.5, "divergence": 0.3}, {"acc": 59.5, "divergence": 0.0},
        {"acc": 50.0, "divergence": 0.2}, {"acc": 60.0, "divergence": 0.0},
    ])
    reach = iter([0.2, 0.4, 0.7, 0.9])
    snapshots = []

    def scripted_reach(model, *args):
        snapshots.append(copy.deepcopy(model.state_dict()))
        return {"target_tail_corr": next(reach), "target_top2": 0.5}

    monkeypatch.setattr(wrap_module, "evaluate", lambda model, loader, **kwargs: next(script))
    monkeypatch.setattr(wrap_module, "_target_reach", scripted_reach)
    dl = make_loader(train_ds, n=50, shuffle=True)
    box = SafeBox.wrap(pretrained, dl, val_loader=dl, epochs=4, max_accuracy_drop=1.0, device="cpu", progress=False, **NORM)
    assert box.wrap_result.best_epoch == 3 and box.wrap_result.divergence_after == 0.3
    assert [e["target_tail_corr"] for e in box.wrap_result.epochs] == [0.2, 0.4, 0.7, 0.9]
    for name, value in box.model.state_dict().items():
        assert torch.equal(value, snapshots[2][name]), name


def test_wrap_argument_validation(pretrained, train_ds, make_loader):
    dl = make_loader(train_ds, n=50)
    with pytest.raises(ValueError, match="max_accuracy_drop"):
        SafeBox.wrap(pretrained, dl, val_loader=dl, max_accuracy_drop=-1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="epochs"):
        SafeBox.wrap(pretrained, dl, val_loader=dl, epochs=0, device="cpu", progress=False, **NORM)
    with pytest.raises(ValueError, match="lr"):
        SafeBox.wrap(pretrained, dl, val_loader=dl, lr=0, device="cpu", progress=False, **NORM)
    with pytest.raises(ValueError, match="shape"):
        SafeBox.wrap(pretrained, dl, val_loader=dl, key=Key.generate((3, 16, 16)), device="cpu", progress=False, **NORM)
    with pytest.raises(ValueError, match="lam"):
        SafeBox.wrap(pretrained, dl, val_loader=dl, key=Key.generate((3, 32, 32), lam=0.3), lam=0.5, device="cpu", progress=False, **NORM)


# ------------------------------------------------------------------------------------- resume
class CountingLoader:
    """A re-iterable loader that counts the batches it hands out and can interrupt itself."""

    def __init__(self, inner: DataLoader, interrupt_when=None):
        self.inner, self.interrupt_when, self.batches = inner, interrupt_when, 0

    def __len__(self):
        return len(self.inner)

    def __iter__(self):
        if self.interrupt_when is not None and self.interrupt_when():
            raise KeyboardInterrupt  # Ctrl-C at the start of the next epoch
        for batch in self.inner:
            self.batches += 1
            yield batch


def test_resume_continues_from_the_next_epoch_with_the_same_key(pretrained_state, tiny_cls, train_ds, test_ds, make_loader, tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    ckpt = ckpt_dir / "wrap_state.pt"
    val = make_loader(test_ds, n=50)
    train = make_loader(train_ds, n=100, batch_size=25)  # 4 steps per epoch
    steps = len(train)
    kwargs = dict(val_loader=val, epochs=2, lr=0.01, max_accuracy_drop=100, device="cpu", progress=False, checkpoint_dir=ckpt_dir, **NORM)

    def model():
        m = tiny_cls()
        m.load_state_dict(pretrained_state)
        return m

    first = CountingLoader(train, interrupt_when=ckpt.exists)
    interrupted = model()
    with pytest.raises(KeyboardInterrupt):
        SafeBox.wrap(interrupted, first, **kwargs)
    assert ckpt.is_file() and stat.S_IMODE(ckpt.stat().st_mode) == 0o600
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert payload["state"]["epoch"] == 1
    epoch1 = payload["state"]["epochs"][0]
    saved_fp = Key(payload["key"]["tensor"], payload["key"]["lam"]).fingerprint

    second = CountingLoader(train)
    # the same model object: Ctrl-C gave it its original weights back, so the checkpoint accepts it
    box = SafeBox.wrap(interrupted, second, **kwargs)  # no key passed: the checkpoint's is used
    assert box.key.fingerprint == saved_fp == box.box_config.key_fingerprint
    assert [r["epoch"] for r in box.wrap_result.epochs] == [1, 2]
    assert box.wrap_result.epochs[0] == epoch1  # epoch 1 was kept, not redone
    # one epoch of training batches (plus at most the one batch wrap peeks at to validate the loader)
    assert steps <= second.batches <= steps + 1, second.batches


def test_checkpoint_is_deleted_after_a_successful_wrap_unless_kept(pretrained, train_ds, test_ds, make_loader, tmp_path):
    """It holds the key and the unprotected original: left behind, it gives away what the box hides."""
    kwargs = dict(val_loader=make_loader(test_ds, n=50), epochs=1, max_accuracy_drop=100, device="cpu", progress=False, **NORM)
    train = make_loader(train_ds, n=50)
    box = SafeBox.wrap(copy.deepcopy(pretrained), train, checkpoint_dir=tmp_path / "ckpt", **kwargs)
    assert not (tmp_path / "ckpt").exists() and box.wrap_result.kept_checkpoint is None
    stale = tmp_path / "kept" / "wrap_state.pt.tmp"  # a world-readable leftover at the old fixed temp name
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    stale.chmod(0o644)
    kept = SafeBox.wrap(copy.deepcopy(pretrained), train, checkpoint_dir=tmp_path / "kept", keep_checkpoint=True, **kwargs)
    path = tmp_path / "kept" / "wrap_state.pt"
    assert kept.wrap_result.kept_checkpoint == str(path)
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["wrap_state.pt", "wrap_state.pt.tmp"]  # no new temp file
    assert stale.read_bytes() == b"old"


def test_resume_refuses_a_checkpoint_of_another_wrap_naming_the_difference(pretrained, tiny_cls, train_ds, test_ds, make_loader, tmp_path):
    """A checkpoint resumed by another model or other arguments would silently return the old box and key."""
    train, val = make_loader(train_ds, n=50), make_loader(test_ds, n=50)
    kwargs = dict(val_loader=val, max_accuracy_drop=100, device="cpu", progress=False, checkpoint_dir=tmp_path, keep_checkpoint=True, **NORM)
    box = SafeBox.wrap(copy.deepcopy(pretrained), train, epochs=1, **kwargs)
    same = dict(key=box.key, epochs=1)
    other_model = tiny_cls().eval()  # same class, other weights
    cases = [
        (copy.deepcopy(pretrained), train, {**same, "key": Key.generate((3, 32, 32))}, "another key"),
        (other_model, train, same, r"`model_weights_sha256` differs.*same model"),
        (copy.deepcopy(pretrained), train, {**same, "omega": 0.5}, r"`settings.omega` was 1.0, now 0.5"),
        (copy.deepcopy(pretrained), train, {**same, "lr": 0.02}, r"`lr` was 0.05, now 0.02"),
        (copy.deepcopy(pretrained), train, {**same, "epochs": 2}, r"`epochs` was 1, now 2"),
        (copy.deepcopy(pretrained), make_loader(train_ds, n=100), same, r"`train_batches` was 1, now 2"),
    ]
    for model, loader, changes, message in cases:
        with pytest.raises(CheckpointError, match=message) as info:
            SafeBox.wrap(model, loader, **{**kwargs, **changes})
        assert "empty folder" in str(info.value) and isinstance(info.value, ValueError)
    again = SafeBox.wrap(copy.deepcopy(pretrained), train, **{**kwargs, **same})  # the same wrap resumes (finished: nothing to train)
    assert again.wrap_result.epochs == box.wrap_result.epochs


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "foreign"])
def test_a_damaged_checkpoint_is_a_named_error(pretrained, train_ds, test_ds, make_loader, tmp_path, damage):
    kwargs = dict(val_loader=make_loader(test_ds, n=50), epochs=1, max_accuracy_drop=100, device="cpu", progress=False, checkpoint_dir=tmp_path, **NORM)
    train = make_loader(train_ds, n=50)
    box = SafeBox.wrap(copy.deepcopy(pretrained), train, keep_checkpoint=True, **kwargs)
    path = tmp_path / "wrap_state.pt"
    raw = path.read_bytes()
    if damage == "foreign":
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": b"PK\x03\x04" + b"\x00" * 200, "empty": b""}[damage])
    for key in (None, box.key):  # without a key wrap reads the checkpoint's; with one it resumes
        with pytest.raises(CheckpointError, match=r"wrap_state.pt.*(delete it|empty folder)"):
            SafeBox.wrap(copy.deepcopy(pretrained), train, key=key, **kwargs)


def test_a_failed_wrap_gives_the_model_its_weights_and_mode_back(pretrained, train_ds, make_loader):
    pretrained.train()
    before = copy.deepcopy(pretrained.state_dict())
    with pytest.raises(FidelityError, match="keeps its original weights"):
        SafeBox.wrap(pretrained, make_loader(train_ds, n=50), val_loader=make_loader(train_ds, n=50), epochs=1, omega=100.0, lr=0.5,
                     max_accuracy_drop=0, device="cpu", progress=False, **NORM)
    for name, value in pretrained.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert pretrained.training and all(m.training for m in pretrained.modules())
    assert pretrained.fc.weight.is_contiguous()  # and its memory layout


def test_wrap_hands_the_model_back_in_the_mode_it_came_in(pretrained, train_ds, test_ds, make_loader):
    """It used to come back in eval mode whatever mode it came in."""
    pretrained.eval()
    pretrained.features[1].train()  # mixed modes, e.g. a user re-estimating one BatchNorm's statistics
    modes = [m.training for m in pretrained.modules()]
    box = SafeBox.wrap(pretrained, make_loader(train_ds, n=50), val_loader=make_loader(test_ds, n=50), epochs=1,
                       max_accuracy_drop=100, device="cpu", progress=False, **NORM)
    assert [m.training for m in pretrained.modules()] == modes and box.model is pretrained
    other = copy.deepcopy(pretrained).train()  # a model that is already a box's is refused: wrap a copy
    box = SafeBox.wrap(other, make_loader(train_ds, n=50), val_loader=make_loader(test_ds, n=50), epochs=1,
                       max_accuracy_drop=100, device="cpu", progress=False, **NORM)
    assert other.training and box.training


# --------------------------------------------------------------------------- non-finite losses
def test_nan_inputs_raise_naming_the_problem(pretrained, train_ds, test_ds, make_loader):
    x, y = next(iter(make_loader(train_ds, n=50)))
    x = x.clone()
    x[25:, :, :4, :4] = float("nan")  # the second batch: only training shows it, as a NaN loss term
    val = make_loader(test_ds, n=50)
    kwargs = dict(val_loader=val, epochs=1, max_accuracy_drop=100, device="cpu", progress=False, **NORM)
    with pytest.raises(NonFiniteLossError, match=r"loss term `cls` became nan.*check the inputs for NaN"):
        SafeBox.wrap(pretrained, DataLoader(TensorDataset(x, y), batch_size=25), **kwargs)
    with pytest.raises(InputError, match="finite pixel values"):  # in the first batch: caught before any training
        SafeBox.wrap(pretrained, DataLoader(TensorDataset(x.flip(0), y), batch_size=25), **kwargs)


def test_huge_lr_raises_naming_a_term(pretrained, train_ds, test_ds, make_loader):
    with pytest.raises(NonFiniteLossError) as info:
        SafeBox.wrap(pretrained, make_loader(train_ds, n=100, batch_size=25), val_loader=make_loader(test_ds, n=50), epochs=1,
                     lr=1e30, max_accuracy_drop=100, device="cpu", progress=False, **NORM)
    assert re.search(r"`(cls|dis|kp_main|kp_aug)`|total loss", str(info.value))
    assert isinstance(info.value, FloatingPointError)


# ------------------------------------------------------------------------------ input errors
def test_empty_loader(pretrained):
    empty = DataLoader(TensorDataset(torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long)), batch_size=4)
    with pytest.raises(InputError, match="`loader` to yield at least one batch"):
        SafeBox.wrap(pretrained, empty, device="cpu", progress=False, **NORM)


def test_non_2d_model_output(train_ds, make_loader):
    dl = make_loader(train_ds, n=20)
    feature_map = nn.Conv2d(3, 10, 3)  # returns (N, 10, 30, 30)
    with pytest.raises(InputError, match=r"\(N, num_classes\) logits.*\(2, 10, 30, 30\)"):
        SafeBox.wrap(feature_map, dl, val_loader=dl, device="cpu", progress=False, **NORM)
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1), nn.Flatten(0))  # returns (N,)
    with pytest.raises(InputError, match=r"logits"):
        SafeBox.wrap(flat, dl, val_loader=dl, device="cpu", progress=False, **NORM)


def test_model_that_fails_on_the_batch(train_ds, make_loader):
    dl = make_loader(train_ds, n=20)
    with pytest.raises(InputError, match=r"model failed on a batch of shape \(2, 3, 32, 32\)"):
        SafeBox.wrap(nn.Linear(5, 10), dl, val_loader=dl, device="cpu", progress=False, **NORM)


def test_float_labels_and_bad_images(pretrained, train_ds):
    x = torch.stack([train_ds[i][0] for i in range(8)])
    floats = DataLoader(TensorDataset(x, torch.arange(8).float()), batch_size=4)
    with pytest.raises(InputError, match="integer class labels"):
        SafeBox.wrap(pretrained, floats, device="cpu", progress=False, **NORM)
    uint8 = DataLoader(TensorDataset((x * 50).to(torch.uint8), torch.arange(8)), batch_size=4)
    with pytest.raises(InputError, match="float tensors of shape"):
        SafeBox.wrap(pretrained, uint8, device="cpu", progress=False, **NORM)
    just_images = DataLoader(x, batch_size=4)
    with pytest.raises(InputError):
        SafeBox.wrap(pretrained, just_images, device="cpu", progress=False, **NORM)
    with pytest.raises(InputError, match="`val_loader` to yield at least one batch"):  # an empty validation loader is caught too
        empty = DataLoader(TensorDataset(x[:0], torch.arange(0)), batch_size=4)
        SafeBox.wrap(pretrained, DataLoader(TensorDataset(x, torch.arange(8)), batch_size=4), val_loader=empty,
                     device="cpu", progress=False, **NORM)


# --------------------------------------------------------------------------------- uniqueness
def test_wrong_key_is_a_per_channel_shuffle_of_the_key(key):
    wrong = wrong_key(key.tensor)
    assert wrong.shape == key.tensor.shape
    for c in range(key.tensor.shape[0]):  # same values in each channel, so the same statistics
        torch.testing.assert_close(wrong[c].flatten().sort().values, key.tensor[c].flatten().sort().values)
    assert (wrong != key.tensor).float().mean() > 0.9  # but not the key
    assert not torch.equal(wrong_key(key.tensor), wrong)  # and fresh every call


def test_wrong_key_of_a_tiled_key_is_a_fresh_tile_of_the_same_family():
    key = Key.generate((3, 32, 32), 0.5, CIFAR10_MEAN, CIFAR10_STD, tile=4)
    wrong = wrong_key(key.tensor)
    torch.testing.assert_close(wrong, wrong.roll(4, dims=1))  # still periodic with the key's tile
    torch.testing.assert_close(wrong, wrong.roll(4, dims=2))
    for c in range(3):  # its tile holds the key tile's values, shuffled
        torch.testing.assert_close(wrong[c, :4, :4].flatten().sort().values, key.tensor[c, :4, :4].flatten().sort().values)
    assert not torch.equal(wrong, key.tensor)


def test_wrong_keys_off_by_default():
    assert SDBSettings().wrong_keys == 0.0


def test_wrong_key_stream_is_trained_like_the_clean_stream(pretrained, batch, key):
    x, y = batch
    frozen = FrozenModels.from_model(pretrained, with_random=True, seed=0)
    model = copy.deepcopy(pretrained).train()
    settings = SDBSettings(omega=0.3, eta=0.05, wrong_keys=0.5, disturbance_form="push")
    torch.manual_seed(7)
    _, losses = sdb_step(model, frozen, x, y, key.tensor, settings)
    assert set(losses) == ALL_TERMS | {"wrong"}
    others = losses["cls"] + losses["dis"] + losses["kp_main"] + 0.05 * losses["kp_aug"]
    torch.testing.assert_close(losses["total"], others + 0.5 * losses["wrong"])
    torch.manual_seed(7)  # the same wrong key again: recompute CE + disturbance on its stream by hand
    reference = copy.deepcopy(pretrained).train()
    with torch.no_grad():
        reference(x)
        z_proxy = reference(0.5 * x + 0.5 * key.tensor)
        z_wrong = reference(0.5 * x + 0.5 * wrong_key(key.tensor))
        z_teacher = frozen.original(x)
    expected = F.cross_entropy(z_wrong, y) + disturbance_loss(z_wrong, z_proxy, z_teacher, 0.3, 4.0)
    torch.testing.assert_close(losses["wrong"].detach(), expected, rtol=1e-4, atol=1e-4)


def test_main_loss_kl_is_the_kd_loss_on_the_proxy_stream(pretrained, batch, key):
    x, y = batch
    frozen = FrozenModels.from_model(pretrained, with_random=False)
    model = copy.deepcopy(pretrained).train()
    _, mse = sdb_step(copy.deepcopy(model), frozen, x, y, key.tensor, SDBSettings(eta=0.0, main_loss="mse", disturbance_form="push"))
    _, kl = sdb_step(copy.deepcopy(model), frozen, x, y, key.tensor, SDBSettings(eta=0.0, disturbance_form="push"))  # the default
    with torch.no_grad():
        reference = copy.deepcopy(model)
        reference(x)
        z_proxy = reference(0.5 * x + 0.5 * key.tensor)
        z_teacher = frozen.original(x)
    torch.testing.assert_close(kl["kp_main"].detach(), kd_loss(z_proxy, z_teacher, 4.0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mse["kp_main"].detach(), preservation_loss(z_proxy, z_teacher, 4.0), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="`main_loss` 'mse' or 'kl'"):
        SDBSettings(main_loss="l1")
    with pytest.raises(ValueError, match="wrong_keys"):
        SDBSettings(wrong_keys=-1.0)


@pytest.mark.parametrize("source", ["random_copy", "pixels"])
def test_decoy_disturbance_pulls_the_clean_and_wrong_key_streams_onto_one_decoy_target(pretrained, batch, key, source):
    x, y = batch
    settings = SDBSettings(disturbance_form="decoy", decoy_source=source, omega=2.0, decoy_share=0.6, eta=0.0, wrong_keys=1.0)
    # T0 on x ranks a random-copy decoy even though L_aug is off; the pixel decoy needs no T0.
    assert settings.needs_random_copy is (source == "random_copy")
    frozen = FrozenModels.from_model(pretrained, with_random=True, seed=0)
    model = copy.deepcopy(pretrained).train()
    torch.manual_seed(7)
    _, losses = sdb_step(model, frozen, x, y, key.tensor, settings)
    torch.manual_seed(7)
    reference = copy.deepcopy(pretrained).train()
    with torch.no_grad():
        z = reference(x)
        reference(0.5 * x + 0.5 * key.tensor)
        z_wrong = reference(0.5 * x + 0.5 * wrong_key(key.tensor))
        scores = frozen.random(x) if source == "random_copy" else PixelDecoy(key.tensor, 10)(x)
        target = decoy_target(frozen.original(x), scores, 0.6)
    torch.testing.assert_close(losses["dis"].detach(), decoy_loss(z, target, 2.0), rtol=1e-4, atol=1e-5)
    expected_wrong = F.cross_entropy(z_wrong, y) + decoy_loss(z_wrong, target, 2.0)
    torch.testing.assert_close(losses["wrong"].detach(), expected_wrong, rtol=1e-4, atol=1e-4)
    # Plain Nasty Teacher with a random-copy decoy still gets its T0.
    nasty = SDBSettings(disturbance_form="decoy", decoy_source="random_copy", key_embedding=False, preservation=False)
    assert nasty.needs_random_copy and not SDBSettings(key_embedding=False, preservation=False, disturbance_form="push").needs_random_copy
    _, losses = sdb_step(copy.deepcopy(pretrained).train(), FrozenModels.from_model(pretrained, with_random=True), x, y, None, nasty)
    assert set(losses) == {"cls", "dis", "total"}


def test_the_pixel_decoy_is_the_keys_own_and_ranks_by_the_pooled_image(key):
    same, other = PixelDecoy(key.tensor, 10), PixelDecoy(Key.generate((3, 32, 32), 0.5, CIFAR10_MEAN, CIFAR10_STD).tensor, 10)
    torch.testing.assert_close(PixelDecoy(key.tensor.clone(), 10).weight, same.weight)  # a resume rebuilds it
    assert not torch.allclose(same.weight, other.weight)  # another key, another map
    x = torch.randn(4, 3, 32, 32)
    smooth = torch.nn.functional.interpolate(torch.nn.functional.adaptive_avg_pool2d(x, 4), size=32, mode="nearest")
    torch.testing.assert_close(same(x), same(smooth))  # only the 4×4 pooled image matters
    frozen = FrozenModels.from_model(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)), with_random=False)
    assert frozen.decoy_scores(x, key.tensor, "pixels").shape == (4, 10)  # built on first use, sized by the model's classes
    with pytest.raises(ValueError, match="drawn from the key"):
        FrozenModels.from_model(nn.Linear(3, 10), with_random=False).decoy_scores(x, None, "pixels")


@pytest.mark.parametrize("share", [-0.1, 1.0, float("nan")])
def test_decoy_share_outside_its_range_is_named(share):
    with pytest.raises(ValueError, match="`decoy_share` in \\[0, 1\\)"):
        SDBSettings(decoy_share=share)
    with pytest.raises(ValueError, match="'push', 'confuse' or 'decoy'"):
        SDBSettings(disturbance_form="poison")
    with pytest.raises(ValueError, match="`decoy_source` 'pixels' or 'random_copy'"):
        SDBSettings(decoy_source="noise")


# ------------------------------------------------------------------ folded frozen forwards
def test_frozen_run_folds_batchnorm_and_matches_the_exact_model(pretrained, batch):
    x, _ = batch
    frozen = FrozenModels.from_model(pretrained, with_random=True, seed=0)
    with torch.inference_mode():
        for which in ("original", "random"):
            exact = getattr(frozen, which)(x)
            torch.testing.assert_close(frozen.run(which, x), exact, rtol=1e-5, atol=1e-5)
            folded = frozen.folded[which]
            assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
            assert not folded.training and not any(p.requires_grad for p in folded.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in frozen.original.modules())  # the exact copy is untouched


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, so no folding."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 10)

    def forward(self, x):
        h = self.bn(self.conv(x))
        if h.sum() > 0:
            h = h * 2
        return self.fc(h.mean((2, 3)))


def test_frozen_run_falls_back_to_the_exact_model_when_untraceable(batch):
    x, _ = batch
    frozen = FrozenModels.from_model(Untraceable(), with_random=False)
    with torch.inference_mode():
        torch.testing.assert_close(frozen.run("original", x), frozen.original(x))
    assert frozen.folded["original"] is frozen.original


# ------------------------------------------------------------- probes: named errors, not tracebacks
class BatchNormHead(nn.Module):
    """A classifier whose head has BatchNorm1d: a training batch of one image breaks it."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        return self.head(self.body(x))


def test_labels_outside_the_model_classes(pretrained, train_ds, make_loader):
    x, y = next(iter(make_loader(train_ds, n=50)))
    val = make_loader(train_ds, n=50)
    later = DataLoader(TensorDataset(x, torch.cat([y[:25], torch.full((25,), 10)])), batch_size=25)  # second batch
    with pytest.raises(InputError, match=r"labels in \[0, 10\).*from 10 to 10"):
        SafeBox.wrap(pretrained, later, val_loader=val, epochs=1, max_accuracy_drop=100, device="cpu", progress=False, **NORM)
    negative = DataLoader(TensorDataset(x, y - 1), batch_size=25)
    with pytest.raises(InputError, match=r"labels in \[0, 10\)"):
        SafeBox.wrap(pretrained, negative, val_loader=val, epochs=1, device="cpu", progress=False, **NORM)


def test_a_training_batch_of_one_with_batchnorm(train_ds, make_loader):
    x, y = next(iter(make_loader(train_ds, n=51, batch_size=51)))
    val = make_loader(train_ds, n=50)
    kwargs = dict(val_loader=val, epochs=1, max_accuracy_drop=100, device="cpu", progress=False, **NORM)
    with pytest.raises(InputError, match="batch of one.*drop_last=True"):  # a DataLoader: known before the first epoch
        SafeBox.wrap(BatchNormHead(), DataLoader(TensorDataset(x, y), batch_size=25), **kwargs)
    with pytest.raises(InputError, match="batch of one"):  # any other loader: when the batch comes
        SafeBox.wrap(BatchNormHead(), [(x[:25], y[:25]), (x[25:50], y[25:50]), (x[50:], y[50:])], **kwargs)
    box = SafeBox.wrap(BatchNormHead(), DataLoader(TensorDataset(x, y), batch_size=25, drop_last=True), **kwargs)
    assert box.wrap_result.best_epoch == 1


class Stream(torch.utils.data.IterableDataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y))


def test_a_loader_over_an_iterable_dataset_without_len(pretrained, train_ds, test_ds, make_loader):
    x, y = next(iter(make_loader(train_ds, n=50, batch_size=50)))
    box = SafeBox.wrap(pretrained, DataLoader(Stream(x, y), batch_size=25), val_loader=make_loader(test_ds, n=50), epochs=1,
                       max_accuracy_drop=100, device="cpu", progress=False, **NORM)
    assert box.wrap_result.best_epoch == 1


def test_a_one_shot_generator_loader(pretrained, train_ds, make_loader):
    dl = make_loader(train_ds, n=50, batch_size=25)
    with pytest.raises(InputError, match="re-iterable.*generator"):
        SafeBox.wrap(pretrained, (b for b in dl), val_loader=dl, epochs=2, device="cpu", progress=False, **NORM)
    with pytest.raises(InputError, match="`val_loader` to be re-iterable"):
        SafeBox.wrap(pretrained, dl, val_loader=iter(list(dl)), epochs=2, device="cpu", progress=False, **NORM)


@pytest.mark.parametrize("kwargs, message", [
    ({"omega": "lots"}, "`omega` to be a finite number"), ({"t_dis": float("inf")}, "`t_dis` to be a finite number"),
    ({"eta": float("nan")}, "`eta`"), ({"lr": float("nan")}, "`lr`"), ({"epochs": 1.5}, "`epochs`"),
])
def test_odd_argument_values_are_named(pretrained, train_ds, make_loader, kwargs, message):
    dl = make_loader(train_ds, n=50)
    with pytest.raises(ValueError, match=message):
        SafeBox.wrap(pretrained, dl, val_loader=dl, device="cpu", progress=False, **NORM, **kwargs)


def test_a_frozen_model_is_refused_with_the_fix(pretrained, train_ds, make_loader):
    dl = make_loader(train_ds, n=50)
    pretrained.requires_grad_(False)
    with pytest.raises(InputError, match=r"requires_grad_\(True\)"):
        SafeBox.wrap(pretrained, dl, val_loader=dl, device="cpu", progress=False, **NORM)


def test_a_nan_key_is_named_not_blamed_on_lr(pretrained, train_ds, make_loader):
    dl = make_loader(train_ds, n=50)
    tensor = torch.randn(3, 32, 32)
    tensor[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite key values"):
        SafeBox.wrap(pretrained, dl, val_loader=dl, key=Key(tensor), device="cpu", progress=False, **NORM)


def test_cudnn_benchmark_is_put_back(monkeypatch):
    """Resolving the fast path used to switch cudnn.benchmark on for the whole process."""
    from sdbox.fastpath import FastPath

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    fast = FastPath().resolve("cuda")
    assert torch.backends.cudnn.benchmark is False
    with fast.running_on("cuda"):
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark is False
    with pytest.raises(RuntimeError):
        with fast.running_on("cuda"):
            raise RuntimeError("a failed wrap")
    assert torch.backends.cudnn.benchmark is False


def test_the_guard_score_follows_the_disturbance_and_never_prefers_an_unmeasured_epoch():
    """What a resumed wrap re-scores its kept epoch with (a checkpoint of an older sdbox stored a divergence)."""
    from sdbox.wrap import _score

    record = {"divergence": 2.9, "target_tail_corr": 0.8}
    assert _score(record, SDBSettings()) == 0.8  # the default decoy: closeness to its target
    assert _score(record, SDBSettings(disturbance_form="push")) == 2.9
    assert _score({"divergence": 2.9}, SDBSettings()) == -math.inf  # recorded before the reach was measured
