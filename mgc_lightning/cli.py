"""The `mgc` command: small subcommands over the package's stages."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from . import interrupts
from .labels import JOINT_CLASS_NAMES

if TYPE_CHECKING:
    from .manifest import SplitConfig
    from .recording_times import TimeSettings


def _cmd_presets(args: argparse.Namespace) -> int:
    from .spectrogram_config import PRESETS

    for name, config in PRESETS.items():
        values = {k: v for k, v in config.to_dict().items() if k != "name"}
        print(f"{name} [{config.hash}]: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .manifest import SplitError, load_manifest, split_rows

    split = _split_config(args)
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
    from .errors import InputError
    from .manifest import load_manifest, write_manifest
    from .raven import (boxes_csv, parse_label_mapping, read_boxes, read_selection_table, windows_from_boxes,
                        write_boxes)

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


def _cmd_spectrograms(args: argparse.Namespace) -> int:
    from .cache import compute_spectrograms, preset_dir
    from .manifest import load_manifest
    from .sharding import start_processes
    from .spectrogram_config import get_preset

    _check_processes(args)
    config = get_preset(args.preset)
    # audio is checked window by window as it is read: an unreadable file stops neither the others nor its own
    # readable windows, and all the unreadable ones are listed at the end
    rows = load_manifest(args.manifest, check_audio=False, drop_duplicates=args.drop_duplicates)
    shard, device = start_processes(args.device, args.devices, args.num_nodes)
    done = compute_spectrograms(rows, config, args.cache_root, device=device, batch_size=args.batch_size,
                                num_workers=args.workers, progress=not args.quiet, shard=shard)
    if shard.is_main:
        distinct = len({row.key for row in rows})
        print(f"{done} computed, {distinct - done} already cached, in {preset_dir(config, args.cache_root)}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from .manifest import load_manifest
    from .spectrogram_config import get_preset
    from .synth.build import build_benchmark, write_ideal_masks
    from .synth.config import BENCHMARK_PRESETS, sized

    config = sized(BENCHMARK_PRESETS[args.preset], args.n)
    manifest = build_benchmark(args.out_dir, config, seed=args.seed, workers=args.workers, progress=not args.quiet)
    rows = load_manifest(manifest)
    for name in filter(None, args.mask_presets.split(",")):
        write_ideal_masks(rows, get_preset(name), args.cache_root, args.criterion_db, progress=not args.quiet)
    print(f"{len(rows)} windows: {manifest}; events in {Path(args.out_dir) / 'events.csv'}; ideal masks for "
          f"{args.mask_presets or 'no preset'} under {args.cache_root} ({_ideal_sources(args.criterion_db)})")
    return 0


def _cmd_masks_ideal(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .manifest import load_manifest
    from .spectrogram_config import get_preset
    from .synth.build import TYPED_IDEAL_SOURCE, add_typed_stems, write_ideal_masks, write_typed_ideal_masks
    from .synth.config import DETECTABLE_SNR_DB

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
          f"({_ideal_sources(args.criterion_db)}, preset {args.preset})")
    return 0


def _cmd_masks_propose(args: argparse.Namespace) -> int:
    from .manifest import load_manifest
    from .mask_sources import export_for_refinement, propose_masks
    from .spectrogram_config import get_preset

    rows, config = load_manifest(args.manifest), get_preset(args.preset)
    propose_masks(rows, config, args.cache_root, args.sensitivity, progress=not args.quiet)
    print(f"{len(rows)} candidate masks (sensitivity {args.sensitivity}) for preset {args.preset}")
    if args.export:
        manifest = export_for_refinement(rows, config, args.cache_root, args.export)
        print(f"PNGs for refinement and their manifest: {manifest}")
    return 0


def _cmd_masks_boxes(args: argparse.Namespace) -> int:
    from .manifest import load_manifest
    from .mask_sources import BOXES, draw_box_masks
    from .raven import boxes_csv, read_boxes
    from .spectrogram_config import get_preset

    rows = load_manifest(args.manifest)
    boxes = read_boxes(args.boxes or boxes_csv(args.manifest))
    drawn = draw_box_masks(rows, boxes, get_preset(args.preset), args.cache_root)
    print(f"{len(set(rows))} box masks ({drawn} with a box) for preset {args.preset}: mask source `{BOXES}`")
    return 0


def _cmd_masks_select(args: argparse.Namespace) -> int:
    from .cache import mask_store
    from .manifest import load_manifest, write_manifest
    from .mask_sources import select_high_quality
    from .spectrogram_config import get_preset

    rows = load_manifest(args.manifest)
    available = None
    if args.source == "manifest":
        available = lambda row: bool(row.mask)  # noqa: E731
    elif args.source:
        store = mask_store(get_preset(args.preset), args.source, args.cache_root)
        available = lambda row: store.has(row.key)  # noqa: E731
    chosen = select_high_quality(rows, _split_config(args), args.count, args.seed, available)
    write_manifest(chosen, args.out)
    counts = Counter(row.joint_class for row in chosen)
    print(f"{len(chosen)} windows to {args.out} (train side only), per class: "
          + ", ".join(f"{JOINT_CLASS_NAMES[c]}={counts.get(c, 0)}" for c in range(len(JOINT_CLASS_NAMES))))
    return 0


def _cmd_masks_predict(args: argparse.Namespace) -> int:
    from .manifest import load_manifest
    from .models.segmenter import predict_masks
    from .sharding import start_processes
    from .spectrogram_config import get_preset

    _check_processes(args)
    rows = load_manifest(args.manifest)
    shard, device = start_processes(args.device, args.devices, args.num_nodes)
    done = predict_masks(args.checkpoint, rows, get_preset(args.preset), args.cache_root, args.batch_size,
                         device, replace=args.replace, progress=not args.quiet, shard=shard)
    if shard.is_main:
        print(f"{done} masks predicted, {len(set(rows)) - done} already there (preset {args.preset})")
    return 0


def _cmd_masks_evaluate(args: argparse.Namespace) -> int:
    from .manifest import load_manifest
    from .mask_sources import evaluate_masks
    from .spectrogram_config import get_preset
    from .synth.build import ideal_source

    rows = _rows_of_split(load_manifest(args.manifest, check_audio=False), args)
    references = [ideal_source(c) for c in args.criterion_db] if args.criterion_db else [args.reference]
    for reference in references:
        scores = evaluate_masks(rows, get_preset(args.preset), args.cache_root, args.source, reference)
        print(f"{args.source} vs {reference} masks, preset {args.preset}, {args.split} split ({len(rows)} windows): "
              + ", ".join(f"{name} {value:.3f}" for name, value in scores.items()))
    return 0


def _cmd_masks_degrade(args: argparse.Namespace) -> int:
    from .manifest import load_manifest
    from .mask_degrade import degraded_source, write_degraded_masks
    from .spectrogram_config import get_preset

    rows = _rows_of_split(load_manifest(args.manifest), args)
    achieved = write_degraded_masks(rows, get_preset(args.preset), args.cache_root, args.iou, args.seed,
                                    progress=not args.quiet)
    print(f"{len(rows)} ideal masks degraded into source `{degraded_source(args.iou)}` (preset {args.preset}, "
          f"{args.split} split): pooled IoU {achieved:.3f}, target {args.iou:g}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_checkpoint

    from .tracking import where_to_find

    evaluation = evaluate_checkpoint(args.checkpoint, args.preset, args.segmenter, batch_size=args.batch_size,
                                     manifest=args.manifest)
    width = max(map(len, evaluation.metrics))
    for name, value in sorted(evaluation.metrics.items()):
        print(f"{name:<{width}}  {value:.4f}")
    if evaluation.run_id:
        print(where_to_find(evaluation.run_id, Path(args.checkpoint).parent))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    report = write_report(args.experiment, args.out, args.train_preset)
    print(report.read_text())
    print(f"written to {report}")
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline, PipelineConfig
    from .report import collect_runs, summary_text

    config = PipelineConfig.from_yaml(args.config, seeds=args.seeds)
    pipeline = Pipeline(config, mask_curve=args.mask_curve, learning_curve=args.learning_curve,
                        few_shot_curve=args.few_shot_curve)
    report = pipeline.run()
    print(summary_text(collect_runs(config.experiment, pipeline.tracking_uri), config.presets[0],
                       pipeline.reported_headline))
    print(f"Stage wall times ({pipeline.times_path}; the run that did each stage's work):\n{pipeline.times_table()}")
    if pipeline.output_dir:
        print(f"Report: {report}\nEverything but the data is in {pipeline.output_dir}; browse the runs with "
              f"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow server --backend-store-uri {pipeline.tracking_uri} "
              "--workers 1  (then open http://127.0.0.1:5000 and the experiment "
              f"{config.experiment!r})")
    else:
        print(f"Report: {report}\nBrowse the runs: make mlflow-ui EXPERIMENT={config.experiment}  (it prints the "
              "address of the experiment's runs)")
    return 0


def _cmd_annotate(args: argparse.Namespace) -> int:
    from .annotate.app import serve
    from .annotate.queues import build_queue, load_segmenter
    from .annotate.session import AnnotationSession
    from .manifest import load_manifest
    from .spectrogram_config import get_preset

    rows, config = load_manifest(args.manifest), get_preset(args.preset)
    segmenter = load_segmenter(args.segmenter) if args.segmenter else None
    queue = build_queue(rows, args.queue, _split_config(args), config, args.cache_root, args.count, args.seed,
                        segmenter)
    session = AnnotationSession(args.manifest, queue, config, args.cache_root, args.annotator, args.queue, segmenter)
    serve(session, args.port, announce=lambda line: print(line, flush=True))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .bundle import bundle_from_checkpoints, save_bundle

    bundle = bundle_from_checkpoints(args.classifier, args.segmenter, args.window)
    digest = save_bundle(bundle, args.out)
    print(f"wrote {args.out} (front end {bundle.front_end.name}, {bundle.window_s:g} s windows, "
          f"{'with' if bundle.segmenter else 'no'} segmenter, sha256 {digest[:12]})")
    return 0


def _cmd_detect(args: argparse.Namespace) -> int:
    from .detect import DetectSettings, detect

    _check_processes(args)
    settings = DetectSettings(hop_s=args.hop, channel=args.channel, batch_size=args.batch_size,
                              formats=tuple(f.strip() for f in args.format.split(",") if f.strip()))
    summary = detect(args.paths, args.model, args.out, settings, devices=args.devices, accelerator=args.accelerator,
                     num_nodes=args.num_nodes, progress=not args.quiet, times=_time_settings(args),
                     workers=args.workers)
    if summary is None:  # another process of a multi-process run: the main one reports
        return 0
    print(summary.line())
    return 1 if summary.failed else 0


def _cmd_summarize(args: argparse.Namespace) -> int:
    from .season_summary import summarize

    given = args.time_pattern is not None or args.start_times is not None
    print(summarize(args.out_dir, _time_settings(args) if given else None).line())
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import calibrate, log_to_mlflow

    result = calibrate(args.model, args.manifest, _split_config(args), args.target_precision, args.out)
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


def _split_options(sub: argparse.ArgumentParser, seed_help: str = "seed of the split") -> None:
    """The classifier data module's split settings with its defaults (SplitConfig's): a split seen or used here is
    the classifier's only when every setting matches."""
    from .manifest import GROUP_COLUMNS, SplitConfig

    default = SplitConfig()
    sub.add_argument("--split-by", default=default.group_by, choices=GROUP_COLUMNS,
                     help="group column of the split (the classifier's split_by)")
    sub.add_argument("--split-fractions", nargs=3, type=float, default=default.fractions,
                     metavar=("TRAIN", "VAL", "TEST"), help="shares of the windows (the classifier's split_fractions)")
    sub.add_argument("--seed", type=int, default=default.seed, help=seed_help + " (the classifier's split_seed)")


