"""The comparison report: runs of an MLflow experiment -> report/REPORT.md with the paper's tables and figures.

Runs are grouped by the data they were tested on (the training data's test split, a confirmation benchmark, a new
site): only runs tested on the same windows are compared or averaged. For each dataset, a headline table gives joint
accuracy per front end with 95 % intervals from a bootstrap over **recordings** (windows of one recording are not
independent), the majority-class rate as chance, each mask-guided model's difference to the baseline of its own
backbone and head, paired window by window through the windows' keys (recording, start, duration), and, where
out-of-distribution front ends were tested, its drop ratio. With several seeds, intervals are those of the seeds'
mean and the seeds' spread is a table of its own. On the headline dataset: the paper's tables 1-4, the OOD bars
(figure 5), confusion matrices (figure 8), the mask panel (figure 3) and, where masks of several qualities were
tested, the mask-quality curve. The figures are logged to a `report` run too.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..core.labels import JOINT_CLASS_NAMES, SOUND_TYPES
from typing import TYPE_CHECKING

from ..core.mlflow_store import DATASET_TAG, EVALUATES_TAG, dataset_name, default_tracking_uri
from ..evaluate.intervals import Interval, bootstrap_interval, drop_ratio_interval, paired_difference_interval

if TYPE_CHECKING:  # `mgc report` imports neither torch nor Lightning (evaluate.few_shot does, for its segmenters)
    from ..evaluate.few_shot import FewShotPoint

REPORT_TAG = "mgc.report"
IDEAL_SOURCE = "ideal"
BACKBONE_SETTINGS = "model/init_args/backbone_kwargs"
# A report downloads one small CSV per run and preset: MLflow's progress bar for each would bury the headline table.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

WindowKey = tuple[str, float, float]  # recording, start (s), duration (s)


@dataclass(frozen=True)
class WindowResults:
    """One run's test on one front end, window by window."""

    keys: tuple[WindowKey, ...]
    correct: np.ndarray  # 0/1 per window
    truth: np.ndarray  # the joint class per window

    def at(self, keys: list[WindowKey]) -> np.ndarray:
        position = {key: i for i, key in enumerate(self.keys)}
        return self.correct[[position[key] for key in keys]]


@dataclass
class RunSummary:
    run_id: str
    model: str  # e.g. "baseline resnet18" or "MGC xattn soft (predicted, resnet18)"
    backbone: str
    head: str
    fusion: str
    mask_kind: str
    mask_source: str
    seed: str
    metrics: dict[str, float] = field(default_factory=dict)
    windows: dict[str, WindowResults] = field(default_factory=dict)  # preset -> per-window results
    sources: dict[str, str] = field(default_factory=dict)  # preset -> the run that logged its test (default: run_id)
    name: str = ""
    end_time: int = 0
    dataset: str = ""  # the manifest (resolved) the run was tested on
    trained_on: str = ""  # the manifest (resolved) the model was trained on
    architecture: str = ""  # backbone, its settings, head and labelled windows: a mask-guided model's baseline has the same
    recipe: str = ""  # the model without its number of labelled windows: one recipe's learning curve
    train_windows: int | None = None  # labelled training windows when fewer than the train split's (a curve's point)

    def value(self, preset: str, name: str) -> float | None:
        return self.metrics.get(f"test/{preset}/{name}")

    @property
    def presets(self) -> list[str]:
        return sorted({key.split("/")[1] for key in self.metrics if key.startswith("test/") and key.count("/") >= 2})

    @property
    def is_baseline(self) -> bool:
        return self.mask_kind == "none"


@dataclass
class Selection:
    """The runs a report counts (one per model, seed and dataset) and a line for every run it leaves out, with the
    reason."""

    runs: list[RunSummary]
    left_out: list[str]


def mask_source_label(source: str) -> str:
    if source == IDEAL_SOURCE:
        return "perfect segmenter: masks reveal the labels by construction"
    if source.startswith("degraded-iou"):
        return f"exact masks degraded to IoU {source.removeprefix('degraded-iou')}"
    return source


TRAINING_KNOBS = (("mask_dropout", "mask dropout"), ("image_dropout", "image dropout"),
                  ("image_head_weight", "image head"))
"""Classifier settings that change how a mask-guided model learns, named in the report's model name when set."""


def _summary(run, dataset: str) -> RunSummary:
    params = run.data.params
    backbone = params.get("model/init_args/backbone", "?")
    mask = params.get("model/init_args/mask_input", "none")
    fusion = params.get("model/init_args/fusion", "")
    source = params.get("data/init_args/mask_source", "None")
    head = params.get("model/init_args/head", "multiclass")
    # MLflow holds the backbone's settings flattened (model/init_args/backbone_kwargs/channels, ...)
    settings = sorted((key.removeprefix(BACKBONE_SETTINGS).strip("/") or "settings", value)
                      for key, value in params.items() if key.startswith(BACKBONE_SETTINGS) and value != "None")
    backbone_kwargs = ", ".join(f"{key}={value}" for key, value in settings) or "None"
    named = backbone if not settings else f"{backbone} ({backbone_kwargs})"  # a narrower net is another model
    model = f"baseline {named}" if mask == "none" else f"MGC {fusion} {mask} ({mask_source_label(source)}, {named})"
    if head != "multiclass":
        model += f" [{head}]"
    knobs = [f"{label} {value}" for key, label in TRAINING_KNOBS
             if (value := params.get(f"model/init_args/{key}", "0.0")) not in ("0", "0.0", "None")]
    if knobs:  # the same network trained another way is another model: never averaged with it as a seed
        model += f" [{', '.join(knobs)}]"
    size = params.get("data/init_args/train_windows", "None")
    train_windows = None if size == "None" else int(size)
    recipe = model
    if train_windows is not None:
        model += f" [{train_windows} labelled windows]"
    architecture = f"{backbone} {backbone_kwargs} {head} {train_windows or 'all'}"
    return RunSummary(run.info.run_id, model, backbone, head, fusion if mask != "none" else "", mask, source,
                      params.get("seed_everything", "?"), dict(run.data.metrics), name=run.info.run_name or "",
                      end_time=run.info.end_time or 0, dataset=dataset, trained_on=dataset, architecture=architecture,
                      recipe=recipe, train_windows=train_windows)


