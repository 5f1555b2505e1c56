"""`mgc calibrate`: scores that mean what they say, and per-type thresholds for a target precision.

Fitted on the validation split of a labelled manifest (the split the classifier was tuned on, never its test split):
temperature scaling of the joint-class logits for a multi-class head, per-type Platt scaling for a multi-label head.
Thresholds: per sound type, the lowest score at which the validation precision reaches the target (more recall for
the same precision). ECE is measured on the joint class's top probability, before and after.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .audio import read_window_and_check
from .bundle import Bundle, load_bundle, save_bundle
from .errors import InputError
from .inference import BundlePipeline
from .labels import SOUND_TYPES
from .manifest import SplitConfig, WindowRow, load_manifest, split_rows

ECE_BINS = 15


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
    thresholds: dict[str, tuple[float, float, float]]  # type -> (threshold, precision, recall) on validation
    target_precision: float
    confidence_before: np.ndarray
    confidence_after: np.ndarray
    correct: np.ndarray
    scores: np.ndarray  # (N, 3) calibrated per-type probabilities
    present: np.ndarray  # (N, 3) labels
    identity_kept: bool  # the fitted calibration raised the validation ECE, so the raw scores are kept
    without_signal: int = 0  # validation windows left out: no usable signal (detect scores none of them either)


def calibrate(model: str | Path, manifest: str | Path, split: SplitConfig, target_precision: float = 0.9,
              out: str | Path | None = None) -> CalibrationResult:
    """Fit calibration and thresholds on the manifest's validation split and write them into the bundle (or `out`)."""
    if not 0 < target_precision <= 1:
        raise InputError(f"target precision must be in (0, 1], got {target_precision}")
    bundle, _ = load_bundle(model)
    rows = load_manifest(manifest)
    rows = [rows[i] for i in split_rows(rows, split)["val"]]
    if not rows:
        raise InputError(f"{manifest}: the validation split is empty; check --split-fractions")
    lengths = {round(r.duration_s, 6) for r in rows}
    if lengths != {round(bundle.window_s, 6)}:
        raise InputError(f"{manifest}: windows of {sorted(lengths)} s, the model analyses {bundle.window_s:g} s "
                         "windows")
    pipeline = BundlePipeline(replace_calibration(bundle))
    logits, usable = window_logits(pipeline, rows)
    without_signal, rows = len(rows) - len(usable), usable
    joint = torch.tensor([r.joint_class for r in rows])
    present = torch.tensor([r.labels for r in rows], dtype=torch.float32)

    def confidence_and_correct(current: BundlePipeline):
        types, joint_p = current.calibrated(logits)
        return joint_p.max(dim=-1).values.numpy(), (joint_p.argmax(dim=-1) == joint).numpy().astype(float), types

    before, correct, _ = confidence_and_correct(pipeline)
    if pipeline.multiclass:
        calibrated = replace_calibration(bundle, temperature=fit_temperature(logits, joint))
    else:
        calibrated = replace_calibration(bundle, platt=fit_platt(logits, present))
    after, _, types = confidence_and_correct(BundlePipeline(calibrated))
    identity_kept = expected_calibration_error(after, correct) > expected_calibration_error(before, correct)
    if identity_kept:  # the fit (which minimises log-loss, not ECE) made calibration worse: keep the raw scores
        calibrated = replace_calibration(bundle)
        after, _, types = confidence_and_correct(pipeline)
    scores = types.numpy()
    chosen = {name: threshold_for_precision(scores[:, t], present[:, t].numpy(), target_precision)
              for t, name in enumerate(SOUND_TYPES)}
    calibrated.thresholds = [chosen[name][0] for name in SOUND_TYPES]
    result = CalibrationResult(
        windows=len(rows), ece_before=expected_calibration_error(before, correct),
        ece_after=expected_calibration_error(after, correct),
        temperature=calibrated.temperature if pipeline.multiclass else None, thresholds=chosen,
        target_precision=target_precision, confidence_before=before, confidence_after=after, correct=correct,
        scores=scores, present=present.numpy(), identity_kept=identity_kept, without_signal=without_signal)
    calibrated.calibration = {
        "manifest": str(Path(manifest).resolve()), "split": {"group_by": split.group_by,
                                                             "fractions": list(split.fractions), "seed": split.seed},
        "windows": len(rows), "windows_without_signal": without_signal, "ece_before": result.ece_before,
        "ece_after": result.ece_after,
        "identity_kept": result.identity_kept,
        "target_precision": target_precision,
        "validation": {name: {"threshold": v[0], "precision": v[1], "recall": v[2]} for name, v in chosen.items()},
    }
    save_bundle(calibrated, out or model)
    return result


def replace_calibration(bundle: Bundle, temperature: float = 1.0, platt: list[list[float]] | None = None) -> Bundle:
    """The bundle with the given calibration (identity by default), thresholds at 0.5."""
    from dataclasses import replace

    return replace(bundle, temperature=temperature, platt=platt, thresholds=[0.5] * len(SOUND_TYPES))


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

    from .tracking import artifact_root, default_tracking_uri

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
    for name, (threshold, precision, recall) in result.thresholds.items():
        metrics.update({f"threshold/{name}": threshold, f"precision/{name}": precision, f"recall/{name}": recall})
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    client.log_param(run_id, "model", str(Path(model).resolve()))
    client.log_param(run_id, "target_precision", result.target_precision)
    figure = reliability_figure(result)
    client.log_figure(run_id, figure, "figures/reliability.png")
    plt.close(figure)
    client.set_terminated(run_id)
    return run_id
