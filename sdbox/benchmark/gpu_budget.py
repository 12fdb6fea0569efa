"""How long a preset should take on one H100/H200: arithmetic, not a measurement.

A GPU is lent to this project for about fifteen minutes at a time, so the ``gpu`` preset is sized
before it ever runs: FLOPs per image × images ÷ a conservative share of the card's bf16 peak for
the compute-bound stages (the teacher and the wrap), and a per-step host floor for the students,
whose CNN5 steps are too small to be bound by arithmetic. Every constant below is an assumption
named as one; the first GPU run replaces them with measured images/s (the check's summary.json).
"""

from __future__ import annotations

from dataclasses import dataclass

from .presets import GpuPreset, Preset

# Forward FLOPs of one 32×32 image (multiply-adds × 2), as torch.utils.flop_counter counts the
# convolutions and matrix products of sdbox.benchmark.models (tests/test_gpu_preset.py re-counts).
FORWARD_FLOPS = {
    "resnet18_cifar": 1_110_845_440,
    "resnet20": 81_626_368,
    "resnet8": 25_003_264,
    "cnn5": 21_170_688,
    "cnn5_wide": 80_087_552,
}
BACKWARD_FACTOR = 3.0  # forward + backward ≈ 3 forwards (the flop counter gives 2.92–3.00 for these models)
WRAP_PASSES = 3.3  # forward-backward passes per image of an SDB step: clean and keyed streams, plus ≈ 4 frozen forwards
PEAK_BF16_FLOPS = 756e12  # dense bf16 datasheet peak of the slowest H100 (PCIe); SXM H100 and H200: 989e12
UTILISATION = 0.25  # the share of that peak the compute-bound stages are assumed to reach (not measured)
STUDENT_STEP_HOST_S = 5e-3  # host time per distillation step: ≈ 300 kernel launches at ≈ 15 µs (not measured)
FIXED_S = 60.0  # imports, CUDA start-up, unpacking and decoding 60,000 JPEGs, cuDNN autotuning, checkpoints, report (not measured)
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000


@dataclass(frozen=True)
class Stage:
    """One stage of a run: its arithmetic and the seconds this estimate gives it."""

    key: str  # fixed, teacher, wrap, owner_eval, students: what a run's summary measures it against
    label: str
    flops: float
    seconds: float


@dataclass(frozen=True)
class Estimate:
    """The stages of one run of a preset and their sum."""

    preset: str
    seeds: int
    utilisation: float
    stages: tuple[Stage, ...]

    @property
    def total_s(self) -> float:
        return sum(s.seconds for s in self.stages)

    def describe(self) -> str:
        """The arithmetic line by line, as ``--help`` and docs/gpu.md print it."""
        rows = [f"  {s.label:<40} {s.flops / 1e15:8.1f} PFLOP {s.seconds:7.0f} s" for s in self.stages]
        return "\n".join([
            f"Estimate for `{self.preset}` with {self.seeds} seeds (arithmetic, never run): "
            f"≈ {self.total_s / 60:.1f} min on one H100/H200",
            f"  at {self.utilisation:.1%} of a {PEAK_BF16_FLOPS / 1e12:.0f} TFLOP/s bf16 peak for the teacher and the wrap, "
            f"{STUDENT_STEP_HOST_S * 1e3:.0f} ms of host time a student step, {FIXED_S:.0f} s fixed:",
            *rows,
        ])


def estimate(p: Preset, seeds: int, *, utilisation: float = UTILISATION) -> Estimate:
    """The seconds one run of ``p`` with ``seeds`` seeds should take, stage by stage."""
    if seeds < 1:
        raise ValueError(f"Expected `seeds` ≥ 1, but got {seeds}.")
    for arch in (p.teacher, *p.students):
        if arch not in FORWARD_FLOPS:
            raise ValueError(f"No FLOP count for {arch!r}: add it to FORWARD_FLOPS (torch.utils.flop_counter, one 32×32 image).")
    rate = PEAK_BF16_FLOPS * utilisation
    teacher_fwd = FORWARD_FLOPS[p.teacher]
    n_teacher = p.n_teacher if p.n_teacher is not None else TRAIN_IMAGES - p.n_val
    n_wrap = p.n_wrap if p.n_wrap is not None else n_teacher
    n_distill = p.n_distill if p.n_distill is not None else n_teacher
    n_eval = p.n_test if p.n_test is not None else TEST_IMAGES
    boxes = len([m for m in p.methods if m != "Normal"])

    teacher = p.teacher_epochs * n_teacher * BACKWARD_FACTOR * teacher_fwd
    # Each wrap epoch also scores the validation slice three times (clean, keyed, the original's reference).
    wraps = boxes * p.wrap_epochs * (n_wrap * WRAP_PASSES * BACKWARD_FACTOR + 3 * p.n_val) * teacher_fwd
    # The teacher, then the original and each box without and with the key, on the evaluation images.
    owner_eval = (1 + 2 * (1 + boxes)) * n_eval * teacher_fwd

    rows = rows_per_seed(p)
    steps = p.student_epochs * (n_distill // student_batch_size(p))
    student_flops = sum(
        p.student_epochs * n_distill * (BACKWARD_FACTOR * FORWARD_FLOPS[arch] + (teacher_fwd if taught else 0.0))
        + n_eval * FORWARD_FLOPS[arch]
        for arch, taught in rows
    ) * seeds
    student_s = max(student_flops / rate, len(rows) * seeds * steps * STUDENT_STEP_HOST_S)
    stages = (
        Stage("fixed", "fixed costs", 0.0, FIXED_S),
        Stage("teacher", f"teacher ({p.teacher_epochs} epochs)", teacher, teacher / rate),
        Stage("wrap", f"wrap ({boxes} box{'es' if boxes != 1 else ''}, {p.wrap_epochs} epochs)", wraps, wraps / rate),
        Stage("owner_eval", "teacher and box on the evaluation images", owner_eval, owner_eval / rate),
        Stage("students", f"students ({len(rows)} a seed, {steps} steps each)", student_flops, student_s),
    )
    return Estimate(p.name, seeds, utilisation, stages)


def student_batch_size(p: Preset) -> int:
    """The students' batch: a GPU preset's own, else the preset's one batch size. Defined here,
    not in :mod:`.accel` (which needs torch), so that ``sdbox benchmark --help`` can print this
    module's estimate without importing torch."""
    return p.student_batch_size if isinstance(p, GpuPreset) else p.batch_size


def rows_per_seed(p: Preset) -> list[tuple[str, bool]]:
    """(architecture, distils from a teacher) for every student one seed trains, as
    :meth:`sdbox.benchmark.runner._Run.seed` trains them when every box was kept by its guard."""
    rows: list[tuple[str, bool]] = []
    for arch in p.students:
        rows.append((arch, False))  # scratch
        for m in p.student_methods(arch):
            rows.append((arch, True))
            if p.has_key_row(m):
                rows.append((arch, True))
    if "SDB" in p.methods:
        extra_temperatures = [T for T in p.temperatures if T != p.T]
        restat = 2 if p.keyed_norm else 1  # keyed normalisation: each fresh key also read with re-estimated statistics
        rows += [(p.students[0], True)] * (len(extra_temperatures) + restat * p.random_keys)
    return rows
