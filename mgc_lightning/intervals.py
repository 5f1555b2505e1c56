"""95 % confidence intervals by bootstrap over windows: how far a joint accuracy measured on a few hundred test
windows can be trusted, and whether two models tested on the same windows really differ (paired bootstrap).

Correctness comes as a (windows,) or (seeds, windows) 0/1 array; with several seeds each window's correctness is
averaged over seeds first, so the interval covers window sampling and the seeds' spread around the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    windows: int

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _per_window(correct) -> np.ndarray:
    values = np.asarray(correct, dtype=np.float64)
    if values.ndim == 2:
        values = values.mean(axis=0)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a non-empty (windows,) or (seeds, windows) array, got shape {np.shape(correct)}")
    return values


def _percentiles(samples: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_interval(correct, seed: int = 0) -> Interval:
    """Mean correctness and its percentile-bootstrap interval, resampling windows with replacement."""
    values = _per_window(correct)
    picks = np.random.default_rng(seed).integers(0, values.size, size=(BOOTSTRAP_SAMPLES, values.size))
    return Interval(float(values.mean()), *_percentiles(values[picks].mean(axis=1)), values.size)


def paired_difference_interval(correct_a, correct_b, seed: int = 0) -> Interval:
    """Accuracy of A minus accuracy of B on the same windows, resampling windows jointly (the pairing removes the
    between-window variance that both models share)."""
    a, b = _per_window(correct_a), _per_window(correct_b)
    if a.size != b.size:
        raise ValueError(f"paired comparison needs the same windows: {a.size} vs {b.size}")
    difference = a - b
    picks = np.random.default_rng(seed).integers(0, a.size, size=(BOOTSTRAP_SAMPLES, a.size))
    return Interval(float(difference.mean()), *_percentiles(difference[picks].mean(axis=1)), a.size)


def drop_ratio_interval(inside_a, outside_a: list, inside_b, outside_b: list, seed: int = 0) -> Interval:
    """Model A's mean out-of-distribution drop (accuracy in distribution minus the mean over the OOD front ends)
    divided by model B's, every array on the same windows and resampled jointly: the paper's claim that mask
    guidance at least halves the baseline's drop is an upper bound of 0.5 on this ratio."""
    arrays = [_per_window(a) for a in (inside_a, *outside_a, inside_b, *outside_b)]
    if not outside_a or len(outside_a) != len(outside_b) or len({a.size for a in arrays}) != 1:
        raise ValueError("a drop ratio needs both models on the same windows and the same OOD front ends")
    stacked = np.stack(arrays)  # (1 + k + 1 + k, windows)
    k = len(outside_a)

    def ratio(means: np.ndarray) -> np.ndarray:
        """A resample where B does not drop counts as an unbounded ratio, so it can only widen the interval."""
        drop_a = means[0] - means[1 : 1 + k].mean(axis=0)
        drop_b = means[1 + k] - means[2 + k :].mean(axis=0)
        return np.where(drop_b > 0, drop_a / np.where(drop_b > 0, drop_b, 1), np.inf)

    means = stacked.mean(axis=1)
    if means[1 + k] - means[2 + k :].mean() <= 0:
        raise ValueError("model B's drop is 0 or below on these windows: no ratio to it")
    picks = np.random.default_rng(seed).integers(0, stacked.shape[1], size=(BOOTSTRAP_SAMPLES, stacked.shape[1]))
    samples = ratio(stacked[:, picks].mean(axis=2))
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(samples, [tail, 1 - tail], method="inverted_cdf")  # no interpolation: inf stays inf
    return Interval(float(ratio(means[:, None])[0]), float(low), float(high), stacked.shape[1])
