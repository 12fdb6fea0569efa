"""What a careless wrap used to get wrong silently: a model wrapped twice, a resume nobody was told about."""

from __future__ import annotations

import copy

import pytest

from sdbox import InputError, ResumeWarning, SafeBox
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD

ARGS = dict(epochs=1, max_accuracy_drop=100, device="cpu", progress=False, mean=CIFAR10_MEAN, std=CIFAR10_STD)


@pytest.mark.filterwarnings("ignore:Wrapping for 1 epochs")
def test_wrapping_one_model_object_twice_is_refused(pretrained, train_ds, make_loader):
    dl = make_loader(train_ds, n=50)
    first = SafeBox.wrap(pretrained, dl, val_loader=dl, **ARGS)
    before = {k: v.clone() for k, v in first.model.state_dict().items()}
    with pytest.raises(InputError, match=r"already a box's.*copy\.deepcopy"):
        SafeBox.wrap(pretrained, dl, val_loader=dl, **ARGS)
    assert all(v.equal(before[k]) for k, v in first.model.state_dict().items())  # the first box untouched
    SafeBox.wrap(copy.deepcopy(pretrained), dl, val_loader=dl, **ARGS)  # a copy is fine


@pytest.mark.filterwarnings("ignore:Wrapping for 1 epochs")
def test_a_kept_checkpoint_says_what_it_resumes(pretrained, train_ds, make_loader, tmp_path):
    dl = make_loader(train_ds, n=50)
    kwargs = dict(val_loader=dl, checkpoint_dir=tmp_path / "ck", keep_checkpoint=True, **ARGS)
    box = SafeBox.wrap(copy.deepcopy(pretrained), dl, **kwargs)
    with pytest.warns(ResumeWarning, match=rf"Resuming the wrap.*1 of 1 epochs done.*{box.key.fingerprint[:12]}.*nothing is trained again"):
        again = SafeBox.wrap(copy.deepcopy(pretrained), dl, **kwargs)
    assert again.key.fingerprint == box.key.fingerprint


def test_a_file_where_the_checkpoint_folder_should_be_is_refused_before_training(pretrained, train_ds, make_loader, tmp_path):
    (tmp_path / "ck").write_text("not a folder")
    dl = make_loader(train_ds, n=50)
    with pytest.raises(InputError, match="checkpoint_dir.*is a file"):
        SafeBox.wrap(pretrained, dl, val_loader=dl, checkpoint_dir=tmp_path / "ck", **ARGS)


def test_a_checkpoint_with_garbage_state_is_a_named_error(pretrained, train_ds, make_loader, tmp_path):
    import torch

    from sdbox.checkpoint import PARTS
    from sdbox.errors import CheckpointError

    (tmp_path / "ck").mkdir()
    torch.save({part: "garbage" for part in PARTS}, tmp_path / "ck" / "wrap_state.pt")
    dl = make_loader(train_ds, n=50)
    with pytest.raises(CheckpointError, match="damaged wrap state.*empty folder"):
        SafeBox.wrap(copy.deepcopy(pretrained), dl, val_loader=dl, checkpoint_dir=tmp_path / "ck", **ARGS)


def test_a_batch_of_another_shape_mid_epoch_is_a_named_error(pretrained, train_ds):
    import torch

    good = [(torch.stack([train_ds[i][0] for i in range(10)]), torch.arange(10) % 10)]
    bad = good + [(torch.zeros(10, 3, 16, 16), torch.arange(10) % 10)]
    with pytest.raises(InputError, match="shape"):
        SafeBox.wrap(copy.deepcopy(pretrained), bad, val_loader=good, **ARGS)


@pytest.mark.parametrize("evaluation", [{"clean_acc": float("nan")}, {"clean_acc": "high"}, "fine"])
def test_a_report_evaluation_that_is_not_finite_numbers_is_refused(wrapped, evaluation):
    from sdbox.config import BoxConfig
    from sdbox.errors import BundleError

    data = wrapped.box_config.to_json()
    data["sdbox"]["report"] = {"evaluation": evaluation}
    with pytest.raises(BundleError, match="report.evaluation"):
        BoxConfig.from_json(data)
