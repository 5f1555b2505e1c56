"""Mask quality on the benchmark's test split: candidate masks and trained segmenters against the ideal masks.

Builds (or reuses) a benchmark, rasterises ideal masks for `origin`, selects the high-quality training set
(stratified, train/val sides only), trains each segmenter architecture few-shot on it, predicts masks for the
classifier's test split and reports IoU / Dice / pixel F1 of every source against the ideal masks, with the
candidate masks as the classical reference. Anchor: DeepLabV3 on BirdSoundsDenoising reports IoU 0.723 / Dice 0.816.

    python benchmarks/segmenter_quality.py --n 384 --epochs 30                      # CPU, demo size
    python benchmarks/segmenter_quality.py --preset paper --n 4000 --epochs 80 --workers 16 --archs DeepLabV3,DeepLabV3Plus
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import torch

from mgc_lightning.cache import compute_spectrograms
from mgc_lightning.data import SegmentationDataModule
from mgc_lightning.manifest import SplitConfig, load_manifest, split_rows, write_manifest
from mgc_lightning.mask_sources import evaluate_masks, propose_masks, select_high_quality
from mgc_lightning.models.segmenter import SegmenterModule, predict_masks
from mgc_lightning.spectrogram import get_preset
from mgc_lightning.synth.build import BENCHMARK_PRESETS, build_benchmark, sized, write_ideal_masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo", choices=sorted(BENCHMARK_PRESETS))
    parser.add_argument("--n", type=int)
    parser.add_argument("--out", default="data/segmenter-quality")
    parser.add_argument("--archs", default="DeepLabV3")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--sound-weight", type=float, default=1.0, help="cross-entropy weight of sound pixels")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hq", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    out, config = Path(args.out), get_preset("origin")
    cache = out / "cache"
    started = time.perf_counter()
    rows = load_manifest(build_benchmark(out / "bench", sized(BENCHMARK_PRESETS[args.preset], args.n), seed=0,
                                         workers=args.workers, progress=False))
    device = "cuda" if torch.cuda.is_available() else "cpu"  # asked after the worker processes are done
    compute_spectrograms(rows, config, cache, device=device, batch_size=64, progress=False)
    write_ideal_masks(rows, config, cache, progress=False)
    split = SplitConfig(seed=0)
    test = [rows[i] for i in split_rows(rows, split)["test"]]
    hq = select_high_quality(rows, split, count=args.hq, seed=0)
    write_manifest(hq, out / "hq.csv")
    print(f"{len(rows)} windows ({args.preset}), {len(hq)} high-quality training masks, {len(test)} test windows; "
          f"data ready in {time.perf_counter() - started:.0f} s on {device}")
    propose_masks(test, config, cache, progress=False)
    results = {"candidate (sensitivity 0.7)": evaluate_masks(test, config, cache, "candidate")}
    for architecture in args.archs.split(","):
        data = SegmentationDataModule(str(out / "hq.csv"), cache_root=str(cache), batch_size=args.batch_size,
                                      split_fractions=(0.85, 0.15, 0.0), mask_source="ideal")
        model = SegmenterModule(architecture=architecture, encoder_name=args.encoder, sound_weight=args.sound_weight,
                                figure_every_n_epochs=10**6)
        trainer = L.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="auto", devices=1)
        began = time.perf_counter()
        trainer.fit(model, datamodule=data)
        checkpoint = out / f"{architecture}-{args.encoder}.ckpt"
        trainer.save_checkpoint(checkpoint)
        predict_masks(checkpoint, test, config, cache, device=device, replace=True, progress=False)
        name = (f"{architecture} ({args.encoder}, {args.epochs} epochs, sound weight {args.sound_weight:g}, "
                f"{time.perf_counter() - began:.0f} s)")
        results[name] = evaluate_masks(test, config, cache, "predicted")
    print(f"{'source':<64} {'IoU':>6} {'Dice':>6} {'pixel F1':>9}")
    for name, scores in results.items():
        print(f"{name:<64} {scores['iou']:6.3f} {scores['dice']:6.3f} {scores['pixel_f1']:9.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
