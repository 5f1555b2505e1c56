"""Two nodes on one machine, started as a cluster starts them: one process per node, each with Lightning's variables
of a node (MASTER_ADDR, MASTER_PORT, NODE_RANK, WORLD_SIZE) and `num_nodes 2`, joined over gloo. Training caches
each window's image once (by one node), tests every test window once and gives the same test metrics as one process
on the same checkpoint; detection on the two nodes writes byte for byte what one process writes. The nodes run
tests/ddp/recorded_writes.py, which records which process wrote each cached image: node 0 in a fork of the suite's
preloaded Python (tests/preloaded_python.py; no node carries RANK or LOCAL_RANK, the variables Lightning reads at
import), node 1 in a fresh process, so the two share no hash seed or random state."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import RECORDED_WRITES, small_benchmark, tree, writers
from mgc_lightning.cli import main
from mgc_lightning.data.datamodules import ClassificationDataModule
from mgc_lightning.deploy.detect import DetectSettings, detect
from mgc_lightning.evaluate.ood import evaluate_checkpoint

REPOSITORY = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPOSITORY / "experiments"
SPLIT = "[0.5,0.25,0.25]"  # 9 test windows: an odd number, which the distributed sampler pads with a repeat
COUNTED = ("windows", "joint_acc", "macro_f1", "joint_macro_f1", "hamming", "joint_acc_ci_low", "joint_acc_ci_high")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def on_two_nodes(python: list[str], workspace: Path, name: str, *args: str) -> list[str]:
    """`mgc ARGS` started once per node, as on two machines; each node's standard output."""
    writes = workspace / f"writes-{name}"
    writes.mkdir()
    cluster = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2",
               "MGC_WRITES": str(writes), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               "MLFLOW_TRACKING_URI": f"sqlite:///{workspace / 'mlflow.db'}",
               "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    logs = [(workspace / f"{name}-node{node}.out", workspace / f"{name}-node{node}.err") for node in (0, 1)]
    nodes = []
    for node, (out, err) in enumerate(logs):
        with open(out, "w") as stdout, open(err, "w") as stderr:  # files, not pipes: a full pipe would stall a node
            interpreter = python if node == 0 else [sys.executable]
            nodes.append(subprocess.Popen([*interpreter, str(RECORDED_WRITES), *args], cwd=workspace, stdout=stdout,
                                          stderr=stderr, env={**cluster, "NODE_RANK": str(node)}))
    try:
        codes = [node.wait(timeout=600) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for code, (_, err) in zip(codes, logs):
        assert code == 0, err.read_text()[-3000:]
    return [out.read_text() for out, _ in logs]


@pytest.mark.slow
def test_two_nodes_train_test_and_detect_like_one_process(tmp_path, monkeypatch, one_thread, preloaded_python):
    small_benchmark(tmp_path, windows=36, per_recording=3, deployments=4, seed=2)
    manifest, cache, best = tmp_path / "bench" / "manifest.csv", tmp_path / "cache", tmp_path / "best.ckpt"
    on_two_nodes(preloaded_python, tmp_path, "fit", "fit", "--config", str(EXPERIMENTS / "classifier_base.yaml"),
                 "--data.init_args.manifest", str(manifest), "--data.init_args.cache_root", str(cache),
                 "--data.init_args.split_fractions", SPLIT, "--data.init_args.batch_size", "4",
                 "--model.init_args.dim", "32",
                 "--model.init_args.backbone_kwargs", '{"channels": [8, 16, 32, 64], "stem_width": 8}',
                 "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
                 "--trainer.num_nodes", "2", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                 "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "checkpoints"),
                 "--link-best", str(best))

    # the cache: each window's image computed once, by one of the nodes
    written = writers(tmp_path / "writes-fit")
    assert set(written) == {str(p) for p in cache.glob("origin-*/spectrograms/*.npy")} and len(written) == 36
    assert all(len(ranks) == 1 for ranks in written.values()) and {r[0] for r in written.values()} == {0, 1}

    # the test after fit: one MLflow run (node 0's), every test window counted once, as one process counts them
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("classification").experiment_id])
    assert len(runs) == 1
    two_nodes = runs[0].data.metrics
    test_windows = ClassificationDataModule(str(manifest), cache_root=str(cache),
                                            split_fractions=(0.5, 0.25, 0.25)).split_rows()["test"]
    assert two_nodes["test/origin/windows"] == len(test_windows) == 9
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    one = evaluate_checkpoint(best, "origin", accelerator="cpu").metrics
    for name in COUNTED:
        assert two_nodes[f"test/origin/{name}"] == one[f"test/origin/{name}"], name
    assert two_nodes["test/origin/loss"] == pytest.approx(one["test/origin/loss"], rel=1e-5)

    # detection: the recordings shared by file over the nodes, the outputs those of one process
    bundle = tmp_path / "model.mgc"
    assert main(["export", "--classifier", str(best), "--out", str(bundle)]) == 0
    audio = tmp_path / "bench" / "audio"
    printed = on_two_nodes(preloaded_python, tmp_path, "detect", "detect", str(audio), "--model", str(bundle), "--out",
                           str(tmp_path / "two"), "--devices", "1", "--num-nodes", "2", "--quiet")
    assert "files:" in printed[0] and "files:" not in printed[1]  # one summary, from node 0
    detect([audio], bundle, tmp_path / "one", DetectSettings(), progress=False)
    outputs = {name: data for name, data in tree(tmp_path / "two").items() if not name.startswith(".journal")}
    assert outputs == {name: data for name, data in tree(tmp_path / "one").items()
                       if not name.startswith(".journal")}
    assert len([name for name in outputs if name.startswith("windows/")]) == len(list(audio.iterdir())) == 12
    journal = (tmp_path / "two" / ".journal").glob("*.json")
    assert sorted(json.loads(entry.read_text())["process"] for entry in journal) == [0] * 6 + [1] * 6  # by file