def _time_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--time-pattern", help="where a file name holds its start time, strptime-style (%%Y or %%y, %%m, "
                                            "%%d, %%H, %%M, %%S), e.g. 'd%%Y%%m%%d_t%%H%%M%%S' (default: the "
                                            "SoundTrap, AudioMoth, Wildlife Acoustics and ISO 8601 names)")
    sub.add_argument("--start-times", help="CSV with columns path, start_time (ISO 8601) and optionally deployment; "
                                           "its recordings take their start time (and deployment) from it")


def _time_settings(args: argparse.Namespace) -> TimeSettings:
    from .recording_times import TimeSettings

    return TimeSettings(pattern=args.time_pattern, start_times=args.start_times)


def _split_config(args: argparse.Namespace) -> SplitConfig:
    from .manifest import SplitConfig

    return SplitConfig(group_by=args.split_by, fractions=tuple(args.split_fractions), seed=args.seed)


def _rows_of_split(rows: list, args: argparse.Namespace) -> list:
    """The rows of `--split` (all of them for `all`) under the split options."""
    from .manifest import split_rows

    return rows if args.split == "all" else [rows[i] for i in split_rows(rows, _split_config(args))[args.split]]


def _ideal_sources(criteria_db: list[float]) -> str:
    from .synth.build import ideal_source

    return ", ".join(f"{ideal_source(c)} at {c:g} dB" for c in criteria_db)


