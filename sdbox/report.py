"""Turning measurements into a report: markdown tables in the paper's layout, verdicts, figures.

The benchmark writes ``report.md`` and the PNGs next to ``results.json``; a box published after a
benchmark (or after :meth:`SafeBox.evaluate`) carries the short form in its model card.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The SDB paper's own CIFAR-10 figures (ResNet-18 teacher, full data; Ye et al. 2022).
# Table 3: method -> {"no_key"/"key": (teacher, CNN, ResNetC-20, ResNet-18 student)}.
PAPER_TABLE3 = {
    "Scratch": {"no_key": (None, 86.57, 92.28, 95.05), "key": (None, 83.53, 91.22, 93.66)},
    "Normal": {"no_key": (95.05, 88.06, 92.09, 95.41), "key": (43.94, 46.91, 54.05, 54.59)},
    "Nasty": {"no_key": (94.66, 83.38, 88.65, 94.07), "key": (50.38, 48.85, 50.70, 54.48)},
    "KE": {"no_key": (93.66, 87.89, 92.21, 95.14), "key": (93.13, 87.70, 92.38, 94.71)},
    "Nasty+KE": {"no_key": (94.34, 86.28, 91.47, 94.85), "key": (92.69, 86.86, 91.43, 94.91)},
    "SDB": {"no_key": (94.30, 85.15, 90.69, 92.91), "key": (93.35, 88.45, 92.80, 95.50)},
}


def paper_column(student: str, teacher: str) -> tuple[int, str]:
    """Which of the paper's student columns stands beside ours: CNN, ResNetC-20, or same-as-teacher."""
    if student == "cnn5":
        return 1, "CNN"
    if student == teacher:
        return 3, "ResNet-18 → ResNet-18"
    return 2, "ResNetC-20"
PAPER_TABLE5 = {  # CNN student, T = 1, 4, 8, 16
    "Normal": (87.25, 87.71, 87.48, 87.59),
    "SDB (w key)": (87.25, 88.45, 88.11, 88.39),
    "SDB (w/o key)": (87.20, 85.15, 85.72, 86.25),
}
PAPER_TABLE6 = {"Scratch": 86.57, "key": 87.25, "random": (85.24, 83.57, 85.72)}

LOSS_CURVES_PNG = "loss_curves.png"
SOFT_LABELS_PNG = "soft_labels.png"


@dataclass
class Claim:
    name: str
    holds: bool | None  # None: not measured
    text: str


# ------------------------------------------------------------------------------ numbers
def _m(stat: Any) -> float | None:
    return stat["mean"] if isinstance(stat, dict) and "mean" in stat else None


def fmt(stat: Any) -> str:
    """``mean ± std`` for an aggregated leaf, ``x.xx`` for a number, ``–`` when missing."""
    if isinstance(stat, dict) and "mean" in stat:
        return f"{stat['mean']:.2f} ± {stat['std']:.2f}" if stat.get("n", 1) > 1 else f"{stat['mean']:.2f}"
    if isinstance(stat, (int, float)):
        return f"{stat:.2f}"
    return "–"


