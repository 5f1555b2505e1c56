"""Fault injection: each long stage (`mgc synth`, `mgc spectrograms`, `mgc masks predict`, `mgc fit`) is killed with
SIGKILL at a point drawn from a seeded RNG, then rerun; the outputs must be those of an uninterrupted run (the same
bytes for audio, tables, cache files and masks) and a killed fit must resume into its MLflow run (one run, not two)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import lightning
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import kill_group
from mgc_lightning.cli import main
from mgc_lightning.core.checkpoints import class_path
from mgc_lightning.models.segmenter import SegmenterModule

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
RNG = random.Random(11)
pytestmark = pytest.mark.slow


def _environment(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@contextmanager
def _inside(root: Path):
    """This process as the killed stage's process was: in `root`, its environment, torch on one thread (the killed
    process's OMP_NUM_THREADS=1, so the two write the same bytes)."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_URI", "HF_HUB_OFFLINE", "OMP_NUM_THREADS"):
            patch.setenv(name, _environment(root)[name])
        patch.chdir(root)
        patch.setattr(sys, "argv", ["mgc"])
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def _main(root: Path, *args: str) -> None:
    """A stage run in this process (`mgc`'s own entry point): the uninterrupted runs and the reruns after a kill; only
    the stage that is killed needs a process of its own, and each process pays the imports again (seconds)."""
    with _inside(root):
        assert main(list(args)) == 0


def _kill_when(mgc: Path, root: Path, args: list[str], ready, extra_delay_s: float) -> None:
    """Start the command (a fork of the suite's preloaded Python, tests/preloaded_python.py, in the process group its
    client leads), wait until ready() (a point part-way through), wait a random extra delay, SIGKILL it; the process
    must still have been running (else the test would prove nothing)."""
    process = subprocess.Popen([str(mgc), *args], cwd=root, env=_environment(root),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0)
    deadline = time.monotonic() + 300
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(extra_delay_s)
    assert process.poll() is None, "the stage ended before it could be killed"
    kill_group(process)


def _files(folder: Path, pattern: str = "**/*") -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob(pattern)) if p.is_file()}


def _contents(folder: Path, pattern: str) -> list[str]:
    """Digests of the files, sorted: cache file names hold the audio's absolute path, so two roots differ in names."""
    return sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob(pattern) if p.is_file())