def _criterion_option(sub: argparse.ArgumentParser) -> None:
    from .synth.config import DETECTABLE_SNR_DB

    sub.add_argument("--criterion-db", type=float, nargs="+", default=[DETECTABLE_SNR_DB], metavar="DB",
                     help=f"local SNRs a pixel needs to count as sound, one mask source each (default "
                          f"{DETECTABLE_SNR_DB:g}: source `ideal`, what the labels count; 0: `ideal-0db`, ...)")


def _duplicates_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--drop-duplicates", action="store_true",
                     help="drop exact copies of a manifest row instead of refusing the manifest (rows of one window "
                          "with different labels are refused either way)")


def _one_line_warnings() -> None:
    """The package's warnings about the user's data (silent windows, ...) as one line each, without source lines."""
    default = warnings.formatwarning

    def format_warning(message, category, filename, lineno, line=None):
        if category.__module__.startswith("mgc_lightning"):
            return f"mgc: warning: {message}\n"
        return default(message, category, filename, lineno, line)
    warnings.formatwarning = format_warning


# Libraries whose own deprecation notices (raised in their code, e.g. Lightning calling a torch API that torch
# deprecates) no user of `mgc` can act on; a deprecation met in this package's code still shows.
LIBRARY_MODULES = (r"(lightning|lightning_fabric|lightning_utilities|torch|torchvision|torchmetrics|timm|"
                   r"segmentation_models_pytorch|mlflow|jsonargparse)(\.|$)")


