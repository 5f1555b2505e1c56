"""Out-of-distribution evaluation: a classifier trained on one front end, tested on windows rendered by another, or on
another dataset (every window of it: a confirmation benchmark, a new site).

The data module is rebuilt from the checkpoint (same manifest, split, mask source and kind), only the preset (and
the manifest, when given) changes; masks for that preset are made the same way as in training (the same segmenter
predicts them when the source is `predicted`). Results go into an evaluation run of their own, linked to the training run (see
train.tracking.evaluation_run_settings), as test/<preset>/...: the training run stays exactly as it finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from ..core.checkpoints import RUN_ID_KEY, load_checkpoint, load_module
from ..data.datamodules import ClassificationDataModule
from ..frontend.spectrogram import get_preset
from ..masks.predict import predict_masks
from ..masks.sources import PREDICTED
from ..models.classifier import ClassifierModule
from ..models.segmenter import load_segmenter
from ..train.tracking import MLflowLogger, evaluation_run_settings
from .callbacks import run_callbacks


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    run_id: str | None  # the evaluation run (None for a checkpoint trained without MLflow)


def evaluate_checkpoint(
    checkpoint: str | Path, preset: str, segmenter: str | Path | None = None, accelerator: str = "auto",
    batch_size: int | None = None, manifest: str | Path | None = None, cache_root: str | Path | None = None,
) -> Evaluation:
    """Test a classifier checkpoint on `preset` in a new evaluation run; returns the test metrics and that run. With
    `manifest`, every window of that manifest is tested (none of it was split off for training); with `cache_root`,
    its spectrograms and masks go there instead of the training run's cache."""
    checkpoint = Path(checkpoint)
    model = load_module(ClassifierModule, checkpoint, "classifier checkpoint")  # refuses a bad file before any work
    contents = load_checkpoint(checkpoint, "classifier checkpoint")
    stored = contents.get("datamodule_hyper_parameters")
    if not stored:
        raise ValueError(f"{checkpoint}: no data module settings in the checkpoint; was it trained with `mgc fit`?")
    # LightningCLI adds bookkeeping keys such as _class_path
    settings = {**{k: v for k, v in dict(stored).items() if not k.startswith("_")}, "preset": preset}
    if batch_size:
        settings["batch_size"] = batch_size
    if manifest is not None:
        settings.update(manifest=str(manifest), split_fractions=(0.0, 0.0, 1.0))
    if cache_root is not None:
        settings["cache_root"] = str(cache_root)
    data = ClassificationDataModule(**settings)
    if data.mask_source == PREDICTED:
        if segmenter is None:
            raise ValueError("this classifier reads predicted masks: pass the segmenter checkpoint (--segmenter) that "
                             f"made its training masks, so masks for {preset!r} are made the same way")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        predict_masks(load_segmenter(segmenter, device), segmenter, data.split_rows()["test"], get_preset(preset),
                      data.cache_root, device=device)
    training_run = contents.get(RUN_ID_KEY)
    logger = (MLflowLogger(**evaluation_run_settings(training_run, manifest, preset, checkpoint)) if training_run
              else False)
    trainer = L.Trainer(logger=logger, accelerator=accelerator, devices=1, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=run_callbacks())
    if logger:
        logger.log_hyperparams({"checkpoint": str(checkpoint.resolve()), "preset": preset,
                                "data": {k: v for k, v in settings.items() if k != "preset"}})
    metrics = {name: float(value) for name, value in trainer.test(model, datamodule=data, verbose=False)[0].items()}
    return Evaluation(metrics, logger.run_id if logger else None)
