"""`mgc calibrate`: scores that mean what they say, and per-type thresholds for a target precision.

Fitted on the validation split of a labelled manifest (the split the classifier was tuned on, never its test split):
temperature scaling of the joint-class logits for a multi-class head, per-type Platt scaling for a multi-label head.
Thresholds: per sound type, the lowest score at which the validation precision reaches the target (more recall for
the same precision). ECE is measured on the joint class's top probability, before and after.

It refuses to mislead: too few validation windows with or without a sound type is an error that states the counts;
a fit outside the range a bundle accepts, or one that raises the ECE, keeps the raw scores; a type present in no
validation window keeps the default threshold. Each type's status and its reason are recorded in the bundle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..audio.manifest import SplitConfig, WindowRow, load_manifest, refuse_test_only_training, split_rows
from ..audio.reading import read_window_and_check
from ..core.errors import InputError
from ..core.labels import SOUND_TYPES
from .bundle import (
    CALIBRATED, DEFAULT_THRESHOLD, NOT_CALIBRATED, PLATT_OFFSET_LIMIT, RAW_SCORES, SCALING_RANGE, Bundle,
    TypeCalibration, load_bundle, save_bundle,
)
from .inference import BundlePipeline

ECE_BINS = 15
MIN_WINDOWS_PER_SIDE = 5  # validation windows with, and without, each sound type that calibration needs


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by the windows in each."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def window_logits(pipeline: BundlePipeline, rows: Sequence[WindowRow],
                  batch_size: int = 16) -> tuple[torch.Tensor, list[WindowRow]]:
    """Classifier logits of the windows that hold usable signal, read and rendered exactly as `mgc detect` does, and
    those windows: detect scores no window without signal (`audio.signal_problem`), so calibration fits none."""
    config, outputs, usable = pipeline.bundle.front_end, [], []
    for first in range(0, len(rows), batch_size):
        read = [(r, *read_window_and_check(r.path, r.start_s, r.duration_s, target_rate=config.sample_rate,
                                           fmax_hz=config.fmax)) for r in rows[first : first + batch_size]]
        read = [(row, wave) for row, wave, problem in read if problem is None]
        if not read:
            continue
        length = min(len(wave) for _, wave in read)
        waves = torch.from_numpy(np.stack([wave[:length] for _, wave in read]))
        outputs.append(pipeline.logits(waves)[0].float())
        usable += [row for row, _ in read]
    if not usable:
        raise InputError("no window of the validation split holds usable signal (all silent or cancelling)")
    return torch.cat(outputs), usable


def fit_temperature(logits: torch.Tensor, joint: torch.Tensor) -> float:
    """The temperature that minimises the joint-class negative log-likelihood (log-parametrised: stays positive)."""
    log_t = torch.zeros((), requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), joint)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp())


def fit_platt(logits: torch.Tensor, present: torch.Tensor) -> list[list[float]]:
    """Per sound type [scale, offset] of sigmoid(scale * logit + offset) minimising the binary cross-entropy."""
    scale, offset = torch.ones(logits.shape[1], requires_grad=True), torch.zeros(logits.shape[1], requires_grad=True)
    optimiser = torch.optim.LBFGS([scale, offset], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = F.binary_cross_entropy_with_logits(logits * scale + offset, present)
        loss.backward()
        return loss

    optimiser.step(closure)
    return [[float(a), float(b)] for a, b in zip(scale.detach(), offset.detach())]


def threshold_for_precision(scores: np.ndarray, present: np.ndarray, target: float) -> tuple[float, float, float]:
    """(threshold, precision, recall): the lowest score whose windows at or above it reach the target precision;
    where none does, the score with the best precision (the caller reports the miss)."""
    best = (1.0, 0.0, 0.0)
    positives = max(int(present.sum()), 1)
    for threshold in np.unique(scores):  # ascending: the first that reaches the target keeps the most recall
        chosen = scores >= threshold
        precision = float(present[chosen].mean())
        recall = float(present[chosen].sum() / positives)
        if precision >= target:
            return float(threshold), precision, recall
        if precision > best[1]:
            best = (float(threshold), precision, recall)
    return best


@dataclass
class CalibrationResult:
    windows: int
    ece_before: float
    ece_after: float
    temperature: float | None
    types: dict[str, TypeCalibration]  # per sound type: status, threshold and its validation precision and recall
    target_precision: float
    confidence_before: np.ndarray
    confidence_after: np.ndarray
    correct: np.ndarray
    scores: np.ndarray  # (N, 3) calibrated per-type probabilities
    present: np.ndarray  # (N, 3) labels
    identity_kept: bool  # no fitted scaling applied to any type: the raw scores are kept
    without_signal: int = 0  # validation windows left out: no usable signal (detect scores none of them either)


def check_counts(manifest: str | Path, present: np.ndarray) -> None:
    """Refuse validation windows too few to calibrate on: a fit on a handful of windows lands on an extreme
    temperature and a threshold on a handful of positives means nothing. A type present in no window is allowed
    (it is left uncalibrated and says so)."""
    positives = present.sum(axis=0).astype(int)
    if not positives.any():
        raise InputError(f"{manifest}: none of the {len(present)} usable validation windows holds a sound type: "
                         "nothing to calibrate on")
    short = [f"{name} in {p} and absent from {len(present) - p}" for name, p in zip(SOUND_TYPES, positives)
             if 0 < p < MIN_WINDOWS_PER_SIDE or len(present) - p < MIN_WINDOWS_PER_SIDE]
    if short:
        raise InputError(f"{manifest}: too few validation windows to calibrate on ({'; '.join(short)} of "
                         f"{len(present)} usable windows): each sound type needs at least {MIN_WINDOWS_PER_SIDE} "
                         f"windows with it and {MIN_WINDOWS_PER_SIDE} without (a type present in none is left "
                         "uncalibrated); label more windows or give validation a larger share (--split-fractions)")


def fitted_scaling(bundle: Bundle, multiclass: bool, logits: torch.Tensor, joint: torch.Tensor,
                   present: torch.Tensor) -> tuple[Bundle, dict[str, str]]:
    """The bundle with the fitted scaling, and per sound type why its raw scores are kept instead (a fit outside
    the range a bundle accepts, bundle.SCALING_RANGE). A type present in no window keeps the identity."""
    low, high = SCALING_RANGE
    if multiclass:
        temperature = fit_temperature(logits, joint)
        if math.isfinite(temperature) and low <= temperature <= high:
            return replace_calibration(bundle, temperature=temperature), {}
        reason = f"the fitted temperature {temperature:.3g} is outside [{low:g}, {high:g}]"
        return replace_calibration(bundle), {name: reason for name in SOUND_TYPES}
    platt, kept = fit_platt(logits, present), {}
    for t, name in enumerate(SOUND_TYPES):
        scale, offset = platt[t]
        if not present[:, t].any():
            platt[t] = [1.0, 0.0]
        elif not (math.isfinite(scale) and low <= scale <= high and abs(offset) <= PLATT_OFFSET_LIMIT):
            platt[t] = [1.0, 0.0]
            kept[name] = f"the fitted Platt scale {scale:.3g} and offset {offset:.3g} are out of range"
    return replace_calibration(bundle, platt=platt), kept


def calibrate(model: str | Path, manifest: str | Path, split: SplitConfig, target_precision: float = 0.9,
              out: str | Path | None = None) -> CalibrationResult:
    """Fit calibration and thresholds on the manifest's validation split and write them into the bundle (or `out`)."""
    if not 0 < target_precision <= 1:
        raise InputError(f"target precision must be in (0, 1], got {target_precision}")
    bundle, _ = load_bundle(model)
    rows = _validation_windows(bundle, manifest, split)
    pipeline = BundlePipeline(replace_calibration(bundle))
    logits, usable = window_logits(pipeline, rows)
    without_signal, rows = len(rows) - len(usable), usable
    joint = torch.tensor([r.joint_class for r in rows])
    present = torch.tensor([r.labels for r in rows], dtype=torch.float32)
    check_counts(manifest, present.numpy())
    before, correct, _ = _confidence_and_correct(pipeline, logits, joint)
    ece_before = expected_calibration_error(before, correct)
    calibrated, raw_kept, after, types, ece_after = _scaling_unless_worse(bundle, pipeline, logits, joint, present,
                                                                          correct, ece_before)
    scores, labels = types.numpy(), present.numpy()
    chosen = {name: type_calibration(scores[:, t], labels[:, t], target_precision, raw_kept.get(name))
              for t, name in enumerate(SOUND_TYPES)}
    calibrated.thresholds = [chosen[name].threshold for name in SOUND_TYPES]
    identity_kept = calibrated.temperature == 1.0 and all(pair == [1.0, 0.0] for pair in calibrated.platt or [])
    result = CalibrationResult(
        windows=len(rows), ece_before=ece_before, ece_after=ece_after,
        temperature=calibrated.temperature if pipeline.multiclass else None, types=chosen,
        target_precision=target_precision, confidence_before=before, confidence_after=after, correct=correct,
        scores=scores, present=labels, identity_kept=identity_kept, without_signal=without_signal)
    calibrated.calibration = _calibration_record(manifest, split, result)
    save_bundle(calibrated, out or model)
    return result