def _dataset(run) -> str:
    """The manifest a run trained or tested on (resolved), from its tag or, for older runs, its param."""
    manifest = run.data.tags.get(DATASET_TAG) or run.data.params.get("data/init_args/manifest")
    return str(Path(manifest).resolve()) if manifest else "?"


def select_runs(experiment: str, tracking_uri: str | None = None) -> Selection:
    """Finished training runs with test metrics, each with the test metrics of its finished evaluation runs: those
    on the training data add presets to it (OOD tests), those on other data join one summary per dataset. FAILED or
    unfinished runs are left out, and of several runs of one model with the same seed on one dataset only the
    latest finished counts: a cell's n is a count of distinct seeds."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri or default_tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"no MLflow experiment named {experiment!r} at {tracking_uri or default_tracking_uri()}")
    every = sorted(client.search_runs([found.experiment_id], max_results=10_000), key=lambda r: r.info.start_time)
    left_out: list[str] = []
    training, evaluations = _finished_runs(every, left_out)
    latest = _latest_per_seed(_with_evaluations(training, evaluations, left_out), left_out)
    for summary in latest:
        _attach_predictions(client, summary)
    return Selection(latest, left_out)


def _finished_runs(every: list, left_out: list[str]) -> tuple[dict, list]:
    """The finished training runs by id and the finished evaluation runs, in start order; an unfinished run goes
    to `left_out`, a report run nowhere."""
    training, evaluations = {}, []
    for run in every:
        if run.data.tags.get(REPORT_TAG):
            continue
        if run.info.status != "FINISHED":
            left_out.append(f"{run.info.run_name} ({run.info.run_id}): {run.info.status}")
        elif EVALUATES_TAG in run.data.tags:
            evaluations.append(run)
        else:
            training[run.info.run_id] = run
    return training, evaluations


def _with_evaluations(training: dict, evaluations: list, left_out: list[str]) -> dict[tuple[str, str], RunSummary]:
    """One summary per training run and dataset it was tested on, with the test metrics of its evaluations; an
    evaluation of no finished training run goes to `left_out`."""
    summaries = {(run_id, _dataset(run)): _summary(run, _dataset(run)) for run_id, run in training.items()}
    for run in evaluations:
        parent_id = run.data.tags[EVALUATES_TAG]
        if parent_id not in training:
            left_out.append(f"{run.info.run_name} ({run.info.run_id}): evaluates run {parent_id}, which is not a "
                            "finished run of this experiment")
            continue
        key = (parent_id, _dataset(run))
        if key not in summaries:
            parent = summaries[(parent_id, _dataset(training[parent_id]))]
            summaries[key] = replace(parent, metrics={}, sources={}, windows={}, dataset=key[1])
        tested = {k: v for k, v in run.data.metrics.items() if k.startswith("test/")}
        summaries[key].metrics.update(tested)
        summaries[key].sources.update({k.split("/")[1]: run.info.run_id for k in tested if k.count("/") >= 2})
        summaries[key].end_time = max(summaries[key].end_time, run.info.end_time or 0)
    return summaries


def _latest_per_seed(summaries: dict[tuple[str, str], RunSummary], left_out: list[str]) -> list[RunSummary]:
    """Of the summaries with test metrics, the latest finished per model, seed and dataset; an earlier one goes to
    `left_out`."""
    latest: dict[tuple[str, str, str], RunSummary] = {}
    for summary in sorted(summaries.values(), key=lambda s: s.end_time):
        if not summary.presets:
            continue
        earlier = latest.get((summary.model, summary.seed, summary.dataset))
        if earlier is not None:
            left_out.append(f"{earlier.name} ({earlier.run_id}): seed {earlier.seed} of {earlier.model} on "
                            f"{dataset_name(earlier.dataset)} again in the later run {summary.run_id}, which counts")
        latest[(summary.model, summary.seed, summary.dataset)] = summary
    return list(latest.values())


def collect_runs(experiment: str, tracking_uri: str | None = None) -> list[RunSummary]:
    """The runs a report counts (see select_runs)."""
    return select_runs(experiment, tracking_uri).runs


def _attach_predictions(client, run: RunSummary) -> None:
    """Read each preset's per-window predictions (predictions/test_<preset>.csv) where the run logged them with
    window keys; runs from before keys were logged keep their means only."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as folder:
        for preset in run.presets:
            try:
                local = client.download_artifacts(run.sources.get(preset, run.run_id),
                                                  f"predictions/test_{preset}.csv", folder)
            except (OSError, MlflowException):  # runs from before per-window predictions were logged: means only
                continue
            with open(local, newline="") as handle:
                rows = list(csv.DictReader(handle))
            if not rows or "recording" not in rows[0]:
                continue
            run.windows[preset] = WindowResults(
                tuple((r["recording"], round(float(r["start_s"]), 6), round(float(r["duration_s"]), 6)) for r in rows),
                np.array([int(r["correct"]) for r in rows]), np.array([int(r["joint"]) for r in rows]))


