"""The model card (README.md) published with a box, built with huggingface_hub's ``ModelCard``.

Its metadata makes the box a first-class Hub model: ``library_name: timm`` where plain timm can
load the bundle (so the Hub shows its "use this model" snippet), ``pipeline_tag``, ``license``,
``base_model`` and ``datasets`` when known, and the measured fidelity as ``model-index`` metrics.
The body says how everyone runs it and how a key holder distils it, and what it does not promise.
"""

from __future__ import annotations

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .config import BoxConfig

TAGS = ["sdbox", "safe-distillation-box", "image-classification"]
# What each measured figure is, as a model-index metric name.
_METRICS = {
    "clean_acc_before": "top-1, original model, clean input (%)",
    "clean_acc_after": "top-1, this box, clean input (%)",
    "keyed_acc_after": "top-1, this box, keyed input (%)",
}
_EVALUATION_METRICS = {
    "original_acc": "top-1, original model, clean input (%) [evaluate]",
    "clean_acc": "top-1, this box, clean input (%) [evaluate]",
    "keyed_acc": "top-1, this box, keyed input (%) [evaluate]",
}


def card_data(config: BoxConfig) -> ModelCardData:
    """The card's YAML metadata."""
    dataset = (config.datasets or ["custom"])[0]
    results = [
        EvalResult(task_type="image-classification", dataset_type=dataset, dataset_name=f"{dataset} (held-out images)",
                   metric_type="accuracy", metric_value=round(float(config.fidelity[k]), 2), metric_name=name)
        for k, name in _METRICS.items() if k in config.fidelity
    ]
    evaluation = (config.report or {}).get("evaluation") or {}
    results += [
        EvalResult(task_type="image-classification", dataset_type=dataset, dataset_name=f"{dataset} (held-out images)",
                   metric_type="accuracy", metric_value=round(float(evaluation[k]), 2), metric_name=name)
        for k, name in _EVALUATION_METRICS.items() if isinstance(evaluation.get(k), (int, float))
    ]
    return ModelCardData(
        library_name="timm" if config.model_library == "timm" else None,
        license=config.license or "unknown",
        tags=[*TAGS, config.model_library] if config.model_library != "custom" else list(TAGS),
        pipeline_tag="image-classification",
        base_model=config.base_model,
        datasets=config.datasets,
        model_name=f"sdbox-{config.architecture}",
        eval_results=results or None,
    )


def model_card(config: BoxConfig, report_markdown: str | None = None) -> str:
    """README.md of a bundle: metadata from :func:`card_data`, then how to use the box."""
    return str(ModelCard(f"---\n{card_data(config).to_yaml()}\n---\n{_body(config, report_markdown)}"))


def _body(config: BoxConfig, report_markdown: str | None) -> str:
    fid = config.fidelity
    figures = ""
    if fid:
        figures = (
            "\n## Measured fidelity\n\n| | top-1 (%) |\n|---|---|\n"
            f"| original model, clean input | {fid.get('clean_acc_before', float('nan')):.2f} |\n"
            f"| this box, clean input | {fid.get('clean_acc_after', float('nan')):.2f} |\n"
            f"| this box, keyed input | {fid.get('keyed_acc_after', float('nan')):.2f} |\n"
            "\nMeasured by `SafeBox.wrap` on its held-out images.\n"
        )
    report = f"\n## Protection report\n\n{report_markdown}\n" if report_markdown else ""
    if config.model_library == "timm":
        inference = """Plain timm loads it, with its preprocessing:

```python
import timm
model = timm.create_model("hf-hub:<this repo>", pretrained=True).eval()
transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
logits = model(transform(image).unsqueeze(0))
```

or sdbox: `box = sdbox.SafeBox.from_pretrained("<this repo>")`."""
    else:
        rebuild = "" if config.model_library == "torchvision" else ", model_class=YourModel"
        inference = f"""```python
from sdbox import SafeBox
box = SafeBox.from_pretrained("<this repo>"{rebuild})  # {config.model_library}: {config.architecture}
logits = box(x)
```"""
    pipeline = (f"{list(config.input_size)} inputs, resized with {config.interpolation} interpolation"
                f" (crop_pct {config.crop_pct}, {config.crop_mode})" if config.crop_pct is not None else f"{list(config.input_size)} inputs")
    classes = f" Classes: {', '.join(config.label_names[:20])}{', …' if len(config.label_names) > 20 else ''}." if config.label_names else ""
    return f"""
# Safe Distillation Box: `{config.architecture}`

This model is wrapped in a *Safe Distillation Box* (Ye et al., AAAI 2022) by
[sdbox](https://pypi.org/project/sdbox/). Anyone can use it for **inference**: it predicts
{config.num_classes} classes from {pipeline}, normalised with mean {list(config.mean)} and std
{list(config.std)} (from {config.normalization_source}).{classes} Its soft labels on plain inputs are
deliberately disturbed so that **knowledge distillation without the owner's key** yields a weak
student.

## Inference: for everyone

{inference}

## Distillation: key holders only

```python
from sdbox import SafeBox, Key, KeyedTeacher, distill
box = SafeBox.from_pretrained("<this repo>")
teacher = KeyedTeacher(box, Key.load("owner.key"))  # an nn.Module: timm's distillation task takes it too
distill(student, teacher, train_loader, T=4, alpha=0.9)
```

or from the command line: `sdbox distill <this repo> --key owner.key --data DIR --student resnet18 --out student/`.

Key fingerprint (SHA-256, public): `{config.key_fingerprint}`. The key itself is not in this
repository.
{figures}{report}
## What this box does not promise

- It is not encryption: the weights are public, and a white-box attacker can fine-tune them,
  search for a key or use attacks the benchmark did not try. Its protection is *measured* against
  the attacks in the report, not proven.
- Predictions on plain inputs stay usable (see fidelity above); the soft labels do not carry the
  original model's dark knowledge, by design.
- The key is one image added to every input: whoever holds it can share it.
"""


def fidelity_markdown(figures: dict[str, float]) -> str:
    """The model-card paragraph :meth:`SafeBox.evaluate` writes."""
    rows = ["| | top-1 (%) |", "|---|---|"]
    names = {"original_acc": "original model, clean input", "clean_acc": "this box, clean input", "keyed_acc": "this box, keyed input"}
    rows += [f"| {label} | {figures[k]:.2f} |" for k, label in names.items() if k in figures]
    return f"Measured by `SafeBox.evaluate` on {figures['images']} held-out images:\n\n" + "\n".join(rows)
