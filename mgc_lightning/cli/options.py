"""Options and settings that several command groups share: the classifier's split, the cache, DDP processes, the
ideal masks' criterion."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..audio.manifest import SplitConfig


def split_options(sub: argparse.ArgumentParser, seed_help: str = "seed of the split") -> None:
    """The classifier data module's split settings with its defaults (SplitConfig's): a split seen or used here is
    the classifier's only when every setting matches."""
    from ..audio.manifest import GROUP_COLUMNS, SplitConfig

    default = SplitConfig()
    sub.add_argument("--split-by", default=default.group_by, choices=GROUP_COLUMNS,
                     help="group column of the split (the classifier's split_by)")
    sub.add_argument("--split-fractions", nargs=3, type=float, default=default.fractions,
                     metavar=("TRAIN", "VAL", "TEST"), help="shares of the windows (the classifier's split_fractions)")
    sub.add_argument("--seed", type=int, default=default.seed, help=seed_help + " (the classifier's split_seed)")


def split_config(args: argparse.Namespace) -> SplitConfig:
    from ..audio.manifest import SplitConfig

    return SplitConfig(group_by=args.split_by, fractions=tuple(args.split_fractions), seed=args.seed)


def processes_options(sub: argparse.ArgumentParser, shared: str) -> None:
    """--devices and --num-nodes of a command whose processes share the `shared` (each done by one of them), started
    as Lightning starts a Trainer's (docs/paper_scale.md, "Several GPUs and nodes")."""
    sub.add_argument("--devices", type=int, default=1, help=f"processes (DDP) per machine that share the {shared}")
    sub.add_argument("--num-nodes", type=int, default=1,
                     help="machines of a multi-node DDP run (started by torchrun or SLURM, as Lightning expects)")


def check_processes(args: argparse.Namespace) -> None:
    from ..core.errors import InputError

    for option, value in (("--devices", args.devices), ("--num-nodes", args.num_nodes)):
        if value < 1:
            raise InputError(f"{option} must be at least 1, got {value}")


def cache_options(sub: argparse.ArgumentParser, quiet: bool = True) -> None:
    sub.add_argument("--cache-root", default="data/cache", help="where spectrograms and masks are cached")
    if quiet:
        sub.add_argument("--quiet", action="store_true", help="no progress bar")


def duplicates_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--drop-duplicates", action="store_true",
                     help="drop exact copies of a manifest row instead of refusing the manifest (rows of one window "
                          "with different labels are refused either way)")


def criterion_option(sub: argparse.ArgumentParser) -> None:
    from ..synth.config import DETECTABLE_SNR_DB

    sub.add_argument("--criterion-db", type=float, nargs="+", default=[DETECTABLE_SNR_DB], metavar="DB",
                     help=f"local SNRs a pixel needs to count as sound, one mask source each (default "
                          f"{DETECTABLE_SNR_DB:g}: source `ideal`, what the labels count; 0: `ideal-0db`, ...)")


def ideal_sources(criteria_db: list[float]) -> str:
    from ..synth.build import ideal_source

    return ", ".join(f"{ideal_source(c)} at {c:g} dB" for c in criteria_db)
