"""The own-data walkthrough (docs/own_data.md, linked from the README's "Using your own recordings") runs verbatim:
its bash blocks, in order, on a small survey written here (audio and Raven tables as Raven writes them, both views), in
a folder laid out like the repository. Only the experiment YAMLs are shrunk (2 epochs of 2 batches, a tiny backbone,
a tiny segmenter, at most 6 steps a classifier run) so the recipes train in seconds; the commands are the
page's. Its `mgc` runs each command in a fresh fork of one process that imported torch, Lightning and the rest once
(tests/preloaded_python.py): 20 commands, 5-7 s of imports each saved."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import tone, write_audio
from mgc_lightning.audio.manifest import load_manifest
from mgc_lightning.audio.raven import read_boxes
from mgc_lightning.train.tracking import EVALUATES_TAG

ROOT = Path(__file__).resolve().parents[1]
QUICK_TRAINER = {"max_epochs": 2, "limit_train_batches": 2, "limit_val_batches": 1, "log_every_n_steps": 1,
                 "enable_progress_bar": False, "enable_model_summary": False}
# The page's resume asks for 40 epochs; a cap of 6 steps (the YAML's, as a user's could say max_steps) ends it after
# one more epoch of 2 batches, past the 2 epochs it resumed from, instead of 38 more.
SHRINK = {
    "classifier_base.yaml": {"trainer": {**QUICK_TRAINER, "max_steps": 6}, "data": {"init_args": {"batch_size": 8}},
                             "model": {"init_args": {"dim": 32, "backbone_kwargs": {"channels": [8, 16, 32, 64],
                                                                                    "stem_width": 8}}}},
    # the U-Net on timm's smallest MobileNetV3 with a narrow decoder: trains, saves and draws masks in a blink
    "seg_unet.yaml": {"trainer": QUICK_TRAINER, "data": {"init_args": {"batch_size": 4}},
                      "model": {"init_args": {"figure_every_n_epochs": 100, "encoder_name": "tu-mobilenetv3_small_050",
                                              "network_kwargs": {"decoder_channels": [16, 8, 8, 8, 8]}}}},
}
SELECTIONS = [  # (begin s, end s, low Hz, high Hz, label)
    (0.2, 0.9, 4_000, 12_000, "BW"), (1.1, 1.15, 40_000, 120_000, "BC"), (2.6, 2.65, 120_000, 145_000, "PP"),
    (3.0, 3.6, 50, 800, "ship"),
]


WALKTHROUGH = ROOT / "docs" / "own_data.md"  # the page that holds the walkthrough, between the own-data markers


def walkthrough_text() -> str:
    assert WALKTHROUGH.is_file(), (f"{WALKTHROUGH.relative_to(ROOT)} is missing: it holds the own-data walkthrough "
                                   "this test runs verbatim; point WALKTHROUGH at the page that holds it now")
    return WALKTHROUGH.read_text()


def own_data_blocks(page: str) -> list[str]:
    assert "<!-- own-data:begin" in page and "<!-- own-data:end -->" in page, (
        f"{WALKTHROUGH.relative_to(ROOT)} lacks the <!-- own-data:begin --> / <!-- own-data:end --> markers around the "
        "walkthrough")
    section = page.split("<!-- own-data:begin")[1].split("<!-- own-data:end -->")[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    assert blocks, f"no bash block between the own-data markers of {WALKTHROUGH.relative_to(ROOT)}"
    return blocks


def raven_table(offset: int) -> str:
    """Rows as Raven writes them with a spectrogram and a waveform view open: each selection twice."""
    lines = ["Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tAnnotation"]
    for number, (begin, end, low, high, label) in enumerate(SELECTIONS[offset % 2:], start=1):
        for view in ("Spectrogram 1", "Waveform 1"):
            lines.append(f"{number}\t{view}\t1\t{begin}\t{end}\t{low}\t{high}\t{label}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def walkthrough_env():
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


@pytest.fixture(scope="module")
def survey(tmp_path_factory, walkthrough_env, preloaded_mgc):
    """A folder laid out like the repository with the walkthrough's input files, and the output of its blocks."""
    root = tmp_path_factory.mktemp("readme")
    (root / "experiments").mkdir()
    for source in (ROOT / "experiments").glob("*.yaml"):
        config = yaml.safe_load(source.read_text())
        for key, values in SHRINK.get(source.name, {}).items():
            for name, value in values.items():
                if isinstance(value, dict):
                    config[key][name] = {**config[key][name], **value}
                else:
                    config[key][name] = value
        (root / "experiments" / source.name).write_text(yaml.safe_dump(config))
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "mgc").symlink_to(preloaded_mgc)
    rng = np.random.default_rng(3)
    for index, name in enumerate(["D1", "D2", "D3", "D4", "N1"]):
        samples = rng.normal(0, 1e-3, 4 * 384_000).astype(np.float32)
        samples[int(0.2 * 384_000):int(0.9 * 384_000)] += tone(8_000, 0.7, 384_000)
        write_audio(root / "my_survey" / "audio" / f"{name}.flac", samples, 384_000)
        (root / "raven").mkdir(exist_ok=True)
        (root / "raven" / f"{name}.Table.1.selections.txt").write_text(raven_table(index))
    script = "\n".join(own_data_blocks(walkthrough_text()))
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=root, env=walkthrough_env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return root, result.stdout


