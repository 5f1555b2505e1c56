"""How a model hands what it computed to whatever writes files and figures from it, without knowing the writer: a
named hook called on every callback of the trainer that defines it (evaluate.callbacks defines them). Models compute
and log their metrics; the stages above them write prediction tables and draw figures."""

from __future__ import annotations

import lightning as L


def publish(module: L.LightningModule, hook: str, **outputs) -> None:
    """Call `hook(trainer, module, **outputs)` on each of the trainer's callbacks that has it, in their order."""
    for callback in module.trainer.callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(module.trainer, module, **outputs)
