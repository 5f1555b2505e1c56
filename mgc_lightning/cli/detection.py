"""mgc detect and summarize: a bundle run over recordings, and its season summary."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .options import check_processes, processes_options

if TYPE_CHECKING:
    from ..deploy.recording_times import TimeSettings


def _cmd_detect(args: argparse.Namespace) -> int:
    from ..deploy.detect import DetectSettings, detect

    check_processes(args)
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
    from ..deploy.season_summary import summarize

    given = args.time_pattern is not None or args.start_times is not None
    print(summarize(args.out_dir, _time_settings(args) if given else None).line())
    return 0


def _time_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--time-pattern", help="where a file name holds its start time, strptime-style (%%Y or %%y, %%m, "
                                            "%%d, %%H, %%M, %%S), e.g. 'd%%Y%%m%%d_t%%H%%M%%S' (default: the "
                                            "SoundTrap, AudioMoth, Wildlife Acoustics and ISO 8601 names)")
    sub.add_argument("--start-times", help="CSV with columns path, start_time (ISO 8601) and optionally deployment; "
                                           "its recordings take their start time (and deployment) from it")


def _time_settings(args: argparse.Namespace) -> TimeSettings:
    from ..deploy.recording_times import TimeSettings

    return TimeSettings(pattern=args.time_pattern, start_times=args.start_times)


def register(commands: argparse._SubParsersAction) -> None:
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
    processes_options(sub, "files")
    sub.add_argument("--accelerator", default="cpu", help="cpu, gpu or auto")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    _time_options(sub)
    sub.set_defaults(run=_cmd_detect)

    sub = commands.add_parser("summarize", help="rebuild the season summary (diel plots, daily and hourly counts per "
                                                "deployment, summary.html) of an mgc detect folder, without the model")
    sub.add_argument("out_dir", help="the --out folder of mgc detect")
    _time_options(sub)
    sub.set_defaults(run=_cmd_summarize)