class _WithoutAdvertisements(logging.Filter):
    """Drops Lightning's advertisements for its cloud services ("💡 Tip: ... litlogger", "... litmodels"), which
    every Trainer prints."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def _without_library_notices() -> None:
    """Lightning's advertisements and the libraries' own deprecation notices stay off the terminal; every other line
    (which accelerators Lightning uses, ...) and warning (about the data, Lightning's included) still shows. The
    filters go on by name before Lightning is imported: a logger's filter sees only the records logged on that logger,
    and these are the ones Lightning's rank-zero messages are logged on."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _WithoutAdvertisements) for f in logger.filters):
            logger.addFilter(_WithoutAdvertisements())
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=LIBRARY_MODULES)


def _processes_options(sub: argparse.ArgumentParser, shared: str) -> None:
    """--devices and --num-nodes of a command whose processes share the `shared` (each done by one of them), started
    as Lightning starts a Trainer's (docs/paper_scale.md, "Several GPUs and nodes")."""
    sub.add_argument("--devices", type=int, default=1, help=f"processes (DDP) per machine that share the {shared}")
    sub.add_argument("--num-nodes", type=int, default=1,
                     help="machines of a multi-node DDP run (started by torchrun or SLURM, as Lightning expects)")


def _check_processes(args: argparse.Namespace) -> None:
    from .errors import InputError

    for option, value in (("--devices", args.devices), ("--num-nodes", args.num_nodes)):
        if value < 1:
            raise InputError(f"{option} must be at least 1, got {value}")


def _cache_options(sub: argparse.ArgumentParser, quiet: bool = True) -> None:
    sub.add_argument("--cache-root", default="data/cache", help="where spectrograms and masks are cached")
    if quiet:
        sub.add_argument("--quiet", action="store_true", help="no progress bar")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mgc", description="Mask-guided classification of marine mammal sounds.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _data_commands(commands)
    _front_end_commands(commands)
    masks = commands.add_parser("masks", help="mask sources for a preset").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    _mask_source_commands(masks)
    _mask_tool_commands(masks)
    _annotate_command(commands)
    _model_commands(commands)
    _detection_commands(commands)
    _protocol_commands(commands)
    for name in LIGHTNING_COMMANDS:
        commands.add_parser(name, help=f"Lightning {name} from a YAML experiment (see `mgc {name} --help`)",
                            add_help=False)
    return parser


