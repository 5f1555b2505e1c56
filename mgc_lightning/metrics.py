"""Joint accuracy (all three sound types right at once, the paper's headline metric) and the per-type metrics
around it. Every metric is a torchmetrics Metric whose states are summed across processes, so DDP runs report the
value of the whole dataset."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import (
    MulticlassConfusionMatrix, MulticlassF1Score, MultilabelF1Score, MultilabelHammingDistance, MultilabelPrecision,
    MultilabelRecall,
)

from .labels import NUM_JOINT_CLASSES, NUM_SOUND_TYPES, SOUND_TYPES, joint_to_vectors


def to_label_vectors(values: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Predictions or targets -> (N, 3) long 0/1 vectors.

    Accepts (N, 8) joint-class scores (argmax), (N, 3) per-type probabilities (>= threshold) and (N,) joint indices.
    """
    if values.dim() == 1:
        return joint_to_vectors(values)
    if values.shape[-1] == NUM_JOINT_CLASSES:
        return joint_to_vectors(values.argmax(dim=-1))
    if values.shape[-1] == NUM_SOUND_TYPES:
        return (values >= threshold).long()
    raise ValueError(f"expected (N,), (N, {NUM_JOINT_CLASSES}) or (N, {NUM_SOUND_TYPES}), got {tuple(values.shape)}")


def to_joint(vectors: torch.Tensor) -> torch.Tensor:
    return (vectors * torch.tensor([1, 2, 4], device=vectors.device)).sum(dim=-1)


class JointAccuracy(Metric):
    """Fraction of windows whose whole presence vector is right (paper, eq. 5)."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, threshold: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.threshold = threshold
        self.add_state("correct", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, predictions: torch.Tensor, target: torch.Tensor) -> None:
        predicted = to_label_vectors(predictions, self.threshold)
        truth = to_label_vectors(target, self.threshold)
        self.correct += (predicted == truth).all(dim=-1).sum()
        self.total += truth.shape[0]

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp_min(1)


class SoundTypeMetrics(nn.Module):
    """Joint accuracy, macro-F1 (over the 3 types and over the 8 joint classes), hamming loss, per-type P/R/F1 and
    the 8 x 8 confusion matrix, from either head's outputs."""

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = threshold
        self.joint_acc = JointAccuracy(threshold)
        self.macro_f1 = MultilabelF1Score(NUM_SOUND_TYPES, average="macro")
        self.joint_macro_f1 = MulticlassF1Score(NUM_JOINT_CLASSES, average="macro")
        self.hamming = MultilabelHammingDistance(NUM_SOUND_TYPES)
        self.precision = MultilabelPrecision(NUM_SOUND_TYPES, average=None)
        self.recall = MultilabelRecall(NUM_SOUND_TYPES, average=None)
        self.f1 = MultilabelF1Score(NUM_SOUND_TYPES, average=None)
        self.confusion = MulticlassConfusionMatrix(NUM_JOINT_CLASSES)

    def update(self, outputs: torch.Tensor, joint_target: torch.Tensor) -> None:
        predicted = to_label_vectors(outputs.detach(), self.threshold)
        truth = joint_to_vectors(joint_target)
        self.joint_acc.update(predicted, truth)
        for metric in (self.macro_f1, self.hamming, self.precision, self.recall, self.f1):
            metric.update(predicted, truth)
        self.joint_macro_f1.update(to_joint(predicted), joint_target)
        self.confusion.update(to_joint(predicted), joint_target)

    def compute(self) -> dict[str, torch.Tensor]:
        scores = {"joint_acc": self.joint_acc.compute(), "macro_f1": self.macro_f1.compute(),
                  "joint_macro_f1": self.joint_macro_f1.compute(), "hamming": self.hamming.compute()}
        for name, metric in (("precision", self.precision), ("recall", self.recall), ("f1", self.f1)):
            for sound_type, value in zip(SOUND_TYPES, metric.compute()):
                scores[f"{name}/{sound_type}"] = value
        return scores

    def confusion_matrix(self) -> torch.Tensor:
        return self.confusion.compute()

    def reset(self) -> None:
        for metric in self.children():
            metric.reset()
