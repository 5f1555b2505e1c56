import subprocess
import sys

from mgc_lightning.cli import main


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "mgc_lightning.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("presets", "validate", "import-raven", "spectrograms"):
        assert command in result.stdout


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
