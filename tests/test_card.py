"""The model card claims only what was measured for the box it describes."""

from __future__ import annotations

import re

import pytest
from huggingface_hub import ModelCard

from sdbox.card import UNKNOWN_REPO, card_for_repo, license_warning, model_card
from sdbox.config import BoxConfig
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD

# Sentences that promise protection: none may appear unless a report measured it.
PROTECTION_PROMISES = re.compile(r"protects|weak(er)? student|yields a|cannot (be )?distil|only key holders|key holders only|dark knowledge",
                                 re.IGNORECASE)
# What `sdbox benchmark` stores in box_config.report (benchmark.report.box_summary).
REPORT = {
    "preset": "cpu", "seeds": 3, "regime": "Data-limited regime.",
    "claims": {
        "Fidelity": {"verdict": "not resolved at this size", "diff": {"mean": -0.28, "low": -1.12, "high": 0.56, "n": 5000, "over": "test images"}},
        "Protection (T=4)": {"verdict": "fails", "diff": {"mean": 6.91, "low": 4.19, "high": 9.63, "n": 3, "over": "seeds"}},
        "Authorisation": {"verdict": "not resolved at this size", "diff": {"mean": -0.55, "low": -5.30, "high": 4.19, "n": 3, "over": "seeds"}},
        "Uniqueness (random key 1)": {"verdict": "fails", "diff": {"mean": 6.77, "low": 3.40, "high": 10.13, "n": 3, "over": "seeds"}},
    },
}


def config(**changes) -> BoxConfig:
    values = dict(architecture="resnet18", num_classes=10, input_size=(3, 32, 32), mean=CIFAR10_MEAN, std=CIFAR10_STD,
                  key_fingerprint="ab" * 32, model_library="timm", interpolation="bilinear", crop_pct=1.0, crop_mode="center",
                  fidelity={"clean_acc_before": 70.0, "clean_acc_after": 69.0, "keyed_acc_after": 68.0, "best_epoch": 1})
    return BoxConfig(**{**values, **changes})


def claim_lines(card: str) -> dict[str, str]:
    """The "What was measured" bullets, by claim: ``{"Protection": "... not measured for this box."}``."""
    section = card.split("## What was measured for this box", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^- \*\*(\w+)\*\* (.*(?:\n  .*)*)", section, re.MULTILINE)}


def test_a_card_without_a_report_promises_no_protection():
    card = model_card(config())
    lines = claim_lines(card)
    assert set(lines) == {"Fidelity", "Protection", "Authorisation", "Uniqueness"}
    for claim in ("Protection", "Authorisation", "Uniqueness"):
        assert lines[claim].endswith("not measured for this box."), lines[claim]
    assert PROTECTION_PROMISES.search(card) is None, PROTECTION_PROMISES.search(card)
    assert "## Protection report" not in card


def test_the_card_of_a_wrapped_box_without_a_report_promises_no_protection(wrapped, tmp_path):
    wrapped.save_pretrained(tmp_path / "box")
    card = (tmp_path / "box" / "README.md").read_text()
    assert PROTECTION_PROMISES.search(card) is None, PROTECTION_PROMISES.search(card)
    assert claim_lines(card)["Protection"].endswith("not measured for this box.")
    assert f"{wrapped.box_config.fidelity['clean_acc_after']:.2f}%" in claim_lines(card)["Fidelity"]


def test_a_stored_report_is_shown_with_its_intervals_and_seeds():
    lines = claim_lines(model_card(config(report=REPORT)))
    assert "`sdbox benchmark --preset cpu`, 3 seed(s)" in lines["Protection"]
    assert "Protection (T=4): +6.91 points [+4.19, +9.63] (95% interval over 3 seeds): **fails**" in lines["Protection"]
    assert "Authorisation: -0.55 points [-5.30, +4.19] (95% interval over 3 seeds): **not resolved at this size**" in lines["Authorisation"]
    assert "Uniqueness (random key 1): +6.77 points" in lines["Uniqueness"]


def test_fidelity_names_its_sample_size_or_says_it_was_not_recorded():
    unknown = claim_lines(model_card(config()))["Fidelity"]
    assert "sample size not recorded" in unknown and "original model, clean input: 70.00%;" in unknown
    known = claim_lines(model_card(config(fidelity={"clean_acc_before": 70.0, "clean_acc_after": 69.0, "images": 100})))["Fidelity"]
    # 95% normal interval of 70% over 100 images: 1.96 · sqrt(70 · 30 / 100) = 8.98 points
    assert "top-1 on 100 held-out images" in known and "original model, clean input: 70.00% ± 8.98;" in known


def test_model_index_lists_accuracies_with_their_sample_size_under_a_named_dataset():
    evaluation = {"clean_acc": 66.5, "keyed_acc": 65.0, "images": 200}
    card = ModelCard(model_card(config(datasets=["cifar10"], report={"evaluation": evaluation})))
    results = card.data.eval_results
    # wrap's figures have no recorded sample size here: only evaluate's two are listed
    assert {(r.metric_name, r.metric_value, r.dataset_type) for r in results} == {
        ("top-1 (%), this box, clean input, 200 held-out images [SafeBox.evaluate]", 66.5, "cifar10"),
        ("top-1 (%), this box, keyed input, 200 held-out images [SafeBox.evaluate]", 65.0, "cifar10"),
    }
    unnamed = ModelCard(model_card(config(report={"evaluation": evaluation})))
    assert unnamed.data.eval_results is None and "custom" not in str(unnamed.data.to_dict())


def test_the_repo_id_is_written_where_it_is_known_and_filled_in_at_push():
    known = model_card(config(), repo_id="org/tbox")
    assert 'timm.create_model("hf-hub:org/tbox", pretrained=True)' in known and UNKNOWN_REPO not in known
    assert "sdbox distill org/tbox --key owner.key" in known
    written_before_push = model_card(config())
    assert "<this repo>" not in written_before_push and f'"hf-hub:{UNKNOWN_REPO}"' in written_before_push
    assert card_for_repo(written_before_push, "org/tbox") == known


def test_the_card_links_no_package_index_page():
    card = model_card(config(report=REPORT))
    assert "pypi.org" not in card and "https://" not in card.split("---", 2)[2]


@pytest.mark.parametrize("license_id", [None, "apache-2.0"])
def test_an_unknown_licence_gives_one_warning_naming_the_fix(license_id):
    message = license_warning(config(license=license_id), fix="pass `--license ID`")
    if license_id is None:
        assert "license: unknown" in message and message.endswith("pass `--license ID`.")
        assert ModelCard(model_card(config())).data.license == "unknown"
    else:
        assert message is None
