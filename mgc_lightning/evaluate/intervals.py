"""95 % confidence intervals by bootstrap: how far a joint accuracy measured on a few hundred test windows can be
trusted, and whether two models tested on the same windows really differ (paired bootstrap).

Windows of one recording share its noise, vessels and call bouts, so they are not independent draws. Given each
window's group (its recording), the bootstrap resamples whole recordings and keeps their windows (a cluster
bootstrap): the interval then covers the sampling of recordings, not of deployments or sites (recordings of one
deployment share its hydrophone and place; with few deployments that spread is not covered). Without
groups every window is its own group (the window-level interval, narrower wherever windows of a recording agree).

Correctness comes as a (windows,) or (seeds, windows) 0/1 array. With several seeds each window's correctness is
averaged over the seeds first: the interval is then the one of the seeds' mean model and does **not** cover how far
one seed lands from another; the report shows that spread separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    windows: int
    groups: int  # resampled units: recordings for a cluster bootstrap, else the windows themselves

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _per_window(correct) -> np.ndarray:
    values = np.asarray(correct, dtype=np.float64)
    if values.ndim == 2:
        values = values.mean(axis=0)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a non-empty (windows,) or (seeds, windows) array, got shape {np.shape(correct)}")
    return values


def _group_codes(groups: Sequence | None, windows: int) -> np.ndarray:
    """Each window's group as 0..G-1; every window its own group when `groups` is None."""
    if groups is None:
        return np.arange(windows)
    if len(groups) != windows:
        raise ValueError(f"{len(groups)} group labels for {windows} windows")
    return np.unique(np.asarray(groups), return_inverse=True)[1]


def resampled_means(arrays: Sequence, groups: Sequence | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Means of every array (each (windows,) or (seeds, windows), all on the same windows), once on the data and
    for BOOTSTRAP_SAMPLES resamples of the groups: returns ((k,), (samples, k), number of groups). A resample's mean
    is the sum over the windows of the drawn groups over their count, so recordings of unequal length weigh by
    their windows, as in the estimate."""
    values = np.stack([_per_window(a) for a in arrays])
    codes = _group_codes(groups, values.shape[1])
    count = int(codes.max()) + 1
    sums = np.stack([np.bincount(codes, weights=row, minlength=count) for row in values])  # (k, groups)
    sizes = np.bincount(codes, minlength=count).astype(np.float64)
    picks = np.random.default_rng(seed).integers(0, count, size=(BOOTSTRAP_SAMPLES, count))
    drawn = np.stack([sums[:, picks[b]].sum(axis=1) for b in range(BOOTSTRAP_SAMPLES)])  # (samples, k)
    return values.mean(axis=1), drawn / sizes[picks].sum(axis=1, keepdims=True), count


def _percentiles(samples: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_interval(correct, groups: Sequence | None = None, seed: int = 0) -> Interval:
    """Mean correctness and its percentile-bootstrap interval, resampling groups (recordings) with replacement, or
    windows when `groups` is None."""
    estimate, samples, count = resampled_means([correct], groups, seed)
    return Interval(float(estimate[0]), *_percentiles(samples[:, 0]), _per_window(correct).size, count)


def paired_difference_interval(correct_a, correct_b, groups: Sequence | None = None, seed: int = 0) -> Interval:
    """Accuracy of A minus accuracy of B on the same windows, resampling groups (or windows) jointly for both: the
    pairing removes the variance that both models share."""
    a, b = _per_window(correct_a), _per_window(correct_b)
    if a.size != b.size:
        raise ValueError(f"paired comparison needs the same windows: {a.size} vs {b.size}")
    estimate, samples, count = resampled_means([a, b], groups, seed)
    return Interval(float(estimate[0] - estimate[1]), *_percentiles(samples[:, 0] - samples[:, 1]), a.size, count)


def drop_ratio_interval(inside_a, outside_a: list, inside_b, outside_b: list, groups: Sequence | None = None,
                        seed: int = 0) -> Interval:
    """Model A's mean out-of-distribution drop (accuracy in distribution minus the mean over the OOD front ends)
    divided by model B's, every array on the same windows and resampled jointly: the paper's claim that mask
    guidance at least halves the baseline's drop is an upper bound of 0.5 on this ratio."""
    arrays = [_per_window(a) for a in (inside_a, *outside_a, inside_b, *outside_b)]
    if not outside_a or len(outside_a) != len(outside_b) or len({a.size for a in arrays}) != 1:
        raise ValueError("a drop ratio needs both models on the same windows and the same OOD front ends")
    k = len(outside_a)

    def ratio(means: np.ndarray) -> np.ndarray:
        """A resample where B does not drop counts as an unbounded ratio, so it can only widen the interval."""
        drop_a = means[..., 0] - means[..., 1 : 1 + k].mean(axis=-1)
        drop_b = means[..., 1 + k] - means[..., 2 + k :].mean(axis=-1)
        return np.where(drop_b > 0, drop_a / np.where(drop_b > 0, drop_b, 1), np.inf)

    estimate, samples, count = resampled_means(arrays, groups, seed)
    if estimate[1 + k] - estimate[2 + k :].mean() <= 0:
        raise ValueError("model B's drop is 0 or below on these windows: no ratio to it")
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(ratio(samples), [tail, 1 - tail], method="inverted_cdf")  # no interpolation: inf stays inf
    return Interval(float(ratio(estimate)), float(low), float(high), arrays[0].size, count)


def ratio_interval(numerators, denominators, groups: Sequence | None = None, seed: int = 0) -> Interval:
    """Sum of the numerators over sum of the denominators (pooled IoU: intersections over unions) and its
    percentile-bootstrap interval, resampling groups (recordings) with both arrays together. A resample whose
    denominators sum to 0 (every drawn recording without a sound pixel) has no ratio and is left out."""
    top, bottom = _per_window(numerators), _per_window(denominators)
    if top.size != bottom.size:
        raise ValueError(f"a ratio needs one numerator per denominator: {top.size} vs {bottom.size}")
    if bottom.sum() <= 0:
        raise ValueError("the denominators sum to 0: no ratio")
    estimate, samples, count = resampled_means([top, bottom], groups, seed)
    ratios = samples[:, 0] / np.where(samples[:, 1] > 0, samples[:, 1], np.nan)
    return Interval(float(estimate[0] / estimate[1]), *_percentiles(ratios[np.isfinite(ratios)]), top.size, count)
