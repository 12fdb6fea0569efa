"""The model card (README.md) published with a box: what it is, how to use it, what it does not promise."""

from __future__ import annotations

from .config import BoxConfig


def model_card(config: BoxConfig, report_markdown: str | None = None) -> str:
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
    return f"""---
library_name: sdbox
tags:
- sdbox
- safe-distillation-box
- image-classification
---

# Safe Distillation Box: `{config.architecture}`

This model is wrapped in a *Safe Distillation Box* (Ye et al., AAAI 2022) by
[sdbox](https://pypi.org/project/sdbox/). Anyone can use it for **inference**: it predicts
{config.num_classes} classes from inputs of shape {list(config.input_size)} normalised with
mean {list(config.mean)} and std {list(config.std)}. Its soft labels on plain inputs are
deliberately disturbed so that **knowledge distillation without the owner's key** yields a weak
student. Key holders distil from it through `sdbox.KeyedTeacher`.

```python
from sdbox import SafeBox, Key, KeyedTeacher
box = SafeBox.from_pretrained("<this repo>")
logits = box(x)                                   # inference: for everyone
teacher = KeyedTeacher(box, Key.load("owner.key")) # distillation: key holders only
soft = teacher.soft_labels(x, T=4)
```

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
