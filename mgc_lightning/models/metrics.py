"""Joint accuracy (all three sound types right at once, the paper's headline metric) and the per-type metrics
around it, exact under DDP.

Training tracks `JointAccuracy`, whose counts are summed across processes. Validation and test keep every window's
outputs in `EvaluatedWindows`, gathered from all processes and de-duplicated by window index, because Lightning's
distributed sampler pads the evaluation set with repeated windows so that every process gets as many: scores computed
from the gathered windows count each window once and equal a single-process run's.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix, multiclass_f1_score, multilabel_f1_score, multilabel_hamming_distance,
    multilabel_precision, multilabel_recall,
)
from torchmetrics.utilities import dim_zero_cat

from ..core.labels import NUM_JOINT_CLASSES, NUM_SOUND_TYPES, SOUND_TYPES


def joint_to_vectors(index: torch.Tensor) -> torch.Tensor:
    """(...) integer tensor of joint class indices -> (..., 3) long tensor of 0/1."""
    shifts = torch.arange(NUM_SOUND_TYPES, device=index.device)
    return (index.long().unsqueeze(-1) >> shifts) & 1


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
    """(..., 3) 0/1 vectors -> (...) joint class indices: the inverse of joint_to_vectors."""
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


class EvaluatedWindows(Metric):
    """Per-window index, joint target, model outputs and loss of one evaluation pass. `compute` gathers them from all
    processes and returns each window once (the first copy of a repeated index), ordered by index."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("index", "joint", "outputs", "loss"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, index: torch.Tensor, joint: torch.Tensor, outputs: torch.Tensor, loss: torch.Tensor) -> None:
        self.index.append(index.detach().long())
        self.joint.append(joint.detach().long())
        self.outputs.append(outputs.detach().float())
        self.loss.append(loss.detach().float())

    def compute(self) -> dict[str, torch.Tensor]:
        windows = {name: dim_zero_cat(getattr(self, name)) for name in ("index", "joint", "outputs", "loss")}
        order = torch.argsort(windows["index"], stable=True)
        ordered = windows["index"][order]
        first = torch.ones_like(ordered, dtype=torch.bool)
        first[1:] = ordered[1:] != ordered[:-1]
        return {name: values[order[first]] for name, values in windows.items()}


def sound_type_scores(outputs: torch.Tensor, joint_target: torch.Tensor, threshold: float = 0.5
                      ) -> dict[str, torch.Tensor]:
    """Joint accuracy, macro-F1 (over the 3 types and over the 8 joint classes), hamming loss and per-type P/R/F1,
    from either head's outputs."""
    predicted = to_label_vectors(outputs, threshold)
    truth = joint_to_vectors(joint_target)
    scores = {"joint_acc": (predicted == truth).all(dim=-1).float().mean(),
              "macro_f1": multilabel_f1_score(predicted, truth, NUM_SOUND_TYPES, average="macro"),
              "joint_macro_f1": multiclass_f1_score(to_joint(predicted), joint_target, NUM_JOINT_CLASSES,
                                                    average="macro"),
              "hamming": multilabel_hamming_distance(predicted, truth, NUM_SOUND_TYPES)}
    for name, metric in (("precision", multilabel_precision), ("recall", multilabel_recall),
                         ("f1", multilabel_f1_score)):
        for sound_type, value in zip(SOUND_TYPES, metric(predicted, truth, NUM_SOUND_TYPES, average=None)):
            scores[f"{name}/{sound_type}"] = value
    return scores


def joint_confusion(outputs: torch.Tensor, joint_target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The 8 x 8 confusion matrix of joint classes (rows: truth)."""
    predicted = to_joint(to_label_vectors(outputs, threshold))
    return multiclass_confusion_matrix(predicted, joint_target, NUM_JOINT_CLASSES)
