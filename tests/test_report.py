"""The report counts honestly: failed and unfinished runs are left out and listed, a seed counts once (its latest
finished run), every cell says its n, and evaluation runs join their training run or get a row of their own."""

import re
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from mgc_lightning.report import RunSummary, headline_table, select_runs, write_report
from mgc_lightning.tracking import DATASET_TAG, EVALUATES_TAG


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
    runs = {r.model: r for r in select_runs("survey", uri).runs}
    assert set(runs) == {"baseline resnet18", "baseline resnet18 on other"}
    assert runs["baseline resnet18"].value("mel", "joint_acc") == 0.40
    assert runs["baseline resnet18"].value("origin", "joint_acc") == 0.60
    assert runs["baseline resnet18 on other"].value("origin", "joint_acc") == 0.30
    assert client.get_run(trained).data.metrics == {"test/origin/joint_acc": 0.60}
    assert Path(write_report("survey", tmp_path / "report", tracking_uri=uri)).is_file()


def summary(model: str, accuracies: dict[str, float], windows: int, rng) -> RunSummary:
    correct = {preset: (rng.random(windows) < accuracy).astype(int) for preset, accuracy in accuracies.items()}
    return RunSummary(run_id=model, model=model, backbone="resnet18", head="", fusion="", mask_kind="",
                      mask_source="", seed="0", correct=correct,
                      metrics={f"test/{p}/joint_acc": float(c.mean()) for p, c in correct.items()})


def test_headline_gives_the_drop_ratio_to_the_baseline_with_an_interval():
    rng = np.random.default_rng(0)
    baseline = summary("baseline resnet18", {"origin": 0.9, "mel": 0.3, "pcen": 0.3}, 600, rng)
    halving = summary("MGC xattn soft (predicted, resnet18)", {"origin": 0.9, "mel": 0.6, "pcen": 0.6}, 600, rng)
    table = headline_table([baseline, halving])
    assert "OOD drop / baseline's (paired)" in table
    row = next(line for line in table.splitlines() if line.startswith("| MGC"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    drop = lambda r: r.value("origin", "joint_acc") - (r.value("mel", "joint_acc") + r.value("pcen", "joint_acc")) / 2  # noqa: E731
    estimate, low, high = map(float, re.match(r"(\S+) \[(\S+), (\S+)\]", cells[-2]).groups())
    assert estimate == pytest.approx(drop(halving) / drop(baseline), abs=1e-3)
    assert low < 0.5 < high and high - low < 0.3
    assert next(line for line in table.splitlines() if line.startswith("| baseline")).count("—") == 2
