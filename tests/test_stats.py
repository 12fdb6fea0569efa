"""Paired differences and verdicts: the arithmetic every benchmark claim rests on."""

from __future__ import annotations

import math

import pytest

from sdbox.benchmark.stats import Difference, paired_over_images, paired_over_seeds, t_quantile, verdict


def test_t_quantile_matches_the_table_and_tends_to_the_normal():
    assert t_quantile(2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(40) == pytest.approx(2.021, abs=2e-3)  # past the table: the expansion
    assert t_quantile(10_000) == pytest.approx(1.960, abs=1e-3)
    assert t_quantile(31) < t_quantile(30)
    with pytest.raises(ValueError, match="`df` ≥ 1"):
        t_quantile(0)


def test_paired_over_seeds_uses_the_per_seed_differences():
    # Differences 6, 8, 7: mean 7, sd 1, half-width t(2)·1/√3.
    d = paired_over_seeds([66.0, 68.0, 65.0], [60.0, 60.0, 58.0])
    half = 4.303 / math.sqrt(3)
    assert (d.mean, d.low, d.high, d.n, d.over) == pytest.approx((7.0, 7.0 - half, 7.0 + half, 3, "seeds"))
    # A shift common to both rows in one seed cancels: pairing removes it.
    assert paired_over_seeds([66.0, 78.0, 65.0], [60.0, 70.0, 58.0]).mean == pytest.approx(7.0)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        paired_over_seeds([1.0], [0.0])
    with pytest.raises(ValueError, match="one value per seed"):
        paired_over_seeds([1.0, 2.0], [0.0])


def test_paired_over_images_counts_disagreements_only():
    a = "1111100000" * 10
    b = "1110000000" * 10  # a is right on 20 images where b is wrong, never the reverse
    d = paired_over_images(a, b)
    assert d.mean == pytest.approx(20.0) and d.over == "test images" and d.n == 100
    sd = math.sqrt(0.2 * 0.8) * 100
    assert d.high - d.mean == pytest.approx(1.959964 * sd / 10, rel=1e-4)
    assert paired_over_images(a, a).high == 0.0  # identical models: no difference, no width
    with pytest.raises(ValueError, match="same non-empty test images"):
        paired_over_images("10", "1")


@pytest.mark.parametrize("low,high,above,below,expected", [
    (0.5, 3.0, 0.0, None, "holds"), (-0.5, 3.0, 0.0, None, "not resolved at this size"), (-3.0, -0.5, 0.0, None, "fails"),
    (-3.0, -0.5, None, 0.0, "holds"), (-3.0, 0.5, None, 0.0, "not resolved at this size"), (0.5, 3.0, None, 0.0, "fails"),
    (-0.9, 2.0, -1.0, None, "holds"),
])
def test_verdict_is_three_way(low, high, above, below, expected):
    d = Difference((low + high) / 2, low, high, 3, "seeds")
    assert verdict(d, above=above, below=below) == expected


def test_verdict_needs_exactly_one_bound():
    d = Difference(0.0, -1.0, 1.0, 3, "seeds")
    with pytest.raises(ValueError, match="exactly one"):
        verdict(d)
    with pytest.raises(ValueError, match="exactly one"):
        verdict(d, above=0.0, below=0.0)