def test_the_preloaded_mgc_answers_as_a_fresh_python_m_process(preloaded_mgc, walkthrough_env, tmp_path):
    """The walkthrough's `mgc` gives what `python -m mgc_lightning.cli` gives: status, output and error lines, with
    paths read from the caller's folder."""
    (tmp_path / "bad.csv").write_text("path,start_s\nmissing.flac,0\n")
    for argv in (["validate", "bad.csv"], ["validate", "missing.csv"], ["no-such-command"], ["--help"]):
        preloaded = subprocess.run([str(preloaded_mgc), *argv], cwd=tmp_path, env=walkthrough_env,
                                   capture_output=True, text=True, timeout=60)
        fresh = subprocess.run([sys.executable, "-m", "mgc_lightning.cli", *argv], cwd=tmp_path, env=walkthrough_env,
                               capture_output=True, text=True, timeout=60)
        assert (preloaded.returncode, preloaded.stdout, preloaded.stderr) == (
            fresh.returncode, fresh.stdout, fresh.stderr), argv
    assert fresh.returncode == 0 and "validate" in fresh.stdout  # --help, last: the cases above are not all errors


def test_the_readme_points_at_the_walkthrough():
    assert "(docs/own_data.md)" in (ROOT / "README.md").read_text()


def test_the_section_has_the_whole_path():
    commands = " ".join(own_data_blocks(walkthrough_text()))
    for step in ("import-raven", "validate", "spectrograms", "masks boxes", "$mgc fit", "--ckpt_path last", "$mgc test",
                 "report"):
        assert step in commands, step


@pytest.mark.slow
def test_raven_tables_import_once_with_the_split_column(survey):
    root, _ = survey
    rows = load_manifest(root / "my_survey" / "manifest.csv")
    assert len(rows) == 4 * 8 and {r.deployment for r in rows} == {"D1", "D2", "D3", "D4"}
    boxes = read_boxes(root / "my_survey" / "manifest_boxes.csv")
    assert len(boxes) == 2 * 3 + 2 * 2  # every selection once although Raven wrote it for two views; ship ignored
    first = (root / "my_survey" / "manifest_boxes.csv").read_text().splitlines()[1]
    assert first.startswith("audio/D1.flac,")  # relative to the manifest, like its rows


@pytest.mark.slow
def test_trained_resumed_tested_and_compared(survey):
    root, printed = survey
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("my_survey")
    assert client.get_experiment_by_name("classification") is None  # own data stays apart from the benchmark's
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert {"baseline-resnet18", "mgc-xattn-soft", "baseline-resnet18 test new_site origin",
            "mgc-xattn-soft test new_site origin", "report"} == set(runs)
    baseline = runs["baseline-resnet18"]
    assert baseline.info.status == "FINISHED"
    assert len(client.get_metric_history(baseline.info.run_id, "val/joint_acc")) == 3  # resumed: one epoch past its 2, to the 6-step cap
    assert runs["baseline-resnet18 test new_site origin"].data.tags[EVALUATES_TAG] == baseline.info.run_id
    assert all(not k.startswith("test/") or k.startswith("test/origin/") for k in baseline.data.metrics)
    report = (root / "my_survey" / "report" / "REPORT.md").read_text()
    # the new site is a section of its own, never paired or averaged with the training deployments' test split, and
    # with no OOD front end tested the report speaks of none
    own, new_site = report.split("# Tables on")[0].split("## Tested on new_site")
    assert "## Headline: manifest" in own or "## Headline: my_survey" in own
    assert "| baseline resnet18" in own and "| baseline resnet18" in new_site  # named with its backbone settings
    assert "OOD" not in own + new_site and "perfect segmenter" not in own + new_site
    assert f"MLflow run {baseline.info.run_id}" in printed and "checkpoints: " in printed and "browse: " in printed
    assert (root / "my_survey" / "segmenter.ckpt").is_file()