def _validation_windows(bundle: Bundle, manifest: str | Path, split: SplitConfig) -> list[WindowRow]:
    """The manifest's validation split, refused when empty, of another window length than the model's, or from a
    test set (thresholds chosen on a test set would flatter every number measured on it afterwards)."""
    refuse_test_only_training(manifest, split.fractions)
    rows = load_manifest(manifest)
    rows = [rows[i] for i in split_rows(rows, split)["val"]]
    if not rows:
        raise InputError(f"{manifest}: the validation split is empty; check --split-fractions")
    check_window_length(bundle, rows, manifest)
    return rows


def check_window_length(bundle: Bundle, rows: Sequence[WindowRow], manifest: str | Path) -> None:
    """Refuse windows of another length than the model analyses: its scores would mean nothing."""
    lengths = {round(r.duration_s, 6) for r in rows}
    if lengths != {round(bundle.window_s, 6)}:
        raise InputError(f"{manifest}: windows of {sorted(lengths)} s, the model analyses {bundle.window_s:g} s "
                         "windows")


def _confidence_and_correct(pipeline: BundlePipeline, logits: torch.Tensor,
                            joint: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """The joint class's top probability, whether it is the right class, and the per-type scores."""
    types, joint_p = pipeline.calibrated(logits)
    return joint_p.max(dim=-1).values.numpy(), (joint_p.argmax(dim=-1) == joint).numpy().astype(float), types


def _scaling_unless_worse(bundle: Bundle, pipeline: BundlePipeline, logits: torch.Tensor, joint: torch.Tensor,
                          present: torch.Tensor, correct: np.ndarray, ece_before: float):
    """The fitted scaling, or the raw scores where the fit (which minimises log-loss, not ECE) made calibration
    worse: the bundle, why each type keeps raw scores, and the confidence, per-type scores and ECE after."""
    calibrated, raw_kept = fitted_scaling(bundle, pipeline.multiclass, logits, joint, present)
    after, _, types = _confidence_and_correct(BundlePipeline(calibrated), logits, joint)
    ece_after = expected_calibration_error(after, correct)
    if ece_after > ece_before:
        reason = f"the fitted scaling raised the validation ECE from {ece_before:.4f} to {ece_after:.4f}"
        calibrated, raw_kept = replace_calibration(bundle), {name: reason for name in SOUND_TYPES}
        after, _, types = _confidence_and_correct(pipeline, logits, joint)
        ece_after = ece_before
    return calibrated, raw_kept, after, types, ece_after


def _calibration_record(manifest: str | Path, split: SplitConfig, result: CalibrationResult) -> dict:
    """What the bundle keeps of the fit: the data it saw, the ECE before and after, each type's validation figures."""
    return {
        "manifest": str(Path(manifest).resolve()), "split": {"group_by": split.group_by,
                                                             "fractions": list(split.fractions), "seed": split.seed},
        "windows": result.windows, "windows_without_signal": result.without_signal, "ece_before": result.ece_before,
        "ece_after": result.ece_after,
        "identity_kept": result.identity_kept,
        "target_precision": result.target_precision,
        "validation": {name: asdict(value) for name, value in result.types.items()},
    }


def type_calibration(scores: np.ndarray, present: np.ndarray, target: float, raw_kept: str | None) -> TypeCalibration:
    """One sound type's status and threshold. A type present in no validation window keeps the default threshold
    and is reported as not calibrated: no threshold can be chosen for it, and 1.0 would silently switch it off."""
    positives, negatives = int(present.sum()), int(len(present) - present.sum())
    if not positives:
        return TypeCalibration(NOT_CALIBRATED, "no window with it in the validation split", DEFAULT_THRESHOLD,
                               positives=positives, negatives=negatives)
    threshold, precision, recall = threshold_for_precision(scores, present, target)
    status, reason = (RAW_SCORES, raw_kept) if raw_kept else (CALIBRATED, "")
    return TypeCalibration(status, reason, threshold, precision, recall, positives, negatives)


def replace_calibration(bundle: Bundle, temperature: float = 1.0, platt: list[list[float]] | None = None) -> Bundle:
    """The bundle with the given calibration (identity by default), thresholds at the default."""
    return replace(bundle, temperature=temperature, platt=platt, thresholds=[DEFAULT_THRESHOLD] * len(SOUND_TYPES))


def reliability_figure(result: CalibrationResult, bins: int = ECE_BINS):
    """Accuracy against confidence per bin, before and after calibration, beside per-type precision-recall curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (reliability, curves) = plt.subplots(1, 2, figsize=(10, 4.2))
    edges = np.linspace(0, 1, bins + 1)
    for confidence, label in ((result.confidence_before, f"before (ECE {result.ece_before:.3f})"),
                              (result.confidence_after, f"after (ECE {result.ece_after:.3f})")):
        which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
        xs = [confidence[which == b].mean() for b in range(bins) if (which == b).any()]
        ys = [result.correct[which == b].mean() for b in range(bins) if (which == b).any()]
        reliability.plot(xs, ys, marker="o", label=label)
    reliability.plot([0, 1], [0, 1], color="grey", linestyle=":")
    reliability.set(xlabel="confidence of the joint class", ylabel="accuracy", title="reliability (validation)")
    reliability.legend()
    for t, name in enumerate(SOUND_TYPES):
        order = np.argsort(-result.scores[:, t])
        hits = result.present[order, t]
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        recall = np.cumsum(hits) / max(hits.sum(), 1)
        curves.plot(recall, precision, label=name)
    curves.axhline(result.target_precision, color="grey", linestyle=":")
    curves.set(xlabel="recall", ylabel="precision", title="per-type precision-recall (validation)", ylim=(0, 1.02))
    curves.legend()
    figure.tight_layout()
    return figure


def log_to_mlflow(result: CalibrationResult, model: str | Path, experiment: str = "calibration") -> str:
    """ECE before and after, thresholds and the figure in an MLflow run; returns its id."""
    import matplotlib.pyplot as plt
    from mlflow.tracking import MlflowClient

    from ..core.mlflow_store import artifact_root, default_tracking_uri

    uri = default_tracking_uri()
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    # artifacts beside the SQLite store, as training's logger puts them
    experiment_id = (found.experiment_id if found
                     else client.create_experiment(experiment, artifact_location=artifact_root(uri)))
    run = client.create_run(experiment_id, run_name=f"calibrate-{Path(model).stem}")
    run_id = run.info.run_id
    metrics = {"ece_before": result.ece_before, "ece_after": result.ece_after, "windows": float(result.windows)}
    if result.temperature is not None:
        metrics["temperature"] = result.temperature
    for name, chosen in result.types.items():
        metrics[f"threshold/{name}"] = chosen.threshold
        if chosen.precision is not None:
            metrics.update({f"precision/{name}": chosen.precision, f"recall/{name}": chosen.recall})
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    client.log_param(run_id, "model", str(Path(model).resolve()))
    client.log_param(run_id, "target_precision", result.target_precision)
    for name, chosen in result.types.items():
        client.log_param(run_id, f"status/{name}", chosen.describe()[:500])
    figure = reliability_figure(result)
    client.log_figure(run_id, figure, "figures/reliability.png")
    plt.close(figure)
    client.set_terminated(run_id)
    return run_id
