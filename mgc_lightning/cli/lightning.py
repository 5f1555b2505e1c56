"""mgc fit and test: LightningCLI over the YAML experiments (train.lightning_cli), with every run's outputs written by
evaluate.callbacks."""

from __future__ import annotations

import argparse
import sys


LIGHTNING_COMMANDS = ("fit", "test")


def register(commands: argparse._SubParsersAction) -> None:
    """fit and test: listed in `mgc --help`; LightningCLI parses their options itself (see `run`)."""
    for name in LIGHTNING_COMMANDS:
        commands.add_parser(name, help=f"Lightning {name} from a YAML experiment (see `mgc {name} --help`)",
                            add_help=False)


def run(argv: list[str], from_shell: bool) -> int:
    """fit/test through LightningCLI, with config files and --ckpt_path checked first and every parse error of
    jsonargparse as one line naming the file that set the offending key."""
    from jsonargparse import ArgumentError

    from ..evaluate.callbacks import run_callbacks
    from ..train.lightning_cli import argument_error_line, read_config_files, run_lightning

    configs = read_config_files(argv)
    try:
        # LightningCLI reads sys.argv itself when run from a shell
        run_lightning(None if from_shell else argv, run_callbacks())
    except (ArgumentError, ValueError) as error:
        # jsonargparse wraps what a class raised while it was built (a ValueError) in a multi-line message too
        if not isinstance(error, ArgumentError) and "Does not validate against" not in str(error):
            raise
        print(f"mgc {argv[0]}: error: {argument_error_line(str(error), argv, configs)}", file=sys.stderr)
        return 2
    return 0