def _data_commands(commands: argparse._SubParsersAction) -> None:
    """presets, validate and import-raven: the front ends on offer, and a manifest checked or made from Raven
    tables."""
    sub = commands.add_parser("presets", help="list the named front-end presets and their parameters")
    sub.set_defaults(run=_cmd_presets)

    sub = commands.add_parser("validate", help="check a manifest (every bad row is reported) and show class counts")
    sub.add_argument("manifest")
    _split_options(sub)
    _duplicates_option(sub)
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


def _front_end_commands(commands: argparse._SubParsersAction) -> None:
    """spectrograms and synth: the windows' images, and the synthetic benchmark."""
    sub = commands.add_parser("spectrograms", help="compute every window's spectrogram image once into the cache")
    sub.add_argument("manifest")
    sub.add_argument("--preset", default="origin")
    sub.add_argument("--device", default="cpu", help="cpu or cuda")
    sub.add_argument("--batch-size", type=int, default=16)
    sub.add_argument("--workers", type=int, default=0, help="DataLoader workers reading audio")
    _processes_options(sub, "windows")
    _duplicates_option(sub)
    _cache_options(sub)
    sub.set_defaults(run=_cmd_spectrograms)

    from .spectrogram_config import PRESETS
    from .synth.config import BENCHMARK_PRESETS

    sub = commands.add_parser("synth", help="build the synthetic benchmark: audio, manifest, events, ideal masks")
    sub.add_argument("out_dir")
    sub.add_argument("--preset", default="demo", choices=sorted(BENCHMARK_PRESETS),
                     help="demo: a few hundred short windows; paper: ~10,000 windows")
    sub.add_argument("--n", type=int, help="number of windows (default: the preset's)")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--workers", type=int, default=1, help="parallel processes (the result does not depend on it)")
    sub.add_argument("--mask-presets", default=",".join(PRESETS),
                     help="front-end presets to rasterise ideal masks for (comma-separated, empty for none)")
    _criterion_option(sub)
    _cache_options(sub)
    sub.set_defaults(run=_cmd_synth)


def _mask_source_commands(masks: argparse._SubParsersAction) -> None:
    """mgc masks ideal, propose, boxes and select: masks a segmenter learns from."""
    sub = masks.add_parser("ideal", help="ideal masks of a synthetic benchmark, on any preset's grid")
    sub.add_argument("manifest")
    sub.add_argument("--preset", default="origin")
    sub.add_argument("--typed", action="store_true",
                     help="per-type ideal masks (source ideal-typed, one channel per sound type) for a typed segmenter")
    _criterion_option(sub)
    _cache_options(sub)
    sub.set_defaults(run=_cmd_masks_ideal)

    sub = masks.add_parser("propose", help="candidate masks: edges + adaptive threshold + clean-up")
    sub.add_argument("manifest")
    sub.add_argument("--preset", default="origin")
    sub.add_argument("--sensitivity", type=float, default=0.7, help="0..1, higher keeps more pixels")
    sub.add_argument("--export", help="folder for spectrogram/mask PNGs and a manifest, to refine by hand")
    _cache_options(sub)
    sub.set_defaults(run=_cmd_masks_propose)

    sub = masks.add_parser("boxes", help="box masks from the imported Raven boxes, on any preset's grid (source "
                                         "`boxes`)")
    sub.add_argument("manifest")
    sub.add_argument("--boxes", help="boxes CSV (default: <manifest>_boxes.csv, written by import-raven)")
    sub.add_argument("--preset", default="origin")
    _cache_options(sub, quiet=False)
    sub.set_defaults(run=_cmd_masks_boxes)

    sub = masks.add_parser("select", help="pick the high-quality set (stratified over the 8 classes) for the segmenter")
    sub.add_argument("manifest")
    sub.add_argument("--count", type=int, default=200)
    sub.add_argument("--out", required=True, help="manifest of the chosen windows")
    sub.add_argument("--source", default="", help="only windows that have a mask in this source (e.g. ideal, "
                                                 "manifest)")
    sub.add_argument("--preset", default="origin")
    _split_options(sub, seed_help="seed of the split and of the selection")
    _cache_options(sub, quiet=False)
    sub.set_defaults(run=_cmd_masks_select)