# ---- windows shared by runs ------------------------------------------------------------------------------------------

def shared_windows(results: list[WindowResults | None]) -> list[WindowKey] | None:
    """The windows every one of these results covers, in one order; None when one has no per-window results or
    they share no window."""
    if not results or any(r is None for r in results):
        return None
    common = set(results[0].keys).intersection(*(r.keys for r in results[1:]))
    return sorted(common) or None


def _stacked(members: list[RunSummary], preset: str, keys: list[WindowKey]) -> np.ndarray:
    """(seeds, windows) correctness of one model's runs on these windows."""
    return np.stack([m.windows[preset].at(keys) for m in members])


def joint_accuracy_interval(members: list[RunSummary], preset: str) -> Interval | None:
    """Recording-level bootstrap interval on the windows every seed was tested on, seeds averaged per window."""
    keys = shared_windows([m.windows.get(preset) for m in members])
    if keys is None:
        return None
    return bootstrap_interval(_stacked(members, preset, keys), groups=[k[0] for k in keys])


def _cell(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f} (n=1)"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} (n={len(values)})"


def _accuracy_cell(members: list[RunSummary], preset: str) -> str:
    """Joint accuracy with its 95 % interval over recordings when predictions exist, else the plain mean."""
    interval = joint_accuracy_interval(members, preset)
    if interval is None:
        return _cell([r.value(preset, "joint_acc") for r in members])
    return f"{interval} ({interval.groups} rec., {interval.windows} win., n={len(members)})"


def _by_model(runs: list[RunSummary]) -> dict[str, list[RunSummary]]:
    groups: dict[str, list[RunSummary]] = defaultdict(list)
    for run in runs:
        groups[run.model].append(run)
    return dict(sorted(groups.items(), key=lambda item: (not item[1][0].is_baseline, item[0])))


def own_baseline(members: list[RunSummary], groups: dict[str, list[RunSummary]]) -> tuple[str, list[RunSummary]] | None:
    """The baseline with the mask-guided model's backbone (and its settings) and head, on the same dataset."""
    return next(((model, runs) for model, runs in groups.items() if runs[0].is_baseline
                 and runs[0].architecture == members[0].architecture and runs[0].dataset == members[0].dataset), None)


def _same_seeds(members: list[RunSummary], baseline: list[RunSummary]) -> tuple[list, list]:
    """Both models' runs of the seeds both have (all of them where they share none): a one-seed model is compared
    with the baseline of its seed, not with the mean of the baseline's seeds."""
    shared = {r.seed for r in members} & {r.seed for r in baseline}
    if not shared:
        return members, baseline
    return [r for r in members if r.seed in shared], [r for r in baseline if r.seed in shared]


def _paired_difference(members: list[RunSummary], baseline: list[RunSummary], preset: str) -> str:
    members, baseline = _same_seeds(members, baseline)
    keys = shared_windows([r.windows.get(preset) for r in (*members, *baseline)])
    if keys is None:
        return "—"
    recordings = [k[0] for k in keys]
    return str(paired_difference_interval(_stacked(members, preset, keys), _stacked(baseline, preset, keys),
                                          groups=recordings))


def _drop_ratio(members: list[RunSummary], baseline: list[RunSummary], presets: list[str]) -> str:
    """The model's mean OOD drop over its baseline's on the same presets (the training one first) and the same
    windows, with a recording-level joint bootstrap interval; a dash where the baseline does not drop."""
    members, baseline = _same_seeds(members, baseline)
    keys = shared_windows([r.windows.get(p) for r in (*members, *baseline) for p in presets])
    if keys is None:
        return "—"
    mine, theirs = ([_stacked(runs, p, keys) for p in presets] for runs in (members, baseline))
    try:
        return str(drop_ratio_interval(mine[0], mine[1:], theirs[0], theirs[1:], groups=[k[0] for k in keys]))
    except ValueError:  # the baseline does not drop: no ratio to its drop
        return "—"


def majority_rate(runs: list[RunSummary], preset: str) -> tuple[float, str] | None:
    """Share of the most frequent joint class among the windows tested on this preset: what always answering that
    class scores (the chance row; the classes are not balanced once labels follow detectability)."""
    results = next((r.windows[preset] for r in runs if preset in r.windows), None)
    if results is None:
        return None
    counts = np.bincount(results.truth, minlength=len(JOINT_CLASS_NAMES))
    return counts.max() / counts.sum(), JOINT_CLASS_NAMES[int(counts.argmax())]


def _presets(runs: list[RunSummary], train_preset: str) -> list[str]:
    tested = {p for r in runs for p in r.presets}
    return [train_preset] * (train_preset in tested) + sorted(tested - {train_preset})


