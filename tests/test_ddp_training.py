"""Two-process DDP training on CPU (gloo) through the installed `mgc` script, in a process of its own (under pytest,
rank 1 would otherwise re-run the test session): rank 0 runs the script in a fork of the suite's preloaded Python
(tests/preloaded_python.py), rank 1 is the fresh `python .../mgc` process Lightning starts for it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import small_benchmark

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_logs_one_run(tmp_path, preloaded_python):
    small_benchmark(tmp_path, windows=24, per_recording=3, deployments=4, seed=2)  # 8 recordings: 18/3/3 windows
    manifest = tmp_path / "bench" / "manifest.csv"
    command = [*preloaded_python, str(Path(sys.executable).parent / "mgc"), "fit",
               "--config", str(EXPERIMENTS / "classifier_base.yaml"), "--config", str(EXPERIMENTS / "mgc_gated_binary.yaml"),
               "--data.init_args.manifest", str(manifest), "--data.init_args.cache_root", str(tmp_path / "cache"),
               "--data.init_args.mask_source", "ideal", "--data.init_args.batch_size", "4",
               "--model.init_args.dim", "32",
               "--model.init_args.backbone_kwargs", '{"channels": [8, 16, 32, 64], "stem_width": 8}',
               "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
               "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar", "false",
               "--trainer.default_root_dir", str(tmp_path / "checkpoints")]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in result.stderr + result.stdout or "MEMBER: 2/2" in result.stderr + result.stdout
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("classification")
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 1  # only rank 0 logs
    metrics = found[0].data.metrics
    assert "val/joint_acc" in metrics and "test/origin/joint_acc" in metrics
    assert list((tmp_path / "checkpoints").glob("*/*/checkpoints/last.ckpt"))
