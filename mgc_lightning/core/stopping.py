"""How Lightning runs stop and resume: last.ckpt holds the last finished epoch, and a signal stops a loop at the end
of a batch.

Lightning's `save_last` rewrites last.ckpt only when a top-k checkpoint is saved, that is when the monitored metric
improved: `--ckpt_path last` then went back to the last improvement, trained the epochs after it again and logged
their metrics a second time at the same steps. LastCheckpoint writes last.ckpt after every training epoch instead.
An interruption leaves it as it is: a checkpoint from inside an epoch would resume a partial epoch (our loaders
cannot resume mid-epoch, Lightning warns), and since every metric here is logged once per epoch, the unfinished
epoch that a resume repeats had logged nothing."""

from __future__ import annotations

from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from . import interrupts


class LastCheckpoint(ModelCheckpoint):
    """last.ckpt, rewritten at the end of every training epoch (after validation, the epoch's hooks and the other
    checkpoint callbacks, whose state it holds), whatever the monitored metric did."""

    def __init__(self):
        super().__init__(filename="last", monitor=None, save_top_k=1, save_on_train_epoch_end=True,
                         enable_version_counter=False)

    @property
    def path(self) -> str:
        """The file it keeps ('' before the first epoch ended)."""
        return self.best_model_path


def last_checkpoint(trainer: Trainer) -> str:
    """The trainer's last.ckpt ('' when it has none yet)."""
    return next((c.path for c in trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint)), "")


class StopAtBatchEnd(Callback):
    """While a loop runs, a first SIGINT or SIGTERM is only recorded (interrupts.py) and stops the loop at the end of
    the batch, or at the next epoch's start: never inside an optimizer step or between a checkpoint and the metrics
    of its epoch. A signal that comes during the last batch stops the command when the loop ends."""

    def _start(self, *args) -> None:
        interrupts.defer(True)

    def _check(self, *args) -> None:
        interrupts.raise_if_received()

    def _end(self, *args) -> None:
        interrupts.defer(False)
        interrupts.raise_if_received()

    def on_exception(self, *args) -> None:
        interrupts.defer(False)

    on_train_start = on_test_start = on_predict_start = _start
    on_train_epoch_start = on_train_batch_end = on_validation_batch_end = _check
    on_test_batch_end = on_predict_batch_end = _check
    on_train_end = on_test_end = on_predict_end = _end
