"""The report counts honestly: failed and unfinished runs are left out and listed, a seed counts once (its latest
finished run), every cell says its n, and evaluation runs join their training run or get a row of their own."""

import re
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from mgc_lightning.core.labels import JOINT_CLASS_NAMES
from mgc_lightning.report.comparison import (
    MaskQuality, RunSummary, WindowResults, headline_table, learning_curve_figure, learning_curve_table,
    learning_curves, majority_rate, mask_curve_rows, mask_curve_table, seeds_table, select_runs, write_report,
)
from mgc_lightning.train.tracking import DATASET_TAG, EVALUATES_TAG


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    return uri, client, client.create_experiment("survey", artifact_location=(tmp_path / "art").as_uri())


def run(client, experiment, name, seed, accuracy, status="FINISHED", tags=None, params=True, preset="origin"):
    created = client.create_run(experiment, run_name=name, tags={DATASET_TAG: "/data/train.csv", **(tags or {})})
    run_id = created.info.run_id
    if params:
        client.log_param(run_id, "model/init_args/backbone", "resnet18")
        client.log_param(run_id, "seed_everything", str(seed))
    client.log_metric(run_id, f"test/{preset}/joint_acc", accuracy)
    client.set_terminated(run_id, status)
    return run_id


def test_failed_runs_are_left_out_and_a_seed_counts_once(store, tmp_path):
    uri, client, experiment = store
    run(client, experiment, "base-seed0", 0, 0.50)
    latest_seed0 = run(client, experiment, "base-seed0", 0, 0.60)  # the same seed again: replaces the first
    run(client, experiment, "base-seed1", 1, 0.70)
    failed = run(client, experiment, "base-seed2", 2, 0.10, status="FAILED")
    selection = select_runs("survey", uri)
    assert sorted((r.seed, r.value("origin", "joint_acc")) for r in selection.runs) == [("0", 0.60), ("1", 0.70)]
    assert any(failed in line and "FAILED" in line for line in selection.left_out)
    assert any(latest_seed0 in line and "seed 0" in line for line in selection.left_out)
    report = write_report("survey", tmp_path / "report", tracking_uri=uri).read_text()
    assert "| baseline resnet18 | 0.650 ± 0.071 (n=2) |" in report  # mean of 0.60 and 0.70, 2 distinct seeds
    assert "## Runs left out" in report and f"base-seed2 ({failed}): FAILED" in report


def test_evaluation_runs_join_their_training_run_or_get_their_own_row(store, tmp_path):
    uri, client, experiment = store
    trained = run(client, experiment, "base-seed0", 0, 0.60)
    run(client, experiment, "base-seed0 test train mel", 0, 0.40, preset="mel", params=False,
        tags={EVALUATES_TAG: trained})
    run(client, experiment, "base-seed0 test other origin", 0, 0.30, params=False,
        tags={EVALUATES_TAG: trained, DATASET_TAG: "/data/other.csv"})
    run(client, experiment, "base-seed0 test other mel", 0, 0.20, preset="mel", params=False,
        tags={EVALUATES_TAG: trained, DATASET_TAG: "/data/other.csv"})
    runs = {Path(r.dataset).stem: r for r in select_runs("survey", uri).runs}
    assert set(runs) == {"train", "other"} and {r.model for r in runs.values()} == {"baseline resnet18"}
    assert runs["train"].value("mel", "joint_acc") == 0.40
    assert runs["train"].value("origin", "joint_acc") == 0.60
    # both tests on the other data join one summary of that dataset: never averaged with the training data's
    assert (runs["other"].value("origin", "joint_acc"), runs["other"].value("mel", "joint_acc")) == (0.30, 0.20)
    assert client.get_run(trained).data.metrics == {"test/origin/joint_acc": 0.60}
    report = write_report("survey", tmp_path / "report", tracking_uri=uri).read_text()
    assert "## Headline: train" in report and "## Tested on other" in report


def keys(windows: int, per_recording: int = 20) -> tuple:
    return tuple((f"rec{i // per_recording}", 0.25 * (i % per_recording), 0.25) for i in range(windows))


