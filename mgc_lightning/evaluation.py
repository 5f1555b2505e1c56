"""Out-of-distribution evaluation: a classifier trained on one front end, tested on windows rendered by another.

The data module is rebuilt from the checkpoint (same manifest, split, mask source and kind), only the preset
changes; masks for that preset are made the same way as in training (the same segmenter predicts them when the
source is `predicted`). Results go into the training run as test/<preset>/... so presets stay apart.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from .checkpoints import load_checkpoint, load_module
from .data import ClassificationDataModule
from .manifest import load_manifest
from .models.classifier import ClassifierModule
from .models.segmenter import PREDICTED, predict_masks
from .spectrogram import get_preset
from .tracking import RUN_ID_KEY, MLflowLogger


def evaluate_checkpoint(
    checkpoint: str | Path, preset: str, segmenter: str | Path | None = None, accelerator: str = "auto",
    batch_size: int | None = None,
) -> dict[str, float]:
    """Test a classifier checkpoint on `preset`; returns the logged test metrics."""
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
    data = ClassificationDataModule(**settings)
    if data.mask_source == PREDICTED:
        if segmenter is None:
            raise ValueError("this classifier reads predicted masks: pass the segmenter checkpoint (--segmenter) that "
                             f"made its training masks, so masks for {preset!r} are made the same way")
        predict_masks(segmenter, load_manifest(data.manifest), get_preset(preset), data.cache_root,
                      device="cuda" if torch.cuda.is_available() else "cpu")
    logger = MLflowLogger(run_id=contents[RUN_ID_KEY]) if contents.get(RUN_ID_KEY) else False
    trainer = L.Trainer(logger=logger, accelerator=accelerator, devices=1, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    return {name: float(value) for name, value in trainer.test(model, datamodule=data, verbose=False)[0].items()}
