"""A corpus of users' mistakes run through `mgc`'s entry point in a process of its own (run_cli_cases, on the suite's
preloaded Python, tests/preloaded_python.py): bad configs, checkpoints (garbage, truncated, a crafted pickle whose
payload would create a marker file, another model, another size) and command-line arguments. Each must end with exit
status 2 and one line that names the file (or option) and the problem; never a traceback, and never the crafted
file's code run."""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import edited_bundle, run_cli_cases, tiny_bundle, write_audio, write_rows
from mgc_lightning.core.checkpoints import class_path
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.models.classifier import ClassifierModule
from mgc_lightning.models.segmenter import SegmenterModule

# the corpus runs in one `mgc` process of its own; it trains nothing but builds checkpoints: seconds
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
LONG = "x" * 300  # one path component longer than any file system allows (ENAMETOOLONG)
TINY = '{"channels": [8, 16, 32, 64], "stem_width": 8}'


class Payload:
    """Unpickling this runs a shell command: what a crafted checkpoint would do with weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _lightning_checkpoint(module, path: Path, state: dict | None = None, **extra) -> Path:
    """A checkpoint as `mgc fit` writes it (class path in the hyperparameters), without training."""
    torch.save({"state_dict": state if state is not None else module.state_dict(),
                "hyper_parameters": {**module.hparams, "_class_path": class_path(type(module))},
                "pytorch-lightning_version": lightning.__version__, **extra}, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    rows = []
    for recording in range(3):
        write_audio(root / "audio" / f"rec{recording}.wav", rng.normal(0, 1e-3, 384_000).astype(np.float32), 384_000)
        rows += [[f"audio/rec{recording}.wav", start, 0.5, 1, 0, 0, f"rec{recording}", "s", "../good.png"]
                 for start in (0.0, 0.5)]
    header = ["path", "start_s", "duration_s", "whistle", "beluga_click", "porpoise_click", "recording", "site", "mask"]
    write_rows(root / "manifest.csv", rows, header)
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(root / "good.png")
    Image.fromarray(np.zeros((64, 100), np.uint8)).save(root / "small.png")
    write_rows(root / "small_mask.csv", [r if i != 4 else r[:-1] + ["../small.png"] for i, r in enumerate(rows)],
               header)
    write_rows(root / "missing_mask.csv", [r if i != 2 else r[:-1] + ["../gone.png"] for i, r in enumerate(rows)],
               header)

    (root / "bad.yaml").write_text("trainer: [1, 2\nmodel: x\n")
    (root / "list.yaml").write_text("- trainer\n- model\n")
    (root / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81binary")
    (root / "unknown.yaml").write_text("trainer:\n  max_epochz: 3\n")
    (root / "bogus.yaml").write_text("model:\n  init_args:\n    bogus: 1\n")
    (root / "epochs.yaml").write_text("trainer:\n  max_epochs: three\n")
    (root / "dim.yaml").write_text("model:\n  init_args:\n    dim: lots\n")
    (root / "seeds.yaml").write_text("classifiers:\n  - {name: a, configs: [x.yaml]}\nseeds: 3\n")

    torch.save({"state_dict": {}, "hyper_parameters": Payload(root / "MARKER")}, root / "crafted.ckpt")
    with open(root / "crafted.pkl", "wb") as handle:  # a plain pickle, not torch's zip format
        pickle.dump({"state_dict": Payload(root / "MARKER")}, handle)
    (root / "garbage.ckpt").write_bytes(np.random.default_rng(1).bytes(4096))
    (root / "empty.ckpt").write_bytes(b"")
    torch.save({"epoch": 3}, root / "foreign.ckpt")  # a PyTorch file, but not a Lightning checkpoint

    classifier = ClassifierModule(backbone_kwargs={"channels": [8, 16, 32, 64], "stem_width": 8})
    good = _lightning_checkpoint(classifier, root / "classifier.ckpt", datamodule_hyper_parameters={
        "manifest": str(root / "manifest.csv"), "cache_root": str(root / "cache")})
    (root / "truncated.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    narrower = ClassifierModule(dim=128, backbone_kwargs={"channels": [8, 16, 32, 64], "stem_width": 8})
    _lightning_checkpoint(classifier, root / "wrong_size.ckpt", state=narrower.state_dict())
    _lightning_checkpoint(SegmenterModule(architecture="Unet", encoder_name="resnet18"), root / "segmenter.ckpt")
    _lightning_checkpoint(classifier, root / "classifier_front_end.ckpt", spectrogram_config=get_preset("origin")
                          .to_dict(), datamodule_hyper_parameters={"manifest": str(root / "manifest.csv")})
    edited_bundle(tiny_bundle(root / "tiny.mgc", window_s=0.5), root / "cold.mgc", temperature=0.0)
    return root


def _fit_args(*extra: str) -> list[str]:
    return ["fit", "--config", str(EXPERIMENTS / "classifier_base.yaml"), "--config",
            str(EXPERIMENTS / "baseline_resnet18.yaml"), "--data.init_args.manifest", "manifest.csv",
            "--model.init_args.backbone_kwargs", TINY, "--trainer.max_epochs", "1", *extra]


def _seg_args(*extra: str) -> list[str]:
    return ["fit", "--config", str(EXPERIMENTS / "seg_deeplabv3.yaml"), "--data.init_args.mask_source", "manifest",
            "--trainer.max_epochs", "1", *extra]


# (id, command line, pieces the one error line must hold); paths are relative to the fixture folder.
CASES = [
    # configs
    ("yaml-syntax", _fit_args("--config", "bad.yaml"), ["bad.yaml: config file is not valid YAML at line 2"]),
    ("yaml-not-mapping", _fit_args("--config", "list.yaml"), ["list.yaml: a config file must be a YAML mapping"]),
    ("yaml-binary", _fit_args("--config", "binary.yaml"), ["binary.yaml: config file is not text"]),
    ("config-missing", _fit_args("--config", "nothere.yaml"), ["nothere.yaml: config file not found"]),
    ("config-unknown-key", _fit_args("--config", "unknown.yaml"), ["unknown.yaml: unknown key 'trainer.max_epochz'"]),
    ("config-unknown-model-key", _fit_args("--config", "bogus.yaml"),
     ["bogus.yaml: unknown key 'model.init_args.bogus'"]),
    ("config-wrong-type", _fit_args("--config", "epochs.yaml"),
     ["epochs.yaml: trainer.max_epochs: expected int, given 'three'"]),
    ("config-wrong-type-nested", _fit_args("--config", "dim.yaml"),
     ["dim.yaml: model.init_args.dim: expected int", "lots"]),
    ("option-wrong-type", _fit_args("--trainer.max_epochs", "x"), ["option --trainer.max_epochs: expected int"]),
    ("config-long-path", _fit_args("--config", f"{LONG}.yaml"), ["config file cannot be opened (File name too long)"]),
    # checkpoints
    ("fit-ckpt-garbage", _fit_args("--ckpt_path", "garbage.ckpt"),
     ["garbage.ckpt: not a checkpoint this project can read (not a PyTorch checkpoint"]),
    ("fit-ckpt-crafted", _fit_args("--ckpt_path", "crafted.ckpt"), ["crafted.ckpt:", "holds posix.system"]),
    ("fit-ckpt-crafted-plain-pickle", _fit_args("--ckpt_path", "crafted.pkl"),
     ["crafted.pkl: not a checkpoint this project can read (not a PyTorch checkpoint"]),
    ("fit-ckpt-truncated", _fit_args("--ckpt_path", "truncated.ckpt"),
     ["truncated.ckpt: not a checkpoint this project can read (empty, truncated or damaged)"]),
    ("fit-ckpt-missing", _fit_args("--ckpt_path", "nothere.ckpt"), ["nothere.ckpt: checkpoint not found"]),
    ("fit-ckpt-other-model", _fit_args("--ckpt_path", "segmenter.ckpt"),
     ["segmenter.ckpt: a SegmenterModule checkpoint, not a ClassifierModule one"]),
    ("fit-weights-only-false", _fit_args("--ckpt_path", "classifier.ckpt", "--weights_only", "false"),
     ["--weights_only false is refused"]),
    ("fit-init-from-crafted", _fit_args("--model.init_args.init_from", "crafted.ckpt"),
     ["crafted.ckpt: not a checkpoint for init_from this project can read", "posix.system"]),
    ("fit-init-from-wrong-size", _fit_args("--model.init_args.init_from", "wrong_size.ckpt"),
     ["wrong_size.ckpt:", "have other shapes than this model's"]),
    ("test-ckpt-crafted", ["test", *_fit_args("--ckpt_path", "crafted.ckpt")[1:]],
     ["crafted.ckpt:", "holds posix.system"]),
    ("evaluate-crafted", ["evaluate", "--checkpoint", "crafted.ckpt", "--preset", "mel"],
     ["crafted.ckpt: not a classifier checkpoint this project can read", "posix.system"]),
    ("evaluate-empty", ["evaluate", "--checkpoint", "empty.ckpt", "--preset", "mel"],
     ["empty.ckpt: not a classifier checkpoint this project can read (empty, truncated or damaged)"]),
    ("evaluate-not-lightning", ["evaluate", "--checkpoint", "foreign.ckpt", "--preset", "mel"],
     ["foreign.ckpt: not a classifier checkpoint of this project (no state_dict)"]),
    ("evaluate-missing", ["evaluate", "--checkpoint", "nothere.ckpt", "--preset", "mel"],
     ["nothere.ckpt: classifier checkpoint not found"]),
    ("evaluate-other-model", ["evaluate", "--checkpoint", "segmenter.ckpt", "--preset", "mel"],
     ["segmenter.ckpt: a SegmenterModule checkpoint, not a ClassifierModule one"]),
    ("evaluate-wrong-size", ["evaluate", "--checkpoint", "wrong_size.ckpt", "--preset", "mel"],
     ["wrong_size.ckpt: does not fit a ClassifierModule"]),
    ("evaluate-long-path", ["evaluate", "--checkpoint", f"{LONG}.ckpt", "--preset", "mel"],
     ["classifier checkpoint cannot be opened (File name too long)"]),
    ("predict-crafted", ["masks", "predict", "manifest.csv", "--checkpoint", "crafted.ckpt"],
     ["crafted.ckpt: not a segmenter checkpoint this project can read", "posix.system"]),
    ("predict-other-model", ["masks", "predict", "manifest.csv", "--checkpoint", "classifier.ckpt"],
     ["classifier.ckpt: a ClassifierModule checkpoint, not a SegmenterModule one"]),
    ("export-crafted", ["export", "--classifier", "crafted.ckpt", "--out", "model.mgc"],
     ["crafted.ckpt: not a classifier checkpoint this project can read", "posix.system"]),
    ("export-swapped", ["export", "--classifier", "segmenter.ckpt", "--out", "model.mgc"],
     ["segmenter.ckpt: a SegmenterModule checkpoint, not a ClassifierModule one"]),
    ("annotate-segmenter-garbage", ["annotate", "manifest.csv", "--queue", "uncertain", "--segmenter", "garbage.ckpt",
                                    "--port", "0"],
     ["garbage.ckpt: not a segmenter checkpoint this project can read"]),
    ("detect-not-audio", ["detect", "binary.yaml", "--model", "model.mgc", "--out", "detections"],
     ["binary.yaml: neither WAV/FLAC audio nor a text list of audio files"]),
    ("detect-crafted-bundle", ["detect", "audio", "--model", "crafted.ckpt", "--out", "detections"],
     ["crafted.ckpt: not a readable mgc model bundle (it holds posix.system, code or objects beyond weights, which "
      "are never loaded)"]),
    ("detect-bundle-is-a-folder", ["detect", "audio", "--model", "audio", "--out", "detections"],
     ["audio: is a folder, not a model bundle"]),
    ("detect-temperature-0", ["detect", "audio", "--model", "cold.mgc", "--out", "detections"],
     ["cold.mgc: unusable bundle: temperature 0.0 must be a number in [0.05, 20]"]),
    ("evaluate-checkpoint-is-a-folder", ["evaluate", "--checkpoint", "audio", "--preset", "mel"],
     ["audio: is a folder, not a classifier checkpoint"]),
    ("export-window-contradicts-training", ["export", "--classifier", "classifier_front_end.ckpt", "--window", "0.25",
                                            "--out", "model.mgc"],
     ["classifier_front_end.ckpt: --window 0.25 s contradicts the classifier's training windows of 0.5 s (from its "
      "training manifest", "manifest.csv): it would see images on another time scale"]),
    ("calibrate-too-few-windows", ["calibrate", "--model", "tiny.mgc", "--manifest", "manifest.csv",
                                   "--split-fractions", "0", "1", "0", "--no-mlflow"],
     ["manifest.csv: too few validation windows to calibrate on (whistle in 6 and absent from 0 of 6 usable "
      "windows): each sound type needs at least 5"]),
    ("detect-no-nodes", ["detect", "binary.yaml", "--model", "model.mgc", "--out", "detections", "--num-nodes", "0"],
     ["--num-nodes must be at least 1, got 0"]),
    # pipeline configs
    ("pipeline-yaml-syntax", ["pipeline", "bad.yaml"], ["bad.yaml: config file is not valid YAML at line 2"]),
    ("pipeline-not-a-list", ["pipeline", "seeds.yaml"], ["seeds.yaml: seeds must be a list, got 3"]),
    ("fit-unknown-mask-kind", _fit_args("--config", str(EXPERIMENTS / "mgc_xattn_soft.yaml"),
                                        "--data.init_args.mask_kind", "gauss"),
     ["mask_kind must be one of ('binary', 'soft', 'probability'), got 'gauss'"]),
    # mask PNGs named by the manifest: found before a model is built
    ("fit-mask-wrong-size", _seg_args("--data.init_args.manifest", "small_mask.csv"),
     ["small_mask.csv: row 5 (line 6):", "small.png: mask is 64x100, preset 'origin' images are 128x128"]),
    ("fit-mask-missing", _seg_args("--data.init_args.manifest", "missing_mask.csv"),
     ["missing_mask.csv: row 3 (line 4):", "gone.png: mask file not found"]),
    # command-line arguments
    ("validate-missing", ["validate", "nothere.csv"], ["nothere.csv: file not found"]),
    ("validate-long-path", ["validate", f"{LONG}.csv"], ["(304 characters): File name too long"]),
    ("spectrograms-bad-preset", ["spectrograms", "manifest.csv", "--preset", "nosuch"],
     ["unknown front-end preset 'nosuch'"]),
    ("spectrograms-long-cache", ["spectrograms", "manifest.csv", "--cache-root", LONG, "--quiet"],
     ["File name too long"]),
    ("synth-bad-number", ["synth", "out", "--n", "abc"], ["argument --n: invalid int value: 'abc'"]),
    ("synth-bad-preset", ["synth", "out", "--preset", "huge"], ["argument --preset: invalid choice: 'huge'"]),
    ("evaluate-bad-batch", ["evaluate", "--checkpoint", "classifier.ckpt", "--preset", "mel", "--batch-size", "x"],
     ["argument --batch-size: invalid int value: 'x'"]),
    ("propose-bad-sensitivity", ["masks", "propose", "manifest.csv", "--sensitivity", "2", "--quiet"],
     ["sensitivity must be in [0, 1], got 2.0"]),
    ("validate-no-argument", ["validate"], ["the following arguments are required: manifest"]),
]


def _environment(files: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{files / 'mlflow.db'}",
            "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def outcomes(files, preloaded_python) -> dict[str, dict]:
    return run_cli_cases({name: (files, args) for name, args, _ in CASES}, _environment(files), files,
                         preloaded_python)


def _one_error_line(stderr: str, returncode: int) -> str:
    """The error line, after checking: no traceback, status 2, exactly one `mgc ...: error:` line and nothing
    continuing it."""
    assert "Traceback" not in stderr, stderr
    assert returncode == 2, stderr
    lines = stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("mgc ") and ": error: " in line]
    assert len(errors) == 1, stderr
    assert errors[0] == len(lines) - 1 or not lines[errors[0] + 1].startswith(" "), stderr
    return lines[errors[0]]


@pytest.mark.parametrize("name, expected", [(case[0], case[2]) for case in CASES], ids=[case[0] for case in CASES])
def test_a_user_mistake_gets_one_line_and_status_2(files, outcomes, name, expected):
    outcome = outcomes[name]
    line = _one_error_line(outcome["stderr"], outcome["code"])
    for piece in expected:
        assert piece in line, line
    assert "weights_only=False" not in line and "set to `False`" not in line, line  # never advise loading code
    assert not outcome["marker"], "a crafted checkpoint ran its code"
    assert not (files / "mlartifacts").exists(), "an MLflow run was started"


@pytest.mark.parametrize("args, expected", [
    (_fit_args("--ckpt_path", "crafted.ckpt"), "crafted.ckpt: not a checkpoint this project can read"),
    (["masks", "predict", "manifest.csv", "--checkpoint", "crafted.ckpt"], "crafted.ckpt: not a segmenter"),
], ids=["fit", "masks-predict"])
def test_the_installed_command_refuses_a_crafted_checkpoint(files, outcomes, preloaded_mgc, args, expected):
    """The same through the package's `__main__` (what `python -m mgc_lightning.cli` runs) in a process of its own,
    a fork of the suite's preloaded `mgc` (tests/preloaded_python.py)."""
    result = subprocess.run([str(preloaded_mgc), *args], cwd=files, env=_environment(files), capture_output=True,
                            text=True, timeout=300)
    assert expected in _one_error_line(result.stderr, result.returncode)
    assert not (files / "MARKER").exists()


def test_the_crafted_payload_is_live(tmp_path):
    """The control: the same payload, unpickled the unsafe way, does create its marker (so the corpus's checks mean
    something)."""
    marker = tmp_path / "CONTROL"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()
