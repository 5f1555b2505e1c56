"""Boxes that bound their calls: box-level precision and recall of Raven selections against the benchmark's events
(a selection and an event of its type match at a time-frequency IoU of at least 0.3, `event_scores.box_scores`), for
boxes drawn from each type's own mask (typed) and from the union of the masks (untyped, the rule without a typed
segmenter), on the recordings outside the train split.

The window decisions are the labels (an oracle classifier), so typed and untyped rows differ only in how a box is
drawn from the same masks, through `mgc detect`'s own per-window rows and selections: the per-type ideal masks (a
perfect segmenter), and a typed segmenter's, fitted for --epochs on the train recordings' per-type ideal masks (or
--checkpoint). Whistle events bound the fundamental only (events.csv's band); their harmonics, which the masks cover,
count against every box.

    python benchmarks/box_scores.py --work /tmp/box-scores --n 288 --epochs 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from mgc_lightning.audio.manifest import SplitConfig, load_manifest, split_rows, write_manifest
from mgc_lightning.core.atomic import write_bytes_atomic
from mgc_lightning.core.labels import NUM_JOINT_CLASSES, SOUND_TYPES
from mgc_lightning.data.datamodules import SegmentationDataModule
from mgc_lightning.deploy.detect import RAVEN_HEADER, selections, window_header, window_rows
from mgc_lightning.deploy.detection_folder import csv_bytes, output_name, raven_table
from mgc_lightning.evaluate.event_scores import box_scores
from mgc_lightning.frontend.cache import mask_store
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.masks.ops import mask_extents
from mgc_lightning.masks.predict import predict_masks
from mgc_lightning.masks.sources import PREDICTED_TYPED
from mgc_lightning.models.segmenter import SegmenterModule, load_segmenter
from mgc_lightning.synth.build import TYPED_IDEAL_SOURCE, build_benchmark, write_typed_ideal_masks
from mgc_lightning.synth.config import BENCHMARK_PRESETS, sized


def fit_typed_segmenter(rows, cache: Path, work: Path, args: argparse.Namespace) -> Path:
    """A typed U-Net fitted on the rows' per-type ideal masks, its last weights saved."""
    write_manifest(rows, work / "train.csv")
    L.seed_everything(0)
    data = SegmentationDataModule(str(work / "train.csv"), mask_source=TYPED_IDEAL_SOURCE, cache_root=str(cache),
                                  batch_size=4, split_fractions=(1.0, 0.0, 0.0), gain_control_probability=0.5,
                                  warp_probability=0.25)
    decoder = [int(c) for c in args.decoder_channels.split(",")]
    model = SegmenterModule(architecture="Unet", encoder_name=args.encoder, lr=args.lr, typed=True,
                            dice_weight=args.dice_weight,
                            network_kwargs={"encoder_depth": len(decoder), "decoder_channels": decoder})
    trainer = L.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        limit_val_batches=0, enable_model_summary=False)
    trainer.fit(model, data)
    checkpoint = work / "typed_segmenter.ckpt"
    trainer.save_checkpoint(checkpoint)
    return checkpoint