def headline_table(runs: list[RunSummary], train_preset: str = "origin", floors: dict[str, str] | None = None) -> str:
    """Every model of one dataset on every front end it was tested on, with recording-level intervals; for
    mask-guided models the paired difference to their own baseline and, where OOD front ends were tested, the drop
    ratio; a chance row (majority class) and any given floors (e.g. a band-energy detector)."""
    groups = _by_model(runs)
    presets = _presets(runs, train_preset)
    ood = [p for p in presets if p != train_preset]
    header = ["model"] + [f"{p} ({'training front end' if p == train_preset else 'OOD'})" for p in presets]
    if ood:
        header += ["mean OOD drop", "OOD drop / own baseline's (paired)"]
    header += [f"minus own baseline on {p} (paired)" for p in presets]
    rows = []
    for model, members in groups.items():
        row = [model] + [_accuracy_cell(members, p) for p in presets]
        baseline = None if members[0].is_baseline else own_baseline(members, groups)
        if ood:
            inside = [r.value(train_preset, "joint_acc") for r in members]
            tested = [p for p in ood if None not in inside and all(r.value(p, "joint_acc") is not None for r in members)]
            drops = [np.mean(inside) - np.mean([r.value(p, "joint_acc") for r in members]) for p in tested]
            row.append(f"{np.mean(drops):.3f}" if drops else "—")
            row.append(_drop_ratio(members, baseline[1], [train_preset, *tested]) if baseline and drops else "—")
        for preset in presets:
            if members[0].is_baseline:
                row.append("—")
            else:
                row.append(_paired_difference(members, baseline[1], preset) if baseline else
                           "no baseline of this backbone and head")
        rows.append(row)
    chance = [majority_rate(runs, p) for p in presets]
    rows.append(["chance: always the majority class"] + [f"{rate:.3f} ({name})" if rate is not None else "—"
                                                         for rate, name in (c or (None, None) for c in chance)]
                + ["—"] * (len(header) - 1 - len(presets)))
    for name, values in (floors or {}).items():
        rows.append([name] + [values.get(p, "—") for p in presets] + ["—"] * (len(header) - 1 - len(presets)))
    return _table(header, rows)


def headline_text(runs: list[RunSummary], train_preset: str) -> str:
    """What the headline's brackets and columns mean, said only of what the table holds."""
    seeds = max(len(members) for members in _by_model(runs).values())
    lines = ["Brackets are 95 % intervals from a bootstrap over the test **recordings** (each resampled recording keeps "
             "all its windows), so they cover how much another set of recordings would move the figure"
             + ("; with several seeds each window's correctness is averaged over the seeds first, and the seeds' "
                "spread is in the table below" if seeds > 1 else "; one seed: they do not cover a retraining") + ".",
             "Each mask-guided model is paired with the baseline of its own backbone and head, on the same windows "
             "(matched by recording, start and duration); an interval of the difference above 0 means the masks "
             "help."]
    if len(_presets(runs, train_preset)) > 1:
        lines.append("The drop ratio is the model's mean out-of-distribution drop over its baseline's, both resampled "
                     "on the same recordings: an interval below 0.5 means the masks at least halve the drop.")
    if any(r.mask_source == IDEAL_SOURCE for r in runs):
        lines.append("Rows of a *perfect segmenter* are given the benchmark's exact masks. Those masks cover the "
                     "labelled calls only, with the rule that decides the labels, so they reveal the labels by "
                     "construction: such a row is an upper bound for a perfect segmenter (which would also be a perfect "
                     "classifier), not evidence that masks help.")
    return " ".join(lines)


def seeds_table(runs: list[RunSummary], train_preset: str) -> str | None:
    """Per model and front end, the lowest and highest joint accuracy over its seeds, and their SD: how far a
    retraining moves a figure (the intervals above do not cover it)."""
    groups = {model: members for model, members in _by_model(runs).items() if len(members) > 1}
    if not groups:
        return None
    presets = _presets(runs, train_preset)
    rows = []
    for model, members in groups.items():
        row = [model, str(len(members))]
        for preset in presets:
            values = [v for v in (r.value(preset, "joint_acc") for r in members) if v is not None]
            row.append(f"{min(values):.3f}–{max(values):.3f} (SD {np.std(values, ddof=1):.3f})" if len(values) > 1
                       else "—")
        rows.append(row)
    return _table(["model", "seeds"] + [f"{p}: min–max (SD)" for p in presets], rows)


@dataclass(frozen=True)
class MaskQuality:
    """What a mask source is worth on the headline windows: its IoU with the exact masks, and the joint accuracy of
    the labels read off its masks alone (masks.sources.label_readout): masks can match the exact ones poorly yet
    still carry the labels, when their errors ignore the labels."""

    iou: float
    readout: float


def mask_curve_rows(runs: list[RunSummary], mask_quality: dict[str, MaskQuality], train_preset: str) -> list[tuple]:
    """(quality, model, members, baseline) for the mask-guided models whose mask source was measured, trained on the
    whole train split (a learning curve's smaller sizes are another curve), sorted by IoU: the same recipe at
    several mask qualities."""
    groups = _by_model(runs)
    points = []
    for model, members in groups.items():
        source = members[0].mask_source
        if (members[0].is_baseline or members[0].train_windows is not None or source not in mask_quality
                or train_preset not in members[0].windows):
            continue
        points.append((mask_quality[source], model, members, own_baseline(members, groups)))
    return sorted(points, key=lambda point: point[0].iou)


