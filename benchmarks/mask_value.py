"""What a finished `make demo`'s masks are worth, measured on the main benchmark's **validation** windows only (the
windows every recipe trial is judged on; the confirmation benchmark is never used here).

    python benchmarks/mask_value.py segmenter CHECKPOINT [--flips]   # IoU per split side and front end
    python benchmarks/mask_value.py readout                           # labels read off the masks at 100, 300, all

`segmenter` draws masks for the segmenter's own training windows (hq.csv), the other training windows and the
validation windows, on `origin` and (validation only) on `mel` and `pcen`, and gives the pooled IoU against the exact
masks of each front end (made here for the validation windows where missing): a train-mask IoU far above the
validation one means the classifier trains on better masks than it will be given. `--flips` also averages the
probabilities with those of the time-reversed image (test-time augmentation). `readout` fits the label read-out
(`masks.sources.label_readout`) on 100, 300 and all labelled training windows (`data.datamodules.labelled_subset`)
and scores it on the validation windows, for the segmenter's masks and the exact ones. Classifier trials: BENCHMARKS.md, "Masks
that pay?" (`mgc fit`, then `mgc evaluate --manifest data/demo/val_split.csv` on each front end).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from mgc_lightning.audio.manifest import load_manifest, split_rows
from mgc_lightning.core.checkpoints import load_module
from mgc_lightning.data.datamodules import labelled_subset
from mgc_lightning.frontend.cache import compute_spectrograms, mask_store, spectrogram_store
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.masks.sources import IDEAL, PREDICTED, label_readout
from mgc_lightning.models.segmenter import SegmenterModule
from mgc_lightning.pipeline.config import PipelineConfig
from mgc_lightning.synth.build import write_ideal_masks


def demo_windows(config: PipelineConfig) -> dict[str, list]:
    """The demo benchmark's windows by side: all training windows (in split order, as the data module draws its
    labelled subsets), the segmenter's training windows, the other training windows, the validation windows."""
    rows = load_manifest(Path(config.data_dir) / "manifest.csv")
    sides = split_rows(rows, config.split)
    segmenter = {row.key for row in load_manifest(Path(config.data_dir) / "hq.csv", check_audio=False)}
    train = [rows[i] for i in sides["train"]]
    return {"training": train, "segmenter training": [r for r in train if r.key in segmenter],
            "other training": [r for r in train if r.key not in segmenter],
            "validation": [rows[i] for i in sides["val"]]}


def pooled_iou(model: SegmenterModule, rows: list, preset: str, cache_root: str, flips: bool) -> float:
    config = get_preset(preset)
    compute_spectrograms(rows, config, cache_root, progress=False)
    exact = mask_store(config, IDEAL, cache_root)
    if not all(exact.has(row.key) for row in rows):
        write_ideal_masks(rows, config, cache_root, progress=False)
    images, overlap, union = spectrogram_store(config, cache_root), 0, 0
    with torch.no_grad():
        for first in range(0, len(rows), 32):
            batch = rows[first : first + 32]
            image = torch.from_numpy(np.stack([images.load(r.key) for r in batch]).astype(np.float32))[:, None]
            sound = model(image).softmax(dim=1)[:, 1]
            if flips:
                sound = (sound + model(image.flip(-1)).softmax(dim=1)[:, 1].flip(-1)) / 2
            drawn, truth = sound.numpy() > 0.5, np.stack([exact.load(r.key) for r in batch]).astype(bool)
            overlap, union = overlap + (drawn & truth).sum(), union + (drawn | truth).sum()
    return float(overlap / max(union, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="experiments/pipeline_demo.yaml")
    commands = parser.add_subparsers(dest="command", required=True)
    segmenter = commands.add_parser("segmenter")
    segmenter.add_argument("checkpoint")
    segmenter.add_argument("--flips", action="store_true")
    commands.add_parser("readout")
    args = parser.parse_args()
    config = PipelineConfig.from_yaml(args.pipeline)
    windows = demo_windows(config)
    if args.command == "segmenter":
        model = load_module(SegmenterModule, args.checkpoint, "segmenter checkpoint", map_location="cpu").eval()
        result = {f"{side} ({preset})": round(pooled_iou(model, windows[side], preset, config.cache_root, args.flips), 4)
                  for side, presets in (("segmenter training", ["origin"]), ("other training", ["origin"]),
                                        ("validation", list(config.presets)))
                  for preset in presets}
        print(json.dumps({"checkpoint": args.checkpoint, "flips": args.flips, "pooled IoU": result}, indent=2))
    else:
        train = windows["training"]
        origin = get_preset(config.presets[0])
        for size in (100, 300, None):
            labelled = train if size is None else labelled_subset(train, size, config.split.seed)
            scores = {source: round(label_readout(labelled, windows["validation"], origin, config.cache_root, source), 3)
                      for source in (PREDICTED, IDEAL)}
            print(f"{size or 'all'} labelled windows: joint accuracy of the labels read off the masks {scores}")


if __name__ == "__main__":
    main()
