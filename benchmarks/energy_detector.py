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

from mgc_lightning.audio.manifest import SplitConfig, load_manifest, split_rows
from mgc_lightning.core.labels import SOUND_TYPES
from mgc_lightning.evaluate.energy_detector import FEATURE_NAMES, detect, fit_detector, labels_of, window_features
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.synth.build import build_benchmark
from mgc_lightning.synth.config import BENCHMARK_PRESETS, sized


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
    labels = labels_of(rows)
    train, test = splits["train"], splits["test"]
    detector = fit_detector(features[train], labels[train])
    predicted = detect(features[test], detector)
    truth = labels[test]
    per_type = (predicted == truth).mean(axis=0)
    joint = (predicted == truth).all(axis=1).mean()
    for name, (k, threshold), accuracy in zip(SOUND_TYPES, detector, per_type):
        print(f"  {name:<15} {FEATURE_NAMES[k]:<20} > {threshold:6.2f} dB  test accuracy {accuracy:.3f}")
    majority = np.bincount([rows[i].joint_class for i in test]).max() / len(test)
    print(f"energy detector: joint accuracy {joint:.3f} on {len(test)} test windows "
          f"(train {len(train)}); always answering the majority class gets {majority:.3f}")
    print("verdict:", "TOO EASY (>= 0.8)" if joint >= 0.8 else "hard enough (< 0.8): a learned model is needed")


if __name__ == "__main__":
    main()
