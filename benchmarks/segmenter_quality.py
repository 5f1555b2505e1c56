"""Mask quality on the benchmark's test split, in and out of distribution: candidate masks and trained segmenters
against the ideal masks of each front end, at several local SNR criteria.

Builds (or reuses) a benchmark, rasterises ideal masks for every preset and criterion, selects the high-quality
training set (stratified, train side only), trains each segmenter architecture few-shot on `origin` images and
masks (at --train-criterion-db), predicts masks for the classifier's test split on every preset (`mel` and `pcen`
are never seen in training) and reports IoU of every source against that preset's own ideal masks. --plain trains
as before the robustness work (ImageNet-normalised input, flips only) for a before/after comparison. Anchor: DeepLabV3
on BirdSoundsDenoising reports IoU 0.723 / Dice 0.816.

    python benchmarks/segmenter_quality.py --n 1920 --epochs 12 --archs Unet                # CPU, ~make demo size
    python benchmarks/segmenter_quality.py --preset paper --n 4000 --epochs 80 --workers 16 --archs Unet,DeepLabV3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import torch

from mgc_lightning.audio.manifest import SplitConfig, load_manifest, split_rows, write_manifest
from mgc_lightning.data.datamodules import SegmentationDataModule
from mgc_lightning.frontend.cache import compute_spectrograms
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.masks.predict import predict_masks
from mgc_lightning.masks.sources import evaluate_masks, propose_masks, select_high_quality
from mgc_lightning.models.segmenter import SegmenterModule, load_segmenter
from mgc_lightning.synth.build import build_benchmark, ideal_source, write_ideal_masks
from mgc_lightning.synth.config import BENCHMARK_PRESETS, sized

PRESETS = ("origin", "mel", "pcen")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo", choices=sorted(BENCHMARK_PRESETS))
    parser.add_argument("--n", type=int)
    parser.add_argument("--out", default="data/segmenter-quality")
    parser.add_argument("--archs", default="Unet")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--sound-weight", type=float, default=1.0, help="cross-entropy weight of sound pixels")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hq", type=int, default=200)
    parser.add_argument("--criteria-db", default="0,3,6", help="local SNR criteria of the reference ideal masks")
    parser.add_argument("--train-criterion-db", type=float, default=6.0, help="criterion of the training masks")
    parser.add_argument("--plain", action="store_true", help="no input normalisation or front-end augmentation")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    criteria = [float(c) for c in args.criteria_db.split(",")]
    out, origin = Path(args.out), get_preset("origin")
    cache = out / "cache"
    started = time.perf_counter()
    rows = load_manifest(build_benchmark(out / "bench", sized(BENCHMARK_PRESETS[args.preset], args.n), seed=0,
                                         workers=args.workers, progress=False))
    device = "cuda" if torch.cuda.is_available() else "cpu"  # asked after the worker processes are done
    split = SplitConfig(seed=0)
    test = [rows[i] for i in split_rows(rows, split)["test"]]
    hq = select_high_quality(rows, split, count=args.hq, seed=0)
    write_manifest(hq, out / "hq.csv")
    compute_spectrograms(hq, origin, cache, device=device, batch_size=64, progress=False)
    write_ideal_masks(hq, origin, cache, [args.train_criterion_db], progress=False)
    for name in PRESETS:
        compute_spectrograms(test, get_preset(name), cache, device=device, batch_size=64, progress=False)
        write_ideal_masks(test, get_preset(name), cache, criteria, progress=False)
    print(f"{len(rows)} windows ({args.preset}), {len(hq)} high-quality training masks, {len(test)} test windows; "
          f"data ready in {time.perf_counter() - started:.0f} s on {device}")

    def scores(source: str) -> dict[str, float]:
        return {f"{name} {c:g} dB": evaluate_masks(test, get_preset(name), cache, source, ideal_source(c))["iou"]
                for name in PRESETS for c in criteria}

    for name in PRESETS:
        propose_masks(test, get_preset(name), cache, progress=False)
    results = {"candidate masks (sensitivity 0.7)": scores("candidate")}
    robustness = {} if args.plain else {"warp_probability": 0.5, "stretch_probability": 0.3, "power_probability": 0.5}
    for architecture in args.archs.split(","):
        data = SegmentationDataModule(str(out / "hq.csv"), cache_root=str(cache), batch_size=args.batch_size,
                                      split_fractions=(0.8, 0.2, 0.0),
                                      mask_source=ideal_source(args.train_criterion_db), **robustness)
        model = SegmenterModule(architecture=architecture, encoder_name=args.encoder, sound_weight=args.sound_weight,
                                figure_every_n_epochs=10**6, normalize_input=not args.plain)
        trainer = L.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="auto", devices=1)
        began = time.perf_counter()
        trainer.fit(model, datamodule=data)
        checkpoint = out / f"{architecture}-{args.encoder}.ckpt"
        trainer.save_checkpoint(checkpoint)
        for name in PRESETS:
            predict_masks(load_segmenter(checkpoint, device), checkpoint, test, get_preset(name), cache, device=device,
                          replace=True, progress=False)
        label = (f"{architecture} ({args.encoder}, {args.epochs} epochs, {'plain' if args.plain else 'robust'}, "
                 f"{time.perf_counter() - began:.0f} s)")
        results[label] = scores("predicted")
    columns = list(next(iter(results.values())))
    print(f"IoU against each preset's ideal masks, test split; training masks at {args.train_criterion_db:g} dB")
    print(f"{'source':<56}" + "".join(f"{c:>14}" for c in columns))
    for label, row in results.items():
        print(f"{label:<56}" + "".join(f"{row[c]:14.3f}" for c in columns))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
