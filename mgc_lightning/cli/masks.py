"""mgc masks ideal, propose, boxes, select, predict, evaluate and degrade: the mask sources of a preset."""

from __future__ import annotations

import argparse
from collections import Counter

from ..core.labels import JOINT_CLASS_NAMES
from .options import (
    cache_options, check_processes, criterion_option, ideal_sources, processes_options, split_config, split_options,
)


def _cmd_masks_ideal(args: argparse.Namespace) -> int:
    from ..audio.manifest import load_manifest
    from ..core.errors import InputError
    from ..frontend.config import get_preset
    from ..synth.build import TYPED_IDEAL_SOURCE, add_typed_stems, write_ideal_masks, write_typed_ideal_masks
    from ..synth.config import DETECTABLE_SNR_DB

    if args.typed and args.criterion_db != [DETECTABLE_SNR_DB]:
        raise InputError(f"--typed masks use the labels' {DETECTABLE_SNR_DB:g} dB criterion; leave out "
                         f"--criterion-db (given: {' '.join(f'{c:g}' for c in args.criterion_db)})")
    rows = load_manifest(args.manifest)
    if args.typed:
        for benchmark in sorted({row.path.parent.parent for row in rows}):
            add_typed_stems(benchmark, progress=not args.quiet)
        done = write_typed_ideal_masks(rows, get_preset(args.preset), args.cache_root, progress=not args.quiet)
        print(f"{done} windows' per-type ideal masks written, {len(set(rows)) - done} already there "
              f"({TYPED_IDEAL_SOURCE}, preset {args.preset})")
        return 0
    done = write_ideal_masks(rows, get_preset(args.preset), args.cache_root, args.criterion_db,
                             progress=not args.quiet)
    print(f"{done} windows' ideal masks written, {len(set(rows)) - done} already there "
          f"({ideal_sources(args.criterion_db)}, preset {args.preset})")
    return 0


def _cmd_masks_propose(args: argparse.Namespace) -> int:
    from ..audio.manifest import load_manifest
    from ..frontend.config import get_preset
    from ..masks.sources import export_for_refinement, propose_masks

    rows, config = load_manifest(args.manifest), get_preset(args.preset)
    propose_masks(rows, config, args.cache_root, args.sensitivity, progress=not args.quiet)
    print(f"{len(rows)} candidate masks (sensitivity {args.sensitivity}) for preset {args.preset}")
    if args.export:
        manifest = export_for_refinement(rows, config, args.cache_root, args.export)
        print(f"PNGs for refinement and their manifest: {manifest}")
    return 0


def _cmd_masks_boxes(args: argparse.Namespace) -> int:
    from ..audio.manifest import load_manifest
    from ..audio.raven import boxes_csv, read_boxes
    from ..frontend.config import get_preset
    from ..masks.sources import BOXES, draw_box_masks

    rows = load_manifest(args.manifest)
    boxes = read_boxes(args.boxes or boxes_csv(args.manifest))
    drawn = draw_box_masks(rows, boxes, get_preset(args.preset), args.cache_root)
    print(f"{len(set(rows))} box masks ({drawn} with a box) for preset {args.preset}: mask source `{BOXES}`")
    return 0


def _cmd_masks_select(args: argparse.Namespace) -> int:
    from ..audio.manifest import load_manifest, write_manifest
    from ..frontend.cache import mask_store
    from ..frontend.config import get_preset
    from ..masks.sources import select_high_quality

    rows = load_manifest(args.manifest)
    available = None
    if args.source == "manifest":
        available = lambda row: bool(row.mask)  # noqa: E731
    elif args.source:
        store = mask_store(get_preset(args.preset), args.source, args.cache_root)
        available = lambda row: store.has(row.key)  # noqa: E731
    chosen = select_high_quality(rows, split_config(args), args.count, args.seed, available)
    write_manifest(chosen, args.out)
    counts = Counter(row.joint_class for row in chosen)
    print(f"{len(chosen)} windows to {args.out} (train side only), per class: "
          + ", ".join(f"{JOINT_CLASS_NAMES[c]}={counts.get(c, 0)}" for c in range(len(JOINT_CLASS_NAMES))))
    return 0


def _cmd_masks_predict(args: argparse.Namespace) -> int:
    from ..audio.manifest import load_manifest
    from ..core.sharding import start_processes
    from ..frontend.config import get_preset
    from ..masks.predict import predict_masks
    from ..models.segmenter import load_segmenter

    check_processes(args)
    rows = load_manifest(args.manifest)
    shard, device = start_processes(args.device, args.devices, args.num_nodes)
    segmenter = load_segmenter(args.checkpoint, device)
    done = predict_masks(segmenter, args.checkpoint, rows, get_preset(args.preset), args.cache_root, args.batch_size,
                         device, replace=args.replace, progress=not args.quiet, shard=shard)
    if shard.is_main:
        print(f"{done} masks predicted, {len(set(rows)) - done} already there (preset {args.preset})")
    return 0


def _cmd_masks_evaluate(args: argparse.Namespace) -> int:
    from ..audio.manifest import load_manifest
    from ..frontend.config import get_preset
    from ..masks.sources import evaluate_masks
    from ..synth.build import ideal_source

    rows = _rows_of_split(load_manifest(args.manifest, check_audio=False), args)
    references = [ideal_source(c) for c in args.criterion_db] if args.criterion_db else [args.reference]
    for reference in references:
        scores = evaluate_masks(rows, get_preset(args.preset), args.cache_root, args.source, reference)
        print(f"{args.source} vs {reference} masks, preset {args.preset}, {args.split} split ({len(rows)} windows): "
              + ", ".join(f"{name} {value:.3f}" for name, value in scores.items()))
    return 0