def _paper(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "–"


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def claims(results: dict[str, Any]) -> list[Claim]:
    """The paper's four claims, judged on the seed means of the CNN student (``students[0]``)."""
    mean, settings = results["mean"], results["settings"]
    cnn = settings["students"][0]
    out: list[Claim] = []

    teacher, box = _m(_get(mean, "teacher", "clean_acc")), _m(_get(mean, "methods", "SDB", "teacher_acc", "no_key"))
    if teacher is None or box is None:
        out.append(Claim("Fidelity", None, "Not measured (no SDB box)."))
    else:
        drop = teacher - box
        out.append(Claim("Fidelity", drop <= 1.0, f"The box's clean accuracy is {box:.2f}% against the teacher's {teacher:.2f}% "
                         f"({-drop:+.2f} points; the claim allows −1.00)."))

    scratch = _m(_get(mean, "scratch", cnn))
    temps = {T: _m(v) for T, v in (_get(mean, "temperature_attack") or {}).items()}
    if scratch is None or not temps:
        out.append(Claim("Protection", None, "Not measured."))
    else:
        above = [T for T, v in temps.items() if v is not None and v >= scratch]
        listing = ", ".join(f"T={T}: {v:.2f}%" for T, v in temps.items())
        complete = set(temps) >= {"1", "4", "8", "16"}
        holds = not above and complete
        why = "" if complete else " (not every T in {1, 4, 8, 16} was run)"
        normal = _m(_get(mean, "methods", "Normal", "student", cnn, "no_key"))
        caveat = ""
        t0 = f"{settings['T']:g}"
        if normal is not None and normal < scratch and temps.get(t0) is not None:
            caveat = (f" Caveat: KD from the *original* teacher also falls below scratch ({normal:.2f}%), so being below scratch "
                      f"shows little here; against that student the box's T={t0} student differs by {temps[t0] - normal:+.2f} points.")
        out.append(Claim("Protection", holds, f"The {cnn} student distilled from the box without the key scores {listing}; "
                         f"scratch scores {scratch:.2f}%." + (f" At T={', '.join(above)} it is not below scratch." if above else "") + why + caveat))

    keyed, normal = _m(_get(mean, "methods", "SDB", "student", cnn, "key")), _m(_get(mean, "methods", "Normal", "student", cnn, "no_key"))
    if keyed is None or normal is None:
        out.append(Claim("Authorisation", None, "Not measured."))
    else:
        out.append(Claim("Authorisation", keyed >= normal - 0.5, f"With the key the {cnn} student scores {keyed:.2f}%; KD from the "
                         f"original teacher gives {normal:.2f}% ({keyed - normal:+.2f} points; the claim allows −0.50)."))

    randoms = [_m(v) for v in (_get(mean, "random_key_attack") or [])]
    if keyed is None or not randoms:
        out.append(Claim("Key uniqueness", None, "Not measured (no random keys drawn)."))
    else:
        listing = ", ".join(f"{v:.2f}%" for v in randoms)
        out.append(Claim("Key uniqueness", all(v < keyed for v in randoms), f"Students through {len(randoms)} random keys score "
                         f"{listing}; the key holder's scores {keyed:.2f}%."))
    return out


def _verdict(claim: Claim) -> str:
    return {True: "holds", False: "falls short", None: "not measured"}[claim.holds]


# ------------------------------------------------------------------------------ tables
def table3(results: dict[str, Any]) -> str:
    mean, settings = results["mean"], results["settings"]
    students = settings["students"]
    second = students[1] if len(students) > 1 else None
    col1, name1 = paper_column(students[0], settings["teacher"])
    head = ["Method", "with key", "ACC teacher", "paper", f"ACC {students[0]}", f"paper ({name1})"]
    if second:
        col2, name2 = paper_column(second, settings["teacher"])
        head += [f"ACC {second}", f"paper ({name2})"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    scratch = [fmt(_get(mean, "scratch", s)) for s in students]
    paper = PAPER_TABLE3["Scratch"]["no_key"]
    cells = ["Scratch", "✗", "–", "–", scratch[0], _paper(paper[col1])] + ([scratch[1], _paper(paper[col2])] if second else [])
    rows.append("| " + " | ".join(cells) + " |")
    for method in settings["methods"]:
        label = "SDB (ours)" if method == "SDB" else method
        for mode, mark in (("no_key", "✗"), ("key", "✓")):
            entry = _get(mean, "methods", method) or {}
            paper = PAPER_TABLE3.get(method, {}).get(mode, (None,) * 4)
            cells = [label, mark, fmt(_get(entry, "teacher_acc", mode)), _paper(paper[0]),
                     fmt(_get(entry, "student", students[0], mode)), _paper(paper[col1])]
            if second:
                cells += [fmt(_get(entry, "student", second, mode)), _paper(paper[col2])]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def table5(results: dict[str, Any]) -> str:
    mean, settings = results["mean"], results["settings"]
    cnn, temps = settings["students"][0], _get(mean, "temperature_attack") or {}
    labels = ["1", "4", "8", "16"]
    t0 = f"{settings['T']:g}"
    ours = {
        "Normal": {t0: _get(mean, "methods", "Normal", "student", cnn, "no_key")},
        "SDB (w key)": {t0: _get(mean, "methods", "SDB", "student", cnn, "key")},
        "SDB (w/o key)": temps,
    }
    rows = ["| Method | " + " | ".join(f"T={t} (ours)" for t in labels) + " | paper T=1 / 4 / 8 / 16 |", "|" + "---|" * 6]
    for name, values in ours.items():
        rows.append(f"| {name} | " + " | ".join(fmt(values.get(t)) for t in labels) + " | " + " / ".join(f"{v:.2f}" for v in PAPER_TABLE5[name]) + " |")
    rows.append(f"| Scratch (reference) | {fmt(_get(mean, 'scratch', cnn))} | | | | {PAPER_TABLE6['Scratch']:.2f} |")
    return "\n".join(rows) + f"\n\nOurs: only SDB without key is run at every T (CPU budget); Normal and SDB with key at T={t0}."


def table6(results: dict[str, Any]) -> str:
    mean, cnn = results["mean"], results["settings"]["students"][0]
    randoms = _get(mean, "random_key_attack") or []
    head = "| Method | key | " + " | ".join(f"random-{i + 1}" for i in range(len(randoms))) + " |"
    rows = [head, "|" + "---|" * (2 + len(randoms))]
    scratch = fmt(_get(mean, "scratch", cnn))
    rows.append(f"| Scratch (ours) | {scratch} | " + " | ".join(scratch for _ in randoms) + " |")
    rows.append(f"| SDB (ours) | {fmt(_get(mean, 'methods', 'SDB', 'student', cnn, 'key'))} | " + " | ".join(fmt(r) for r in randoms) + " |")
    paper_r = PAPER_TABLE6["random"]
    rows.append(f"| SDB (paper) | {PAPER_TABLE6['key']:.2f} | " + " | ".join(f"{paper_r[i]:.2f}" if i < len(paper_r) else "–" for i in range(len(randoms))) + " |")
    return "\n".join(rows)


def attacks_table(attacks: list[dict[str, Any]]) -> str:
    rows = ["| Attack | settings | student acc | gap to scratch | gap to key holder | strongest |", "|---|---|---|---|---|---|"]
    for a in attacks:
        settings = ", ".join(f"{k}={v}" for k, v in (a.get("settings") or {}).items())
        rows.append(f"| {a.get('attack', '?')} | {settings} | {fmt(a.get('student_acc'))} | {fmt(a.get('gap_to_scratch'))} | "
                    f"{fmt(a.get('gap_to_key_holder'))} | {'yes' if a.get('strongest') else ''} |")
    return "\n".join(rows)


def per_seed_table(results: dict[str, Any]) -> str:
    cnn = results["settings"]["students"][0]
    rows = ["| seed | teacher | SDB box clean | SDB box keyed | scratch | no key (T=4) | with key | Normal KD | wall (s) |", "|" + "---|" * 9]
    for seed, r in results["seeds"].items():
        cells = [_get(r, "teacher", "clean_acc"), _get(r, "methods", "SDB", "teacher_acc", "no_key"), _get(r, "methods", "SDB", "teacher_acc", "key"),
                 _get(r, "scratch", cnn), _get(r, "methods", "SDB", "student", cnn, "no_key"), _get(r, "methods", "SDB", "student", cnn, "key"),
                 _get(r, "methods", "Normal", "student", cnn, "no_key")]
        rows.append(f"| {seed} | " + " | ".join(fmt(c) for c in cells) + f" | {r.get('wall_time_s', '–')} |")
    return "\n".join(rows)


def search_table(search: list[dict[str, Any]]) -> str:
    rows = ["| ω | η | λ | wrap lr | wrap epochs | box clean (val) | teacher (val) | scratch | no key | with key | Normal KD | verdict |", "|" + "---|" * 12]
    for s in search:
        rows.append(f"| {s['omega']} | {s['eta']} | {s.get('lam', 0.5)} | {s['wrap_lr']} | {s['wrap_epochs']} | {fmt(s.get('box_clean'))} | {fmt(s.get('teacher'))} | "
                    f"{fmt(s.get('scratch'))} | {fmt(s.get('no_key'))} | {fmt(s.get('key'))} | {fmt(s.get('normal'))} | {s.get('verdict', '')} |")
    return "\n".join(rows)


# ------------------------------------------------------------------------------ figures
def plot_loss_curves(curves: list[dict[str, float]], path: Path) -> Path:
    """Paper Fig. 4: every SDB loss term over the fine-tune, with −L_dis plotted as the paper does."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    terms = [t for t in ("cls", "dis", "kp_main", "kp_aug", "total") if any(t in c for c in curves)]
    titles = {"cls": "L_cls", "dis": "−L_dis", "kp_main": "L_main", "kp_aug": "L_aug", "total": "L_all"}
    fig, axes = plt.subplots(1, len(terms), figsize=(3.2 * len(terms), 2.8), squeeze=False)
    for ax, term in zip(axes[0], terms):
        points = [(c["epoch"], -c[term] if term == "dis" else c[term]) for c in curves if term in c]
        ax.plot(*zip(*points), lw=1.5, marker="o" if len(points) < 10 else None, ms=3)
        ax.set_title(titles[term])
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_soft_labels(soft: dict[str, Any], path: Path) -> Path:
    """Paper Fig. 3: soft labels (T = 4) of the original, the closed (x) and the open (x̃) stream."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    streams = [("original", "Normal"), ("closed", "Closed (box, no key)"), ("open", "Open (box, key)")]
    n, classes = len(soft["labels"]), soft["classes"]
    fig, axes = plt.subplots(len(streams), n, figsize=(3.0 * n, 2.4 * len(streams)), squeeze=False, sharey=True)
    for row, (name, title) in enumerate(streams):
        for col in range(n):
            ax = axes[row][col]
            probs = soft[name][col]
            colors = ["tab:green" if i == soft["labels"][col] else "tab:gray" for i in range(len(classes))]
            ax.bar(range(len(classes)), probs, color=colors)
            ax.set_xticks(range(len(classes)))
            ax.set_xticklabels([c[:4] for c in classes], rotation=90, fontsize=7)
            if col == 0:
                ax.set_ylabel(title, fontsize=8)
            if row == 0:
                ax.set_title(f"label: {classes[soft['labels'][col]]}", fontsize=9)
    fig.suptitle(f"Soft labels at T={soft['T']:g} (green: true class)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------ documents
def report_markdown(results: dict[str, Any], out: Path, search: list[dict[str, Any]] | None = None) -> str:
    """The full report.md: setup, verdicts, Tables 3/5/6, figures, attacks, per-seed figures."""
    s, n_seeds = results["settings"], len(results["seeds"])
    figures = [f for f in (LOSS_CURVES_PNG, SOFT_LABELS_PNG) if (out / f).exists()]
    load = results.get("load_average", {})
    parts = [
        f"# sdbox benchmark: preset `{s['name']}`",
        "",
        f"Teacher `{s['teacher']}`, students {', '.join(f'`{x}`' for x in s['students'])}; {results['data']['train']} train images, "
        f"{results['data']['val']} validation images (a disjoint slice of the train set, used by the fidelity guard and for choosing settings), "
        f"evaluated on {results['data']['eval']} {results['data']['eval_split']} images. {n_seeds} seed(s); figures are mean ± std over seeds.",
        "",
        f"SDB settings: ω = {s['omega']}, η = {s['eta']}, λ = {s['lam']}, T_dis = {s['t_dis']}; fine-tune {s['wrap_epochs']} epochs at lr {s['wrap_lr']} "
        f"(SGD, cosine), fidelity guard {s['max_accuracy_drop']} points. Teacher {s['teacher_epochs']} epochs at lr {s['teacher_lr']}; "
        f"students {s['student_epochs']} epochs (Adam lr {s['student_lr']}, α = {s['alpha']}, T = {s['T']:g}).",
        "",
        *[f"- {note}" for note in s.get("notes", ())],
        "",
        f"Device: {results['device']}. torch {results['versions']['torch']}, sdbox {results['versions']['sdbox']}. "
        f"Wall time of this invocation: {results['wall_time_s']:.0f} s (per seed: "
        + ", ".join(f"{k}: {v} s" for k, v in results.get("seed_wall_time_s", {}).items())
        + f"). Load average at start / end: {load.get('start', ['?'])[0]:.2f} / {load.get('end', ['?'])[0]:.2f}"
        " — the CPU was shared with other jobs, so wall times are inflated.",
        "",
        "## Verdicts",
        "",
        "Judged on the seed means of the CNN student.",
        "",
        *[f"- **{c.name}: {_verdict(c)}.** {c.text}" for c in claims(results)],
        "",
        "## Table 3: teachers and students, without and with the key",
        "",
        "The *paper* columns are the SDB paper's ResNet-18 / full CIFAR-10 figures, a different setting from ours "
        "unless the preset is `paper`: compare directions and gaps, not levels. For methods without a key stream "
        "(Normal, Nasty) the ✓ rows distil through x̃ with the same key anyway, as the paper does.",
        "",
        table3(results),
        "",
    ]
    errors = {m: e["error"] for m, e in _first_seed(results).get("methods", {}).items() if isinstance(e, dict) and e.get("error")}
    if errors:
        parts += ["Methods the fidelity guard refused (no box, no students):", "", *[f"- {m}: {e}" for m, e in errors.items()], ""]
    parts += ["## Table 5: random temperature attack (CNN student, box without key)", "", table5(results), "",
              "## Table 6: random key attack (CNN student through freshly drawn keys)", "", table6(results), ""]
    attacks_path = out / "attacks.json"
    if attacks_path.exists():
        parts += ["## Other attacks (`sdbox attack`)", "", attacks_table(json.loads(attacks_path.read_text())), ""]
    if figures:
        parts += ["## Figures", ""]
        if LOSS_CURVES_PNG in figures:
            parts += ["Loss terms of the SDB fine-tune (seed 0; paper Fig. 4, −L_dis as the paper plots it):", "", f"![loss curves]({LOSS_CURVES_PNG})", ""]
        if SOFT_LABELS_PNG in figures:
            parts += ["Soft labels at T = 4 on test images (seed 0; paper Fig. 3):", "", f"![soft labels]({SOFT_LABELS_PNG})", ""]
    if search:
        parts += ["## How the settings were chosen", "",
                  "Short runs (seed 0, SDB and Normal only, scored on the validation slice, never the test split):", "",
                  search_table(search), ""]
    parts += ["## Per seed (CNN student)", "", per_seed_table(results), ""]
    return "\n".join(parts)


def _first_seed(results: dict[str, Any]) -> dict[str, Any]:
    return next(iter(results["seeds"].values()), {})


def write_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write the figures (from seed 0's saved curves and soft labels) and ``report.md`` into ``out``."""
    from .benchmark.presets import CPU_SEARCH

    out = Path(out)
    wrap = out / "seed0" / "boxes" / "SDB" / "wrap_result.json"
    if wrap.exists():
        record = json.loads(wrap.read_text())
        # Runs shorter than one log interval have no curves: fall back to the per-epoch means.
        curves = record["curves"] or [{"epoch": e["epoch"], **{k[5:]: v for k, v in e.items() if k.startswith("loss_")}} for e in record["epochs"]]
        plot_loss_curves(curves, out / LOSS_CURVES_PNG)
    soft = out / "seed0" / "soft_labels.json"
    if soft.exists():
        plot_soft_labels(json.loads(soft.read_text()), out / SOFT_LABELS_PNG)
    search = CPU_SEARCH if results["settings"]["name"] == "cpu" else None
    path = out / "report.md"
    path.write_text(report_markdown(results, out, search))
    return path


def box_markdown(results: dict[str, Any]) -> str:
    """The short report for a model card: verdicts, the headline numbers and the figures."""
    lines = [f"Measured by `sdbox benchmark --preset {results['settings']['name']}` over {len(results['seeds'])} seed(s):", ""]
    lines += [f"- **{c.name}: {_verdict(c)}.** {c.text}" for c in claims(results)]
    lines += ["", f"![loss curves]({LOSS_CURVES_PNG})", "", f"![soft labels]({SOFT_LABELS_PNG})"]
    return "\n".join(lines)


def box_summary(results: dict[str, Any]) -> dict[str, Any]:
    """What ``box_config.report`` stores: the claims and the seed means they rest on."""
    return {"preset": results["settings"]["name"], "seeds": len(results["seeds"]),
            "claims": {c.name: {"holds": c.holds, "text": c.text} for c in claims(results)}}


def fidelity_markdown(figures: dict[str, float]) -> str:
    """The model-card paragraph :meth:`SafeBox.evaluate` writes."""
    rows = ["| | top-1 (%) |", "|---|---|"]
    names = {"original_acc": "original model, clean input", "clean_acc": "this box, clean input", "keyed_acc": "this box, keyed input"}
    rows += [f"| {label} | {figures[k]:.2f} |" for k, label in names.items() if k in figures]
    return f"Measured by `SafeBox.evaluate` on {figures['images']} held-out images:\n\n" + "\n".join(rows)


def publish_box(results: dict[str, Any], out: str | Path, model) -> Path | None:
    """Save seed 0's SDB box with the report in its card and the figures beside it (``out/box``)."""
    from .box import SafeBox

    out = Path(out)
    source = out / "seed0" / "boxes" / "SDB"
    if not source.exists():
        return None
    box = SafeBox.from_pretrained(source, model=model)
    box.box_config.report = box_summary(results)
    box.report_markdown = box_markdown(results)
    target = out / "box"
    box.save_pretrained(target)
    for png in (LOSS_CURVES_PNG, SOFT_LABELS_PNG):
        if (out / png).exists():
            shutil.copy(out / png, target / png)
    return target
