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

The deployed operating points (issue #25 item 3): a bundle calibrated by `mgc calibrate` on validation windows
(deploy/calibration.py: per-type thresholds for precision 0.9 there) scores every window of the set as `mgc detect`
reads it (bundle_windows), and is measured at its own per-type thresholds (measure_deployed): per type the same
false-alarm rates, the precision and recall they give on the set beside the validation figures they were chosen for,
and the goals at that operating point, not at a threshold chosen on the set.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..audio.manifest import SplitConfig, load_manifest
from ..core.labels import JOINT_CLASS_NAMES, SOUND_TYPES, label_vector
from ..deploy.bundle import CALIBRATED, TypeCalibration, bundle_from_checkpoints, load_bundle, save_bundle
from ..deploy.calibration import (
    CalibrationResult, calibrate, check_window_length, threshold_for_precision, window_logits,
)
from ..synth.real_noise import BACKGROUND_KINDS
from .intervals import Interval, bootstrap_interval

TARGET_PRECISION = 0.9
# what the saved rows mean: 2 = interval over background source files, false alarms in noise-only windows; 3 = the
# goals' wording (whistle: vessel noise not measured; porpoise: an upper bound). A row saved under another version is
# measured again (pipeline stage, benchmarks/real_noise.py).
MEASURES_VERSION = 3
GOAL_WHISTLE_FALSE_ALARMS = 0.05  # at most, in noise-only windows of real noise
GOAL_PORPOISE_RECALL = 0.8  # at least, at precision TARGET_PRECISION
WHISTLE_GOAL = ("whistle false alarms <= 5 % in real vessel noise: not measured (no licensed vessel recording); "
                "in the real noise the set has (noise-only windows)")
PORPOISE_GOAL = "porpoise recall >= 0.8 at precision 0.9"
# what a saved deployed row means (the pipeline stage real-noise-calibrated measures a row of another version again);
# 2: the goals' wording of MEASURES_VERSION 3, the ECE said once
DEPLOYED_VERSION = 2
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
        return {WHISTLE_GOAL: whistle is not None and whistle <= GOAL_WHISTLE_FALSE_ALARMS,
                PORPOISE_GOAL: self.porpoise_recall_at_precision >= GOAL_PORPOISE_RECALL}


def false_alarms(windows: Windows) -> dict[str, dict[str, tuple[float | None, int]]]:
    """Per sound type, the false-alarm rate of the windows' decisions in the noise-only windows (no target sound at
    all: a whistle flagged beside a porpoise train is no false alarm in noise), over all of them ("all") and per
    background kind."""
    kinds, noise_only = np.array(windows.kinds), ~windows.truth.any(axis=1)
    found = {}
    for t, name in enumerate(SOUND_TYPES):
        rates = {"all": false_alarm_rate(windows.decided[noise_only, t], windows.truth[noise_only, t])}
        for kind in BACKGROUND_KINDS:
            inside = noise_only & (kinds == kind)
            rates[kind] = false_alarm_rate(windows.decided[inside, t], windows.truth[inside, t])
        found[name] = rates
    return found


def measure(windows: Windows) -> RealNoiseMeasures:
    """Every measure of the module's docstring on one model's windows."""
    correct = (windows.decided == windows.truth).all(axis=1)
    result = RealNoiseMeasures(len(correct), len(set(windows.recordings)),
                               bootstrap_interval(correct.astype(int), groups=windows.groups), len(set(windows.groups)),
                               false_alarms(windows))
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


def goal_status(porpoise: bool, met: bool) -> str:
    """"met" or "NOT met"; a met porpoise goal says it is an upper bound (CAVEAT): the porpoise band is the
    generator's own noise and the positives are two clean templates."""
    return "NOT met" if not met else "met (upper bound: synthetic high band)" if porpoise else "met"


def table_row(model: str, result: RealNoiseMeasures) -> list[str]:
    fa = result.false_alarms
    goals = result.goals
    return [model, f"{result.joint_accuracy} ({result.sources} sources, {result.windows} win.)",
            *(_share(fa["whistle"][kind][0]) for kind in ("all", *BACKGROUND_KINDS)),
            _share(fa["beluga_click"]["all"][0]), _share(fa["porpoise_click"]["all"][0]),
            f"{result.porpoise_recall_at_precision:.3f}",
            f"{_share(result.porpoise_recall)} / {_share(result.porpoise_precision)}",
            f"whistle: {goal_status(False, goals[WHISTLE_GOAL])}; porpoise: {goal_status(True, goals[PORPOISE_GOAL])}"]


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


def table(rows: Sequence[Sequence[str]], header: Sequence[str] = TABLE_HEADER) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
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


def bundle_windows(bundle: str | Path, manifest: str | Path) -> tuple[Windows, int]:
    """A bundle's calibrated per-type scores on the set's windows, read and rendered as `mgc calibrate` and `mgc
    detect` read them (calibration.window_logits), decided at the bundle's thresholds; and how many windows hold no
    usable signal: detect scores none of those, so they are left out, and counted."""
    from ..deploy.inference import BundlePipeline

    pipeline = BundlePipeline(load_bundle(bundle)[0])
    rows = load_manifest(manifest)
    check_window_length(pipeline.bundle, rows, manifest)
    logits, usable = window_logits(pipeline, rows)
    scores = pipeline.calibrated(logits)[0].numpy().astype(float)
    keys = [(row.recording, round(row.start_s, 6), round(row.duration_s, 6)) for row in usable]
    decided = scores >= np.asarray(pipeline.bundle.thresholds)
    return _windows(_listed(manifest), keys, decided, scores), len(rows) - len(usable)


@dataclass
class DeployedMeasures:
    """A calibrated bundle on the set at its own per-type thresholds: what a user who deploys it gets in real noise,
    beside what validation promised."""

    windows: int  # scored
    without_signal: int  # left out: no usable signal (detect scores none of them either)
    validation: dict[str, TypeCalibration]  # per type: how its threshold was set, its validation precision / recall
    false_alarms: dict[str, dict[str, tuple[float | None, int]]]  # as RealNoiseMeasures', at the thresholds
    precision: dict[str, float | None] = field(default_factory=dict)  # on the set; None where nothing is flagged
    recall: dict[str, float | None] = field(default_factory=dict)  # None: no window holds the type (not measurable)
    positives: dict[str, int] = field(default_factory=dict)

    @property
    def goals(self) -> dict[str, bool]:
        """The issue's goals at the deployed operating point: the porpoise threshold is validation's, so the set's
        precision must reach 0.9 there too (no threshold is chosen on the set)."""
        whistle = self.false_alarms["whistle"]["all"][0]
        precision, recall = self.precision["porpoise_click"], self.recall["porpoise_click"]
        return {WHISTLE_GOAL: whistle is not None and whistle <= GOAL_WHISTLE_FALSE_ALARMS,
                PORPOISE_GOAL: precision is not None and recall is not None and precision >= TARGET_PRECISION
                and recall >= GOAL_PORPOISE_RECALL}


def measure_deployed(windows: Windows, validation: dict[str, TypeCalibration],
                     without_signal: int = 0) -> DeployedMeasures:
    """The measures with each type flagged where its score reaches the threshold `validation` holds for it (not at
    the windows' own decision)."""
    thresholds = np.array([validation[name].threshold for name in SOUND_TYPES])
    at = replace(windows, decided=windows.scores >= thresholds)
    result = DeployedMeasures(len(at.recordings), without_signal, dict(validation), false_alarms(at))
    for t, name in enumerate(SOUND_TYPES):
        precision, recall = precision_recall(at.decided[:, t], at.truth[:, t])
        result.precision[name] = None if precision is None else float(precision)
        result.recall[name] = None if recall is None else float(recall)
        result.positives[name] = int(at.truth[:, t].sum())
    return result


DEPLOYED_HEADER = ["model", "sound type", "threshold", "validation precision / recall (windows with / without)",
                   "real-noise precision / recall", "FA (noise-only): all", "ambient", "orca calls",
                   "dolphin whistle", "odontocete clicks", "goal at this threshold"]


def _threshold_cell(chosen: TypeCalibration) -> str:
    return f"{chosen.threshold:.4g}" + ("" if chosen.status == CALIBRATED else f" ({chosen.status})")


def _validation_cell(chosen: TypeCalibration) -> str:
    counts = f" ({chosen.positives} / {chosen.negatives})"
    if chosen.precision is None:
        return "—" + counts
    missed = f", target {TARGET_PRECISION:g} not reached" if chosen.precision < TARGET_PRECISION else ""
    return f"{chosen.precision:.3f} / {chosen.recall:.3f}{counts}{missed}"


def _goal_cell(name: str, result: DeployedMeasures) -> str:
    goal = {"whistle": WHISTLE_GOAL, "porpoise_click": PORPOISE_GOAL}.get(name)
    return "—" if goal is None else f"{goal}: {goal_status(goal == PORPOISE_GOAL, result.goals[goal])}"


def deployed_rows(model: str, result: DeployedMeasures) -> list[list[str]]:
    """One row per sound type (the model named in the first): the threshold, what validation promised, what the set
    gives; recall is not measurable for a type no window holds (whistle and beluga click: no beluga audio exists)."""
    rows = []
    for name in SOUND_TYPES:
        recall = _share(result.recall[name]) if result.positives[name] else "not measurable (no window with it)"
        rates = result.false_alarms[name]
        rows.append(["" if rows else model, name, _threshold_cell(result.validation[name]),
                     _validation_cell(result.validation[name]), f"{_share(result.precision[name])} / {recall}",
                     *(_share(rates[kind][0]) for kind in ("all", *BACKGROUND_KINDS)), _goal_cell(name, result)])
    return rows


def deployed_note(model: str, result: DeployedMeasures, calibration: CalibrationResult, bundle: str | Path) -> str:
    """How the model's bundle was calibrated and how many windows of the set it scored."""
    ece = f", validation ECE {calibration.ece_before:.3f} -> {calibration.ece_after:.3f}"
    if calibration.identity_kept:  # the scores are unchanged: no arrow, and none at all where a reason states both
        reasons = sorted({chosen.reason for chosen in calibration.types.values() if chosen.reason})
        scaling = "raw scores kept" + (f" ({'; '.join(reasons)})" if reasons else "")
        ece = "" if any("ECE" in reason for reason in reasons) else f", validation ECE {calibration.ece_before:.3f}"
    elif calibration.temperature is None:
        scaling = "per-type Platt scaling"
    else:
        scaling = f"temperature {calibration.temperature:.3f}"
    left_out = f", {calibration.without_signal} without usable signal left out" if calibration.without_signal else ""
    return (f"{model}: calibrated on {calibration.windows} validation windows{left_out}: {scaling}{ece}; "
            f"{result.windows} windows of the set scored, {result.without_signal} without usable signal left out (not "
            f"scored); bundle `{bundle}`")


def calibrated_on_real_noise(name: str, classifier: str | Path, segmenter: str | Path | None,
                             benchmark: str | Path, split: SplitConfig, manifest: str | Path,
                             bundle: str | Path) -> dict:
    """What a user would deploy, checked on the set: the classifier exported with its segmenter into `bundle` and
    calibrated there on the benchmark's validation windows for precision 0.9 (`mgc export`, then `mgc calibrate`),
    then every window of the set scored and measured at the bundle's own thresholds. Returns the table rows, the
    note, the goals and the measures (the pipeline stage real-noise-calibrated records them)."""
    save_bundle(bundle_from_checkpoints(classifier, segmenter), bundle)
    calibration = calibrate(bundle, benchmark, split, TARGET_PRECISION)
    windows, without_signal = bundle_windows(bundle, manifest)
    measures = measure_deployed(windows, calibration.types, without_signal)
    return {"bundle": str(bundle), "manifest": str(Path(manifest).resolve()),
            "validation_manifest": str(Path(benchmark).resolve()), "rows": deployed_rows(name, measures),
            "note": deployed_note(name, measures, calibration, bundle), "goals": measures.goals,
            "measures": asdict(measures)}
