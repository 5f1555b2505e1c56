"""The `mgc` command (`main`; `python -m mgc_lightning.cli`). One module per command group, each registering its own
subcommands: data (presets, validate, import-raven), front_end (spectrograms, synth), masks (masks ...), annotate,
models (evaluate, export, calibrate), detection (detect, summarize), protocol (report, pipeline), lightning (fit,
test); options (what several groups share), entry (the parser and `main`). Torch is imported only by the commands
that need it.
"""

from .entry import main

__all__ = ["annotate", "data", "detection", "entry", "front_end", "lightning", "main", "masks", "models", "options",
           "protocol"]