def _cmd_masks_degrade(args: argparse.Namespace) -> int:
    from ..audio.manifest import load_manifest
    from ..frontend.config import get_preset
    from ..masks.degrade import degraded_source, write_degraded_masks

    rows = _rows_of_split(load_manifest(args.manifest), args)
    achieved = write_degraded_masks(rows, get_preset(args.preset), args.cache_root, args.iou, args.seed,
                                    progress=not args.quiet)
    print(f"{len(rows)} ideal masks degraded into source `{degraded_source(args.iou)}` (preset {args.preset}, "
          f"{args.split} split): pooled IoU {achieved:.3f}, target {args.iou:g}")
    return 0


def _rows_of_split(rows: list, args: argparse.Namespace) -> list:
    """The rows of `--split` (all of them for `all`) under the split options."""
    from ..audio.manifest import split_rows

    return rows if args.split == "all" else [rows[i] for i in split_rows(rows, split_config(args))[args.split]]


def register(commands: argparse._SubParsersAction) -> None:
    """mgc masks ACTION: mask sources for a preset."""
    masks = commands.add_parser("masks", help="mask sources for a preset").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    _mask_source_commands(masks)
    _mask_tool_commands(masks)


def _mask_source_commands(masks: argparse._SubParsersAction) -> None:
    """mgc masks ideal, propose, boxes and select: masks a segmenter learns from."""
    sub = masks.add_parser("ideal", help="ideal masks of a synthetic benchmark, on any preset's grid")
    sub.add_argument("manifest")
    sub.add_argument("--preset", default="origin")
    sub.add_argument("--typed", action="store_true",
                     help="per-type ideal masks (source ideal-typed, one channel per sound type) for a typed segmenter")
    criterion_option(sub)
    cache_options(sub)
    sub.set_defaults(run=_cmd_masks_ideal)

    sub = masks.add_parser("propose", help="candidate masks: edges + adaptive threshold + clean-up")
    sub.add_argument("manifest")
    sub.add_argument("--preset", default="origin")
    sub.add_argument("--sensitivity", type=float, default=0.7, help="0..1, higher keeps more pixels")
    sub.add_argument("--export", help="folder for spectrogram/mask PNGs and a manifest, to refine by hand")
    cache_options(sub)
    sub.set_defaults(run=_cmd_masks_propose)

    sub = masks.add_parser("boxes", help="box masks from the imported Raven boxes, on any preset's grid (source "
                                         "`boxes`)")
    sub.add_argument("manifest")
    sub.add_argument("--boxes", help="boxes CSV (default: <manifest>_boxes.csv, written by import-raven)")
    sub.add_argument("--preset", default="origin")
    cache_options(sub, quiet=False)
    sub.set_defaults(run=_cmd_masks_boxes)

    sub = masks.add_parser("select", help="pick the high-quality set (stratified over the 8 classes) for the segmenter")
    sub.add_argument("manifest")
    sub.add_argument("--count", type=int, default=200)
    sub.add_argument("--out", required=True, help="manifest of the chosen windows")
    sub.add_argument("--source", default="", help="only windows that have a mask in this source (e.g. ideal, "
                                                 "manifest)")
    sub.add_argument("--preset", default="origin")
    split_options(sub, seed_help="seed of the split and of the selection")
    cache_options(sub, quiet=False)
    sub.set_defaults(run=_cmd_masks_select)


def _mask_tool_commands(masks: argparse._SubParsersAction) -> None:
    """mgc masks predict, evaluate and degrade: a segmenter's masks, their quality, and masks of a chosen quality."""
    sub = masks.add_parser("predict", help="predict masks for every window with a trained segmenter (resumable)")
    sub.add_argument("manifest")
    sub.add_argument("--checkpoint", required=True)
    sub.add_argument("--preset", default="origin")
    sub.add_argument("--batch-size", type=int, default=32)
    sub.add_argument("--device", default="cpu", help="cpu or cuda")
    processes_options(sub, "windows")
    sub.add_argument("--replace", action="store_true", help="drop masks predicted by another checkpoint")
    cache_options(sub)
    sub.set_defaults(run=_cmd_masks_predict)

    sub = masks.add_parser("evaluate", help="IoU / Dice / pixel F1 of a mask source against the ideal masks")
    sub.add_argument("manifest")
    sub.add_argument("--source", required=True, help="candidate, predicted, ...")
    reference = sub.add_mutually_exclusive_group()
    reference.add_argument("--reference", default="ideal", help="the mask source to compare with")
    reference.add_argument("--criterion-db", type=float, nargs="+", metavar="DB",
                           help="compare with the ideal masks at each of these local SNR criteria (e.g. 0 3 6)")
    sub.add_argument("--preset", default="origin")
    sub.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    split_options(sub)
    cache_options(sub, quiet=False)
    sub.set_defaults(run=_cmd_masks_evaluate)

    sub = masks.add_parser("degrade", help="ideal masks with realistic segmenter errors at a target pooled IoU (source "
                                           "`degraded-iou0.70`, ...), for the mask-quality curve")
    sub.add_argument("manifest")
    sub.add_argument("--iou", type=float, required=True, help="target IoU against the ideal masks, e.g. 0.7")
    sub.add_argument("--preset", default="origin")
    sub.add_argument("--split", default="all", choices=["train", "val", "test", "all"],
                     help="windows to degrade; the severity is calibrated on them")
    split_options(sub, seed_help="seed of the split and of the errors")
    cache_options(sub)
    sub.set_defaults(run=_cmd_masks_degrade)
