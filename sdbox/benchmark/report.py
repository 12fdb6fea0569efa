"""Turning a benchmark's results into what people read: report.md, the demo's table, the figures.

The report opens with the data regime (who saw how many images), then the claims as paired
differences with 95% intervals and a three-way verdict, then the paper's tables beside ours.
Figures need matplotlib; without it they are skipped with a one-line note, never a traceback.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from .compare import student_rows
from .stats import t_quantile

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
PAPER_TABLE5 = {  # CNN student, T = 1, 4, 8, 16
    "Normal": (87.25, 87.71, 87.48, 87.59),
    "SDB (w key)": (87.25, 88.45, 88.11, 88.39),
    "SDB (w/o key)": (87.20, 85.15, 85.72, 86.25),
}
PAPER_TABLE6 = {"Scratch": 86.57, "key": 87.25, "random": (85.24, 83.57, 85.72)}

STUDENTS_PNG = "students.png"
LOSS_CURVES_PNG = "loss_curves.png"
SOFT_LABELS_PNG = "soft_labels.png"
NO_MATPLOTLIB = "figures skipped: matplotlib is not installed (pip install 'sdbox[plot]' to draw them)"

ROW_LABELS = {
    "scratch": "from scratch (labels only)",
    "Normal": "KD from the original teacher",
    "Nasty": "KD from Nasty Teacher (no key stream)",
    "SDB": "KD from the box, no key",
    "SDB+key": "KD from the box, with the key",
}


def row_label(row: str) -> str:
    if row.startswith("SDB@T"):
        return f"KD from the box, no key, T={row[5:]}"
    if row.startswith("random_key_restat_"):
        return f"KD through random key {int(row.rsplit('_', 1)[1]) + 1}, statistics re-estimated by the attacker"
    if row.startswith("random_key_"):
        return f"KD through random key {int(row.rsplit('_', 1)[1]) + 1}"
    return ROW_LABELS.get(row, row)


# ------------------------------------------------------------------------------ numbers
def fmt(stat: Any) -> str:
    """``mean ± std`` for an aggregated leaf, ``x.xx`` for a number, ``–`` when missing."""
    if isinstance(stat, dict) and "mean" in stat:
        return f"{stat['mean']:.2f} ± {stat['std']:.2f}" if stat.get("n", 1) > 1 else f"{stat['mean']:.2f}"
    if isinstance(stat, (int, float)):
        return f"{stat:.2f}"
    return "–"


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def student_summary(results: dict[str, Any]) -> list[tuple[str, float, float, int]]:
    """(row, mean accuracy, 95% half-width, seeds) for every student row of the CNN student.

    The half-width is Student's t over seeds; with one seed, the binomial interval over the
    evaluation images (what a single model's accuracy on that many images can tell)."""
    s = results["settings"]
    per_seed = [student_rows(r, s["students"][0], float(s["T"])) for r in results["seeds"].values()]
    names = [n for n in per_seed[0] if all(n in r for r in per_seed)]
    images = results["data"]["evaluation"]
    out = []
    for name in names:
        values = [r[name] for r in per_seed]
        mean = sum(values) / len(values)
        if len(values) > 1:
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            half = t_quantile(len(values) - 1) * sd / math.sqrt(len(values))
        else:
            half = 1.96 * math.sqrt(max(mean * (100 - mean), 0.0) / images)
        out.append((name, mean, half, len(values)))
    return out


# ------------------------------------------------------------------------------ tables
def claims_table(results: dict[str, Any]) -> str:
    rows = ["| claim | must reach | difference (points) [95% interval] | interval over | verdict |", "|---|---|---|---|---|"]
    for c in results["comparisons"]:
        d = c["diff"]
        need = f"{c['a']} − {c['b']} {'≥' if c['above'] else '<'} {c['bound']:+g}"
        rows.append(f"| {c['claim']} | {need} | {d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] | "
                    f"{d['n']} {d['over']} | **{c['verdict']}** |")
    return "\n".join(rows)


def students_table(results: dict[str, Any]) -> str:
    rows = ["| row | student | top-1 (%) mean [95% interval] | seeds |", "|---|---|---|---|"]
    for name, mean, half, n in student_summary(results):
        rows.append(f"| `{name}` | {row_label(name)} | {mean:.2f} [{mean - half:.2f}, {mean + half:.2f}] | {n} |")
    return "\n".join(rows)


def owner_table(results: dict[str, Any]) -> str:
    rows = ["| model | clean input | keyed input (x̃) |", "|---|---|---|", f"| teacher (original) | {results['teacher']['acc']:.2f} | – |"]
    for method, entry in results["boxes"].items():
        if method == "Normal":
            continue
        if entry.get("error"):
            rows.append(f"| {method} box | refused by the fidelity guard | – |")
        else:
            rows.append(f"| {method} box | {entry['clean_acc']:.2f} | {entry['keyed_acc']:.2f} |")
    return "\n".join(rows)


def table3(results: dict[str, Any]) -> str:
    mean, s = results["mean"], results["settings"]
    cnn = s["students"][0]
    head = "| Method | with key | ACC teacher | paper | ACC " + cnn + " | paper (CNN) |"
    rows = [head, "|---|---|---|---|---|---|", f"| Scratch | ✗ | – | – | {fmt(_get(mean, 'scratch', cnn))} | {PAPER_TABLE3['Scratch']['no_key'][1]:.2f} |"]
    for method in s["methods"]:
        box = results["boxes"].get(method, {})
        for mode, mark, acc in (("no_key", "✗", box.get("clean_acc")), ("key", "✓", box.get("keyed_acc"))):
            student = _get(mean, "methods", method, cnn, mode)
            if mode == "key" and student is None:
                continue
            paper = PAPER_TABLE3.get(method, {}).get(mode, (None, None))
            rows.append(f"| {'SDB (ours)' if method == 'SDB' else method} | {mark} | {fmt(acc)} | {fmt(paper[0])} | {fmt(student)} | {fmt(paper[1])} |")
    return "\n".join(rows)


def table5(results: dict[str, Any]) -> str:
    temps = _get(results["mean"], "temperature_attack") or {}
    rows = ["| Method | " + " | ".join(f"T={t}" for t in temps) + " | paper T=1 / 4 / 8 / 16 |", "|" + "---|" * (len(temps) + 2)]
    rows.append("| SDB (w/o key) | " + " | ".join(fmt(v) for v in temps.values()) + " | "
                + " / ".join(f"{v:.2f}" for v in PAPER_TABLE5["SDB (w/o key)"]) + " |")
    return "\n".join(rows)


def table6(results: dict[str, Any]) -> str:
    mean, cnn = results["mean"], results["settings"]["students"][0]
    randoms = _get(mean, "random_key_attack") or []
    rows = ["| Method | key | " + " | ".join(f"random-{i + 1}" for i in range(len(randoms))) + " |", "|" + "---|" * (2 + len(randoms))]
    rows.append(f"| SDB (ours) | {fmt(_get(mean, 'methods', 'SDB', cnn, 'key'))} | " + " | ".join(fmt(r) for r in randoms) + " |")
    restat = _get(mean, "random_key_restat_attack") or []
    if restat:
        rows.append("| SDB (ours), statistics re-estimated by the attacker | – | " + " | ".join(fmt(r) for r in restat) + " |")
    paper = PAPER_TABLE6["random"]
    rows.append(f"| SDB (paper) | {PAPER_TABLE6['key']:.2f} | " + " | ".join(f"{paper[i]:.2f}" if i < len(paper) else "–" for i in range(len(randoms))) + " |")
    return "\n".join(rows)


def per_seed_table(results: dict[str, Any]) -> str:
    s = results["settings"]
    per_seed = {seed: student_rows(r, s["students"][0], float(s["T"])) for seed, r in results["seeds"].items()}
    names = list(next(iter(per_seed.values())))
    rows = ["| seed | " + " | ".join(f"`{n}`" for n in names) + " | wall (s) |", "|" + "---|" * (len(names) + 2)]
    for seed, r in per_seed.items():
        rows.append(f"| {seed} | " + " | ".join(fmt(r.get(n)) for n in names) + f" | {results['seeds'][seed].get('wall_time_s', '–')} |")
    return "\n".join(rows)


# ------------------------------------------------------------------------------ figures
def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_students(results: dict[str, Any], path: Path) -> Path | None:
    """Each student row's accuracy as a bar with its 95% interval; scratch and Normal KD as lines."""
    plt = _pyplot()
    if plt is None:
        return None
    summary = student_summary(results)
    colors = {"scratch": "tab:gray", "Normal": "tab:blue", "SDB+key": "tab:green"}
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(summary) + 1.4))
    ys = range(len(summary))
    ax.barh(list(ys), [m for _, m, _, _ in summary], xerr=[h for _, _, h, _ in summary], capsize=3,
            color=[colors.get(n, "tab:red") for n, *_ in summary])
    ax.set_yticks(list(ys))
    ax.set_yticklabels([row_label(n) for n, *_ in summary], fontsize=8)
    ax.invert_yaxis()
    for name, style in (("scratch", ":"), ("Normal", "--")):
        value = next((m for n, m, _, _ in summary if n == name), None)
        if value is not None:
            ax.axvline(value, color=colors[name], ls=style, lw=1)
    lo = min(m - h for _, m, h, _ in summary)
    ax.set_xlim(max(0.0, lo - 5), min(100.0, max(m + h for _, m, h, _ in summary) + 3))
    n = summary[0][3]
    ax.set_xlabel(f"student top-1 (%) on {results['data']['evaluation']:,} images; bars: 95% interval over "
                  + (f"{n} seeds" if n > 1 else "test images (1 seed)"), fontsize=8)
    ax.set_title(f"sdbox {results['preset']}: red rows should sit left of the dotted scratch line, green on the dashed one", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_loss_curves(curves: list[dict[str, float]], path: Path) -> Path | None:
    """Paper Fig. 4: every SDB loss term over the fine-tune, with −L_dis plotted as the paper does."""
    plt = _pyplot()
    if plt is None:
        return None
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


def plot_soft_labels(soft: dict[str, Any], path: Path) -> Path | None:
    """Paper Fig. 3: soft labels (T = 4) of the original, the closed (x) and the open (x̃) stream."""
    plt = _pyplot()
    if plt is None:
        return None
    streams = [("original", "Normal"), ("closed", "Closed (box, no key)"), ("open", "Open (box, key)")]
    n, classes = len(soft["labels"]), soft["classes"]
    fig, axes = plt.subplots(len(streams), n, figsize=(3.0 * n, 2.4 * len(streams)), squeeze=False, sharey=True)
    for row, (name, title) in enumerate(streams):
        for col in range(n):
            ax = axes[row][col]
            colors = ["tab:green" if i == soft["labels"][col] else "tab:gray" for i in range(len(classes))]
            ax.bar(range(len(classes)), soft[name][col], color=colors)
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


def write_figures(results: dict[str, Any], out: Path) -> list[str]:
    """Draw every figure the results allow; returns the file names drawn ([] without matplotlib)."""
    drawn = [plot_students(results, out / STUDENTS_PNG)]
    wrap = out / "boxes" / "SDB" / "wrap_result.json"
    if wrap.exists():
        record = json.loads(wrap.read_text())
        # Runs shorter than one log interval have no curves: fall back to the per-epoch means.
        curves = record["curves"] or [{"epoch": e["epoch"], **{k[5:]: v for k, v in e.items() if k.startswith("loss_")}} for e in record["epochs"]]
        drawn.append(plot_loss_curves(curves, out / LOSS_CURVES_PNG))
    soft = out / "soft_labels.json"
    if soft.exists():
        drawn.append(plot_soft_labels(json.loads(soft.read_text()), out / SOFT_LABELS_PNG))
    return [p.name for p in drawn if p is not None]


def teacher_origin(teacher: dict[str, Any]) -> str:
    """Where the teacher came from: trained in this run, the machine's cache, or the user's file."""
    took = f"{teacher['train_s'] / 60:.1f} min of training" if teacher.get("train_s") else None
    if teacher["source"] == "trained":
        return f"trained in this run, {took}"
    if teacher["source"] == "cache":
        return f"from this machine's cache ({took})" if took else "from this machine's cache"
    return f"given by the user: {teacher['path']}"


def compute_line(results: dict[str, Any]) -> str:
    """The time every result took to make, whichever invocation made it (a resumed run is short)."""
    c = results.get("compute_s") or {}
    parts = [("teacher", c.get("teacher")), ("wraps", c.get("wraps")), ("students", c.get("students"))]
    total = sum(v for _, v in parts if v)
    return f"compute behind these results {total / 60:.1f} min (" + ", ".join(f"{k} {v / 60:.1f}" for k, v in parts if v is not None) + ")"


# ------------------------------------------------------------------------------ documents
def what_the_box_did(results: dict[str, Any]) -> str:
    """One sentence: the box's effect on students without and with the key, with its verdicts."""
    by_claim = {c["claim"]: c for c in results["comparisons"]}
    pays = by_claim.get("KD pays (regime check)")
    prot = by_claim.get(f"Protection (T={results['settings']['T']:g})")
    auth = by_claim.get("Authorisation")
    if prot is None:
        return "No SDB box was measured (the fidelity guard refused it, or the preset has none)."
    d = lambda c: f"{c['diff']['mean']:+.1f} points [{c['diff']['low']:+.1f}, {c['diff']['high']:+.1f}]"  # noqa: E731
    text = f"Without the key, the box's student scored {d(prot)} against scratch (protection: {prot['verdict']})"
    if auth is not None:
        text += f"; with the key, {d(auth)} against KD from the original (authorisation: {auth['verdict']})"
    if pays is not None:
        text += f"; KD from the original itself beat scratch by {d(pays)}"
    return text + "."


def report_markdown(results: dict[str, Any], figures: list[str], attacks: list[dict[str, Any]] | None = None) -> str:
    """The full report.md: regime, claims, students, owner's models, the paper's tables, figures."""
    from ..attacks.report import attacks_markdown

    s, data, load = results["settings"], results["data"], results.get("load_average", {})
    teacher = results["teacher"]
    trained = f", {teacher_origin(teacher)}"
    parts = [
        f"# sdbox benchmark: preset `{s['name']}`",
        "",
        f"**{results['regime']}**",
        "",
        f"Teacher `{s['teacher']}` ({s['teacher_epochs']} epochs{trained}); the owner wraps it on {data['wrap']:,} of its images "
        f"({s['wrap_epochs']} epochs, lr {s['wrap_lr']}, {s.get('disturbance_form', 'push')} disturbance, ω {s['omega']}, η {s['eta']}, "
        f"λ {s['lam']}, key tile {s.get('key_tile')}, keyed normalisation {'on' if s.get('keyed_norm') else 'off'}, guard {s['max_accuracy_drop']} points "
        f"on {data['val']:,} validation images). Students `{s['students'][0]}`: {s['student_epochs']} epochs on the distiller's "
        f"{data['distill']:,} images (Adam lr {s['student_lr']}, α {s['alpha']}, T {s['T']:g}, crop and flip). Evaluated on "
        f"{data['evaluation']:,} {data['eval_split']} images; {len(results['seeds'])} seed(s).",
        "",
        *[f"- {note}" for note in s.get("notes", ())],
        *([f"- **{budget_note(results)}**"] if budget_note(results) else []),
        "",
        f"Machine: {results['device']}; torch {results['versions']['torch']}, sdbox {results['versions']['sdbox']}. "
        f"Wall time of this invocation: {results['wall_time_s']:.0f} s; {compute_line(results)}. Load average (1 min) at start / end: "
        f"{load.get('start', [math.nan])[0]:.2f} / {load.get('end', [math.nan])[0]:.2f}.",
        "",
        "## Claims",
        "",
        what_the_box_did(results),
        "",
        "Each row is a paired difference a − b in points with its 95% interval. *holds*: the whole interval meets the "
        "bound; *fails*: the whole interval misses it; *not resolved at this size*: the interval straddles it. Over seeds: "
        "Student's t on per-seed differences (every row of a seed shares the student's initial weights and batches). "
        "Over test images: a normal interval on per-image differences of one pair of models (test-set noise only).",
        "",
        claims_table(results),
        "",
        "## Students",
        "",
        students_table(results),
        "",
        "## The owner's models",
        "",
        owner_table(results),
        "",
    ]
    if STUDENTS_PNG in figures:
        parts += [f"![students]({STUDENTS_PNG})", ""]
    parts += [
        "## Beside the paper (Tables 3, 5, 6)",
        "",
        "The paper's figures are its ResNet-18 / full-data setting, where students hold the whole training set: compare "
        "directions and gaps, not levels.",
        "",
        table3(results), "", table5(results), "", table6(results), "",
    ]
    errors = {m: e["error"] for m, e in results["boxes"].items() if e.get("error")}
    if errors:
        parts += ["Methods the fidelity guard refused (no box, no students):", "", *[f"- {m}: {e}" for m, e in errors.items()], ""]
    if attacks:
        parts += ["## Other attacks (`sdbox attack`)", "", attacks_markdown(attacks), ""]
    if LOSS_CURVES_PNG in figures or SOFT_LABELS_PNG in figures:
        parts += ["## Figures", ""]
        if LOSS_CURVES_PNG in figures:
            parts += ["Loss terms of the SDB fine-tune (paper Fig. 4, −L_dis as the paper plots it):", "", f"![loss curves]({LOSS_CURVES_PNG})", ""]
        if SOFT_LABELS_PNG in figures:
            parts += [f"Soft labels at T = {s['T']:g} on test images (paper Fig. 3):", "", f"![soft labels]({SOFT_LABELS_PNG})", ""]
    elif not figures:
        parts += [f"({NO_MATPLOTLIB}.)", ""]
    parts += ["## Per seed", "", per_seed_table(results), ""]
    return "\n".join(parts)


def write_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write the figures and ``report.md`` into ``out``; returns the report's path."""
    out = Path(out)
    figures = write_figures(results, out)
    attacks_path = out / "attacks.json"
    attacks = json.loads(attacks_path.read_text()) if attacks_path.exists() else None
    path = out / "report.md"
    path.write_text(report_markdown(results, figures, attacks))
    return path


def demo_summary(results: dict[str, Any]) -> str:
    """What ``sdbox demo`` prints: the models, the students with intervals, the paired differences."""
    lines = [results["regime"], ""]
    lines += [f"{'teacher (original), clean input':<44} {results['teacher']['acc']:6.2f}%"]
    sdb = results["boxes"].get("SDB", {})
    if sdb.get("error"):
        lines += ["", f"The fidelity guard refused the SDB box: {sdb['error']}"]
        return "\n".join(lines)
    lines += [f"{'SDB box: clean input / keyed input':<44} {sdb['clean_acc']:6.2f}% / {sdb['keyed_acc']:.2f}%", ""]
    lines.append("students (top-1 ± 95% interval):")
    for name, mean, half, _ in student_summary(results):
        lines.append(f"  {row_label(name):<42} {mean:6.2f}% ± {half:.2f}")
    lines += ["", "paired differences (points, 95% interval):"]
    for c in results["comparisons"]:
        lines.append(f"  {c['a'] + ' − ' + c['b']:<30} {c['diff']['mean']:+6.2f} [{c['diff']['low']:+.2f}, {c['diff']['high']:+.2f}]  "
                     f"{c['claim']}: {c['verdict']}")
    lines += ["", what_the_box_did(results)]
    budget = budget_note(results)
    if budget:
        lines += ["", budget]
    return "\n".join(lines)


def budget_note(results: dict[str, Any]) -> str | None:
    """A sentence when the run's wrap was shorter than any wrap that protected in our measurements."""
    from ..box import PROTECTING_EPOCHS

    epochs = results["settings"].get("wrap_epochs", PROTECTING_EPOCHS)
    if epochs >= PROTECTING_EPOCHS:
        return None
    return (f"Budget: this run wraps its box for {epochs} epoch(s), below the {PROTECTING_EPOCHS} over the whole training set "
            "that protected in our measurements, so its box is not expected to protect (it is here to show the steps and "
            "what each claim measures). `sdbox benchmark --preset cpu` wraps with the budget that does.")


# ------------------------------------------------------------------------------ the published box
def box_markdown(results: dict[str, Any]) -> str:
    """The short report for a model card: the regime, the claims and the figures beside it."""
    lines = [f"Measured by `sdbox benchmark --preset {results['settings']['name']}` over {len(results['seeds'])} seed(s). "
             f"{results['regime']}", "", what_the_box_did(results), "", claims_table(results)]
    return "\n".join(lines)


def box_summary(results: dict[str, Any]) -> dict[str, Any]:
    """What ``box_config.report`` stores: the preset and every claim's difference and verdict."""
    return {"preset": results["settings"]["name"], "seeds": len(results["seeds"]), "regime": results["regime"],
            "claims": {c["claim"]: {"verdict": c["verdict"], "diff": c["diff"]} for c in results["comparisons"]}}


def publish_box(results: dict[str, Any], out: str | Path, model) -> Path | None:
    """Save the SDB box with the report in its card and the figures beside it (``out/box``)."""
    from ..box import SafeBox

    out = Path(out)
    source = out / "boxes" / "SDB"
    if not source.exists():
        return None
    box = SafeBox.from_pretrained(source, model=model)
    box.box_config.report = box_summary(results)
    box.report_markdown = box_markdown(results)
    target = out / "box"
    box.save_pretrained(target)
    for png in (STUDENTS_PNG, LOSS_CURVES_PNG, SOFT_LABELS_PNG):
        if (out / png).exists():
            shutil.copy(out / png, target / png)
    return target


def summary_markdown(results: dict[str, Any], compact: bool = False) -> str:
    """The block docs/benchmark.md shows for one preset (setting, machine, owner's models, students,
    claims); ``compact``: the README's (setting, machine, the one-sentence story, claims)."""
    s, load = results["settings"], results.get("load_average", {})
    teacher = results["teacher"]
    trained = teacher_origin(teacher)
    lines = [
        f"**`{s['name']}` preset** — {results['regime']} Teacher `{s['teacher']}` at {teacher['acc']:.2f}% ({trained}); "
        f"students `{s['students'][0]}`, {s['student_epochs']} epochs; {len(results['seeds'])} seed(s); "
        f"{results['data']['evaluation']:,} {results['data']['eval_split']} images. Wall time of the last invocation "
        f"**{results['wall_time_s'] / 60:.1f} min**; {compute_line(results)}; on {results['device']}, load average "
        f"{load.get('start', [math.nan])[0]:.2f} at start / {load.get('end', [math.nan])[0]:.2f} at end.",
        "",
    ]
    if compact:
        return "\n".join(lines + [what_the_box_did(results), "", claims_table(results)])
    return "\n".join(lines + [owner_table(results), "", students_table(results), "", claims_table(results)])