def _mask_tool_commands(masks: argparse._SubParsersAction) -> None:
    """mgc masks predict, evaluate and degrade: a segmenter's masks, their quality, and masks of a chosen quality."""
    sub = masks.add_parser("predict", help="predict masks for every window with a trained segmenter (resumable)")
    sub.add_argument("manifest")
    sub.add_argument("--checkpoint", required=True)
    sub.add_argument("--preset", default="origin")
    sub.add_argument("--batch-size", type=int, default=32)
    sub.add_argument("--device", default="cpu", help="cpu or cuda")
    _processes_options(sub, "windows")
    sub.add_argument("--replace", action="store_true", help="drop masks predicted by another checkpoint")
    _cache_options(sub)
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
    _split_options(sub)
    _cache_options(sub, quiet=False)
    sub.set_defaults(run=_cmd_masks_evaluate)

    sub = masks.add_parser("degrade", help="ideal masks with realistic segmenter errors at a target pooled IoU (source "
                                           "`degraded-iou0.70`, ...), for the mask-quality curve")
    sub.add_argument("manifest")
    sub.add_argument("--iou", type=float, required=True, help="target IoU against the ideal masks, e.g. 0.7")
    sub.add_argument("--preset", default="origin")
    sub.add_argument("--split", default="all", choices=["train", "val", "test", "all"],
                     help="windows to degrade; the severity is calibrated on them")
    _split_options(sub, seed_help="seed of the split and of the errors")
    _cache_options(sub)
    sub.set_defaults(run=_cmd_masks_degrade)


def _annotate_command(commands: argparse._SubParsersAction) -> None:
    """annotate: the browser app that refines masks by hand."""
    sub = commands.add_parser("annotate", help="refine masks in the browser (a local web app on 127.0.0.1)")
    sub.add_argument("manifest")
    sub.add_argument("--preset", default="origin")
    sub.add_argument("--queue", default="hq", choices=["hq", "uncertain", "all"],
                     help="hq: the stratified high-quality selection; uncertain: the windows the segmenter is least "
                          "sure about first (needs --segmenter); all: every window (train side only, as the others)")
    sub.add_argument("--count", type=int, default=200, help="windows in the hq and uncertain queues")
    sub.add_argument("--segmenter", help="segmenter checkpoint: its masks are the starting point, and it ranks the "
                                         "uncertain queue")
    sub.add_argument("--annotator", default=os.environ.get("USER") or "annotator",
                     help="name recorded with each accepted mask (default: $USER)")
    sub.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    _split_options(sub, seed_help="seed of the split and of the hq selection")
    _cache_options(sub, quiet=False)
    sub.set_defaults(run=_cmd_annotate)


def _model_commands(commands: argparse._SubParsersAction) -> None:
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
    _split_options(sub)
    sub.set_defaults(run=_cmd_calibrate)


def _detection_commands(commands: argparse._SubParsersAction) -> None:
    """detect and summarize: a bundle run over recordings, and its season summary."""
    sub = commands.add_parser("detect", help="run a model bundle over recordings: per-window CSVs, Raven tables, "
                                             "season summary (resumable; exit 1 when some files failed)")
    sub.add_argument("paths", nargs="+", help="WAV/FLAC files, folders (searched recursively) or text files listing "
                                              "recordings")
    sub.add_argument("--model", required=True, help="bundle from mgc export")
    sub.add_argument("--out", required=True, help="output folder (a rerun into it skips finished files)")
    sub.add_argument("--hop", type=float, help="seconds between window starts (default: the window length)")
    sub.add_argument("--channel", type=int, help="channel of multichannel files, 0 = first (default: mix to mono)")
    sub.add_argument("--format", default="csv,raven,presence",
                     help="outputs: csv (per window, always written), raven, presence (the season summary)")
    sub.add_argument("--batch-size", type=int, default=16, help="windows per block read and per forward pass")
    sub.add_argument("--workers", type=int, default=0,
                     help="processes that decode audio (a file each) while the models run, for GPUs; "
                          "0 (default) decodes in the main process, enough on a CPU")
    _processes_options(sub, "files")
    sub.add_argument("--accelerator", default="cpu", help="cpu, gpu or auto")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    _time_options(sub)
    sub.set_defaults(run=_cmd_detect)

    sub = commands.add_parser("summarize", help="rebuild the season summary (diel plots, daily and hourly counts per "
                                                "deployment, summary.html) of an mgc detect folder, without the model")
    sub.add_argument("out_dir", help="the --out folder of mgc detect")
    _time_options(sub)
    sub.set_defaults(run=_cmd_summarize)


