"""A classical band-energy detector: the floor a learned model must clear on the same windows.

For each sound type, the feature of a window is how far that type's band stands out (dB, on the `origin` preset's
grid, gain-invariant, so a sensor's gain cannot fool it); one (feature, threshold) per type is fitted on training
windows (best per-type accuracy) and applied as is elsewhere.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..audio.manifest import WindowRow
from ..audio.reading import read_window
from ..core.labels import SOUND_TYPES
from ..frontend.spectrogram import SpectrogramConfig, SpectrogramTransform

BANDS_HZ = {"whistle": (2e3, 20e3), "beluga_click": (40e3, 120e3), "porpoise_click": (120e3, 150e3)}
# A neighbouring band for each: broadband impulses (snapping shrimp) raise both, a call mostly its own band, as in
# the band-ratio tests of classical NBHF click detectors (e.g. PorCC, Cosentino et al. 2019).
NEIGHBOUR_HZ = {"whistle": (25e3, 35e3), "beluga_click": (2e3, 20e3), "porpoise_click": (50e3, 100e3)}


def _db(x: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(x.clamp_min(1e-30))


def band_features(power: torch.Tensor, rows: torch.Tensor, neighbour: torch.Tensor) -> list[float]:
    """Candidate band-energy features (dB) of one window's power image for one band."""
    band = _db(power[rows])  # (band rows, columns)
    track = _db(power[rows].mean(dim=0))  # band energy over time
    whole = _db(power.mean(dim=0))
    beside = _db(power[neighbour].mean(dim=0))
    return [
        float(track.max() - track.median()),  # impulsive: loudest moment above the band's usual level
        float(track.mean() - whole.mean()),  # band level relative to the broadband level
        float((band.max(dim=0).values - band.median(dim=0).values).mean()),  # tonal: peak row above median row
        float(torch.quantile(band.flatten(), 0.99) - band.median()),  # brightest pixels above the band's median
        float((track - whole).max()),  # band-specific burst: the band stands out from the broadband level
        float(((track - track.median()) - (beside - beside.median())).max()),  # burst in the band, not beside it
        float((band - band.median(dim=1, keepdim=True).values).max(dim=0).values.mean()),  # non-stationary tone
    ]


FEATURE_NAMES = ("peak-to-median", "band-vs-broadband", "tonality", "p99-to-median", "band-specific-burst",
                 "band-ratio-burst", "whitened-tonality")


def window_features(rows: Sequence[WindowRow], config: SpectrogramConfig) -> np.ndarray:
    """(windows, sound types, candidate features)."""
    transform = SpectrogramTransform(config)
    rows_in = {name: torch.from_numpy(config.rows_in_band(*band)) for name, band in BANDS_HZ.items()}
    beside = {name: torch.from_numpy(config.rows_in_band(*band)) for name, band in NEIGHBOUR_HZ.items()}
    features = np.zeros((len(rows), len(SOUND_TYPES), len(FEATURE_NAMES)))
    for i, row in enumerate(rows):
        wave = read_window(row.path, row.start_s, row.duration_s, target_rate=config.sample_rate)
        with torch.no_grad():
            power = transform.band_power(torch.from_numpy(wave)[None])[0]
        for j, name in enumerate(SOUND_TYPES):
            features[i, j] = band_features(power, rows_in[name], beside[name])
    return features


def fit_detector(features: np.ndarray, labels: np.ndarray) -> list[tuple[int, float]]:
    """Per sound type, the (feature, threshold) with the best training accuracy."""
    chosen = []
    for j in range(features.shape[1]):
        best = (-1.0, 0, 0.0)
        for k in range(features.shape[2]):
            for threshold in np.unique(features[:, j, k]):
                accuracy = ((features[:, j, k] > threshold) == labels[:, j]).mean()
                if accuracy > best[0]:
                    best = (accuracy, k, threshold)
        chosen.append(best[1:])
    return chosen


def detect(features: np.ndarray, detector: list[tuple[int, float]]) -> np.ndarray:
    """(windows, sound types) presence decisions of a fitted detector."""
    return np.stack([features[:, j, k] > threshold for j, (k, threshold) in enumerate(detector)], axis=1)


def labels_of(rows: Sequence[WindowRow]) -> np.ndarray:
    return np.array([row.labels for row in rows], dtype=bool)