def mask_curve_table(points: list[tuple], train_preset: str) -> str:
    rows = [[f"{quality.iou:.3f}", f"{quality.readout:.3f}", model, _accuracy_cell(members, train_preset),
             _paired_difference(members, baseline[1], train_preset) if baseline else "—"]
            for quality, model, members, baseline in points]
    return _table(["mask IoU", "labels read off the masks alone", "model", f"joint accuracy ({train_preset})",
                   "minus own baseline (paired)"], rows)


def mask_curve_figure(points: list[tuple], train_preset: str):
    """Joint accuracy against the masks' IoU with the exact masks (left) and against the labels their masks carry
    alone (right), the baseline as a horizontal band; the segmenter's masks in blue, exact ones red, degraded grey."""
    from ..evaluate.figures import plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    baselines = {model: runs for _, _, _, found in points if found for model, runs in [found]}
    for axis, measure, label in ((axes[0], "iou", "mask IoU against the exact masks"),
                                 (axes[1], "readout", "joint accuracy of the labels read off the masks alone")):
        for quality, model, members, baseline in points:
            interval = joint_accuracy_interval(members, train_preset)
            source = members[0].mask_source
            colour = "tab:red" if source == IDEAL_SOURCE else "grey" if source.startswith("degraded") else "tab:blue"
            axis.errorbar([getattr(quality, measure)], [interval.estimate], fmt="o", color=colour, capsize=3,
                          yerr=[[interval.estimate - interval.low], [interval.high - interval.estimate]])
        for model, runs in baselines.items():
            interval = joint_accuracy_interval(runs, train_preset)
            axis.axhspan(interval.low, interval.high, color="grey", alpha=0.2, label=f"{model} (95 % interval)")
            axis.axhline(interval.estimate, color="grey", linewidth=1)
        axis.set_xlabel(label)
    axes[0].set_ylabel(f"MGC joint accuracy on {train_preset} (95 % interval)")
    axes[0].legend(fontsize=7, loc="lower right")
    figure.suptitle("red: exact masks (perfect segmenter); grey: exact masks degraded; blue: the segmenter's", fontsize=8)
    figure.tight_layout()
    return figure


def learning_curves(runs: list[RunSummary]) -> dict[str, list[tuple]]:
    """Per mask-guided recipe trained at more than one number of labelled windows: (windows or None for all of
    them, members, baseline members) per size, smallest first, each paired with the baseline of its own size."""
    groups = _by_model(runs)
    curves: dict[str, list[tuple]] = defaultdict(list)
    for model, members in groups.items():
        baseline = None if members[0].is_baseline else own_baseline(members, groups)
        if baseline is not None:
            curves[members[0].recipe].append((members[0].train_windows, members, baseline[1]))
    return {recipe: sorted(points, key=lambda point: point[0] or float("inf"))
            for recipe, points in curves.items() if len(points) > 1}


def _size_label(train_windows: int | None) -> str:
    return "all" if train_windows is None else str(train_windows)


def learning_curve_table(points: list[tuple], train_preset: str) -> str:
    """Per size and front end: the baseline, the mask-guided model and their paired difference; the drop ratio on
    each size's first row."""
    presets = _presets([run for _, members, baseline in points for run in (*members, *baseline)], train_preset)
    rows = []
    for size, members, baseline in points:
        for k, preset in enumerate(presets):
            ratio = _drop_ratio(members, baseline, presets) if k == 0 and len(presets) > 1 else ""
            rows.append([_size_label(size) if k == 0 else "", preset, _accuracy_cell(baseline, preset),
                         _accuracy_cell(members, preset), _paired_difference(members, baseline, preset), ratio])
    return _table(["labelled training windows", "front end", "baseline", "mask-guided", "minus baseline (paired)",
                   "OOD drop / baseline's (paired)"], rows)


def learning_curve_figure(recipe: str, points: list[tuple], train_preset: str):
    """Joint accuracy against the number of labelled training windows, baseline and mask-guided model, one panel per
    front end, with recording-level intervals."""
    from ..evaluate.figures import plt

    presets = _presets([run for _, members, baseline in points for run in (*members, *baseline)], train_preset)
    figure, axes = plt.subplots(1, len(presets), figsize=(3.6 * len(presets), 3.6), sharey=True, squeeze=False)
    positions = np.arange(len(points))
    for axis, preset in zip(axes[0], presets):
        for which, colour, label, shift in ((2, "black", "baseline", -0.05), (1, "tab:blue", "mask-guided", 0.05)):
            intervals = [joint_accuracy_interval(point[which], preset) for point in points]
            shown = [(x + shift, i) for x, i in zip(positions, intervals) if i is not None]
            if not shown:
                continue
            xs, found = zip(*shown)
            axis.errorbar(xs, [i.estimate for i in found], fmt="-o", color=colour, capsize=3, label=label,
                          yerr=[[i.estimate - i.low for i in found], [i.high - i.estimate for i in found]])
        axis.set_xticks(positions, [_size_label(size) for size, _, _ in points])
        axis.set_xlabel("labelled training windows")
        axis.set_title(preset + (" (training front end)" if preset == train_preset else " (OOD)"), fontsize=9)
    axes[0][0].set_ylabel("joint accuracy (95 % interval over recordings)")
    axes[0][0].legend(fontsize=7)
    figure.suptitle(recipe, fontsize=8)
    figure.tight_layout()
    return figure