def summary(model: str, accuracies: dict[str, float], windows: int, rng, backbone="resnet18", seed="0",
            dataset="/data/test.csv", order=None) -> RunSummary:
    correct = {preset: (rng.random(windows) < accuracy).astype(int) for preset, accuracy in accuracies.items()}
    order = np.arange(windows) if order is None else order
    results = {p: WindowResults(tuple(keys(windows)[i] for i in order), c[order], np.zeros(windows, int))
               for p, c in correct.items()}
    return RunSummary(run_id=f"{model}-{seed}", model=model, backbone=backbone, head="multiclass", fusion="",
                      mask_kind="none" if model.startswith("baseline") else "soft", mask_source="predicted",
                      seed=seed, windows=results, dataset=dataset, trained_on=dataset,
                      architecture=f"{backbone} None multiclass",
                      metrics={f"test/{p}/joint_acc": float(c.mean()) for p, c in correct.items()})


def cells_of(table: str, start: str) -> list[str]:
    row = next(line for line in table.splitlines() if line.startswith(f"| {start}"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def interval(cell: str) -> tuple[float, float, float]:
    return tuple(map(float, re.match(r"([-+]?[\d.]+) \[([-+]?[\d.]+), ([-+]?[\d.]+)\]", cell).groups()))


def test_chance_is_the_rate_of_the_test_windows_most_frequent_joint_class():
    """Labels by detectability leave the classes unbalanced: chance is what always answering the commonest class
    scores on the windows tested, not 1/8."""
    rng = np.random.default_rng(1)
    baseline = summary("baseline resnet18", {"origin": 0.9}, 200, rng)
    truth = np.array([3] * 70 + [0] * 50 + [5] * 40 + [7] * 40)  # 35 % "class 3", the rest spread
    tested = baseline.windows["origin"]
    baseline.windows["origin"] = WindowResults(tested.keys, tested.correct, rng.permutation(truth))
    assert majority_rate([baseline], "origin") == (pytest.approx(0.35), JOINT_CLASS_NAMES[3])
    assert cells_of(headline_table([baseline]), "chance")[1] == f"0.350 ({JOINT_CLASS_NAMES[3]})"
    assert majority_rate([baseline], "mel") is None  # no window tested there


def test_headline_gives_the_drop_ratio_to_the_baseline_with_an_interval():
    rng = np.random.default_rng(0)
    baseline = summary("baseline resnet18", {"origin": 0.9, "mel": 0.3, "pcen": 0.3}, 600, rng)
    halving = summary("MGC xattn soft (predicted, resnet18)", {"origin": 0.9, "mel": 0.6, "pcen": 0.6}, 600, rng)
    table = headline_table([baseline, halving])
    assert "OOD drop / own baseline's (paired)" in table
    cells = cells_of(table, "MGC")
    drop = lambda r: r.value("origin", "joint_acc") - (r.value("mel", "joint_acc") + r.value("pcen", "joint_acc")) / 2  # noqa: E731
    header = cells_of(table, "model")
    estimate, low, high = interval(cells[header.index("OOD drop / own baseline's (paired)")])
    assert estimate == pytest.approx(drop(halving) / drop(baseline), abs=1e-3)
    assert low < 0.5 < high and high - low < 0.3
    assert cells_of(table, "baseline").count("—") == 4  # no ratio to itself, no difference on any of 3 front ends
    mel = interval(cells[header.index("minus own baseline on mel (paired)")])  # +0.3 on mel, paired there too
    assert mel[1] > 0.15 and abs(mel[0] - (halving.value("mel", "joint_acc") - baseline.value("mel", "joint_acc"))) < 1e-3
    assert cells_of(table, "chance")[1] == "1.000 (none)"  # every test window of this table is of class 0


def test_each_mask_guided_model_is_paired_with_the_baseline_of_its_own_backbone():
    """With two baselines, each MGC model's difference is to the baseline of its backbone, never the first one
    alphabetically (ConvNeXt would otherwise judge a ResNet-50 MGC)."""
    rng = np.random.default_rng(5)
    convnext = summary("baseline convnext_tiny", {"origin": 0.95}, 400, rng, backbone="convnext_tiny")
    resnet = summary("baseline resnet50", {"origin": 0.40}, 400, rng, backbone="resnet50")
    mgc = summary("MGC xattn soft (predicted, resnet50)", {"origin": 0.80}, 400, rng, backbone="resnet50")
    orphan = summary("MGC xattn soft (predicted, vit)", {"origin": 0.70}, 400, rng, backbone="vit")
    table = headline_table([convnext, resnet, mgc, orphan])
    estimate, low, high = interval(cells_of(table, "MGC xattn soft (predicted, resnet50)")[-1])
    assert estimate == pytest.approx(mgc.value("origin", "joint_acc") - resnet.value("origin", "joint_acc"))
    assert low > 0  # about +0.4 against its own baseline; against ConvNeXt it would be about -0.15
    assert cells_of(table, "MGC xattn soft (predicted, vit)")[-1] == "no baseline of this backbone and head"


def test_windows_are_paired_by_key_not_by_position():
    """The same windows listed in another order (and one run missing a window) still pair window by window."""
    rng = np.random.default_rng(6)
    baseline = summary("baseline resnet18", {"origin": 0.5}, 200, rng)
    shuffled = rng.permutation(200)[:-1]  # another order, and one window dropped (e.g. silent on that front end)
    mgc = summary("MGC xattn soft (predicted, resnet18)", {"origin": 0.5}, 200, np.random.default_rng(6), order=shuffled)
    # the same random draws as the baseline: on its own windows MGC is right exactly where the baseline is
    estimate, low, high = interval(cells_of(headline_table([baseline, mgc]), "MGC")[-1])
    assert (estimate, low, high) == (0.0, 0.0, 0.0)
    assert "199 win." in cells_of(headline_table([baseline, mgc]), "MGC")[1]


def test_intervals_resample_recordings_and_seeds_spread_is_shown_apart():
    rng = np.random.default_rng(7)
    runs = [summary("baseline resnet18", {"origin": accuracy}, 400, rng, seed=str(seed))
            for seed, accuracy in enumerate((0.6, 0.7, 0.8))]
    cell = cells_of(headline_table(runs), "baseline")[1]
    assert "(20 rec., 400 win., n=3)" in cell
    spread = seeds_table(runs, "origin")
    values = sorted(r.value("origin", "joint_acc") for r in runs)
    assert f"{values[0]:.3f}–{values[-1]:.3f}" in cells_of(spread, "baseline")[2]
    assert seeds_table(runs[:1], "origin") is None


def test_a_report_of_ones_own_runs_has_no_out_of_distribution_columns():
    rng = np.random.default_rng(8)
    table = headline_table([summary("baseline resnet18", {"origin": 0.8}, 100, rng),
                            summary("MGC xattn soft (predicted, resnet18)", {"origin": 0.8}, 100, rng)])
    assert "OOD" not in table and "minus own baseline on origin (paired)" in table


def test_mask_curve_orders_sources_by_iou_and_pairs_each_with_its_baseline():
    rng = np.random.default_rng(9)
    baseline = summary("baseline resnet18", {"origin": 0.6}, 400, rng)
    other_seed = summary("baseline resnet18", {"origin": 0.95}, 400, rng, seed="1")  # a seed the curve never ran
    runs = [baseline, other_seed]
    for source, accuracy in (("degraded-iou0.90", 0.9), ("predicted", 0.5), ("degraded-iou0.50", 0.7)):
        run = summary(f"MGC xattn soft ({source}, resnet18)", {"origin": accuracy}, 400, rng)
        run.mask_source = source
        runs.append(run)
    quality = {"degraded-iou0.50": MaskQuality(0.5, 0.8), "degraded-iou0.90": MaskQuality(0.9, 0.9),
               "predicted": MaskQuality(0.6, 0.7)}
    points = mask_curve_rows(runs, quality, "origin")
    assert [point[0].iou for point in points] == [0.5, 0.6, 0.9]
    assert all(point[3][0] == "baseline resnet18" for point in points)
    table = mask_curve_table(points, "origin")
    assert "labels read off the masks alone" in table
    assert interval(cells_of(table, "0.900")[-1])[1] > 0  # +0.3 over its baseline of the same seed (seed 1 left out)
    assert interval(cells_of(table, "0.600")[-1])[2] < 0  # -0.1: masks that cost accuracy


def test_a_narrow_and_a_full_network_of_one_backbone_are_two_models(store, tmp_path):
    """The same backbone with other widths is another model: never averaged with it as a seed, never its baseline."""
    uri, client, experiment = store
    full = run(client, experiment, "full", 0, 0.9)
    narrow = run(client, experiment, "narrow", 0, 0.6)
    client.log_param(narrow, "model/init_args/backbone_kwargs/channels", "[16, 32, 64, 128]")  # as MLflow flattens it
    client.log_param(full, "model/init_args/backbone_kwargs", "None")
    runs = select_runs("survey", uri).runs
    assert len(runs) == 2 and len({r.model for r in runs}) == 2 and len({r.architecture for r in runs}) == 2
    assert not any("again in the later run" in line for line in select_runs("survey", uri).left_out)
    assert sorted(r.model for r in runs) == ["baseline resnet18", "baseline resnet18 (channels=[16, 32, 64, 128])"]


def test_a_model_trained_on_fewer_labelled_windows_is_another_model_with_its_own_baseline(store, tmp_path):
    uri, client, experiment = store
    full = run(client, experiment, "full", 0, 0.9)
    few = run(client, experiment, "few", 0, 0.6)
    client.log_param(few, "data/init_args/train_windows", "100")
    client.log_param(full, "data/init_args/train_windows", "None")
    runs = {r.run_id: r for r in select_runs("survey", uri).runs}
    assert runs[few].model == "baseline resnet18 [100 labelled windows]" and runs[full].model == "baseline resnet18"
    assert runs[few].recipe == runs[full].recipe == "baseline resnet18"
    assert (runs[few].train_windows, runs[full].train_windows) == (100, None)
    assert runs[few].architecture != runs[full].architecture  # a mask-guided model at 100 pairs with this one only


def test_a_model_trained_with_modality_dropout_or_an_image_head_is_named_apart(store, tmp_path):
    uri, client, experiment = store
    plain, headed, dropped = (run(client, experiment, name, 0, 0.8) for name in ("plain", "headed", "dropped"))
    for run_id in (plain, headed, dropped):
        client.log_param(run_id, "model/init_args/mask_input", "soft")
        client.log_param(run_id, "model/init_args/fusion", "xattn")
        client.log_param(run_id, "model/init_args/mask_dropout", "0.5" if run_id == dropped else "0.0")
    client.log_param(headed, "model/init_args/image_head_weight", "1.0")
    runs = {r.run_id: r.model for r in select_runs("survey", uri).runs}
    assert runs[plain] == "MGC xattn soft (None, resnet18)"
    assert runs[headed] == "MGC xattn soft (None, resnet18) [image head 1.0]"
    assert runs[dropped] == "MGC xattn soft (None, resnet18) [mask dropout 0.5]"


def test_learning_curve_pairs_each_size_with_the_baseline_of_that_size():
    rng = np.random.default_rng(10)
    runs = []
    for size, base, guided in ((100, 0.4, 0.7), (None, 0.9, 0.9)):
        for model, accuracy in (("baseline resnet18", base), ("MGC xattn soft (predicted, resnet18)", guided)):
            run_ = summary(model, {"origin": accuracy, "pcen": accuracy - 0.2}, 400, rng)
            run_.recipe, run_.train_windows = model, size
            run_.architecture += f" {size or 'all'}"
            run_.model += f" [{size} labelled windows]" if size else ""
            runs.append(run_)
    curves = learning_curves(runs)
    assert list(curves) == ["MGC xattn soft (predicted, resnet18)"]  # baselines are no curve of their own
    points = curves["MGC xattn soft (predicted, resnet18)"]
    assert [size for size, _, _ in points] == [100, None]
    assert all(b[0].train_windows == size for size, _, b in points)
    table = learning_curve_table(points, "origin")
    assert interval(cells_of(table, "100")[4])[1] > 0.2  # +0.3 over the baseline of 100 windows, not -0.2 vs 0.9
    assert abs(interval(cells_of(table, "all")[4])[0]) < 0.1
    assert cells_of(table, "100")[1] == "origin" and "pcen" in table
    on_curve = mask_curve_rows(runs, {"predicted": MaskQuality(0.6, 0.7)}, "origin")
    assert [members[0].train_windows for _, _, members, _ in on_curve] == [None]  # fewer labels: not a mask quality
    figure = learning_curve_figure("MGC xattn soft (predicted, resnet18)", points, "origin")
    assert [axis.get_title() for axis in figure.axes] == ["origin (training front end)", "pcen (OOD)"]
    guided = next(c for c in figure.axes[0].containers if c.get_label() == "mask-guided").lines[0]
    assert list(guided.get_ydata()) == pytest.approx([p[1][0].value("origin", "joint_acc") for p in points], abs=1e-9)
