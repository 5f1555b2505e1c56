"""Make targets build what they need: on a fresh clone `make train-mgc` runs the missing stages in order (benchmark ->
high-quality set -> segmenter -> predicted masks -> classifier), and only the missing ones later (`make -n`);
`make mlflow-ui` serves on the port asked for and prints where the experiment's runs are."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def planned(tmp_path, target, *variables):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    (tmp_path / "venv").mkdir(exist_ok=True)
    (tmp_path / "venv" / ".installed").touch()  # an installed environment, newer than pyproject.toml
    result = subprocess.run(["make", "-n", target, f"BENCH={tmp_path / 'bench'}", f"VENV={tmp_path / 'venv'}",
                             *variables], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in result.stdout.splitlines() if "/venv/bin/mgc " in line]


def test_train_mgc_on_a_fresh_clone_builds_every_prerequisite_in_order(tmp_path):
    steps = planned(tmp_path, "train-mgc")
    stages = [next(word for word in ("synth", "masks select", "seg_", "masks predict", "mgc_xattn_soft") if word in s)
              for s in steps]
    assert stages == ["synth", "masks select", "seg_", "masks predict", "mgc_xattn_soft"], steps
    # the demo's recipe by default: the U-Net segmenter, the narrow ResNet-18, MGC with its image head
    assert "--config experiments/seg_unet.yaml" in steps[2]
    assert f"--link-best {tmp_path / 'bench' / 'segmenter-unet.ckpt'}" in steps[2]
    assert f"--checkpoint {tmp_path / 'bench' / 'segmenter-unet.ckpt'}" in steps[3]
    assert "--config experiments/narrow_resnet18.yaml --config experiments/mgc_xattn_soft.yaml" in steps[4]
    baseline = planned(tmp_path, "train-baseline")[-1]
    assert "--config experiments/narrow_resnet18.yaml --config experiments/baseline_resnet18.yaml" in baseline
    other = planned(tmp_path, "train-baseline", "MODEL=resnet50", "RECIPE=")[-1]
    assert "narrow_resnet18" not in other and "--config experiments/baseline_resnet50.yaml" in other


def test_finished_stages_are_not_run_again(tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    for name in ("manifest.csv", "hq.csv", "segmenter-unet.ckpt", "predicted-masks-unet.done"):
        (bench / name).touch()
        time.sleep(0.01)  # each stage newer than what it was made from
    steps = planned(tmp_path, "train-mgc")
    assert len(steps) == 1 and "mgc_xattn_soft" in steps[0]
    (bench / "predicted-masks-unet.done").unlink()
    assert len(planned(tmp_path, "train-mgc", "MASK_SOURCE=ideal")) == 1  # ideal masks need no segmenter
    assert len(planned(tmp_path, "train-mgc")) == 2  # predicted ones are made again first


def test_mlflow_ui_serves_the_port_asked_for_and_names_the_experiment(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / ".installed").touch()
    result = subprocess.run(["make", "-n", "mlflow-ui", f"VENV={tmp_path / 'venv'}", "PORT=5123", "STORE=runs/x.db",
                             "EXPERIMENT=my_survey"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "scripts/mlflow_runs_url.py runs/x.db my_survey 5123" in result.stdout
    assert "--backend-store-uri sqlite:///runs/x.db" in result.stdout and "--port 5123" in result.stdout


@pytest.mark.slow
def test_the_printed_address_opens_the_experiments_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlflow.db"

    def address(experiment):
        result = subprocess.run([sys.executable, str(ROOT / "scripts" / "mlflow_runs_url.py"), str(store), experiment,
                                 "5123"], capture_output=True, text=True, check=True)
        return result.stdout.strip()

    assert address("demo") == f"MLflow UI: open http://127.0.0.1:5123  (no store {store} yet)"
    client = MlflowClient(f"sqlite:///{store}")
    client.create_experiment("classification")
    demo = client.create_experiment("demo")
    assert address("demo") == f"MLflow UI: open http://127.0.0.1:5123/#/experiments/{demo}/runs"
    assert address("paper") == f"MLflow UI: open http://127.0.0.1:5123  (no experiment 'paper' in {store} yet)"


@pytest.mark.parametrize("target", ["test", "test-fast"])
def test_make_test_checks_the_import_contracts_before_pytest(tmp_path, target):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / ".installed").touch()  # an installed environment, newer than pyproject.toml
    # --no-print-directory: under `make test` this make is a sub-make, which would announce its directory
    result = subprocess.run(["make", "--no-print-directory", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    commands = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert commands == [f"{tmp_path / 'venv'}/bin/lint-imports", f"{tmp_path / 'venv'}/bin/python"], result.stdout