def build_tables(runs: list[RunSummary], train_preset: str = "origin") -> str:
    """The paper's tables 1-4 on one dataset's runs."""
    groups = _by_model(runs)
    presets = _presets(runs, train_preset)
    sections = []
    rows = [[model, _accuracy_cell(members, train_preset),
             _cell([r.value(train_preset, "joint_macro_f1") for r in members]),
             _cell([r.value(train_preset, "macro_f1") for r in members])] for model, members in groups.items()]
    sections.append(f"## Table 1: image-only baselines vs mask-guided classification ({train_preset})\n\n"
                    + _table(["model", "joint accuracy", "macro-F1 (8 joint classes)", "macro-F1 (3 types)"], rows))

    mgc = [r for r in runs if not r.is_baseline and r.train_windows is None]  # the learning curve's sizes apart
    sources = sorted({r.mask_source for r in mgc})
    fusions = sorted({(r.fusion, r.mask_kind) for r in mgc})
    rows = [[f"{fusion} ({kind})"] + [_cell([r.value(train_preset, "joint_acc") for r in mgc if (r.fusion, r.mask_kind,
             r.mask_source) == (fusion, kind, source)]) for source in sources] for fusion, kind in fusions]
    meaning = {IDEAL_SOURCE: "`ideal` = the perfect segmenter's exact masks", "predicted": "`predicted` = generated "
               "by the segmenter"}
    said = "; ".join(meaning[source] for source in sources if source in meaning)
    sections.append(f"## Table 2: fusion x mask source (joint accuracy{'; ' + said if said else ''})\n\n"
                    + (_table(["fusion (mask)"] + sources, rows) if rows else "No mask-guided runs."))

    rows = [[model, members[0].mask_kind] + [_accuracy_cell(members, p) for p in presets]
            for model, members in groups.items()]
    sections.append("## Table 3: binary vs soft masks on every front end tested (joint accuracy)\n\n"
                    + _table(["model", "mask"] + presets, rows))

    rows = []
    for model, members in groups.items():
        row = [model, members[0].head, _cell([r.value(train_preset, "hamming") for r in members]),
               _cell([r.value(train_preset, "joint_acc") for r in members])]
        for sound_type in SOUND_TYPES:
            row += [_cell([r.value(train_preset, f"{m}/{sound_type}") for r in members])
                    for m in ("precision", "recall", "f1")]
        rows.append(row)
    header = ["model", "head", "hamming loss", "joint accuracy"] + [
        f"{t.replace('_', ' ')} {m}" for t in SOUND_TYPES for m in ("P", "R", "F1")]
    sections.append(f"## Table 4: heads, hamming loss and per-type precision / recall / F1 ({train_preset})\n\n"
                    "Hamming loss is the share of wrong type labels (of 3) per window for both heads, so it is "
                    "comparable between them.\n\n" + _table(header, rows))
    return "\n\n".join(sections)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def ood_figure(runs: list[RunSummary], train_preset: str = "origin"):
    """Grouped bars: joint accuracy of every model on the training preset and on each OOD preset (figure 5), with
    recording-level intervals and the majority-class rate as chance."""
    from ..evaluate.figures import plt

    groups = _by_model(runs)
    presets = _presets(runs, train_preset)
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4))
    width = 0.8 / len(presets)
    for k, preset in enumerate(presets):
        means, errors = [], [[], []]
        for members in groups.values():
            values = [v for v in (r.value(preset, "joint_acc") for r in members) if v is not None]
            interval = joint_accuracy_interval(members, preset)
            mean = interval.estimate if interval else (np.mean(values) if values else 0)
            spread = np.std(values, ddof=1) if len(values) > 1 else 0
            means.append(mean)
            errors[0].append(mean - interval.low if interval else spread)
            errors[1].append(interval.high - mean if interval else spread)
        axis.bar(np.arange(len(groups)) + (k - (len(presets) - 1) / 2) * width, means, width, yerr=errors,
                 label=preset + (" (training front end)" if preset == train_preset else " (OOD)"), capsize=2)
    axis.set_xticks(range(len(groups)), [m.replace(" (", "\n(").replace(", ", ",\n") for m in groups], fontsize=6)
    for tick, members in zip(axis.get_xticklabels(), groups.values()):
        tick.set_color("black" if members[0].is_baseline else "tab:blue")
    chance = majority_rate(runs, train_preset)
    if chance is not None:
        axis.axhline(chance[0], color="grey", linestyle=":", linewidth=1, label=f"chance: majority class ({chance[1]})")
    axis.set_ylabel("joint accuracy (95 % interval over recordings)")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def segmenter_windows_section(counts: dict[str, int]) -> str:
    """Leakage accounting: the segmenter's masks are better on the windows it trained on, so any in val or test
    would flatter checkpoint selection or the test."""
    return ("## Segmenter training windows\n\n"
            f"Segmenter training windows per classifier split: train {counts['train']}, val {counts['val']}, "
            f"test {counts['test']}. A segmenter draws better masks on the windows it trained on (in the demo a few "
            "hundredths of IoU: BENCHMARKS.md, \"Masks that pay?\"), so val and test must be 0: otherwise "
            "checkpoint selection and the test see better masks than new recordings would get.")


@dataclass(frozen=True)
class Headline:
    """The dataset whose windows carry the report's claims, and what to call it (default: the training data's own
    test split)."""

    manifest: str
    description: str
    floors: dict[str, dict[str, str]] = field(default_factory=dict)  # row name -> preset -> cell
    real_noise: str = ""  # the real-noise test's section (pipeline stage real_noise_test), printed after the headline


