"""mgc evaluate, export and calibrate: a trained classifier tested, bundled and calibrated."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import split_config, split_options


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluate.ood import evaluate_checkpoint

    from ..train.tracking import where_to_find

    evaluation = evaluate_checkpoint(args.checkpoint, args.preset, args.segmenter, batch_size=args.batch_size,
                                     manifest=args.manifest)
    width = max(map(len, evaluation.metrics))
    for name, value in sorted(evaluation.metrics.items()):
        print(f"{name:<{width}}  {value:.4f}")
    if evaluation.run_id:
        print(where_to_find(evaluation.run_id, Path(args.checkpoint).parent))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ..deploy.bundle import bundle_from_checkpoints, save_bundle

    bundle = bundle_from_checkpoints(args.classifier, args.segmenter, args.window)
    digest = save_bundle(bundle, args.out)
    print(f"wrote {args.out} (front end {bundle.front_end.name}, {bundle.window_s:g} s windows, "
          f"{'with' if bundle.segmenter else 'no'} segmenter, sha256 {digest[:12]})")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from ..deploy.calibration import calibrate, log_to_mlflow

    result = calibrate(args.model, args.manifest, split_config(args), args.target_precision, args.out)
    written = args.out or args.model
    scaling = f"temperature {result.temperature:.3f}" if result.temperature is not None else "per-type Platt scaling"
    if result.identity_kept:
        scaling = "raw scores kept"
    left_out = f" ({result.without_signal} without usable signal left out)" if result.without_signal else ""
    print(f"{result.windows} validation windows{left_out}: {scaling}; ECE {result.ece_before:.4f} -> "
          f"{result.ece_after:.4f}")
    for name, chosen in result.types.items():
        scores = "" if chosen.precision is None else f": precision {chosen.precision:.3f}, recall {chosen.recall:.3f}"
        missed = ("" if chosen.precision is None or chosen.precision >= args.target_precision
                  else f" (target {args.target_precision:g} not reached)")
        print(f"  {name:<15} {chosen.describe()}{scores}{missed}")
    if not args.no_mlflow:
        print(f"MLflow run {log_to_mlflow(result, written)} (experiment calibration)")
    print(f"written into {written}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """evaluate, export and calibrate: a trained classifier tested, bundled and calibrated."""
    sub = commands.add_parser("evaluate", help="test a classifier checkpoint on another preset (out of distribution)")
    sub.add_argument("--checkpoint", required=True)
    sub.add_argument("--preset", required=True, help="front end to render the test windows with")
    sub.add_argument("--segmenter", help="segmenter checkpoint that predicts this preset's masks (predicted source)")
    sub.add_argument("--batch-size", type=int)
    sub.add_argument("--manifest", help="test every window of this manifest instead of the training data's test split "
                                        "(another site, a confirmation benchmark)")
    sub.set_defaults(run=_cmd_evaluate)

    sub = commands.add_parser("export", help="one model file (bundle) for detection: front end, weights, labels, "
                                             "calibration")
    sub.add_argument("--classifier", required=True, help="classifier checkpoint (from mgc fit)")
    sub.add_argument("--segmenter", help="segmenter checkpoint that draws the classifier's masks")
    sub.add_argument("--window", type=float, help="window length in seconds (default: the training manifest's)")
    sub.add_argument("--out", required=True, help="bundle to write, e.g. model.mgc")
    sub.set_defaults(run=_cmd_export)

    sub = commands.add_parser("calibrate", help="fit calibration and per-type thresholds of a bundle on the "
                                                "validation split of a labelled manifest")
    sub.add_argument("--model", required=True, help="bundle from mgc export (updated in place unless --out)")
    sub.add_argument("--manifest", required=True, help="labelled windows of the model's window length")
    sub.add_argument("--target-precision", type=float, default=0.9, help="per-type precision the thresholds aim at")
    sub.add_argument("--out", help="write the calibrated bundle here instead")
    sub.add_argument("--no-mlflow", action="store_true", help="do not log the reliability diagram and ECE to MLflow")
    split_options(sub)
    sub.set_defaults(run=_cmd_calibrate)
