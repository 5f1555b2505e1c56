"""Resume that resumes: last.ckpt holds the last finished epoch whatever the monitored metric did, so `--ckpt_path
last` trains no epoch twice and MLflow gets one value per step; a checkpoint whose run lies in another MLflow store
is tested and resumed in new runs that say where it came from (real files, real SQLite stores)."""

import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import write_tiny_dataset
from mgc_lightning.audio.manifest import SplitConfig, load_manifest, split_rows, write_manifest
from mgc_lightning.cli import main
from mgc_lightning.core.labels import SOUND_TYPES
from mgc_lightning.train.tracking import CHECKPOINT_TAG, ELSEWHERE_RUN_TAG, EVALUATES_TAG

pytestmark = pytest.mark.slow  # every test shares a trained classifier

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
# Training windows all "none", validation windows all three types: learning the training labels makes the validation
# loss rise every epoch (measured 5.2, 8.4, 9.2 with lr 0.05), so the monitored val/loss is best after epoch 0.
LABELS = {"train": (0, 0, 0), "val": (1, 1, 1), "test": (0, 1, 0)}


def contradicting_manifest(root: Path) -> Path:
    rows = load_manifest(write_tiny_dataset(root))
    relabelled = [replace(rows[i], **dict(zip(SOUND_TYPES, LABELS[side])))
                  for side, indices in split_rows(rows, SplitConfig()).items() for i in indices]
    write_manifest(relabelled, root / "contradicting.csv")
    return root / "contradicting.csv"


def lightning(root: Path, manifest: Path, *extra: str, command: str = "fit") -> int:
    return main([command, "--config", str(EXPERIMENTS / "classifier_base.yaml"), "--config",
                 str(EXPERIMENTS / "baseline_resnet18.yaml"), "--experiment-name", "resume",
                 "--model.init_args.backbone_kwargs", "{channels: [8, 16, 32, 64], stem_width: 8}",
                 "--model.init_args.dim", "32", "--model.init_args.lr", "0.05",
                 "--trainer.callbacks.init_args.monitor", "val/loss", "--trainer.callbacks.init_args.mode", "min",
                 "--data.init_args.manifest", str(manifest), "--data.init_args.cache_root", str(root / "cache"),
                 "--data.init_args.batch_size", "8", "--trainer.default_root_dir", str(root / "checkpoints"),
                 "--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar", "false",
                 "--trainer.enable_model_summary", "false", *extra])


def store(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three epochs in which validation worsens after the first."""
    root = tmp_path_factory.mktemp("resume")
    manifest = contradicting_manifest(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store(root))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.chdir(root)
        patch.setattr(sys, "argv", ["mgc"])
        assert lightning(root, manifest, "--trainer.max_epochs", "3") == 0
        client = MlflowClient(store(root))
        [run] = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
        yield root, manifest, run


def test_resume_from_last_continues_after_the_last_epoch_not_after_the_best(trained):
    root, manifest, run = trained
    client = MlflowClient(store(root))
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "val/loss")]
    assert len(losses) == 3 and losses[0] < losses[1] < losses[2]  # the construction holds: validation worsened
    folder = Path(run.data.tags["checkpoint/best"]).parent
    assert sorted(p.name for p in folder.iterdir()) == ["best-epoch=000.ckpt", "last.ckpt"]
    assert run.data.tags["checkpoint/best"] == str(folder / "best-epoch=000.ckpt")
    assert run.data.tags["checkpoint/last"] == str(folder / "last.ckpt")
    steps_per_epoch = torch.load(folder / "last.ckpt", weights_only=True)["global_step"] // 3
    started_ms = time.time() * 1000

    assert lightning(root, manifest, "--ckpt_path", "last", "--trainer.max_epochs", "5") == 0
    assert [r.info.run_id for r in client.search_runs([run.info.experiment_id])] == [run.info.run_id]
    resumed = [m.value for m in client.get_metric_history(run.info.run_id, "epoch") if m.timestamp >= started_ms]
    assert min(resumed) == 3  # the first epoch trained on resume is index 3: epochs 0-2 were not trained again
    for name in ("val/joint_acc", "train/loss"):
        history = client.get_metric_history(run.info.run_id, name)
        assert len(history) == 5 and len({m.step for m in history}) == 5, (name, history)
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 5 * steps_per_epoch > 0


def test_a_checkpoint_from_another_store_gets_new_runs_that_say_where_it_came_from(trained, tmp_path, monkeypatch):
    root, manifest, run = trained
    copied = tmp_path / "from_elsewhere.ckpt"
    shutil.copy(Path(run.data.tags["checkpoint/best"]), copied)  # epoch 0
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store(tmp_path))
    client = MlflowClient(store(tmp_path))
    assert client.search_runs(["0"]) == []  # the training run is not in this store

    assert lightning(root, manifest, "--ckpt_path", str(copied), command="test") == 0
    [tested] = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    assert tested.info.status == "FINISHED" and tested.info.run_name == "baseline-resnet18 test contradicting origin"
    assert "test/origin/joint_acc" in tested.data.metrics
    assert tested.data.tags[CHECKPOINT_TAG] == str(copied.resolve())
    assert tested.data.tags[ELSEWHERE_RUN_TAG] == tested.data.tags[EVALUATES_TAG] == run.info.run_id

    assert lightning(root, manifest, "--ckpt_path", str(copied), "--trainer.max_epochs", "2") == 0
    [resumed] = [r for r in client.search_runs([tested.info.experiment_id]) if r.info.run_id != tested.info.run_id]
    assert resumed.info.status == "FINISHED" and EVALUATES_TAG not in resumed.data.tags
    assert resumed.data.tags[CHECKPOINT_TAG] == str(copied.resolve())
    assert resumed.data.tags[ELSEWHERE_RUN_TAG] == run.info.run_id
    assert len(client.get_metric_history(resumed.info.run_id, "val/joint_acc")) == 1  # epoch 1 only


def test_save_last_is_refused_in_one_line_before_anything_is_written(trained, capsys):
    root, manifest, run = trained
    client = MlflowClient(store(root))
    before = [r.info.run_id for r in client.search_runs([run.info.experiment_id])]
    capsys.readouterr()
    assert lightning(root, manifest, "--trainer.callbacks.init_args.save_last", "true") == 2
    assert capsys.readouterr().err.strip() == ("mgc fit: error: trainer.callbacks: ModelCheckpoint save_last is not "
                                               "needed: `mgc fit` writes last.ckpt after every epoch; remove save_last")
    assert [r.info.run_id for r in client.search_runs([run.info.experiment_id])] == before
