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
