"""Difficulty calibration of the synthetic benchmark: how far does a classical band-energy detector get?

For each sound type, the feature of a window is how far the loudest moment in that type's band rises above the
band's median level (dB, on the `origin` preset's grid: gain-invariant, so a sensor's gain cannot fool it). One
threshold per type is fitted on the train split (best per-type accuracy), then joint accuracy is measured on test.
If this reaches 0.8 joint accuracy, the benchmark is too easy to tell learned models apart.

    python benchmarks/energy_detector.py [--preset demo] [--n N] [--out data/bench-demo] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mgc_lightning.audio import read_window
from mgc_lightning.labels import SOUND_TYPES
from mgc_lightning.manifest import SplitConfig, load_manifest, split_rows
from mgc_lightning.spectrogram import SpectrogramTransform, get_preset
from mgc_lightning.synth.build import BENCHMARK_PRESETS, build_benchmark, sized

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


def window_features(rows, config) -> np.ndarray:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo", choices=sorted(BENCHMARK_PRESETS))
    parser.add_argument("--n", type=int, help="number of windows (default: the preset's)")
    parser.add_argument("--out", help="benchmark folder (default: data/bench-<preset>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    out = args.out or f"data/bench-{args.preset}"
    started = time.perf_counter()
    manifest = build_benchmark(out, sized(BENCHMARK_PRESETS[args.preset], args.n), seed=args.seed,
                               workers=args.workers)
    rows = load_manifest(manifest)
    print(f"benchmark: {len(rows)} windows in {out} ({time.perf_counter() - started:.1f} s incl. any build)")
    splits = split_rows(rows, SplitConfig(group_by="recording", seed=args.seed))
    features = window_features(rows, get_preset("origin"))
    labels = np.array([row.labels for row in rows])
    train, test = splits["train"], splits["test"]
    detector = fit_detector(features[train], labels[train])
    predicted = np.stack([features[test, j, k] > threshold for j, (k, threshold) in enumerate(detector)], axis=1)
    truth = labels[test].astype(bool)
    per_type = (predicted == truth).mean(axis=0)
    joint = (predicted == truth).all(axis=1).mean()
    for name, (k, threshold), accuracy in zip(SOUND_TYPES, detector, per_type):
        print(f"  {name:<15} {FEATURE_NAMES[k]:<20} > {threshold:6.2f} dB  test accuracy {accuracy:.3f}")
    print(f"energy detector: joint accuracy {joint:.3f} on {len(test)} test windows "
          f"(train {len(train)}); chance for balanced classes is 0.125")
    print("verdict:", "TOO EASY (>= 0.8)" if joint >= 0.8 else "hard enough (< 0.8): a learned model is needed")


if __name__ == "__main__":
    main()
