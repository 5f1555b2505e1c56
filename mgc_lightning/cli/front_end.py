"""mgc spectrograms and synth: the windows' images in the cache, and the synthetic benchmark."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import (
    cache_options, check_processes, criterion_option, duplicates_option, ideal_sources, processes_options,
)


def _cmd_spectrograms(args: argparse.Namespace) -> int:
    from ..audio.manifest import load_manifest
    from ..core.sharding import start_processes
    from ..frontend.cache import compute_spectrograms, preset_dir
    from ..frontend.config import get_preset

    check_processes(args)
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
    from ..audio.manifest import load_manifest
    from ..frontend.config import get_preset
    from ..synth.build import build_benchmark, write_ideal_masks
    from ..synth.config import BENCHMARK_PRESETS, sized

    config = sized(BENCHMARK_PRESETS[args.preset], args.n)
    if args.backgrounds or args.negative_calls or args.negative_clicks:
        from dataclasses import replace

        from ..synth.real_mix import RealMix, audio_files

        ranges = {name: tuple(getattr(args, name)) for name in ("tilt_db_per_octave", "background_db")
                  if getattr(args, name) is not None}  # the RealMix defaults unless given
        config = replace(config, real_mix=RealMix(audio_files(args.backgrounds), audio_files(args.negative_calls),
                                                  audio_files(args.negative_clicks), **ranges))
    elif args.tilt_db_per_octave is not None or args.background_db is not None:
        raise ValueError("--tilt-db-per-octave and --background-db shape a real mix: name its files too")
    manifest = build_benchmark(args.out_dir, config, seed=args.seed, workers=args.workers, progress=not args.quiet)
    rows = load_manifest(manifest)
    for name in filter(None, args.mask_presets.split(",")):
        write_ideal_masks(rows, get_preset(name), args.cache_root, args.criterion_db, progress=not args.quiet)
    print(f"{len(rows)} windows: {manifest}; events in {Path(args.out_dir) / 'events.csv'}; ideal masks for "
          f"{args.mask_presets or 'no preset'} under {args.cache_root} ({ideal_sources(args.criterion_db)})")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """spectrograms and synth: the windows' images, and the synthetic benchmark."""
    sub = commands.add_parser("spectrograms", help="compute every window's spectrogram image once into the cache")
    sub.add_argument("manifest")
    sub.add_argument("--preset", default="origin")
    sub.add_argument("--device", default="cpu", help="cpu or cuda")
    sub.add_argument("--batch-size", type=int, default=16)
    sub.add_argument("--workers", type=int, default=0, help="DataLoader workers reading audio")
    processes_options(sub, "windows")
    duplicates_option(sub)
    cache_options(sub)
    sub.set_defaults(run=_cmd_spectrograms)

    from ..frontend.config import PRESETS
    from ..synth.config import BENCHMARK_PRESETS

    sub = commands.add_parser("synth", help="build the synthetic benchmark: audio, manifest, events, ideal masks")
    sub.add_argument("out_dir")
    sub.add_argument("--preset", default="demo", choices=sorted(BENCHMARK_PRESETS),
                     help="demo: a few hundred short windows; demo-real: the same with the field sound model (v2, 'Realism' in "
                          "BENCHMARKS.md); paper: ~10,000 windows")
    sub.add_argument("--n", type=int, help="number of windows (default: the preset's)")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--workers", type=int, default=1, help="parallel processes (the result does not depend on it)")
    sub.add_argument("--mask-presets", default=",".join(PRESETS),
                     help="front-end presets to rasterise ideal masks for (comma-separated, empty for none)")
    real = sub.add_argument_group("real recordings mixed in (synth/real_mix.py; files or folders of .wav/.flac, any "
                                  "rate; files the real-noise test owns are refused)")
    real.add_argument("--backgrounds", nargs="+", default=[], metavar="PATH",
                      help="noise recordings of your site: half the windows get a stretch under their rendered noise")
    real.add_argument("--negative-calls", nargs="+", default=[], metavar="PATH",
                      help="other species' calls (killer whales, dolphins): a quarter of the windows, as 'none'")
    real.add_argument("--negative-clicks", nargs="+", default=[], metavar="PATH",
                      help="other odontocetes' click templates: trains in a fifth of the windows, as 'none'")
    real.add_argument("--tilt-db-per-octave", nargs=2, type=float, metavar=("LOW", "HIGH"),
                      help="spectral slope drawn for each real stretch (default -3 3; 0 0: none)")
    real.add_argument("--background-db", nargs=2, type=float, metavar=("LOW", "HIGH"),
                      help="a real background's band power over the rendered background's (default 0 20; equal: fixed)")
    criterion_option(sub)
    cache_options(sub)
    sub.set_defaults(run=_cmd_synth)