def write_selections(rows, store, config, out: Path, typed: bool) -> None:
    """Per recording, `mgc detect`'s per-window rows with the labels as probabilities and the store's per-type masks
    as the segmenter's, then its Raven selections (typed or untyped rule)."""
    band = (config.fmin, config.fmax)
    for path in dict.fromkeys(row.path for row in rows):
        windows = sorted((row for row in rows if row.path == path), key=lambda row: row.start_s)
        masks = torch.from_numpy(np.stack([store.load(row.key) for row in windows]))  # (B, 3, H, W)
        extents = [mask_extents(masks[:, t], config, windows[0].duration_s) for t in range(len(SOUND_TYPES))]
        union = mask_extents(masks.any(dim=1), config, windows[0].duration_s)
        part = {"start_s": torch.tensor([row.start_s for row in windows], dtype=torch.float64),
                "types": torch.tensor([row.labels for row in windows], dtype=torch.float32),
                "joint": torch.nn.functional.one_hot(torch.tensor([row.joint_class for row in windows]),
                                                     NUM_JOINT_CLASSES).float(),
                "bands": [None if extent is None else extent[:2] for extent in union],
                "problems": [""] * len(windows), "extents": [list(e) for e in zip(*extents)]}
        table_rows = window_rows(path, windows[0].duration_s, part)
        header = window_header(typed)
        table = out / "windows" / f"{output_name(path)}.csv"
        write_bytes_atomic(table, csv_bytes(header, [row[: len(header)] for row in table_rows]))
        write_bytes_atomic(raven_table(out, path),
                           csv_bytes(RAVEN_HEADER, selections(table, [0.5] * len(SOUND_TYPES), band), "\t"))


def whistle_bands(out: Path) -> list[float]:
    """The bandwidths (kHz) of the whistle selections under `out`."""
    widths = []
    for table in (out / "raven").glob("*.selections.txt"):
        for line in table.read_text().splitlines()[1:]:
            cells = line.split("\t")
            if cells[7] == "whistle":
                widths.append((float(cells[6]) - float(cells[5])) / 1000)
    return widths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the benchmark, cache and outputs")
    parser.add_argument("--n", type=int, default=288, help="windows of the `demo` benchmark preset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, help="a typed segmenter checkpoint (else one is fitted)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--dice-weight", type=float, default=1.0)
    parser.add_argument("--encoder", default="tu-mobilenetv3_small_050", help="smp encoder of the fitted U-Net")
    parser.add_argument("--decoder-channels", default="16,8,8", help="its decoder (and encoder depth: their count)")
    parser.add_argument("--min-iou", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a tiny U-Net trains fastest on one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    config, cache = get_preset("origin"), args.work / "cache"
    manifest = build_benchmark(args.work / "bench", sized(BENCHMARK_PRESETS["demo"], args.n), seed=args.seed,
                               workers=args.workers, progress=False)
    rows = load_manifest(manifest)
    write_typed_ideal_masks(rows, config, cache, progress=False)
    splits = split_rows(rows, SplitConfig())
    train = [rows[i] for i in splits["train"]]
    held_out = [rows[i] for i in (*splits["val"], *splits["test"])]
    checkpoint = args.checkpoint or fit_typed_segmenter(train, cache, args.work, args)
    predict_masks(load_segmenter(checkpoint), checkpoint, held_out, config, cache, replace=True, progress=False)
    recordings = sorted({row.recording for row in held_out})
    print(f"{len(held_out)} windows of {len(recordings)} held-out recordings; box IoU >= {args.min_iou:g}; "
          f"{time.perf_counter() - began:.0f} s")
    print(f"{'masks':<16}{'boxes':<9}" + "".join(f"{t + ' P':>17}{t + ' R':>17}" for t in SOUND_TYPES)
          + f"{'whistle band kHz':>18}")
    for source in (TYPED_IDEAL_SOURCE, PREDICTED_TYPED):
        for typed in (False, True):
            out = args.work / "boxes" / source / ("typed" if typed else "untyped")
            write_selections(held_out, mask_store(config, source, cache), config, out, typed)
            scores = box_scores(out, args.work / "bench", recordings, args.min_iou)
            cells = "".join(
                f"{score['precision'] or 0:>8.3f} ({score['true_selections']:>3}/{score['selections']:<3})"
                f"{score['recall'] or 0:>8.3f} ({score['detected']:>3}/{score['events']:<3})"
                for score in scores.values())
            bands = whistle_bands(out)
            print(f"{source:<16}{'typed' if typed else 'untyped':<9}{cells}"
                  f"{statistics.median(bands) if bands else 0:>18.1f}")


if __name__ == "__main__":
    main()
