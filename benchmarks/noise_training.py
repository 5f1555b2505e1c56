"""Trials of issue #25 item 2 (training that survives real noise): classifier checkpoints measured on benchmark
validation windows (joint accuracy with its 95 % interval over recordings) and on the real-noise test
(docs/real_noise.md: whistle false alarms per background kind, porpoise recall at precision 0.9). Writes nothing
beside the checkpoints: the set, the spectrogram cache and the evaluation runs go under --out (point
MLFLOW_TRACKING_URI at a store there too). BENCHMARKS.md, "Training in real noise", gives the commands that made
the checkpoints.

    MLFLOW_TRACKING_URI=sqlite:////tmp/noise/mlflow.db python benchmarks/noise_training.py --out /tmp/noise/measures \\
        --model baseline-v1=CKPT --model baseline-v2=CKPT2 \\
        --val v1=/tmp/noise/v1/val_split.csv --val v2=/tmp/noise/demo-real/val_split.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mgc_lightning.core.labels import SOUND_TYPES, label_vector
from mgc_lightning.evaluate.intervals import bootstrap_interval, paired_difference_interval
from mgc_lightning.evaluate.real_noise import (
    MEASURES_VERSION, chance_row, measure, predictions_of, read_windows, table, table_row,
)
from mgc_lightning.synth.real_noise import BACKGROUND_KINDS, RealNoiseConfig, build_real_noise


def _pairs(values: list[str]) -> dict[str, str]:
    pairs = dict(value.split("=", 1) for value in values)
    if len(pairs) != len(values):
        raise SystemExit("each --model / --val is NAME=PATH, every NAME once")
    return pairs


def _tested(checkpoint: str, manifest: str, preset: str, cache: Path) -> str:
    from mgc_lightning.evaluate.ood import evaluate_checkpoint

    return evaluate_checkpoint(checkpoint, preset, manifest=manifest, cache_root=cache).run_id


def _correct(run_id: str, preset: str, folder: Path) -> dict[str, list]:
    """Per window (sorted by recording and start) whether the model was right, and its recording."""
    with tempfile.TemporaryDirectory(dir=folder) as downloaded:
        with open(predictions_of(run_id, preset, downloaded), newline="") as handle:
            rows = sorted(csv.DictReader(handle), key=lambda r: (r["recording"], float(r["start_s"])))
    return {"correct": [int(r["correct"]) for r in rows], "recordings": [r["recording"] for r in rows]}


def real_noise(checkpoint: str, manifest: Path, preset: str, cache: Path, folder: Path) -> dict:
    """The real-noise test's measures (evaluate/real_noise.py) and the per-window correctness they rest on, with
    the groups its interval resamples (the background's real source files)."""
    run_id = _tested(checkpoint, str(manifest), preset, cache)
    with tempfile.TemporaryDirectory(dir=folder) as downloaded:
        windows = read_windows(predictions_of(run_id, preset, downloaded), manifest)
    measures = measure(windows)
    return {"row": None, "goals": measures.goals, "measures": asdict(measures), "run_id": run_id,
            "version": MEASURES_VERSION, "correct": (windows.decided == windows.truth).all(axis=1).astype(int).tolist(),
            "recordings": list(windows.groups), "_measures": measures}


def validation_accuracy(checkpoint: str, manifest: str, preset: str, cache: Path, folder: Path) -> dict:
    """Joint accuracy on every window of `manifest`, with its bootstrap interval over recordings."""
    run_id = _tested(checkpoint, manifest, preset, cache)
    with tempfile.TemporaryDirectory(dir=folder) as downloaded:
        with open(predictions_of(run_id, preset, downloaded), newline="") as handle:
            rows = list(csv.DictReader(handle))
    interval = bootstrap_interval([int(row["correct"]) for row in rows], groups=[row["recording"] for row in rows])
    truth = np.array([label_vector(int(row["joint"])) for row in rows], dtype=bool)
    decided = np.array([label_vector(int(row["predicted"])) for row in rows], dtype=bool)
    per_type = {name: {"recall": round(float(decided[truth[:, t], t].mean()), 3),
                       "false_alarms": round(float(decided[~truth[:, t], t].mean()), 3)}
                for t, name in enumerate(SOUND_TYPES)}
    return {"joint_accuracy": str(interval), "estimate": interval.estimate, "windows": len(rows),
            "per_type": per_type, "run_id": run_id, **_correct(run_id, preset, folder)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="NAME=CHECKPOINT (repeat)")
    parser.add_argument("--val", action="append", default=[], help="NAME=MANIFEST of validation windows (repeat)")
    parser.add_argument("--pair", action="append", default=[],
                        help="NAME=REFERENCE: also print NAME minus REFERENCE (default: every model minus the first)")
    parser.add_argument("--clips", default="../shared/data/real")
    parser.add_argument("--out", default="/tmp/noise/measures")
    parser.add_argument("--preset", default="origin")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models, vals = _pairs(args.model), _pairs(args.val)
    real_manifest = build_real_noise(args.clips, out / "set", RealNoiseConfig(seed=0))
    saved = out / "noise_training.json"
    results = json.loads(saved.read_text()) if saved.is_file() else {}  # a measure made before is kept
    for name, checkpoint in models.items():
        result = results.get(name, {})
        if result.get("checkpoint") != checkpoint:
            result = {"checkpoint": checkpoint, "val": {}}
        for val_name, manifest in vals.items():
            if val_name not in result["val"]:
                started = time.perf_counter()
                result["val"][val_name] = validation_accuracy(checkpoint, manifest, args.preset, out / "cache", out)
                print(f"{name} on {val_name}: {result['val'][val_name]['joint_accuracy']} "
                      f"({time.perf_counter() - started:.0f} s)")
        if result.get("real_noise", {}).get("version") != MEASURES_VERSION:
            result["real_noise"] = real_noise(checkpoint, real_manifest, args.preset, out / "cache", out)
            result["real_noise"]["row"] = table_row(name, result["real_noise"].pop("_measures"))
        results[name] = result
        saved.write_text(json.dumps(results, indent=2, default=str))
    print(table([result["real_noise"]["row"] for result in results.values()] + [chance_row(real_manifest)]))
    header = ["model", *(f"val joint acc ({v})" for v in vals), "real-noise joint acc", "whistle FA: all",
              *BACKGROUND_KINDS, "porpoise recall at P 0.9"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name, result in results.items():
        row = result["real_noise"]["row"]
        print("| " + " | ".join([name, *(result["val"].get(v, {}).get("joint_accuracy", "—") for v in vals),
                                 row[1].split(" (")[0], *row[2:7], row[9]]) + " |")
    first = next(iter(results))
    pairs = [(name, first) for name in list(results)[1:]] + list(_pairs(args.pair).items())
    print("\nPaired differences on the same windows (95 % over recordings; on the real-noise test over its "
          "background source files):")
    for name, reference in pairs:
        result, other = results[name], results[reference]
        sets = {**{v: (result["val"][v], other["val"][v]) for v in vals if v in result["val"] and v in other["val"]},
                "real noise": (result["real_noise"], other["real_noise"])}
        print(f"{name} minus {reference}: " + ", ".join(
            f"{where} {paired_difference_interval(a['correct'], b['correct'], groups=a['recordings'])}"
            for where, (a, b) in sets.items()))
    print("\nPer type on the validation windows (recall / false-alarm rate):")
    for name, result in results.items():
        for val_name, measured in result["val"].items():
            print(f"{name} on {val_name}: " + ", ".join(f"{t} {m['recall']:.3f} / {m['false_alarms']:.3f}"
                                                       for t, m in measured["per_type"].items()))


if __name__ == "__main__":
    main()
