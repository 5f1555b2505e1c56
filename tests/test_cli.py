import subprocess
import sys

import pytest

from mgc_lightning.cli import main

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