WINDOWS = 72  # three recordings of 24 windows: the fit needs a three-way split by recording
SYNTH = ["--n", str(WINDOWS), "--mask-presets", "origin", "--quiet"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted synth + spectrograms run."""
    root = tmp_path_factory.mktemp("reference")
    _main(root, "synth", "bench", *SYNTH, "--cache-root", "cache")
    _main(root, "spectrograms", "bench/manifest.csv", "--preset", "mel", "--cache-root", "cache", "--batch-size", "1",
          "--quiet")
    return root


def test_killed_synth_reruns_to_the_same_bytes(reference, tmp_path, preloaded_mgc):
    recordings = len(list((reference / "bench" / "audio").glob("*.flac")))
    parts = tmp_path / "bench" / "parts"
    point = RNG.randint(1, recordings - 1)
    _kill_when(preloaded_mgc, tmp_path, ["synth", "bench", *SYNTH, "--cache-root", "cache"],
               lambda: len(list(parts.glob("*.json"))) >= point, RNG.uniform(0, 0.3))
    assert len(list(parts.glob("*.json"))) < recordings or not (tmp_path / "bench" / "manifest.csv").exists()
    _main(tmp_path, "synth", "bench", *SYNTH, "--cache-root", "cache")
    assert _files(tmp_path / "bench") == _files(reference / "bench")
    ideal = _contents(tmp_path / "cache", "origin-*/**/*.npy")
    assert len(ideal) >= WINDOWS and ideal == _contents(reference / "cache", "origin-*/**/*.npy")


def test_killed_spectrograms_rerun_to_the_same_bytes(reference, tmp_path, preloaded_mgc):
    (tmp_path / "bench").symlink_to(reference / "bench")
    folder = tmp_path / "cache"
    point = RNG.randint(2, WINDOWS // 2)  # windows take milliseconds each: kill early, with little extra delay
    args = ["spectrograms", "bench/manifest.csv", "--preset", "mel", "--cache-root", "cache", "--batch-size", "1",
            "--quiet"]
    _kill_when(preloaded_mgc, tmp_path, args, lambda: len(list(folder.glob("mel-*/spectrograms/*.npy"))) >= point,
               RNG.uniform(0, 0.02))
    assert 0 < len(list(folder.glob("mel-*/spectrograms/*.npy"))) < WINDOWS
    _main(tmp_path, *args)
    assert _contents(folder, "mel-*/spectrograms/*.npy") == _contents(reference / "cache", "mel-*/spectrograms/*.npy")


def _segmenter_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    module = SegmenterModule(architecture="Unet", encoder_name="resnet18")
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {**module.hparams,
                "_class_path": class_path(SegmenterModule)}, "pytorch-lightning_version": lightning.__version__}, path)
    return path


def test_killed_mask_prediction_reruns_to_the_same_masks(reference, tmp_path, preloaded_mgc):
    checkpoint = _segmenter_checkpoint(tmp_path / "segmenter.ckpt")
    args = ["masks", "predict", str(reference / "bench" / "manifest.csv"), "--checkpoint", str(checkpoint),
            "--preset", "mel", "--batch-size", "1", "--quiet"]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for root in (clean, killed):  # the reference's mel spectrograms of this manifest, as `mgc spectrograms` wrote them
        for folder in (reference / "cache").glob("mel-*"):
            shutil.copytree(folder, root / "cache" / folder.name)
    _main(clean, *args, "--cache-root", "cache")
    masks = killed / "cache"
    point = RNG.randint(2, WINDOWS - 8)
    _kill_when(preloaded_mgc, killed, [*args, "--cache-root", "cache"],
               lambda: len(list(masks.glob("mel-*/masks/predicted/*.npy"))) >= point, RNG.uniform(0, 0.2))
    assert 0 < len(list(masks.glob("mel-*/masks/predicted/*.npy"))) < WINDOWS
    _main(killed, *args, "--cache-root", "cache")
    assert len(_contents(masks, "mel-*/masks/predicted/*.npy")) == WINDOWS
    assert _contents(masks, "mel-*/masks/predicted/*.npy") == _contents(clean / "cache", "mel-*/masks/predicted/*.npy")


def test_killed_fit_resumes_into_the_same_mlflow_run(reference, tmp_path, preloaded_mgc):
    (tmp_path / "bench").symlink_to(reference / "bench")
    args = ["fit", "--config", str(EXPERIMENTS / "classifier_base.yaml"), "--config",
            str(EXPERIMENTS / "baseline_resnet18.yaml"), "--data.init_args.manifest", "bench/manifest.csv",
            "--data.init_args.cache_root", "cache", "--data.init_args.batch_size", "4",
            "--model.init_args.backbone_kwargs", '{"channels": [8, 16, 32, 64], "stem_width": 8}',
            "--trainer.max_epochs", "4", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", "checkpoints"]
    checkpoints = tmp_path / "checkpoints"
    _kill_when(preloaded_mgc, tmp_path, args, lambda: any(checkpoints.glob("*/*/checkpoints/last.ckpt")),
               RNG.uniform(0, 1.0))
    last = next(checkpoints.glob("*/*/checkpoints/last.ckpt"))
    assert torch.load(last, weights_only=True)["global_step"] < 4 * 2  # killed before the end
    _main(tmp_path, *args, "--ckpt_path", "last")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("classification")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "the rerun forked a second MLflow run"
    assert runs[0].info.status == "FINISHED"
    assert torch.load(last, weights_only=True)["global_step"] == 4 * 2  # 4 epochs of 2 steps, none done twice
    steps = {m.step for m in client.get_metric_history(runs[0].info.run_id, "val/joint_acc")}
    assert len(steps) == 4  # every epoch's validation, in the one run
