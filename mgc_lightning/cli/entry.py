"""The `mgc` command: `main` parses the command line, runs the chosen subcommand, and turns a user's mistake into one
line (exit status 2) and a signal into the shell's status for it. Each command group registers its own subcommands
(data.py, front_end.py, masks.py, ...); none imports torch before its command runs."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from ..core import interrupts
from . import annotate, data, detection, front_end, lightning, masks, models, protocol


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


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mgc", description="Mask-guided classification of marine mammal sounds.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (data, front_end, masks, annotate, models, detection, protocol, lightning):
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from_shell = argv is None
    argv = sys.argv[1:] if from_shell else argv
    command = " ".join(argv[:2]) if argv[:1] == ["masks"] else (argv[0] if argv else "")
    _without_library_notices()
    with interrupts.handled():
        try:
            if argv and argv[0] in lightning.LIGHTNING_COMMANDS:
                return lightning.run(argv, from_shell)
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