def by_dataset(runs: list[RunSummary], headline: Headline | None) -> list[tuple[str, str, list[RunSummary]]]:
    """(title, description, runs) per dataset, the headline's first (without one: the test split of the data most
    runs trained on)."""
    datasets: dict[str, list[RunSummary]] = defaultdict(list)
    for run in runs:
        datasets[run.dataset].append(run)
    if headline is None:
        trained = [run.trained_on for run in runs]
        own = max(set(trained), key=trained.count)
        headline = Headline(own, f"The test split of the training data (`{own}`): recordings held out of training "
                                 "and validation.")
    first = str(Path(headline.manifest).resolve())
    ordered = sorted(datasets, key=lambda d: (d != first, dataset_name(d)))
    sections = []
    for dataset in ordered:
        own_split = all(r.trained_on == dataset for r in datasets[dataset])
        if dataset == first:
            title, described = f"Headline: {dataset_name(dataset)}", headline.description
        elif own_split:
            title, described = (f"Development test: {dataset_name(dataset)}",
                                f"The test split of the training data (`{dataset}`); earlier choices may have been made "
                                "on it, so it backs no claim.")
        else:
            title, described = f"Tested on {dataset_name(dataset)}", f"`{dataset}`"
        sections.append((title, described, datasets[dataset]))
    return sections


def summary_text(runs: list[RunSummary], train_preset: str = "origin", headline: Headline | None = None) -> str:
    """The headline table of every dataset with its text, and the seeds' spread: what `mgc pipeline` prints."""
    parts = []
    for title, description, members in by_dataset(runs, headline):
        floors = headline.floors if headline and title.startswith("Headline") else None
        parts.append(f"## {title}\n\n{description}\n\n{headline_text(members, train_preset)}\n\n"
                     + headline_table(members, train_preset, floors))
        spread = seeds_table(members, train_preset)
        if spread:
            parts.append(f"### Seeds on {dataset_name(members[0].dataset)}: spread of joint accuracy\n\n{spread}")
        if headline and headline.real_noise and title.startswith("Headline"):
            parts.append(headline.real_noise)
    return "\n\n".join(parts)


def write_report(
    experiment: str, out_dir: str | Path = "report", train_preset: str = "origin", tracking_uri: str | None = None,
    panel: tuple | None = None, segmenter_windows: dict[str, int] | None = None, headline: Headline | None = None,
    mask_quality: dict[str, MaskQuality] | None = None, few_shot: list[FewShotPoint] | None = None,
) -> Path:
    """Write REPORT.md and its figures; log the figures to a `report` run of the experiment. `panel` is an optional
    (images, masks dict) for the spectrogram / mask / soft-mask figure; `segmenter_windows` an optional count of the
    segmenter's training windows per classifier split (train / val / test); `headline` the dataset the claims are
    measured on (default: the runs' own test split); `mask_quality` the IoU of each mask source on the headline
    dataset's `train_preset` windows and the labels its masks carry alone, which draw the mask-quality curve;
    `few_shot` the few-shot curve's points."""
    from mlflow.tracking import MlflowClient

    selection = select_runs(experiment, tracking_uri)
    if not selection.runs:
        raise ValueError(f"experiment {experiment!r} has no run with test metrics yet")
    runs = by_dataset(selection.runs, headline)[0][2]  # the headline dataset's runs carry the tables and figures
    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    if figures.exists():
        shutil.rmtree(figures)
    figures.mkdir(parents=True)
    client = MlflowClient(tracking_uri or default_tracking_uri())
    saved = [_ood_figure_file(runs, train_preset, figures)]
    mask_curve, mask_curve_figures = _mask_curve_section(runs, mask_quality or {}, train_preset, figures)
    learning, learning_figures = _learning_curve_sections(runs, train_preset, figures)
    few_shot_text, few_shot_figures = _few_shot_section(few_shot or [], figures)
    saved += [*mask_curve_figures, *learning_figures, *few_shot_figures,
              *_confusion_figure_files(client, runs, train_preset, out_dir)]
    if panel is not None:
        saved.append(_panel_figure_file(panel, figures))
    text = [*_introduction(experiment, selection, train_preset, headline), *mask_curve, *learning,
            *few_shot_text, f"# Tables on {dataset_name(runs[0].dataset)}", "", build_tables(runs, train_preset), ""]
    if selection.left_out:
        text += ["## Runs left out\n", *(f"- {line}" for line in selection.left_out), ""]
    if segmenter_windows is not None:
        text += [segmenter_windows_section(segmenter_windows), ""]
    text += [f"## {title}\n\n![{title}](figures/{name})\n" for title, name in saved]
    report = out_dir / "REPORT.md"
    report.write_text("\n".join(text))
    _log_report(client, experiment, figures, report)
    return report


def _save_figure(figure, path: Path) -> None:
    from ..evaluate.figures import plt

    figure.savefig(path, dpi=120)
    plt.close(figure)


def _ood_figure_file(runs: list[RunSummary], train_preset: str, figures: Path) -> tuple[str, str]:
    """Figure 5 in `figures`: its title and file name."""
    _save_figure(ood_figure(runs, train_preset), figures / "ood_joint_accuracy.png")
    out_of_distribution = len(_presets(runs, train_preset)) > 1
    return (f"Figure 5: joint accuracy on the training front end{' and out of distribution' * out_of_distribution}",
            "ood_joint_accuracy.png")


