"""Paired differences with 95% intervals, and the three-way verdict they allow.

Every student row of a seed starts from the same weights and sees the same batches, so rows are
compared seed by seed (a paired difference), not mean against mean. With several seeds the
interval is Student's t over the per-seed differences: it measures training noise. With one
seed it is taken over the test images (each image scores 1 or 0 for each model): it measures
only which test images happened to be drawn, so it is narrower than a seeds interval would be,
and the report says which kind it is.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Sequence

# Two-sided 95% quantiles of Student's t for 1–30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.959964


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (a Cornish–Fisher
    expansion past the table, accurate to 1e-3 there)."""
    if df < 1:
        raise ValueError(f"Expected `df` ≥ 1, but got {df}.")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Difference:
    """``a − b`` in points, with its 95% interval and what the interval is taken over."""

    mean: float
    low: float
    high: float
    n: int
    over: str  # "seeds" or "test images"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def paired_over_seeds(a: Sequence[float], b: Sequence[float]) -> Difference:
    """``mean(a − b)`` over seeds with a t interval; needs two or more seeds."""
    if len(a) != len(b):
        raise ValueError(f"Expected one value per seed on both sides, but got {len(a)} and {len(b)}.")
    if len(a) < 2:
        raise ValueError(f"Expected at least 2 seeds for an interval over seeds, but got {len(a)}.")
    d = [x - y for x, y in zip(a, b)]
    mean, half = statistics.fmean(d), t_quantile(len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
    return Difference(mean, mean - half, mean + half, len(d), "seeds")


def paired_over_images(correct_a: Sequence[int], correct_b: Sequence[int]) -> Difference:
    """Accuracy of a − accuracy of b (points) over the same test images, with a normal interval
    on the per-image differences (each −1, 0 or +1)."""
    if len(correct_a) != len(correct_b) or not correct_a:
        raise ValueError(f"Expected the same non-empty test images on both sides, but got {len(correct_a)} and {len(correct_b)}.")
    d = [100.0 * (int(x) - int(y)) for x, y in zip(correct_a, correct_b)]
    mean = statistics.fmean(d)
    half = _Z975 * statistics.pstdev(d) / math.sqrt(len(d)) if len(d) > 1 else math.inf
    return Difference(mean, mean - half, mean + half, len(d), "test images")


def verdict(diff: Difference, *, above: float | None = None, below: float | None = None) -> str:
    """"holds" when the whole interval meets the bound, "fails" when the whole interval misses
    it, else "not resolved at this size". Give ``above`` (the claim is a − b ≥ bound) or
    ``below`` (the claim is a − b < bound)."""
    if (above is None) == (below is None):
        raise ValueError("Expected exactly one of `above` and `below`.")
    if above is not None:
        return "holds" if diff.low >= above else "fails" if diff.high < above else "not resolved at this size"
    return "holds" if diff.high < below else "fails" if diff.low >= below else "not resolved at this size"
