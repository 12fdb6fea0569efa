"""The model card (README.md) published with a box, built with huggingface_hub's ``ModelCard``.

A card is read as a promise, so it claims only what was measured for *this* box: fidelity with
the number of images it was measured on; protection, authorisation and uniqueness with their
95% intervals and seeds when a protection report was stored in the box (``box_config.report``),
and "not measured" otherwise. The method's aim is described as an aim: at CPU scale the
project's own benchmark finds that a box does not protect (README, "What it protects today").

Its metadata makes the box a first-class Hub model: ``library_name: timm`` where plain timm can
load the bundle (so the Hub shows its "use this model" snippet), ``pipeline_tag``, ``license``,
``base_model`` and ``datasets`` when known, and the measured accuracies as ``model-index``
metrics, each naming its sample size, when the data has a name the Hub can list them under.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # huggingface_hub's card module is imported when a card is written, not with sdbox
    from huggingface_hub import EvalResult, ModelCardData

    from .config import BoxConfig

TAGS = ["sdbox", "safe-distillation-box", "image-classification"]
_Z975 = 1.959964  # two-sided 95% quantile of the normal distribution
# What stands for the repo id in a card written before the box was pushed; `card_for_repo`
# replaces it (with the note explaining it) once the id is known.
UNKNOWN_REPO = "ORG/NAME"
_UNKNOWN_REPO_NOTE = f"\n\n`{UNKNOWN_REPO}` stands for this model's id on the Hub: the card was written before the box was pushed."
# The accuracies wrap's fidelity guard records, and those `SafeBox.evaluate` adds: (key, what it is).
_WRAP_FIGURES = (("clean_acc_before", "original model, clean input"), ("clean_acc_after", "this box, clean input"),
                 ("keyed_acc_after", "this box, keyed input"))
_EVALUATION_FIGURES = (("original_acc", "original model, clean input"), ("clean_acc", "this box, clean input"),
                       ("keyed_acc", "this box, keyed input"))
# The claims of a protection report (sdbox.benchmark.compare) the card lists, by the start of their name.
_CLAIM_FAMILIES = (
    ("Protection", "a student distilled from the box without the key learns less than one trained alone"),
    ("Authorisation", "a key holder's student learns about as much as one distilled from the original model"),
    ("Uniqueness", "a key other than the owner's does not open the box"),
)


def model_card(config: BoxConfig, report_markdown: str | None = None, *, repo_id: str | None = None) -> str:
    """README.md of a bundle: metadata from :func:`card_data`, then how to use the box and what was measured.

    ``repo_id`` is the box's Hub id when it is known (``push_to_hub``); without it the snippets
    use ``ORG/NAME`` and say so, and :func:`card_for_repo` fills the id in at push time.
    ``report_markdown`` (a benchmark's or ``SafeBox.evaluate``'s details) is appended as is.
    """
    from huggingface_hub import ModelCard

    return str(ModelCard(f"---\n{card_data(config).to_yaml()}\n---\n{_body(config, report_markdown, repo_id)}"))


def card_for_repo(card_text: str, repo_id: str) -> str:
    """``card_text`` with the stand-in repo id replaced by ``repo_id``: what a push of a saved folder
    uploads. Edits the owner made to the card are kept; a card written for a known id is unchanged."""
    return card_text.replace(_UNKNOWN_REPO_NOTE, "").replace(UNKNOWN_REPO, repo_id)


def license_warning(config: BoxConfig, fix: str = "set `box.box_config.license` (e.g. 'apache-2.0') before saving") -> str | None:
    """The one-line warning to show when the card will say ``license: unknown``, else None.

    The Hub shows "unknown" as it is, and nobody may reuse weights under an unknown licence.
    ``fix`` names the way to set it in the interface that was used (the CLI passes its flag).
    """
    if config.license:
        return None
    return f"the card says `license: unknown`: nobody may safely reuse these weights; {fix}."


def card_data(config: BoxConfig) -> "ModelCardData":
    """The card's YAML metadata. ``model-index`` lists each accuracy with its sample size, and
    only for data with a name (the Hub groups results by dataset; "custom" groups nothing)."""
    from huggingface_hub import ModelCardData

    return ModelCardData(
        library_name="timm" if config.model_library == "timm" else None,
        license=config.license or "unknown",
        tags=[*TAGS, config.model_library] if config.model_library != "custom" else list(TAGS),
        pipeline_tag="image-classification",
        base_model=config.base_model,
        datasets=config.datasets,
        model_name=f"sdbox-{config.architecture}",
        eval_results=_eval_results(config) or None,
    )


def _eval_results(config: BoxConfig) -> list["EvalResult"]:
    from huggingface_hub import EvalResult

    if not config.datasets:
        return []
    dataset = config.datasets[0]
    results = []
    for figures, names, measured_by in _measurements(config):
        images = figures.get("images")
        if not isinstance(images, (int, float)):
            continue  # a figure without its sample size is not a result anyone can compare
        results += [EvalResult(task_type="image-classification", dataset_type=dataset, dataset_name=f"{dataset} (held-out images)",
                               metric_type="accuracy", metric_value=round(float(figures[key]), 2),
                               metric_name=f"top-1 (%), {label}, {int(images)} held-out images [{measured_by}]")
                    for key, label in names if isinstance(figures.get(key), (int, float))]
    return results


def _measurements(config: BoxConfig) -> list[tuple[dict[str, Any], tuple[tuple[str, str], ...], str]]:
    """(figures, which of them to show, who measured them) for wrap's guard and ``SafeBox.evaluate``."""
    evaluation = (config.report or {}).get("evaluation")
    found = [(config.fidelity, _WRAP_FIGURES, "SafeBox.wrap")] if config.fidelity else []
    return found + ([(evaluation, _EVALUATION_FIGURES, "SafeBox.evaluate")] if isinstance(evaluation, dict) else [])


