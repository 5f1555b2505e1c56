"""Bootstrap intervals over test windows: coverage of the binomial truth, seeds averaged per window, pairing."""

import numpy as np
import pytest

from mgc_lightning.intervals import bootstrap_interval, paired_difference_interval


def test_interval_matches_the_binomial_standard_error():
    correct = np.array([1] * 230 + [0] * 58)  # 0.799 on 288 windows
    interval = bootstrap_interval(correct)
    standard_error = np.sqrt(0.799 * 0.201 / 288)
    assert interval.estimate == pytest.approx(230 / 288)
    assert interval.low < interval.estimate < interval.high
    assert interval.high - interval.low == pytest.approx(2 * 1.96 * standard_error, rel=0.1)
    assert interval.windows == 288


def test_interval_narrows_with_more_windows_and_is_reproducible():
    rng = np.random.default_rng(0)
    small, large = rng.random(72) < 0.8, rng.random(1152) < 0.8
    width = lambda c: bootstrap_interval(c).high - bootstrap_interval(c).low  # noqa: E731
    assert width(large) < width(small) / 3  # 16x the windows: about a quarter of the width
    assert bootstrap_interval(small) == bootstrap_interval(small)


def test_seeds_are_averaged_per_window():
    seeds = np.array([[1, 1, 0, 0], [1, 0, 0, 1]])
    assert bootstrap_interval(seeds).estimate == pytest.approx(0.5)
    assert bootstrap_interval(seeds).windows == 4


def test_pairing_removes_the_shared_variance():
    rng = np.random.default_rng(1)
    hard = rng.random(300) < 0.3  # windows both models get wrong
    a = (~hard) & (rng.random(300) < 0.98)
    b = (~hard) & (rng.random(300) < 0.90)
    paired = paired_difference_interval(a, b)
    assert paired.estimate == pytest.approx(a.mean() - b.mean())
    unpaired_width = np.hypot(*(bootstrap_interval(x).high - bootstrap_interval(x).low for x in (a, b)))
    assert paired.high - paired.low < unpaired_width
    same = paired_difference_interval(a, a)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same windows"):
        paired_difference_interval(a, b[:-1])
