"""Mask quality on a PCEN front end that is no preset and played no part in any choice: each segmenter checkpoint's
IoU against that front end's own ideal masks, beside its IoU on `origin` and the ratio of the two (BENCHMARKS.md,
"Mask quality").

The held-out front end is PCEN with the given settings (default: librosa's, 0.4 s, gain 0.98, bias 2, power 0.5) on
the STFT and band of `--stft` (`origin` or `pcen`). It is scored under its own name and `origin` under a renamed
copy of the preset, so the cache's `predicted` masks of the presets (those `make demo` drew) are left alone. The
script also prints what of the held-out front end the segmenter's looks (`experiments/seg_unet.yaml`: gain control on
half, log-like axes on a quarter) could reproduce (`FrontEndAugment.settings_near`).

    # after `make demo`: librosa's PCEN on origin's STFT and band, the demo's split (test = development test)
    python benchmarks/heldout_pcen.py data/demo/manifest.csv --checkpoint SEGMENTER.ckpt [--checkpoint ...]
    # pcen's STFT and band, a slow gain control outside every range of the looks
    python benchmarks/heldout_pcen.py data/demo/manifest.csv --checkpoint SEGMENTER.ckpt --stft pcen \\
        --time-constant 0.5 --gain 0.7 --bias 16 --power 0.2
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from mgc_lightning.audio.manifest import SplitConfig, load_manifest, split_rows
from mgc_lightning.data.augment import FrontEndAugment
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.masks.predict import predict_masks
from mgc_lightning.models.segmenter import load_segmenter
from mgc_lightning.masks.sources import PREDICTED, evaluate_masks
from mgc_lightning.synth.build import ideal_source, write_ideal_masks
from mgc_lightning.synth.config import DETECTABLE_SNR_DB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", help="a synthetic benchmark's manifest (its target stems give the ideal masks)")
    parser.add_argument("--checkpoint", action="append", required=True, help="segmenter checkpoint (repeatable)")
    parser.add_argument("--stft", default="origin", choices=["origin", "pcen"], help="preset whose STFT and band PCEN "
                        "is computed on")
    parser.add_argument("--time-constant", type=float, default=0.4, help="PCEN smoother, seconds")
    parser.add_argument("--gain", type=float, default=0.98)
    parser.add_argument("--bias", type=float, default=2.0)
    parser.add_argument("--power", type=float, default=0.5)
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                        help="windows scored, of the classifier's default split (make demo's)")
    parser.add_argument("--criterion-db", type=float, default=DETECTABLE_SNR_DB, help="local SNR of the ideal masks")
    parser.add_argument("--cache-root", default="data/cache")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    rows = load_manifest(args.manifest)
    if args.split != "all":
        rows = [rows[i] for i in split_rows(rows, SplitConfig())[args.split]]
    heldout = replace(get_preset(args.stft), name="heldout-pcen", scaling="pcen",
                      pcen_time_constant=args.time_constant, pcen_gain=args.gain, pcen_bias=args.bias,
                      pcen_power=args.power)
    origin = replace(get_preset("origin"), name="origin-heldout-check")
    looks = FrontEndAugment(get_preset("origin"), gain_control_probability=0.5, warp_probability=0.25)
    print(f"held-out PCEN on {args.stft}'s STFT and band: time constant {args.time_constant:g} s, gain "
          f"{args.gain:g}, bias {args.bias:g}, power {args.power:g}; {len(rows)} windows ({args.split}); near the "
          f"segmenter's looks: {', '.join(looks.settings_near(heldout)) or 'nothing'}")
    reference = ideal_source(args.criterion_db)
    for config in (origin, heldout):
        write_ideal_masks(rows, config, args.cache_root, [args.criterion_db], progress=False)
    print(f"{'checkpoint':<60} {'origin':>7} {'held-out':>9} {'ratio':>6}")
    for checkpoint in args.checkpoint:
        iou = {}
        for config in (origin, heldout):
            predict_masks(load_segmenter(checkpoint, args.device), checkpoint, rows, config, args.cache_root,
                          device=args.device, replace=True, progress=False)
            iou[config.name] = evaluate_masks(rows, config, args.cache_root, PREDICTED, reference)["iou"]
        ratio = f"{iou[heldout.name] / iou[origin.name]:6.2f}" if iou[origin.name] else "   n/a"
        print(f"{checkpoint[-60:]:<60} {iou[origin.name]:7.3f} {iou[heldout.name]:9.3f} {ratio}")


if __name__ == "__main__":
    main()
