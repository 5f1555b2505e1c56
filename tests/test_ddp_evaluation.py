"""Validation and test under DDP count every window once: Lightning's own Trainer on 2 CPU processes (gloo) gives
the same metrics and per-window predictions as 1 process on the same checkpoint, with an odd number of windows
(Lightning's distributed sampler then repeats one window to even out the processes). The two-process run is a
process of its own (under pytest, rank 1 would re-run the test session): rank 0 a fork of the suite's preloaded Python
(tests/preloaded_python.py), rank 1 the fresh process Lightning starts; the one-process run is the same script's main()
in this process, on one thread as the others (OMP_NUM_THREADS=1)."""

import csv
import io
import json
import os
import subprocess
from pathlib import Path
from runpy import run_path

import pytest
from mlflow.tracking import MlflowClient

from conftest import small_benchmark

SCRIPT = Path(__file__).parent / "ddp" / "evaluation_ddp.py"
COUNTED = ("joint_acc", "macro_f1", "joint_macro_f1", "hamming", "precision/whistle", "recall/beluga_click",
           "f1/porpoise_click", "joint_acc_ci_low", "joint_acc_ci_high", "windows")


def evaluate_here(workspace: Path) -> dict:
    """The script's one-process run, in this process (no rank re-runs it)."""
    out = workspace / "devices1.json"
    run_path(str(SCRIPT))["main"]([str(workspace), "1", str(out)])
    return json.loads(out.read_text())


def evaluate_on(python: list[str], workspace: Path, devices: int, *extra: str) -> dict:
    out = workspace / f"devices{devices}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([*python, str(SCRIPT), str(workspace), str(devices), str(out), *extra],
                            cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def predictions(client: MlflowClient, run_id: str) -> list[dict]:
    text = Path(client.download_artifacts(run_id, "predictions/test_origin.csv")).read_text()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.slow
def test_two_processes_evaluate_every_window_once_like_one(tmp_path, monkeypatch, one_thread, preloaded_python):
    small_benchmark(tmp_path, windows=36, per_recording=3, deployments=4, seed=2)
    two = evaluate_on(preloaded_python, tmp_path, 2, "--fit")
    monkeypatch.chdir(tmp_path)  # where the subprocess ran: MLflow's artifacts go to ./mlartifacts
    for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):  # seed_everything's, gone again after the test
        monkeypatch.setenv(name, "0")
    one = evaluate_here(tmp_path)
    assert (two["world"], one["world"]) == (2, 1)
    assert two["val_windows"] == two["test_windows"] == 9  # odd: the sampler pads to 10, one window twice

    assert two["test"]["test/origin/windows"] == one["test"]["test/origin/windows"] == 9
    for name in COUNTED:
        assert two["test"][f"test/origin/{name}"] == one["test"][f"test/origin/{name}"], name
    for name in COUNTED[:7]:
        assert two["validate"][f"val/{name}"] == one["validate"][f"val/{name}"], name
    assert two["test"]["test/origin/loss"] == pytest.approx(one["test"]["test/origin/loss"], rel=1e-5)
    assert two["validate"]["val/loss"] == pytest.approx(one["validate"]["val/loss"], rel=1e-5)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    during_fit = [m.value for m in client.get_metric_history(two["run_id"], "val/joint_acc")]
    assert during_fit == [pytest.approx(one["validate"]["val/joint_acc"])] * 2  # the fit's epoch, then validate

    rows_two, rows_one = predictions(client, two["run_id"]), predictions(client, one["run_id"])
    assert [int(row["index"]) for row in rows_two] == list(range(9))
    for row_two, row_one in zip(rows_two, rows_one, strict=True):
        assert {k: row_two[k] for k in ("index", "joint", "predicted", "correct")} == \
               {k: row_one[k] for k in ("index", "joint", "predicted", "correct")}
        scores = [k for k in row_one if k.startswith("p_")]
        assert [float(row_two[k]) for k in scores] == pytest.approx([float(row_one[k]) for k in scores], abs=2e-5)
