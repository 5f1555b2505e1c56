"""MLflow runs are append-only facts: testing a checkpoint on other data, a resume that picks or gets the wrong
checkpoint, and a later command that fails leave every earlier run exactly as it was (real SQLite store)."""

import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import small_benchmark
from mgc_lightning.audio.manifest import write_manifest
from mgc_lightning.cli import main
from mgc_lightning.evaluate.ood import evaluate_checkpoint
from mgc_lightning.train.tracking import EVALUATES_TAG, PARENT_TAG

pytestmark = pytest.mark.slow  # every test shares trained classifiers and their MLflow runs

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TINY = "{channels: [8, 16, 32, 64], stem_width: 8}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    rows = small_benchmark(root, windows=48, per_recording=8, deployments=3, seed=4)
    manifest = root / "bench" / "manifest.csv"
    other = root / "bench" / "other_site.csv"
    write_manifest(rows[:16], other)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.chdir(root)
        patch.setattr(sys, "argv", ["mgc"])
        assert fit(root, manifest, "baseline_resnet18.yaml", "--link-best", str(root / "baseline.ckpt")) == 0
        assert fit(root, manifest, "baseline_resnet50.yaml", "--model.init_args.backbone", "resnet34") == 0
        yield root, manifest, other


def fit(root, manifest, overlay, *extra, command="fit"):
    return main([command, "--config", str(EXPERIMENTS / "classifier_base.yaml"), "--config", str(EXPERIMENTS / overlay),
                 "--experiment-name", "records", "--model.init_args.backbone_kwargs", TINY,
                 "--data.init_args.manifest", str(manifest), "--data.init_args.cache_root", str(root / "cache"),
                 "--data.init_args.batch_size", "8", "--trainer.default_root_dir", str(root / "checkpoints"),
                 "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                 "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra])


def snapshot(root):
    """Every run of the experiment: status, metrics, tags and artifacts."""
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("records")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)

    def artifacts(run_id, path=None):
        found = []
        for item in client.list_artifacts(run_id, path):
            found += artifacts(run_id, item.path) if item.is_dir else [(item.path, item.file_size)]
        return sorted(found)

    return {r.info.run_id: (r.info.run_name, r.info.status, r.data.metrics, r.data.tags, artifacts(r.info.run_id))
            for r in runs}


def by_name(state, name):
    return [run_id for run_id, record in state.items() if record[0] == name]


def test_testing_on_another_manifest_makes_its_own_linked_run(workspace, capsys):
    root, manifest, other = workspace
    before = snapshot(root)
    [trained] = by_name(before, "baseline-resnet18")
    assert fit(root, other, "baseline_resnet18.yaml", "--ckpt_path", "best", "--data.init_args.split_fractions",
               "[0, 0, 1]", command="test") == 0
    after = snapshot(root)
    assert {k: after[k] for k in before} == before  # no earlier run changed: metrics, tags, artifacts, status
    [new] = set(after) - set(before)
    name, status, metrics, tags, artifacts = after[new]
    assert name == "baseline-resnet18 test other_site origin" and status == "FINISHED"
    assert tags[EVALUATES_TAG] == trained and tags[PARENT_TAG] == trained
    assert "test/origin/joint_acc" in metrics and ("figures/confusion_test_origin.png" in dict(artifacts))
    assert (root / "baseline.ckpt").resolve() == Path(before[trained][3]["checkpoint/best"])  # fit --link-best
    printed = capsys.readouterr().out
    assert f"MLflow run {new}" in printed and "experiment 'records'" in printed and "browse: " in printed
    experiment_id = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_experiment_by_name("records").experiment_id
    assert f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{new})" in printed  # the run's own page


def test_evaluate_on_another_preset_makes_its_own_linked_run(workspace):
    root, manifest, other = workspace
    before = snapshot(root)
    [trained] = by_name(before, "baseline-resnet50")
    best = Path(before[trained][3]["checkpoint/best"])
    evaluation = evaluate_checkpoint(best, "mel", accelerator="cpu")
    after = snapshot(root)
    assert {k: after[k] for k in before} == before
    name, status, metrics, tags, _ = after[evaluation.run_id]
    assert name == "baseline-resnet50 test bench mel" and status == "FINISHED" and tags[EVALUATES_TAG] == trained
    assert metrics["test/mel/joint_acc"] == evaluation.metrics["test/mel/joint_acc"]


def test_resume_last_takes_the_same_run_name_not_the_newest_checkpoint(workspace, capsys):
    root, manifest, _ = workspace
    before = snapshot(root)
    [resnet18] = by_name(before, "baseline-resnet18")
    # baseline-resnet50 (a resnet34 here) wrote the newest last.ckpt of the experiment
    assert fit(root, manifest, "baseline_resnet18.yaml", "--ckpt_path", "last", "--trainer.max_epochs", "2") == 0
    after = snapshot(root)
    assert set(after) == set(before)  # no new run: the resnet18 run continued
    assert after[resnet18][1] == "FINISHED"
    assert f"MLflow run {resnet18}" in capsys.readouterr().out
    others = {k: v for k, v in before.items() if k != resnet18}
    assert {k: after[k] for k in others} == others


def test_an_incompatible_checkpoint_is_refused_in_one_line_before_anything_is_written(workspace, capsys):
    root, manifest, _ = workspace
    before = snapshot(root)
    [resnet50] = by_name(before, "baseline-resnet50")
    wrong = root / "checkpoints" / MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_experiment_by_name(
        "records").experiment_id / resnet50 / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    assert fit(root, manifest, "baseline_resnet18.yaml", "--ckpt_path", str(wrong)) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert error.startswith("mgc fit: error: ") and "backbone 'resnet34' there, 'resnet18' here" in error
    assert snapshot(root) == before


def test_a_failed_resume_leaves_a_finished_run_finished(workspace, capsys):
    root, manifest, _ = workspace
    before = snapshot(root)
    [resnet50] = by_name(before, "baseline-resnet50")
    assert fit(root, manifest, "baseline_resnet50.yaml", "--model.init_args.backbone", "resnet34", "--ckpt_path", "last",
               "--trainer.max_epochs", "2", "--trainer.callbacks+=EarlyStopping",
               "--trainer.callbacks.monitor", "val/joint_accuracy") == 2  # a typo in a monitor fails mid-run
    assert "Early stopping conditioned on metric" in capsys.readouterr().err
    after = snapshot(root)
    assert after[resnet50][1] == "FINISHED" and "mgc.later_failure" in after[resnet50][3]
    assert set(after) == set(before)
