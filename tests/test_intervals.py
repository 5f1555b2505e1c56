"""Bootstrap intervals: coverage of the binomial truth, recordings resampled whole (cluster bootstrap), seeds averaged
per window, pairing."""

import numpy as np
import pytest

from mgc_lightning.evaluate.intervals import bootstrap_interval, drop_ratio_interval, paired_difference_interval


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


def _correct(rng, accuracy: float, windows: int) -> np.ndarray:
    return (rng.random(windows) < accuracy).astype(int)


def test_drop_ratio_is_the_ratio_of_mean_drops_with_an_interval_that_narrows_with_windows():
    def ratio(windows: int):
        rng = np.random.default_rng(1)
        base_in, base_out = _correct(rng, 0.9, windows), [_correct(rng, 0.3, windows), _correct(rng, 0.3, windows)]
        mgc_in, mgc_out = _correct(rng, 0.9, windows), [_correct(rng, 0.6, windows), _correct(rng, 0.6, windows)]
        expected = (mgc_in.mean() - np.mean([o.mean() for o in mgc_out])) / (
            base_in.mean() - np.mean([o.mean() for o in base_out]))
        return drop_ratio_interval(mgc_in, mgc_out, base_in, base_out), expected

    small, expected = ratio(288)
    assert small.estimate == pytest.approx(expected)
    assert small.low < small.estimate < small.high
    assert 0.35 < small.estimate < 0.65  # drops of 0.3 and 0.6 in truth
    large, _ = ratio(4608)
    assert large.low < 0.5 < large.high
    assert large.high - large.low < (small.high - small.low) / 2


def test_drop_ratio_refuses_other_windows_front_ends_or_a_baseline_that_does_not_drop():
    ones = np.ones(10)
    with pytest.raises(ValueError, match="same windows"):
        drop_ratio_interval(ones, [ones], ones, [np.ones(11)])
    with pytest.raises(ValueError, match="same OOD front ends"):
        drop_ratio_interval(ones, [ones], ones, [ones, ones])
    with pytest.raises(ValueError, match="drop is 0"):  # a baseline as good out of distribution as in it
        drop_ratio_interval(ones, [np.zeros(10)], ones, [ones])


def test_drop_ratio_counts_resamples_where_the_baseline_does_not_drop_as_unbounded():
    """A baseline that barely drops gives a ratio no one can bound: the interval must say so, not shrink."""
    rng = np.random.default_rng(2)
    inside, outside = rng.permutation(np.r_[np.ones(60), np.zeros(40)]), rng.permutation(np.r_[np.ones(58), np.zeros(42)])
    interval = drop_ratio_interval(inside, [outside], inside, [outside])
    assert interval.estimate == pytest.approx(1.0) and interval.high == np.inf


def _correlated(recordings: int, per_recording: int, accuracy: float, seed: int = 3):
    """Windows of one recording perfectly correlated: a recording is all right or all wrong."""
    right = np.random.default_rng(seed).random(recordings) < accuracy
    return np.repeat(right, per_recording).astype(int), np.repeat(np.arange(recordings), per_recording)


def test_recording_level_interval_is_wider_by_the_design_effect_when_windows_of_a_recording_agree():
    """With m perfectly correlated windows per recording the data hold as much as one window per recording: the
    recording-level interval is sqrt(m) times as wide as the window-level one (the design effect)."""
    correct, recordings = _correlated(recordings=40, per_recording=16, accuracy=0.7)
    by_window, by_recording = bootstrap_interval(correct), bootstrap_interval(correct, recordings)
    assert by_recording.estimate == by_window.estimate
    assert (by_recording.windows, by_recording.groups, by_window.groups) == (640, 40, 640)
    ratio = (by_recording.high - by_recording.low) / (by_window.high - by_window.low)
    assert ratio == pytest.approx(4.0, rel=0.2)
    p = correct.mean()
    assert by_recording.high - by_recording.low == pytest.approx(2 * 1.96 * np.sqrt(p * (1 - p) / 40), rel=0.15)


def test_independent_windows_give_about_the_same_interval_either_way():
    rng = np.random.default_rng(4)
    correct, recordings = (rng.random(640) < 0.7).astype(int), np.repeat(np.arange(40), 16)
    def width(groups) -> float:
        interval = bootstrap_interval(correct, groups)
        return interval.high - interval.low

    assert width(recordings) == pytest.approx(width(None), rel=0.2)


def test_paired_difference_and_drop_ratio_resample_recordings_too():
    a, recordings = _correlated(40, 16, 0.8, seed=5)
    b, _ = _correlated(40, 16, 0.6, seed=6)
    by_window, by_recording = paired_difference_interval(a, b), paired_difference_interval(a, b, recordings)
    assert by_recording.estimate == pytest.approx(a.mean() - b.mean())
    assert by_recording.high - by_recording.low > 2.5 * (by_window.high - by_window.low)
    outside_a, _ = _correlated(40, 16, 0.5, seed=7)
    outside_b, _ = _correlated(40, 16, 0.2, seed=8)
    ratio_window = drop_ratio_interval(a, [outside_a], b, [outside_b])
    ratio_recording = drop_ratio_interval(a, [outside_a], b, [outside_b], groups=recordings)
    assert ratio_recording.estimate == pytest.approx(ratio_window.estimate)
    assert ratio_recording.high - ratio_recording.low > ratio_window.high - ratio_window.low
    with pytest.raises(ValueError, match="group labels"):
        bootstrap_interval(a, recordings[:-1])


def test_ratio_interval_is_the_pooled_ratio_and_resamples_recordings_with_both_arrays_together():
    from mgc_lightning.evaluate.intervals import ratio_interval

    rng = np.random.default_rng(0)
    union = rng.integers(50, 500, size=120)
    intersection = (union * rng.uniform(0.4, 0.8, size=120)).astype(int)
    recordings = np.repeat(np.arange(12), 10)
    interval = ratio_interval(intersection, union, groups=recordings)
    assert interval.estimate == pytest.approx(intersection.sum() / union.sum())  # pooled, not a mean of ratios
    assert interval.low < interval.estimate < interval.high and interval.groups == 12
    # recordings that differ (each shifted as a whole) widen the interval over recordings, not over windows
    shifted = (intersection * (0.6 + 0.08 * recordings / 11 * 10)).clip(max=union)
    grouped, per_window = ratio_interval(shifted, union, groups=recordings), ratio_interval(shifted, union)
    assert grouped.high - grouped.low > 1.5 * (per_window.high - per_window.low)
    with pytest.raises(ValueError, match="one numerator per denominator"):
        ratio_interval(intersection[:5], union)
    with pytest.raises(ValueError, match="sum to 0"):
        ratio_interval([0, 0], [0, 0])
