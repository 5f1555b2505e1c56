"""The comparison report: runs of an MLflow experiment -> report/REPORT.md with the paper's tables and figures.

Tables: the headline (joint accuracy in and out of distribution with 95 % bootstrap intervals over test windows,
each mask-guided model paired with the baseline window by window), joint accuracy and macro-F1 per model (paper
table 1), fusion x mask source (table 2), binary vs soft masks on origin and every OOD preset (table 3), multi-label
vs multi-class heads with hamming loss and per-type P/R/F1 (table 4). Joint accuracies come with their interval
wherever the runs logged per-window predictions; other cells are the mean (± std over seeds, n seeds). Figures:
origin vs OOD joint accuracy bars with intervals (figure 5), confusion matrices (figure 8), spectrogram / mask /
soft-mask panel (figure 3). The figures are logged to a `report` run too.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .intervals import Interval, bootstrap_interval, drop_ratio_interval, paired_difference_interval
from .labels import SOUND_TYPES
from .tracking import DATASET_TAG, EVALUATES_TAG, dataset_name, default_tracking_uri

REPORT_TAG = "mgc.report"
# A report downloads one small CSV per run and preset: MLflow's progress bar for each would bury the headline table.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass
class RunSummary:
    run_id: str
    model: str  # e.g. "baseline resnet18" or "MGC xattn soft (predicted, resnet18)", "... on new_site" elsewhere
    backbone: str
    head: str
    fusion: str
    mask_kind: str
    mask_source: str
    seed: str
    metrics: dict[str, float] = field(default_factory=dict)
    correct: dict[str, np.ndarray] = field(default_factory=dict)  # preset -> per-window 0/1, in test-split order
    sources: dict[str, str] = field(default_factory=dict)  # preset -> the run that logged its test (default: run_id)
    name: str = ""
    end_time: int = 0

    def value(self, preset: str, name: str) -> float | None:
        return self.metrics.get(f"test/{preset}/{name}")

    @property
    def presets(self) -> list[str]:
        return sorted({key.split("/")[1] for key in self.metrics if key.startswith("test/") and key.count("/") >= 2})


@dataclass
class Selection:
    """The runs a report counts (one per model and seed) and a line for every run it leaves out, with the reason."""

    runs: list[RunSummary]
    left_out: list[str]


def _summary(run) -> RunSummary:
    params = run.data.params
    backbone = params.get("model/init_args/backbone", "?")
    mask = params.get("model/init_args/mask_input", "none")
    fusion = params.get("model/init_args/fusion", "")
    source = params.get("data/init_args/mask_source", "None")
    head = params.get("model/init_args/head", "multiclass")
    if mask == "none":
        model = f"baseline {backbone}"
    else:
        model = f"MGC {fusion} {mask} ({source}, {backbone})"
    if head != "multiclass":
        model += f" [{head}]"
    return RunSummary(run.info.run_id, model, backbone, head, fusion if mask != "none" else "", mask, source,
                      params.get("seed_everything", "?"), dict(run.data.metrics), name=run.info.run_name or "",
                      end_time=run.info.end_time or 0)


def _dataset(run) -> str | None:
    """The manifest a run trained or tested on (resolved), from its tag or, for older runs, its param."""
    manifest = run.data.tags.get(DATASET_TAG) or run.data.params.get("data/init_args/manifest")
    return str(Path(manifest).resolve()) if manifest else None


def select_runs(experiment: str, tracking_uri: str | None = None) -> Selection:
    """Finished training runs with test metrics, each with the test metrics of its finished evaluation runs: those
    on the training data add presets to it (OOD tests), those on other data become rows of their own ("... on
    DATASET"). FAILED or unfinished runs are left out, and of several runs of one model with the same seed only
    the latest finished counts: a cell's n is a count of distinct seeds."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri or default_tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"no MLflow experiment named {experiment!r} at {tracking_uri or default_tracking_uri()}")
    every = sorted(client.search_runs([found.experiment_id], max_results=10_000), key=lambda r: r.info.start_time)
    left_out, training, evaluations = [], {}, []
    for run in every:
        if run.data.tags.get(REPORT_TAG):
            continue
        if run.info.status != "FINISHED":
            left_out.append(f"{run.info.run_name} ({run.info.run_id}): {run.info.status}")
        elif EVALUATES_TAG in run.data.tags:
            evaluations.append(run)
        else:
            training[run.info.run_id] = run
    summaries = {run_id: _summary(run) for run_id, run in training.items()}
    elsewhere = []
    for run in evaluations:
        parent_id = run.data.tags[EVALUATES_TAG]
        parent = summaries.get(parent_id)
        if parent is None:
            left_out.append(f"{run.info.run_name} ({run.info.run_id}): evaluates run {parent_id}, which is not a "
                            "finished run of this experiment")
            continue
        tested = {k: v for k, v in run.data.metrics.items() if k.startswith("test/")}
        if _dataset(run) == _dataset(training[parent_id]):
            parent.metrics.update(tested)
            parent.sources.update({key.split("/")[1]: run.info.run_id for key in tested if key.count("/") >= 2})
        else:
            elsewhere.append(replace(parent, run_id=run.info.run_id, model=f"{parent.model} on "
                                     f"{dataset_name(_dataset(run) or '?')}", metrics=tested, sources={},
                                     correct={}, name=run.info.run_name or "", end_time=run.info.end_time or 0))
    latest: dict[tuple[str, str], RunSummary] = {}
    for summary in sorted([*summaries.values(), *elsewhere], key=lambda s: s.end_time):
        if not summary.presets:
            continue
        earlier = latest.get((summary.model, summary.seed))
        if earlier is not None:
            left_out.append(f"{earlier.name} ({earlier.run_id}): seed {earlier.seed} of {earlier.model} again in the "
                            f"later run {summary.run_id}, which counts")
        latest[(summary.model, summary.seed)] = summary
    for summary in latest.values():
        _attach_predictions(client, summary)
    return Selection(list(latest.values()), left_out)


def collect_runs(experiment: str, tracking_uri: str | None = None) -> list[RunSummary]:
    """The runs a report counts (see select_runs)."""
    return select_runs(experiment, tracking_uri).runs


def _attach_predictions(client, run: RunSummary) -> None:
    """Read each preset's per-window predictions (predictions/test_<preset>.csv) where the run logged them."""
    import csv
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for preset in run.presets:
            try:
                local = client.download_artifacts(run.sources.get(preset, run.run_id),
                                                  f"predictions/test_{preset}.csv", folder)
            except Exception:  # runs from before per-window predictions were logged: means only
                continue
            with open(local, newline="") as handle:
                rows = sorted(csv.DictReader(handle), key=lambda row: int(row["index"]))
            run.correct[preset] = np.array([int(row["correct"]) for row in rows])


def _correctness(runs: list[RunSummary], preset: str) -> np.ndarray | None:
    """(runs, windows) per-window correctness on a preset; None unless every run has predictions for the same
    windows."""
    arrays = [r.correct.get(preset) for r in runs]
    if not arrays or any(a is None for a in arrays) or len({a.size for a in arrays}) != 1:
        return None
    return np.stack(arrays)


def joint_accuracy_interval(members: list[RunSummary], preset: str) -> Interval | None:
    """Bootstrap interval over the test windows, seeds averaged per window; None unless every run has predictions
    for the same windows."""
    correct = _correctness(members, preset)
    return None if correct is None else bootstrap_interval(correct)


def _cell(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f} (n=1)"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} (n={len(values)})"


def _accuracy_cell(members: list[RunSummary], preset: str) -> str:
    """Joint accuracy with its 95 % interval over windows when predictions exist, else the plain mean."""
    interval = joint_accuracy_interval(members, preset)
    if interval is None:
        return _cell([r.value(preset, "joint_acc") for r in members])
    return f"{interval} ({interval.windows} windows, n={len(members)})"


def _baseline(groups: dict[str, list[RunSummary]]) -> tuple[str, list[RunSummary]] | None:
    return next(((model, members) for model, members in groups.items() if model.startswith("baseline")), None)


def headline_table(runs: list[RunSummary], train_preset: str = "origin") -> str:
    """Every model in and out of distribution with intervals, its mean OOD drop, and (for mask-guided models) the
    paired difference to the first baseline on the same windows: the numbers behind the paper's two claims."""
    groups = _by_model(runs)
    presets = [train_preset] + sorted({p for r in runs for p in r.presets} - {train_preset})
    baseline = _baseline(groups)
    header = ["model"] + [f"{p} ({'train' if p == train_preset else 'OOD'})" for p in presets] + [
        "mean OOD drop", "OOD drop / baseline's (paired)",
        f"minus {baseline[0] if baseline else 'baseline'} on {train_preset} (paired)"]
    rows = []
    for model, members in groups.items():
        row = [model] + [_accuracy_cell(members, p) for p in presets]
        inside_values = [r.value(train_preset, "joint_acc") for r in members]
        known = all(v is not None for v in inside_values)  # a row tested on other presets only has no drop
        tested = [p for p in presets[1:] if known and all(r.value(p, "joint_acc") is not None for r in members)]
        drops = [np.mean(inside_values) - np.mean([r.value(p, "joint_acc") for r in members]) for p in tested]
        row.append(f"{np.mean(drops):.3f}" if drops else "—")
        compared = baseline is not None and model != baseline[0]
        row.append(_drop_ratio(members, baseline[1], [train_preset, *tested]) if compared and drops else "—")
        mine = _correctness(members, train_preset)
        theirs = _correctness(baseline[1], train_preset) if compared else None
        if mine is not None and theirs is not None and mine.shape[1] == theirs.shape[1]:
            row.append(str(paired_difference_interval(mine, theirs)))
        else:
            row.append("—")
        rows.append(row)
    return ("## Headline: joint accuracy with 95 % bootstrap intervals over test windows\n\n"
            "Brackets are 95 % intervals (bootstrap over the test windows; with several seeds each window's "
            "correctness is averaged over seeds first). Rows whose mask source is `ideal` are given the benchmark's "
            "exact masks: they measure the ceiling that the labels and masks allow, not a deployable model. The "
            "drop ratio is the model's mean OOD drop over the baseline's, resampling the same windows for both: an "
            "interval below 0.5 means the masks at least halve the drop. The last column is the mask-guided "
            "model's accuracy minus the baseline's on the same windows, with a paired bootstrap interval: an "
            "interval above 0 means the masks help.\n\n" + _table(header, rows))


def _drop_ratio(members: list[RunSummary], baseline: list[RunSummary], presets: list[str]) -> str:
    """The model's mean OOD drop over the baseline's on the same presets (the training one first), with a joint
    bootstrap interval, seeds averaged per window; the ratio of means, marked so, where per-window predictions are
    missing; a dash where the baseline does not drop or was not tested on those presets."""
    arrays = [_correctness(runs, p) for runs in (members, baseline) for p in presets]
    k = len(presets)
    if all(a is not None for a in arrays) and len({a.shape[1] for a in arrays}) == 1:
        try:
            return str(drop_ratio_interval(arrays[0], arrays[1:k], arrays[k], arrays[k + 1 :]))
        except ValueError:  # the baseline does not drop: no ratio to its drop
            return "—"
    if any(r.value(p, "joint_acc") is None for r in baseline for p in presets):
        return "—"

    def drop(runs: list[RunSummary]) -> float:
        mean = lambda p: np.mean([r.value(p, "joint_acc") for r in runs])  # noqa: E731
        return mean(presets[0]) - np.mean([mean(p) for p in presets[1:]])

    return f"{drop(members) / drop(baseline):.3f} (means)" if drop(baseline) > 0 else "—"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _by_model(runs: list[RunSummary]) -> dict[str, list[RunSummary]]:
    groups: dict[str, list[RunSummary]] = defaultdict(list)
    for run in runs:
        groups[run.model].append(run)
    return dict(sorted(groups.items(), key=lambda item: (not item[0].startswith("baseline"), item[0])))


def build_tables(runs: list[RunSummary], train_preset: str = "origin") -> str:
    groups = _by_model(runs)
    presets = [train_preset] + sorted({p for r in runs for p in r.presets} - {train_preset})
    sections = [headline_table(runs, train_preset)]
    rows = [[model, _accuracy_cell(members, train_preset),
             _cell([r.value(train_preset, "joint_macro_f1") for r in members]),
             _cell([r.value(train_preset, "macro_f1") for r in members])] for model, members in groups.items()]
    sections.append(f"## Table 1: image-only baselines vs mask-guided classification ({train_preset})\n\n"
                    + _table(["model", "joint accuracy", "macro-F1 (8 joint classes)", "macro-F1 (3 types)"], rows))

    mgc = [r for r in runs if r.mask_kind != "none"]
    sources = sorted({r.mask_source for r in mgc})
    fusions = sorted({(r.fusion, r.mask_kind) for r in mgc})
    rows = [[f"{fusion} ({kind})"] + [_cell([r.value(train_preset, "joint_acc") for r in mgc if (r.fusion, r.mask_kind,
             r.mask_source) == (fusion, kind, source)]) for source in sources] for fusion, kind in fusions]
    sections.append("## Table 2: fusion x mask source (joint accuracy; `ideal` = high-quality masks, `predicted` = "
                    "generated by the segmenter)\n\n" + (_table(["fusion (mask)"] + sources, rows) if rows else
                                                          "No mask-guided runs."))

    rows = [[model, members[0].mask_kind] + [_accuracy_cell(members, p) for p in presets]
            for model, members in groups.items()]
    sections.append("## Table 3: binary vs soft masks, origin vs out-of-distribution presets (joint accuracy)\n\n"
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


def ood_figure(runs: list[RunSummary], train_preset: str = "origin"):
    """Grouped bars: joint accuracy of every model on the training preset and on each OOD preset (figure 5)."""
    from .figures import plt

    groups = _by_model(runs)
    presets = [train_preset] + sorted({p for r in runs for p in r.presets} - {train_preset})
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
                 label=preset + (" (train)" if preset == train_preset else " (OOD)"), capsize=2)
    axis.set_xticks(range(len(groups)), [m.replace(" (", "\n(") for m in groups], fontsize=7)
    for tick, model in zip(axis.get_xticklabels(), groups):
        tick.set_color("tab:blue" if model.startswith("MGC") else "black")
    axis.axhline(0.125, color="grey", linestyle=":", linewidth=1, label="chance (8 classes)")
    axis.set_ylabel("joint accuracy (95 % interval)")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def segmenter_windows_section(counts: dict[str, int]) -> str:
    """Leakage accounting: the segmenter near-memorises the masks of the windows it trained on, so any in val or test
    would flatter checkpoint selection or the test."""
    return ("## Segmenter training windows\n\n"
            f"Segmenter training windows per classifier split: train {counts['train']}, val {counts['val']}, "
            f"test {counts['test']}. Their predicted masks are near-memorised, so val and test must be 0: otherwise "
            "checkpoint selection and the test see better masks than new recordings would get.")


def write_report(
    experiment: str, out_dir: str | Path = "report", train_preset: str = "origin", tracking_uri: str | None = None,
    panel: tuple | None = None, segmenter_windows: dict[str, int] | None = None,
) -> Path:
    """Write REPORT.md and its figures; log the figures to a `report` run of the experiment. `panel` is an optional
    (images, masks dict) for the spectrogram / mask / soft-mask figure; `segmenter_windows` an optional count of the
    segmenter's training windows per classifier split (train / val / test)."""
    from mlflow.tracking import MlflowClient

    from .figures import mask_panel, plt

    selection = select_runs(experiment, tracking_uri)
    runs = selection.runs
    if not runs:
        raise ValueError(f"experiment {experiment!r} has no run with test metrics yet")
    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    if figures.exists():
        shutil.rmtree(figures)
    figures.mkdir(parents=True)
    client = MlflowClient(tracking_uri or default_tracking_uri())
    saved = []
    figure = ood_figure(runs, train_preset)
    figure.savefig(figures / "ood_joint_accuracy.png", dpi=120)
    plt.close(figure)
    saved.append(("Figure 5: joint accuracy on the training preset and out of distribution", "ood_joint_accuracy.png"))
    for model, members in _by_model(runs).items():
        artifact = f"figures/confusion_test_{train_preset}.png"
        try:
            local = client.download_artifacts(members[0].run_id, artifact, str(out_dir / ".downloads"))
        except Exception:  # a run without that figure (e.g. interrupted) is simply left out
            continue
        name = "confusion_" + "".join(c if c.isalnum() else "_" for c in model) + ".png"
        shutil.copy(local, figures / name)
        saved.append((f"Figure 8: confusion matrix, {model} (seed {members[0].seed})", name))
    if panel is not None:
        columns, titles = panel
        figure = mask_panel(columns, titles)
        figure.savefig(figures / "masks_panel.png", dpi=120)
        plt.close(figure)
        saved.append(("Figure 3: spectrogram, high-quality mask, generated mask and its soft version", "masks_panel.png"))
    shutil.rmtree(out_dir / ".downloads", ignore_errors=True)
    seeds = sorted({r.seed for r in runs})
    text = [f"# Report: MLflow experiment `{experiment}`", "",
            f"{len(runs)} runs, {len(_by_model(runs))} models, seeds {', '.join(seeds)}. Joint accuracies carry 95 % "
            "bootstrap intervals over the test windows; other cells are means (± std over seeds where there are "
            "several). n counts distinct seeds: only finished runs count, and where one model ran a seed more than "
            "once, the latest finished run. Chance joint accuracy is 0.125 for balanced classes.", "",
            build_tables(runs, train_preset), ""]
    if selection.left_out:
        text += ["## Runs left out\n", *(f"- {line}" for line in selection.left_out), ""]
    if segmenter_windows is not None:
        text += [segmenter_windows_section(segmenter_windows), ""]
    text += [f"## {title}\n\n![{title}](figures/{name})\n" for title, name in saved]
    report = out_dir / "REPORT.md"
    report.write_text("\n".join(text))
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    run = client.create_run(experiment_id, run_name="report", tags={REPORT_TAG: "true"})
    client.log_artifacts(run.info.run_id, str(figures), "figures")
    client.log_artifact(run.info.run_id, str(report))
    client.set_terminated(run.info.run_id)
    return report
