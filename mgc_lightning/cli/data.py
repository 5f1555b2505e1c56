"""mgc presets, validate and import-raven: the front ends on offer, and a manifest checked or made from Raven tables."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from ..core.labels import JOINT_CLASS_NAMES
from .options import duplicates_option, split_config, split_options


def _cmd_presets(args: argparse.Namespace) -> int:
    from ..frontend.config import PRESETS

    for name, config in PRESETS.items():
        values = {k: v for k, v in config.to_dict().items() if k != "name"}
        print(f"{name} [{config.hash}]: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from ..audio.manifest import SplitError, load_manifest, split_rows

    split = split_config(args)
    rows = load_manifest(args.manifest, drop_duplicates=args.drop_duplicates)
    counts = Counter(row.joint_class for row in rows)
    print(f"{args.manifest}: {len(rows)} windows, {len({r.recording for r in rows})} recordings")
    for index, name in enumerate(JOINT_CLASS_NAMES):
        print(f"  {index} {name:<40} {counts.get(index, 0)}")
    try:
        splits = split_rows(rows, split)
    except SplitError as error:  # the manifest is valid; only training's split of it is not possible
        print(f"mgc validate: warning: no split by {args.split_by}: {error} (training splits the same way)",
              file=sys.stderr)
        return 0
    print("split by " + args.split_by + ": " + ", ".join(f"{k}={len(v)}" for k, v in splits.items()))
    return 0


def _cmd_import_raven(args: argparse.Namespace) -> int:
    from ..audio.manifest import load_manifest, write_manifest
    from ..audio.raven import (
        boxes_csv, parse_label_mapping, read_boxes, read_selection_table, windows_from_boxes, write_boxes,
    )
    from ..core.errors import InputError

    mapping, audio = parse_label_mapping(args.map), [Path(a) for a in args.audio]
    if args.recording and len(audio) > 1:
        raise InputError(f"--recording names one recording; {len(audio)} --audio files are named by their files")
    boxes = [box for table in args.table
             for box in read_selection_table(table, audio, mapping, label_column=args.label_column)]
    metadata = {k: getattr(args, k) for k in ("deployment", "season", "site") if getattr(args, k)}
    rows = [row for path in audio for row in windows_from_boxes(
        path, [box for box in boxes if box.path == path], args.window, args.hop or args.window,
        recording=args.recording, min_overlap_s=args.min_overlap, **metadata)]
    out, boxes_out = Path(args.out), boxes_csv(args.out)
    if args.append and out.exists():  # a recording imported again replaces its earlier rows and boxes
        again = {path.resolve() for path in audio}
        rows = [row for row in load_manifest(out, check_audio=False) if row.path.resolve() not in again] + rows
        earlier = read_boxes(boxes_out) if boxes_out.exists() else []
        boxes = [box for box in earlier if box.path not in again] + boxes
    write_manifest(rows, out)
    write_boxes(boxes, boxes_out)
    print(f"wrote {len(rows)} windows to {out} and {len(boxes)} boxes to {boxes_out}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """presets, validate and import-raven: the front ends on offer, and a manifest checked or made from Raven
    tables."""
    sub = commands.add_parser("presets", help="list the named front-end presets and their parameters")
    sub.set_defaults(run=_cmd_presets)

    sub = commands.add_parser("validate", help="check a manifest (every bad row is reported) and show class counts")
    sub.add_argument("manifest")
    split_options(sub)
    duplicates_option(sub)
    sub.set_defaults(run=_cmd_validate)

    sub = commands.add_parser("import-raven", help="turn a Raven selection table into manifest rows and boxes")
    sub.add_argument("table", nargs="+", help="tab-separated Raven selection table(s)")
    sub.add_argument("--audio", required=True, nargs="+", help="the recording the tables annotate, or the files a "
                                                               "multi-file table names (Begin File, File Offset)")
    sub.add_argument("--map", required=True, help="label mapping, e.g. 'BW=whistle,BC=beluga_click,PP=porpoise_click,"
                                                 "noise=ignore'")
    sub.add_argument("--label-column", default="Annotation")
    sub.add_argument("--window", type=float, required=True, help="window length in seconds")
    sub.add_argument("--hop", type=float, help="hop between windows in seconds (default: the window length)")
    sub.add_argument("--min-overlap", type=float, default=0.0, help="seconds a box must overlap a window to count")
    sub.add_argument("--recording", help="recording id (default: the audio file's name)")
    sub.add_argument("--deployment", default="")
    sub.add_argument("--season", default="")
    sub.add_argument("--site", default="")
    sub.add_argument("--out", required=True, help="manifest CSV to write (boxes go to <name>_boxes.csv beside it)")
    sub.add_argument("--append", action="store_true", help="add to an existing manifest instead of replacing it (a "
                                                          "recording imported again replaces its earlier rows)")
    sub.set_defaults(run=_cmd_import_raven)