def _measured_lines(config: BoxConfig) -> list[str]:
    """One markdown bullet per claim a box can make, each with its figures or "not measured"."""
    lines, fidelity = [], []
    for figures, names, measured_by in _measurements(config):
        shown = [(label, float(figures[key])) for key, label in names if isinstance(figures.get(key), (int, float))]
        if shown:
            fidelity.append(_accuracies(shown, figures.get("images"), measured_by))
    meaning = "predictions on plain inputs stay correct"
    lines.append(f"- **Fidelity** ({meaning}):\n" + "\n".join(f"  - {row}" for row in fidelity) if fidelity else f"- **Fidelity** ({meaning}): not measured.")
    report = config.report or {}
    claims = report.get("claims") if isinstance(report.get("claims"), dict) else {}
    for family, meaning in _CLAIM_FAMILIES:
        rows = [_claim(name, claim) for name, claim in claims.items() if name.startswith(family) and isinstance(claim, dict)]
        if rows:
            source = f"`sdbox benchmark --preset {report.get('preset', '?')}`, {report.get('seeds', '?')} seed(s)"
            lines.append(f"- **{family}** ({meaning}), measured by {source}:\n" + "\n".join(f"  - {row}" for row in rows))
        else:
            lines.append(f"- **{family}** ({meaning}): not measured for this box.")
    attack = strongest_attack_line(config)
    if attack is not None:  # listed only when the owner ran the attacks: the card claims what was measured
        lines.append(f"- **Attacks** (no attacker without the key trains a better student than one trained alone): {attack}")
    return lines


def strongest_attack_line(config: BoxConfig, markdown: bool = True) -> str | None:
    """The strongest attack the owner ran (``report["attacks"]``, written by ``benchmarks/attack_table.py --card``)
    with its gain over scratch, interval and verdict, in one line; None when no attacks were run.
    ``markdown=False``: the same words without markdown, for a terminal (``sdbox inspect``)."""
    attacks = (config.report or {}).get("attacks")
    if not isinstance(attacks, dict) or not isinstance(attacks.get("attack"), str):
        return None
    diff = attacks.get("diff") if isinstance(attacks.get("diff"), dict) else {}
    if not all(isinstance(diff.get(k), (int, float)) for k in ("mean", "low", "high")):
        return None
    settings = attacks.get("settings") if isinstance(attacks.get("settings"), dict) else {}
    code, bold = ("`", "**") if markdown else ("", "")
    named = f"{code}{attacks['attack']}{code}" + (f" ({', '.join(f'{k}={v}' for k, v in settings.items())})" if settings else "")
    held = {"held": "the box held", "broken": "the box is broken"}.get(attacks.get("held"), "not resolved at this size")
    acc = attacks.get("student_acc")
    student = f", student {acc:.2f}%" if isinstance(acc, (int, float)) else ""
    return (f"strongest of {attacks.get('rows', '?')} attack rows, measured in the {code}{attacks.get('preset', '?')}{code} preset's regime "
            f"over {attacks.get('seeds', '?')} seed(s): {named}{student}, {diff['mean']:+.2f} points [{diff['low']:+.2f}, "
            f"{diff['high']:+.2f}] against scratch (95% interval over {diff.get('n', '?')} {diff.get('over', 'samples')}): {bold}{held}{bold}")