def _mask_curve_section(runs: list[RunSummary], mask_quality: dict[str, MaskQuality], train_preset: str,
                        figures: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The mask-quality curve's lines of REPORT.md and its figure's (title, file); nothing with under two points."""
    points = mask_curve_rows(runs, mask_quality, train_preset)
    if len(points) <= 1:
        return [], []
    _save_figure(mask_curve_figure(points, train_preset), figures / "mask_quality_curve.png")
    return (["## Mask-quality curve\n", "The same mask-guided recipe trained and tested with masks of measured "
             "quality, beside its baseline: IoU against the exact masks on these windows, and the joint accuracy "
             "of the labels read off the masks alone (a logistic regression per sound type on the masks' pixel "
             "counts per frequency band, fitted on the training windows). Exact masks, degraded or not, carry "
             "the labels by construction; a segmenter's masks carry what it saw in the image. Read the curve "
             "against the second measure before concluding that an IoU is enough.\n",
             mask_curve_table(points, train_preset), ""],
            [("Mask-quality curve: joint accuracy against the masks' IoU", "mask_quality_curve.png")])


def _few_shot_section(points: list[FewShotPoint], figures: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The few-shot curve's lines of REPORT.md and its figure's (title, file); nothing without a point."""
    if not points:
        return [], []
    from ..evaluate.few_shot import few_shot_figure, few_shot_table

    _save_figure(few_shot_figure(points), figures / "few_shot_curve.png")
    return (["## Few-shot curve\n", "The segmenter trained on this many high-quality masks (exact masks standing in "
             "for the annotator), chosen at random (stratified, as `hq.csv`) or grown round by round with the windows "
             "the segmenter of the round before was least sure of (the annotation queue `uncertain`); each with about "
             "the optimiser steps of the pipeline's segmenter. Pooled IoU against the exact masks, 95 % interval over "
             "recordings.\n", few_shot_table(points), ""],
            [("Few-shot curve: the segmenter's IoU against the number of high-quality masks", "few_shot_curve.png")])


def _learning_curve_sections(runs: list[RunSummary], train_preset: str,
                             figures: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """One section per recipe trained at several sizes: its lines of REPORT.md and its figure's (title, file)."""
    text, saved = [], []
    for k, (recipe, points) in enumerate(learning_curves(runs).items()):
        name = f"learning_curve_{k}.png"
        _save_figure(learning_curve_figure(recipe, points, train_preset), figures / name)
        saved.append((f"Learning curve: {recipe}", name))
        text += [f"## Learning curve: {recipe}\n", "The baseline and the mask-guided model trained on fewer labelled "
                 "windows (drawn at random, stratified over the joint classes, the same windows for both; the "
                 "segmenter's masks unchanged), each paired with the baseline of its own size on the same "
                 "windows.\n", learning_curve_table(points, train_preset), ""]
    return text, saved


def _confusion_figure_files(client, runs: list[RunSummary], train_preset: str, out_dir: Path) -> list[tuple[str, str]]:
    """Figure 8 of each model, copied from its first run's artifacts into out_dir/figures: (title, file) each."""
    saved = []
    for number, (model, members) in enumerate(_by_model(runs).items()):
        artifact = f"figures/confusion_test_{train_preset}.png"
        try:
            local = client.download_artifacts(members[0].sources.get(train_preset, members[0].run_id), artifact,
                                              str(out_dir / ".downloads"))
        except Exception:  # a run without that figure (e.g. interrupted) is simply left out
            continue
        name = f"confusion_{number:02d}_" + "".join(c if c.isalnum() else "_" for c in model)[:80] + ".png"
        shutil.copy(local, out_dir / "figures" / name)
        saved.append((f"Figure 8: confusion matrix, {model} (seed {members[0].seed})", name))
    shutil.rmtree(out_dir / ".downloads", ignore_errors=True)
    return saved


def _panel_figure_file(panel: tuple, figures: Path) -> tuple[str, str]:
    from ..evaluate.figures import mask_panel

    columns, titles = panel
    _save_figure(mask_panel(columns, titles), figures / "masks_panel.png")
    return "Figure 3: spectrogram, high-quality mask, generated mask and its soft version", "masks_panel.png"


def _introduction(experiment: str, selection: Selection, train_preset: str, headline: Headline | None) -> list[str]:
    """REPORT.md's title, what counts, and every dataset's headline."""
    seeds = sorted({r.seed for r in selection.runs})
    return [f"# Report: MLflow experiment `{experiment}`", "",
            f"{len(selection.runs)} tested runs, {len(_by_model(selection.runs))} models, seeds {', '.join(seeds)}. "
            "Runs tested on different data are never compared or averaged. n counts distinct seeds: only finished "
            "runs count, and where one model ran a seed more than once, the latest finished run.", "",
            summary_text(selection.runs, train_preset, headline), ""]


def _log_report(client, experiment: str, figures: Path, report: Path) -> None:
    """REPORT.md and its figures as the artifacts of a `report` run of the experiment."""
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    run = client.create_run(experiment_id, run_name="report", tags={REPORT_TAG: "true"})
    client.log_artifacts(run.info.run_id, str(figures), "figures")
    client.log_artifact(run.info.run_id, str(report))
    client.set_terminated(run.info.run_id)
