"""Exit statuses that tell the truth: `mgc fit`, `test`, `detect` and `pipeline`, each in a process of its own (a
fork of the suite's preloaded `mgc`, tests/preloaded_python.py, whose client passes the signal on) and sent SIGTERM or
SIGINT once their work has begun, exit 143 or 130 with one line saying so; an interrupted MLflow run is
KILLED and tagged with the signal, and an interrupted fit resumes with `--ckpt_path last` into its run, each epoch
logged once."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from conftest import tone, write_audio, write_tiny_dataset
from mgc_lightning.cli import main
from mgc_lightning.train.tracking import INTERRUPTED_TAG

REPOSITORY = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPOSITORY / "experiments"
STEPS_PER_EPOCH = 2
pytestmark = pytest.mark.slow


def fit_args(root: Path, name: str, epochs: int) -> list[str]:
    return ["--config", str(EXPERIMENTS / "classifier_base.yaml"), "--config",
            str(EXPERIMENTS / "baseline_resnet18.yaml"), "--trainer.logger.init_args.run_name", name,
            "--model.init_args.backbone_kwargs", "{channels: [8, 16, 32, 64], stem_width: 8}",
            "--model.init_args.dim", "32", "--data.init_args.manifest", str(root / "manifest.csv"),
            "--data.init_args.cache_root", str(root / "cache"), "--data.init_args.batch_size", "8",
            "--trainer.default_root_dir", str(root / name), "--trainer.max_epochs", str(epochs),
            "--trainer.limit_train_batches", str(STEPS_PER_EPOCH), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]


def environment(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPOSITORY), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def interrupt(mgc: Path, root: Path, args: list[str], begun: Callable[[], bool],
              signum: signal.Signals) -> tuple[int, str]:
    """Run `mgc ARGS`, send the signal once begun() holds (the command must still be running), and return its exit
    status and stderr; the command must end within two minutes of the signal."""
    log = root / f"stderr-{time.monotonic_ns()}.txt"
    with open(log, "w") as stderr:
        process = subprocess.Popen([str(mgc), *args], cwd=root, env=environment(root), stdout=subprocess.DEVNULL,
                                   stderr=stderr)
        deadline = time.monotonic() + 300
        while not begun() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, f"ended before it could be interrupted: {log.read_text()[-3000:]}"
        process.send_signal(signum)
        try:
            status = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    return status, log.read_text()


def runs_named(root: Path, experiment: str, name: str) -> list:
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], f"tags.mlflow.runName = '{name}'")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The tiny dataset, a classifier trained for one epoch (run `trained`) and its bundle."""
    root = tmp_path_factory.mktemp("interrupts")
    write_tiny_dataset(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.chdir(root)
        patch.setattr(sys, "argv", ["mgc"])
        assert main(["fit", *fit_args(root, "trained", 1)]) == 0
        [run] = runs_named(root, "classification", "trained")
        assert main(["export", "--classifier", run.data.tags["checkpoint/best"], "--out", str(root / "model.mgc")]) == 0
        yield root


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_fit_exits_with_the_signal_is_killed_in_mlflow_and_resumes(preloaded_mgc, workspace, signum):
    root, name = workspace, f"fit-{signum.name}"
    status, stderr = interrupt(preloaded_mgc, root, ["fit", *fit_args(root, name, 100)],
                               lambda: any((root / name).glob("*/*/checkpoints/last.ckpt")), signum)
    assert status == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum], stderr[-3000:]
    assert f"mgc fit: interrupted by {signum.name}; if an epoch finished, this run's last.ckpt continues it" in stderr
    assert "Traceback" not in stderr
    [run] = runs_named(root, "classification", name)
    assert run.info.status == "KILLED" and run.data.tags[INTERRUPTED_TAG] == signum.name
    last = next((root / name).glob("*/*/checkpoints/last.ckpt"))
    steps = torch.load(last, weights_only=True)["global_step"]
    finished = steps // STEPS_PER_EPOCH
    assert finished >= 1 and steps % STEPS_PER_EPOCH == 0  # last.ckpt holds whole epochs, never a partial one
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    assert len(client.get_metric_history(run.info.run_id, "val/joint_acc")) == finished  # nothing of the partial one

    assert main(["fit", *fit_args(root, name, finished + 1), "--ckpt_path", "last"]) == 0
    [resumed] = runs_named(root, "classification", name)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val/joint_acc")
    assert len(history) == len({m.step for m in history}) == finished + 1