def _accuracies(shown: list[tuple[str, float]], images: Any, measured_by: str) -> str:
    """"top-1 on 100 held-out images (`SafeBox.wrap`, ...): original model, clean input: 70.00% ± 8.98; ..." with
    each figure's 95% interval over the images (normal approximation); no interval without a count."""
    if isinstance(images, (int, float)) and images > 0:
        n = int(images)
        parts = [f"{label}: {acc:.2f}% ± {_Z975 * math.sqrt(acc * (100 - acc) / n):.2f}" for label, acc in shown]
        return f"top-1 on {n:,} held-out images (`{measured_by}`, 95% intervals over the images): " + "; ".join(parts)
    return f"top-1 on held-out images (`{measured_by}`, sample size not recorded): " + "; ".join(f"{label}: {acc:.2f}%" for label, acc in shown)


def _claim(name: str, claim: dict[str, Any]) -> str:
    diff = claim.get("diff") if isinstance(claim.get("diff"), dict) else {}
    figures = all(isinstance(diff.get(k), (int, float)) for k in ("mean", "low", "high"))
    if not figures:
        return f"{name}: {claim.get('verdict', 'no figures stored')}"
    return (f"{name}: {diff['mean']:+.2f} points [{diff['low']:+.2f}, {diff['high']:+.2f}] (95% interval over "
            f"{diff.get('n', '?')} {diff.get('over', 'samples')}): **{claim.get('verdict', '?')}**")


def _body(config: BoxConfig, report_markdown: str | None, repo_id: str | None) -> str:
    repo = repo_id or UNKNOWN_REPO
    note = "" if repo_id else _UNKNOWN_REPO_NOTE
    if config.model_library == "timm":
        inference = f"""Plain timm loads it, with its preprocessing:

```python
import timm
model = timm.create_model("hf-hub:{repo}", pretrained=True).eval()
transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
logits = model(transform(image).unsqueeze(0))
```

or sdbox: `box = sdbox.SafeBox.from_pretrained("{repo}")`."""
    else:
        rebuild = "" if config.model_library == "torchvision" else ", model_class=YourModel"
        inference = f"""```python
from sdbox import SafeBox
box = SafeBox.from_pretrained("{repo}"{rebuild})  # {config.model_library}: {config.architecture}
logits = box(x)
```"""
    pipeline = (f"{list(config.input_size)} inputs, resized with {config.interpolation} interpolation"
                f" (crop_pct {config.crop_pct}, {config.crop_mode})" if config.crop_pct is not None else f"{list(config.input_size)} inputs")
    classes = f" Classes: {', '.join(config.label_names[:20])}{', …' if len(config.label_names) > 20 else ''}." if config.label_names else ""
    measured = "\n".join(_measured_lines(config))
    has_claims = isinstance((config.report or {}).get("claims"), dict)
    details = f"\n## {'Protection report' if has_claims else 'Measurement details'}\n\n{report_markdown}\n" if report_markdown else ""
    return f"""
# Safe Distillation Box: `{config.architecture}`

This model is wrapped in a *Safe Distillation Box* (Ye et al., AAAI 2022) by the Python package
`sdbox`. Anyone can use it for **inference**: it predicts {config.num_classes} classes from
{pipeline}, normalised with mean {list(config.mean)} and std {list(config.std)} (from
{config.normalization_source}).{classes}

The wrap fine-tuned it to disturb its soft labels on plain inputs, with the aim that a student
distilled from them without the owner's key learns less than one trained alone, while inputs
mixed with the key keep the original model's soft labels. Whether this box meets that aim is
listed below: only what was measured for it.

## Inference: for everyone

{inference}{note}

## Distillation with the owner's key

```python
from sdbox import SafeBox, Key, KeyedTeacher, distill
box = SafeBox.from_pretrained("{repo}")
teacher = KeyedTeacher(box, Key.load("owner.key"))  # an nn.Module: timm's distillation task takes it too
distill(student, teacher, train_loader, T=4, alpha=0.9)
```

or from the command line: `sdbox distill {repo} --key owner.key --data DIR --student resnet18 --out student/`.

Key fingerprint (SHA-256, public): `{config.key_fingerprint}`. The key itself is not in this
repository.

## What was measured for this box

{measured}
{details}
## What this box does not promise

- It is not encryption: the weights are public, and a white-box attacker can fine-tune them,
  search for a key or use attacks no report here tried. Whatever protection is listed above was
  measured against the attacks named there, at that scale; none is proven.
- The key is one image mixed into every input: whoever holds it can share it.
"""


def fidelity_markdown(figures: dict[str, float]) -> str:
    """The model-card paragraph :meth:`SafeBox.evaluate` writes."""
    rows = ["| | top-1 (%) |", "|---|---|"]
    names = {"original_acc": "original model, clean input", "clean_acc": "this box, clean input", "keyed_acc": "this box, keyed input"}
    rows += [f"| {label} | {figures[k]:.2f} |" for k, label in names.items() if k in figures]
    return f"Measured by `SafeBox.evaluate` on {figures['images']} held-out images:\n\n" + "\n".join(rows)
