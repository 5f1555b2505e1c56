"""What a training or test run leaves for people beside its metrics, written from what the models publish
(models.hooks.publish): a classifier's per-window test predictions (a CSV that reports pair models with), the 95 %
bootstrap interval of its joint accuracy over recordings, and its confusion matrices; a segmenter's panels of
validation masks. Every run of `mgc fit`, `mgc test`, `mgc evaluate` and the pipeline gets `run_callbacks()`."""

from __future__ import annotations

import csv
import io

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from ..core.labels import JOINT_CLASS_NAMES, NUM_JOINT_CLASSES, SOUND_TYPES
from ..masks.ops import soft_mask
from ..models.metrics import joint_confusion, joint_to_vectors, to_joint, to_label_vectors
from ..train.tracking import log_figure, log_text
from .figures import confusion_figure, mask_panel
from .intervals import bootstrap_interval


def _last_epoch(trainer: Trainer) -> bool:
    return trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs


def _artifact_name(prefix: str) -> str:
    return prefix.replace("/", "_")


def log_test_predictions(trainer: Trainer, module: LightningModule, prefix: str,
                         windows: dict[str, torch.Tensor]) -> None:
    """Per-window predictions as a CSV artifact, each window named by its recording, start and duration (so
    reports pair models window by window and resample whole recordings), and the 95 % bootstrap interval of
    the joint accuracy over recordings as metrics."""
    index, joint, outputs = (windows[name].cpu() for name in ("index", "joint", "outputs"))
    predicted = to_label_vectors(outputs, module.hparams.threshold)
    correct = (predicted == joint_to_vectors(joint)).all(dim=-1)
    rows = trainer.datamodule.datasets["test"].rows
    interval = bootstrap_interval(correct.numpy(), groups=[rows[i].recording for i in index.tolist()])
    module.log_dict({f"{prefix}/joint_acc_ci_low": interval.low, f"{prefix}/joint_acc_ci_high": interval.high,
                     f"{prefix}/windows": float(interval.windows)})
    scores = [f"p_{name}" for name in (JOINT_CLASS_NAMES if outputs.shape[-1] == NUM_JOINT_CLASSES
                                       else SOUND_TYPES)]
    probabilities = outputs.softmax(dim=-1) if module.hparams.head == "multiclass" else outputs
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["index", "recording", "start_s", "duration_s", "joint", "predicted", "correct", *scores])
    for i, true, guess, right, row in zip(index.tolist(), joint.tolist(), to_joint(predicted).tolist(),
                                         correct.tolist(), probabilities.tolist()):
        window = rows[i]
        writer.writerow([i, window.recording, f"{window.start_s:.6f}", f"{window.duration_s:.6f}", true, guess,
                         int(right), *(f"{p:.5f}" for p in row)])
    log_text(trainer, text.getvalue(), f"predictions/{_artifact_name(prefix)}.csv")


class ClassifierOutputs(Callback):
    """A classifier's test predictions and interval (every test), and its confusion matrix (every test, and the
    validation of the last epoch)."""

    def on_windows_evaluated(self, trainer: Trainer, module: LightningModule, stage: str, prefix: str,
                             windows: dict[str, torch.Tensor], joint_acc: torch.Tensor) -> None:
        if stage == "test":
            log_test_predictions(trainer, module, prefix, windows)
        if stage == "test" or (stage == "val" and _last_epoch(trainer)):
            confusion = joint_confusion(windows["outputs"], windows["joint"], module.hparams.threshold)
            figure = confusion_figure(confusion.cpu().numpy(), JOINT_CLASS_NAMES,
                                      title=f"{prefix} (joint accuracy {float(joint_acc):.3f})")
            log_figure(trainer, figure, f"figures/confusion_{_artifact_name(prefix)}.png")


class SegmenterPanels(Callback):
    """A segmenter's first validation windows (image, target, predicted and soft mask) every
    `figure_every_n_epochs` epochs and after the last one."""

    def on_masks_drawn(self, trainer: Trainer, module: LightningModule, windows: dict[str, torch.Tensor]) -> None:
        epoch, settings = trainer.current_epoch + 1, module.hparams
        if trainer.sanity_checking or not (_last_epoch(trainer) or epoch % settings.figure_every_n_epochs == 0):
            return
        figure = mask_panel({
            "spectrogram": windows["image"][:, 0].numpy(),
            "target": windows["target"].numpy(),
            "prediction": windows["prediction"].numpy(),
            f"soft (sigma {settings.soft_sigma:g})": [soft_mask(p, settings.soft_sigma)
                                                     for p in windows["prediction"].numpy().astype(bool)],
        })
        log_figure(trainer, figure, f"figures/val_masks_epoch{epoch:03d}.png")


def run_callbacks() -> list[Callback]:
    """The callbacks that write what the models publish; each ignores the other model's outputs."""
    return [ClassifierOutputs(), SegmenterPanels()]