def _protocol_commands(commands: argparse._SubParsersAction) -> None:
    """report and pipeline: the paper's tables, and its protocol end to end."""
    sub = commands.add_parser("report", help="tables and figures from an MLflow experiment's runs")
    sub.add_argument("--experiment", required=True)
    sub.add_argument("--out", default="report")
    sub.add_argument("--train-preset", default="origin")
    sub.set_defaults(run=_cmd_report)

    sub = commands.add_parser("pipeline", help="run the whole protocol from a pipeline YAML (make demo, make paper)")
    sub.add_argument("config", help="e.g. experiments/pipeline_demo.yaml")
    sub.add_argument("--seeds", type=int, nargs="+", help="training seeds instead of the YAML's (finished seeds are "
                                                          "kept: `--seeds 0 1 2` after a one-seed run adds two)")
    sub.add_argument("--mask-curve", action="store_true", help="also train the YAML's mask_curve_model on exact masks "
                                                               "degraded to each IoU of its mask_curve, and on the "
                                                               "exact masks themselves (a perfect segmenter)")
    sub.add_argument("--learning-curve", action="store_true", help="also train the YAML's learning_curve_models on "
                                                                   "each learning_curve number of labelled windows")
    sub.add_argument("--few-shot-curve", action="store_true", help="also train the segmenter on each few_shot_curve "
                                                                   "number of high-quality masks, drawn at random and "
                                                                   "by its uncertainty")
    sub.set_defaults(run=_cmd_pipeline)


LIGHTNING_COMMANDS = ("fit", "test")
# What a user's mistake raises (a bad path, file, config, checkpoint or setting): one line and exit status 2.
USER_ERRORS = (ValueError, OSError, RuntimeError)


def _error_line(error: BaseException) -> str:
    """An OSError as `file: reason` (a long path shortened), a list of problems with one entry on one line,
    anything else as its message."""
    problems = getattr(error, "problems", None)
    if isinstance(problems, list) and len(problems) == 1 and hasattr(error, "path"):
        return f"{error.path}: {problems[0]}"
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        name = str(error.filename)
        if len(name) > 120:
            name = f"{name[:60]}...{name[-40:]} ({len(name)} characters)"
        return f"{name}: {error.strerror}"
    return str(error)


def _run_lightning(argv: list[str], from_shell: bool) -> int:
    """fit/test through LightningCLI, with config files and --ckpt_path checked first and every parse error of
    jsonargparse as one line naming the file that set the offending key."""
    from jsonargparse import ArgumentError

    from .training import argument_error_line, read_config_files, run_lightning

    configs = read_config_files(argv)
    try:
        run_lightning(None if from_shell else argv)  # LightningCLI reads sys.argv itself when run from a shell
    except (ArgumentError, ValueError) as error:
        # jsonargparse wraps what a class raised while it was built (a ValueError) in a multi-line message too
        if not isinstance(error, ArgumentError) and "Does not validate against" not in str(error):
            raise
        print(f"mgc {argv[0]}: error: {argument_error_line(str(error), argv, configs)}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    from_shell = argv is None
    argv = sys.argv[1:] if from_shell else argv
    command = " ".join(argv[:2]) if argv[:1] == ["masks"] else (argv[0] if argv else "")
    _without_library_notices()
    with interrupts.handled():
        try:
            if argv and argv[0] in LIGHTNING_COMMANDS:
                return _run_lightning(argv, from_shell)
            args = build_parser().parse_args(argv)
            _one_line_warnings()
            return args.run(args)
        except BaseException as error:
            # after a signal, whatever ended the command is the interruption: Interrupted, the SystemExit with which
            # Lightning stops a loop that got SIGTERM, or the error of a worker that the signal ended too
            signum = interrupts.received()
            if signum is not None:
                resume = ("; if an epoch finished, this run's last.ckpt continues it (--ckpt_path PATH)"
                          if command == "fit" else "")
                print(f"mgc {command}: interrupted by {signum.name}{resume}", file=sys.stderr)
                return interrupts.exit_status(signum)
            if isinstance(error, USER_ERRORS):
                print(f"mgc {command}: error: {_error_line(error)}", file=sys.stderr)
                return 2
            raise


if __name__ == "__main__":
    sys.exit(main())
