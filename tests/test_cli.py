import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli_cases, small_benchmark
from mgc_lightning.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"

# What only training, evaluation and detection need: a command that merely reads the command line, the presets or a
# manifest loads none of it, so it answers at once (benchmarks/cli_startup.py times it)
HEAVY_PACKAGES = {"torch", "torchvision", "torchmetrics", "lightning", "lightning_fabric", "mlflow", "timm",
                  "segmentation_models_pytorch", "scipy", "librosa", "sklearn", "skimage", "matplotlib"}


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "mgc_lightning.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("presets", "validate", "import-raven", "spectrograms"):
        assert command in result.stdout


@pytest.mark.parametrize("command", [["--help"], ["presets"], ["validate", "MANIFEST"], ["synth", "--help"]])
def test_quick_commands_load_no_torch(command, tiny_dataset):
    """The `mgc` entry point run as a shell runs it; -X importtime lists every module the process imported."""
    command = [str(tiny_dataset) if part == "MANIFEST" else part for part in command]
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "mgc_lightning.cli", *command],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "mgc_lightning" in imported  # the list is read right
    assert imported & HEAVY_PACKAGES == set()


def test_validate_shows_class_counts_and_split(tiny_dataset, capsys):
    assert main(["validate", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "24 windows, 6 recordings" in out
    assert "0 none" in out and "7 whistle+beluga_click+porpoise_click" in out
    assert "split by recording: train=" in out


def test_validate_reports_bad_rows_and_fails(tmp_path, capsys):
    bad = tmp_path / "m.csv"
    bad.write_text("path,start_s,duration_s,whistle,beluga_click,porpoise_click,recording\nx.wav,0,1,0,0,2,r\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "row 1 (line 2): porpoise_click must be 0 or 1, got '2'" in err


def test_presets_prints_every_preset_with_its_hash(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert [line.split(" ")[0] for line in out.splitlines()] == ["origin", "mel", "pcen"]


@pytest.mark.slow
def test_fit_and_evaluate_print_no_lightning_advertisement_or_deprecation(tmp_path):
    """Lightning's "💡 Tip: ... litlogger / litmodels" lines and the deprecation notices that Lightning's own calls
    into torch raise stay off the terminal of commands that train and test; its other lines (which accelerators it
    uses) still show. Both commands run through `mgc`'s entry point, as from a shell, in one child process
    (run_cli_cases: Lightning imported once, by the fit, whose filters go on before that import); a tiny model."""
    small_benchmark(tmp_path, windows=24, per_recording=4, deployments=3, seed=4)  # 6 recordings: 16/4/4 windows
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "OMP_NUM_THREADS": "1"}
    fit = ["fit", "--config", str(EXPERIMENTS / "classifier_base.yaml"), "--config",
           str(EXPERIMENTS / "baseline_resnet18.yaml"), "--model.init_args.backbone_kwargs",
           "{channels: [8, 16, 32, 64], stem_width: 8}", "--model.init_args.dim", "32", "--data.init_args.manifest",
           "bench/manifest.csv", "--data.init_args.cache_root", "cache", "--data.init_args.batch_size", "8",
           "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar", "false",
           "--link-best", "best.ckpt"]
    evaluate = ["evaluate", "--checkpoint", "best.ckpt", "--preset", "mel"]
    outcomes = run_cli_cases({"fit": (tmp_path, fit), "evaluate": (tmp_path, evaluate)}, env, tmp_path)
    for name in ("fit", "evaluate"):
        assert outcomes[name]["code"] == 0, outcomes[name]["stderr"][-3000:]
        output = outcomes[name]["stdout"] + outcomes[name]["stderr"]
        assert "MLflow run" in output  # the command ran to its end
        assert "GPU available:" in output
        assert "💡" not in output and "litlogger" not in output and "litmodels" not in output, output[-3000:]
        assert "is deprecated" not in output, output[-3000:]
