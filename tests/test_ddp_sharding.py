"""Dataset-wide stages shared by DDP processes: `mgc spectrograms` and `mgc masks predict` on 2 CPU processes (gloo)
write each window's arrays exactly once, by one process, and leave byte for byte the files one process leaves,
silent-window flags included. Multi-process runs are processes of their own (under pytest, rank 1 would re-run the
session) through tests/ddp/recorded_writes.py, which records which process wrote each file: rank 0 a fork of the suite's
preloaded Python (tests/preloaded_python.py), rank 1 the fresh process Lightning starts."""

import csv
import os
import subprocess
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from conftest import RECORDED_WRITES, tree, write_audio, write_rows, write_tiny_dataset, writers
from mgc_lightning.cli import main
from mgc_lightning.models.segmenter import SegmenterModule

REPOSITORY = Path(__file__).resolve().parents[1]


def recorded_mgc(python: list[str], workspace: Path, writes: Path, *args: str) -> str:
    """`mgc ARGS` as a process of its own (rank 0 a fork of the preloaded Python, further ranks the fresh processes
    Lightning starts) whose processes record their writes in `writes`; its standard output."""
    writes.mkdir()
    env = {**os.environ, "MGC_WRITES": str(writes), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([*python, str(RECORDED_WRITES), *args], cwd=workspace, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def dataset_with_a_dropout(root: Path) -> Path:
    """The tiny dataset's 24 windows and a recording whose first window is digital silence (a flagged window)."""
    manifest = write_tiny_dataset(root)
    samples = np.random.default_rng(1).normal(0, 1e-3, 384_000).astype(np.float32)
    samples[:192_000] = 0.0
    write_audio(root / "audio" / "dropout.wav", samples, 384_000)
    with open(manifest, newline="") as handle:
        header, *rows = list(csv.reader(handle))
    rows += [["audio/dropout.wav", start, 0.5, 0, 0, 0, "dropout", "site0"] for start in (0.0, 0.5)]
    return write_rows(manifest, rows, header)


@pytest.mark.slow
def test_two_processes_cache_and_predict_each_window_once_like_one_process(tmp_path, preloaded_python):
    manifest = str(dataset_with_a_dropout(tmp_path))
    checkpoint = tmp_path / "segmenter.ckpt"
    torch.manual_seed(0)
    segmenter = SegmenterModule(architecture="Unet")  # untrained: its masks are as deterministic as a trained one's
    torch.save({"state_dict": segmenter.state_dict(), "hyper_parameters": dict(segmenter.hparams),
                "pytorch-lightning_version": L.__version__}, checkpoint)
    two, one = tmp_path / "two", tmp_path / "one"

    printed = recorded_mgc(preloaded_python, tmp_path, tmp_path / "writes-images", "spectrograms", manifest,
                           "--devices", "2", "--cache-root", str(two), "--quiet")
    assert printed.count("computed") == 1 and "26 computed, 0 already cached" in printed  # the main process's line
    printed = recorded_mgc(preloaded_python, tmp_path, tmp_path / "writes-masks", "masks", "predict", manifest,
                           "--checkpoint", str(checkpoint), "--devices", "2", "--cache-root", str(two), "--quiet")
    assert printed.count("predicted") == 1 and "26 masks predicted, 0 already there" in printed
    # one process fills another cache through the same command: the missing images, then the masks
    assert main(["masks", "predict", manifest, "--checkpoint", str(checkpoint), "--cache-root", str(one),
                 "--quiet"]) == 0

    files = tree(two)
    assert files == tree(one)  # the same arrays, flags and records, byte for byte, and no per-process leftovers
    assert sum(name.endswith("/silent_windows.json") for name in files) == 1
    preset = next(two.iterdir())
    for writes, folders in (("writes-images", ["spectrograms"]),
                            ("writes-masks", ["masks/predicted", "masks/predicted-probability"])):
        written = writers(tmp_path / writes)
        arrays = {str(p) for folder in folders for p in (preset / folder).glob("*.npy")}
        assert len(arrays) == 26 * len(folders) and set(written) == arrays
        assert all(len(ranks) == 1 for ranks in written.values())  # each window's array written once, by one rank
        assert {ranks[0] for ranks in written.values()} == {0, 1}  # both processes took windows