def test_an_interrupted_test_exits_143_and_its_run_is_killed(preloaded_mgc, workspace):
    root = workspace
    configs = lambda: set(root.glob("mlartifacts/*/artifacts/config.yaml"))  # noqa: E731
    before = configs()
    args = ["test", *fit_args(root, "trained", 1), "--ckpt_path", "best", "--data.init_args.batch_size", "1",
            "--data.init_args.split_fractions", "[0, 0, 1]"]
    status, stderr = interrupt(preloaded_mgc, root, args, lambda: len(configs()) > len(before), signal.SIGTERM)
    assert status == 143 and "mgc test: interrupted by SIGTERM" in stderr and "Traceback" not in stderr, stderr
    [evaluation] = runs_named(root, "classification", f"trained test {root.name} origin")
    assert evaluation.info.status == "KILLED" and evaluation.data.tags[INTERRUPTED_TAG] == "SIGTERM"


def test_an_interrupted_detect_exits_130_and_a_rerun_finishes_the_rest(preloaded_mgc, workspace, capsys):
    root = workspace
    rng = np.random.default_rng(1)
    for index in range(8):
        samples = rng.normal(0, 1e-3, 6 * 384_000).astype(np.float32) + np.resize(tone(12_000, 1, 384_000), 6 * 384_000)
        write_audio(root / "recordings" / f"r{index}.flac", samples, 384_000)
    journal = root / "detected" / ".journal"
    args = ["detect", str(root / "recordings"), "--model", str(root / "model.mgc"), "--out", str(root / "detected"),
            "--batch-size", "2", "--quiet"]
    status, stderr = interrupt(preloaded_mgc, root, args, lambda: any(journal.glob("*.json")), signal.SIGINT)
    assert status == 130 and "mgc detect: interrupted by SIGINT" in stderr and "Traceback" not in stderr, stderr
    done = len(list(journal.glob("*.json")))
    assert 1 <= done < 8 and not (root / "detected" / "errors.csv").exists()  # stopped before the summary
    capsys.readouterr()
    assert main(args) == 0
    assert f"8 files: {8 - done} analysed, {done} already done, 0 failed" in capsys.readouterr().out


def test_an_interrupted_pipeline_exits_143_without_waiting_for_queued_work(preloaded_mgc, workspace):
    root = workspace
    settings = {"name": "stopped", "data_dir": str(root / "bench"), "windows": 160, "windows_per_recording": 8,
                "workers": 2,  # 20 recordings of 2 s
                "cache_root": str(root / "cache"), "classifiers": [{"name": "base", "configs": []}]}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(settings))
    parts = root / "bench" / "parts"
    status, stderr = interrupt(preloaded_mgc, root, ["pipeline", str(root / "pipeline.yaml")],
                               lambda: any(parts.glob("*.json")), signal.SIGTERM)
    assert status == 143 and "mgc pipeline: interrupted by SIGTERM" in stderr and "Traceback" not in stderr, stderr
    assert len(list(parts.glob("*.json"))) < 20 and not (root / "bench" / "manifest.csv").exists()


def test_a_signal_inside_a_deferred_write_is_raised_after_it():
    from mgc_lightning.core.interrupts import Interrupted, deferred, handled

    finished = []
    with handled():
        with pytest.raises(Interrupted) as raised:
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, in the main thread
                finished.append("the write")
        assert finished == ["the write"] and raised.value.signal == signal.SIGTERM
