"""Baseline and MGC training through `mgc fit` on a tiny benchmark: MLflow metrics and artifacts, test metrics named
by preset, checkpoint metadata, and resume into the same run."""

import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import small_benchmark
from mgc_lightning.cli import main
from mgc_lightning.tracking import read_checkpoint_metadata

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    small_benchmark(root, windows=80, per_recording=8, deployments=5, seed=21)
    manifest = root / "bench" / "manifest.csv"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.chdir(root)
        patch.setattr(sys, "argv", ["mgc"])
        yield root, manifest


def fit(root, manifest, overlay, *extra):
    return main(["fit", "--config", str(EXPERIMENTS / "classifier_base.yaml"), "--config", str(EXPERIMENTS / overlay),
                 "--data.init_args.manifest", str(manifest), "--data.init_args.cache_root", str(root / "cache"),
                 "--data.init_args.batch_size", "8", "--trainer.default_root_dir", str(root / "checkpoints"),
                 "--trainer.limit_train_batches", "3", "--trainer.enable_progress_bar", "false", *extra])


def runs(root, name):
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("classification")
    return client, [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name == name]


def test_mgc_run_logs_metrics_per_preset_figures_and_checkpoints(workspace):
    root, manifest = workspace
    assert fit(root, manifest, "mgc_xattn_soft.yaml", "--data.init_args.mask_source", "ideal",
               "--trainer.max_epochs", "1") == 0
    client, found = runs(root, "mgc-xattn-soft")
    assert len(found) == 1
    run = found[0]
    metrics = run.data.metrics
    for name in ("train/joint_acc", "val/joint_acc", "val/macro_f1", "val/hamming", "val/f1/whistle",
                 "test/origin/joint_acc", "test/origin/joint_macro_f1", "test/origin/recall/porpoise_click"):
        assert name in metrics, name
    assert 0 <= metrics["test/origin/joint_acc"] <= 1
    assert run.data.params["model/init_args/fusion"] == "xattn"
    assert run.data.params["data/init_args/mask_kind"] == "soft" and run.data.params["front_end.fmax"] == "160000.0"
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/confusion_val.png", "figures/confusion_test_origin.png"} <= figures
    best = Path(run.data.tags["checkpoint/best"])
    metadata = read_checkpoint_metadata(best)
    assert metadata["mlflow_run_id"] == run.info.run_id
    assert metadata["spectrogram_config"]["name"] == "origin"
    assert metadata["label_map"]["joint_class_names"][7] == "whistle+beluga_click+porpoise_click"


def test_resume_continues_the_same_run_with_increasing_steps(workspace):
    root, manifest = workspace
    args = ("--trainer.limit_val_batches", "2")
    assert fit(root, manifest, "baseline_resnet50.yaml", "--model.init_args.backbone", "resnet18",
               "--trainer.max_epochs", "1", *args) == 0
    client, found = runs(root, "baseline-resnet50")
    run_id = found[0].info.run_id
    before = [m.step for m in client.get_metric_history(run_id, "val/joint_acc")]
    last = Path(found[0].data.tags["checkpoint/last"])
    assert fit(root, manifest, "baseline_resnet50.yaml", "--model.init_args.backbone", "resnet18",
               "--trainer.max_epochs", "3", "--ckpt_path", str(last), *args) == 0
    client, found = runs(root, "baseline-resnet50")
    assert [r.info.run_id for r in found] == [run_id]  # no second run
    after = [m.step for m in client.get_metric_history(run_id, "val/joint_acc")]
    assert len(before) == 1 and len(after) == 3
    assert after == sorted(after) and len(set(after)) == 3
    assert torch.load(last, weights_only=False)["epoch"] == 3
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "config_fit_1.yaml"} <= artifacts, artifacts


def test_mask_settings_must_agree(workspace, capsys):
    root, manifest = workspace
    assert fit(root, manifest, "mgc_gated_soft.yaml", "--data.init_args.mask_source", "null",
               "--trainer.max_epochs", "1") == 2
    assert "model mask_input='soft' but data gives mask_source=None" in capsys.readouterr().err
