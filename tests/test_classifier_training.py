"""Baseline and MGC training through `mgc fit` on a tiny benchmark: MLflow metrics and artifacts, test metrics named
by preset, checkpoint metadata, and resume into the same run."""

import json
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import small_benchmark
from mgc_lightning.cli import main
from mgc_lightning.train.tracking import EVALUATES_TAG, read_checkpoint_metadata

pytestmark = pytest.mark.slow  # every test shares a trained classifier

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


# What these tests check (tracking, checkpoints, resume) does not depend on the encoder's width: a ResNet-18 eight
# times narrower (and 32-wide tokens) trains their few batches several times faster; a test's own settings come later
# on the command line and win.
TINY = ("--model.init_args.backbone_kwargs", json.dumps({"channels": [8, 16, 32, 64], "stem_width": 8}),
        "--model.init_args.dim", "32")


def fit(root, manifest, overlay, *extra):
    return main(["fit", "--config", str(EXPERIMENTS / "classifier_base.yaml"), "--config", str(EXPERIMENTS / overlay),
                 *TINY, "--data.init_args.manifest", str(manifest), "--data.init_args.cache_root", str(root / "cache"),
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
    steps_per_epoch = torch.load(last, weights_only=True)["global_step"]
    assert fit(root, manifest, "baseline_resnet50.yaml", "--model.init_args.backbone", "resnet18",
               "--trainer.max_epochs", "3", "--ckpt_path", str(last), *args) == 0
    client, found = runs(root, "baseline-resnet50")
    assert [r.info.run_id for r in found] == [run_id]  # no second run
    after = [m.step for m in client.get_metric_history(run_id, "val/joint_acc")]
    assert len(before) == 1 and len(after) == 3
    assert after == sorted(after) and len(set(after)) == 3
    # three epochs of training in all (Lightning's stored epoch index depends on where the last save fell)
    assert torch.load(last, weights_only=True)["global_step"] == 3 * steps_per_epoch > 0
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "config_fit_1.yaml"} <= artifacts, artifacts


def test_mask_settings_must_agree(workspace, capsys):
    root, manifest = workspace
    assert fit(root, manifest, "mgc_gated_soft.yaml", "--data.init_args.mask_source", "null",
               "--trainer.max_epochs", "1") == 2
    assert "model mask_input='soft' but data gives mask_source=None" in capsys.readouterr().err


def test_checkpoint_loads_tests_and_evaluates_without_its_init_and_pretrained_files(workspace, tmp_path):
    """A checkpoint holds every weight: once the files that seeded its training are gone, it still loads, `mgc test`
    (same command line, which still names those files) and `mgc evaluate` work."""
    import timm

    from mgc_lightning.models.classifier import ClassifierModule

    root, manifest = workspace
    tiny = {"channels": [8, 16, 32, 64], "stem_width": 8}
    pretrained, seed = tmp_path / "resnet18.pth", tmp_path / "seed.ckpt"
    torch.save(timm.create_model("resnet18", num_classes=0, **tiny).state_dict(), pretrained)
    torch.save({"state_dict": ClassifierModule(backbone_kwargs=tiny, dim=32).state_dict()}, seed)
    model_args = ("--model.init_args.backbone", "resnet18", "--model.init_args.backbone_kwargs", json.dumps(tiny),
                  "--model.init_args.dim", "32", "--model.init_args.pretrained_path", str(pretrained),
                  "--model.init_args.init_from", str(seed), "--trainer.logger.init_args.run_name", "self-contained")
    assert fit(root, manifest, "baseline_resnet50.yaml", *model_args, "--trainer.max_epochs", "1") == 0
    client, found = runs(root, "self-contained")
    best = Path(found[0].data.tags["checkpoint/best"])
    stored = torch.load(best, map_location="cpu", weights_only=True)
    assert client.get_run(found[0].info.run_id).data.params["model/init_args/init_from"] == str(seed)  # the record
    pretrained.rename(tmp_path / "moved.pth")
    seed.rename(tmp_path / "moved.ckpt")

    loaded = ClassifierModule.load_from_checkpoint(best, map_location="cpu")
    assert all(torch.equal(value, stored["state_dict"][name]) for name, value in loaded.state_dict().items())
    assert main(["test", "--config", str(EXPERIMENTS / "classifier_base.yaml"),
                 "--config", str(EXPERIMENTS / "baseline_resnet50.yaml"), *model_args,
                 "--data.init_args.manifest", str(manifest), "--data.init_args.cache_root", str(root / "cache"),
                 "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root / "checkpoints"),
                 "--ckpt_path", str(best)]) == 0
    evaluations = client.search_runs([found[0].info.experiment_id],
                                     f"tags.`{EVALUATES_TAG}` = '{found[0].info.run_id}'")
    assert len(evaluations) == 1 and "test/origin/joint_acc" in evaluations[0].data.metrics  # `mgc test`'s own run
    assert main(["evaluate", "--checkpoint", str(best), "--preset", "origin"]) == 0
