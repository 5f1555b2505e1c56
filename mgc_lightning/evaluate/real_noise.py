"""Measures on the real-noise test set (synth/real_noise.py, issue #25): how a trained classifier behaves in real
recorded noise and among real calls of other species.

From a classifier's per-window test predictions (the CSV every test logs, evaluate.callbacks) and the set's manifest:
joint accuracy with its bootstrap interval over the independent real source files of the backgrounds (many of the
set's "recordings" are stretches of one file: the manifest's `sources` names each window's background file first);
per sound type, the false-alarm rate in the noise-only windows (no target sound at all), split by background kind
(ambient, orca calls, dolphin whistle, other odontocete clicks); porpoise recall at precision 0.9 from the scores (the
best threshold, chosen on this set: an optimistic bound) and recall and precision at the model's own operating point
(its decision: the argmax of a multi-class head, 0.5 on a multi-label head). Each of the issue's goals is stated met
or not met. The chance row (always "none") is measured the same way (always_none).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.labels import JOINT_CLASS_NAMES, SOUND_TYPES, label_vector
from ..deploy.calibration import threshold_for_precision
from ..synth.real_noise import BACKGROUND_KINDS
from .intervals import Interval, bootstrap_interval

TARGET_PRECISION = 0.9
# what the saved rows mean: 2 = interval over background source files, false alarms in noise-only windows. A row
# saved under another version is measured again (pipeline stage, benchmarks/real_noise.py).
MEASURES_VERSION = 2
GOAL_WHISTLE_FALSE_ALARMS = 0.05  # at most, in noise-only windows of real noise
GOAL_PORPOISE_RECALL = 0.8  # at least, at precision TARGET_PRECISION
WindowKey = tuple[str, float, float]


def false_alarm_rate(flagged: Sequence, present: Sequence) -> tuple[float | None, int]:
    """(share of the windows without the type that are flagged, how many such windows); None without any."""
    flagged, present = np.asarray(flagged, dtype=bool), np.asarray(present, dtype=bool)
    negatives = int((~present).sum())
    return (float(flagged[~present].mean()) if negatives else None), negatives


def recall_at_precision(scores: Sequence, present: Sequence, target: float = TARGET_PRECISION) -> tuple[float, float]:
    """(recall, threshold): the most recall any threshold on the scores reaches while the windows at or above it
    keep precision >= target (deploy.calibration.threshold_for_precision picks it); (0.0, inf) where none does."""
    scores, present = np.asarray(scores, dtype=float), np.asarray(present, dtype=bool)
    if not present.any():
        raise ValueError("recall needs at least one window with the sound type")
    threshold, precision, recall = threshold_for_precision(scores, present, target)
    return (recall, threshold) if precision >= target else (0.0, float("inf"))


def precision_recall(flagged: Sequence, present: Sequence) -> tuple[float | None, float | None]:
    flagged, present = np.asarray(flagged, dtype=bool), np.asarray(present, dtype=bool)
    hits = int((flagged & present).sum())
    return (hits / flagged.sum() if flagged.any() else None), (hits / present.sum() if present.any() else None)


@dataclass(frozen=True)
class Windows:
    """A model's predictions on the set, joined to the set's manifest: per window its recording, background kind,
    truth (windows, 3), the model's decision (windows, 3), per-type scores (windows, 3) and the real file its
    background was cut from (the bootstrap's unit; its recording where the manifest names none)."""

    recordings: list[str]
    kinds: list[str]
    truth: np.ndarray
    decided: np.ndarray
    scores: np.ndarray
    sources: list[str] | None = None

    @property
    def groups(self) -> list[str]:
        return self.sources if self.sources is not None else self.recordings


def type_scores(row: dict[str, str]) -> list[float]:
    """Per-type presence scores of one predictions row: a multi-label head's own, or a multi-class head's joint
    probabilities summed over the joint classes that hold the type."""
    if f"p_{JOINT_CLASS_NAMES[0]}" not in row:  # no p_none: a multi-label head (its p_whistle is the type's own)
        return [float(row[f"p_{name}"]) for name in SOUND_TYPES]
    joint = [float(row[f"p_{name}"]) for name in JOINT_CLASS_NAMES]
    return [sum(p for index, p in enumerate(joint) if label_vector(index)[t]) for t in range(len(SOUND_TYPES))]


def _key(row: dict[str, str]) -> WindowKey:
    return row["recording"], round(float(row["start_s"]), 6), round(float(row["duration_s"]), 6)


def background_source(row: dict[str, str]) -> str:
    """The real file a window's background was cut from: the first of the manifest's `sources` (synth.real_noise
    writes the background first, then any click template); the recording where there is no such column."""
    return (row.get("sources") or "").split(";")[0] or row["recording"]


def _listed(manifest: str | Path) -> dict[WindowKey, dict[str, str]]:
    with open(manifest, newline="") as handle:
        return {_key(row): row for row in csv.DictReader(handle)}


def _windows(listed: dict[WindowKey, dict[str, str]], keys: list[WindowKey], decided: np.ndarray,
             scores: np.ndarray) -> Windows:
    truth = np.array([[int(listed[k][name]) for name in SOUND_TYPES] for k in keys], dtype=bool)
    return Windows([k[0] for k in keys], [listed[k]["background"] for k in keys], truth, decided, scores,
                   [background_source(listed[k]) for k in keys])


def read_windows(predictions: str | Path, manifest: str | Path) -> Windows:
    """Join a predictions CSV to the set's manifest (by recording, start, duration); every manifest window must
    have a prediction."""
    listed = _listed(manifest)
    with open(predictions, newline="") as handle:
        predicted = {_key(row): row for row in csv.DictReader(handle)}
    missing = sorted(set(listed) - set(predicted))
    if missing:
        raise ValueError(f"{predictions}: no prediction for {len(missing)} window(s) of {manifest}, e.g. {missing[0]}")
    keys = sorted(listed)
    scores = np.array([type_scores(predicted[k]) for k in keys])
    decided = np.array([label_vector(int(predicted[k]["predicted"])) for k in keys], dtype=bool)
    return _windows(listed, keys, decided, scores)


def always_none(manifest: str | Path) -> Windows:
    """The chance row's windows: a model that says "none" everywhere, with score 0 for every type."""
    listed = _listed(manifest)
    keys = sorted(listed)
    empty = np.zeros((len(keys), len(SOUND_TYPES)))
    return _windows(listed, keys, empty.astype(bool), empty)


@dataclass
class RealNoiseMeasures:
    windows: int
    recordings: int
    joint_accuracy: Interval  # resampling `sources`, the independent real background files
    sources: int = 0
    # type -> kind -> (rate, n) in the noise-only windows (no target sound at all); kind "all": every noise-only window
    false_alarms: dict[str, dict[str, tuple[float | None, int]]] = field(default_factory=dict)
    porpoise_recall_at_precision: float = 0.0
    porpoise_threshold: float = float("inf")
    porpoise_precision: float | None = None  # at the model's own operating point
    porpoise_recall: float | None = None
    porpoise_windows: int = 0

    @property
    def goals(self) -> dict[str, bool]:
        whistle = self.false_alarms["whistle"]["all"][0]
        return {"whistle false alarms <= 5 % in real noise (noise-only windows)":
                whistle is not None and whistle <= GOAL_WHISTLE_FALSE_ALARMS,
                "porpoise recall >= 0.8 at precision 0.9": self.porpoise_recall_at_precision >= GOAL_PORPOISE_RECALL}


def measure(windows: Windows) -> RealNoiseMeasures:
    """Every measure of the module's docstring on one model's windows."""
    correct = (windows.decided == windows.truth).all(axis=1)
    result = RealNoiseMeasures(len(correct), len(set(windows.recordings)),
                               bootstrap_interval(correct.astype(int), groups=windows.groups), len(set(windows.groups)))
    kinds, noise_only = np.array(windows.kinds), ~windows.truth.any(axis=1)
    for t, name in enumerate(SOUND_TYPES):
        rates = {"all": false_alarm_rate(windows.decided[noise_only, t], windows.truth[noise_only, t])}
        for kind in BACKGROUND_KINDS:
            inside = noise_only & (kinds == kind)
            rates[kind] = false_alarm_rate(windows.decided[inside, t], windows.truth[inside, t])
        result.false_alarms[name] = rates
    porpoise = SOUND_TYPES.index("porpoise_click")
    present = windows.truth[:, porpoise]
    result.porpoise_windows = int(present.sum())
    if present.any():
        result.porpoise_recall_at_precision, result.porpoise_threshold = recall_at_precision(
            windows.scores[:, porpoise], present)
    result.porpoise_precision, result.porpoise_recall = precision_recall(windows.decided[:, porpoise], present)
    return result


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def table_row(model: str, result: RealNoiseMeasures) -> list[str]:
    fa = result.false_alarms
    goals = result.goals
    return [model, f"{result.joint_accuracy} ({result.sources} sources, {result.windows} win.)",
            *(_share(fa["whistle"][kind][0]) for kind in ("all", *BACKGROUND_KINDS)),
            _share(fa["beluga_click"]["all"][0]), _share(fa["porpoise_click"]["all"][0]),
            f"{result.porpoise_recall_at_precision:.3f}",
            f"{_share(result.porpoise_recall)} / {_share(result.porpoise_precision)}",
            "; ".join(f"{goal}: {'met' if ok else 'NOT met'}" for goal, ok in zip(("whistle", "porpoise"),
                                                                               goals.values()))]


TABLE_HEADER = ["model", "joint accuracy [95 % over source files]", "whistle FA (noise-only): all", "ambient",
                "orca calls", "dolphin whistle", "odontocete clicks", "beluga-click FA", "porpoise FA",
                "porpoise recall at precision 0.9", "porpoise recall / precision at own operating point",
                "goals (whistle FA <= 5 %; porpoise recall >= 0.8 at P 0.9)"]


CHANCE = 'chance: always "none"'
CAVEAT = ("Caveat: the porpoise band lies above every clip's Nyquist frequency, so there it is the generator's own "
          "noise model, and the positives are two clean real click templates: the porpoise figures are an upper "
          "bound.")


def chance_row(manifest: str | Path) -> list[str]:
    """The always-"none" row of the table, measured on the set like a model."""
    return table_row(CHANCE, measure(always_none(manifest)))


def table(rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def predictions_of(run_id: str, preset: str, folder: str | Path) -> Path:
    """The per-window predictions CSV an evaluation run logged (evaluate.callbacks), downloaded into `folder`."""
    from ..train.tracking import mlflow_client

    return Path(mlflow_client().download_artifacts(run_id, f"predictions/test_{preset}.csv", str(folder)))


def evaluate_on_real_noise(checkpoint: str | Path, manifest: str | Path, preset: str,
                           segmenter: str | Path | None = None, cache_root: str | Path | None = None,
                           folder: str | Path | None = None) -> RealNoiseMeasures:
    """Test a classifier checkpoint on every window of the set (evaluate.ood.evaluate_checkpoint: its own
    evaluation run, predicted masks made by `segmenter` as in training) and measure its predictions."""
    import tempfile

    from .ood import evaluate_checkpoint

    evaluation = evaluate_checkpoint(checkpoint, preset, segmenter=segmenter, manifest=manifest, cache_root=cache_root)
    if evaluation.run_id is None:
        raise ValueError(f"{checkpoint}: trained without MLflow, so its test leaves no predictions to measure")
    with tempfile.TemporaryDirectory(dir=folder) as downloaded:
        return measure(read_windows(predictions_of(evaluation.run_id, preset, downloaded), manifest))
