"""Model bundles and `mgc detect` end to end: tiny models trained by `mgc fit`, real audio files on disk (a long one
that crosses midnight, a short one, one at another rate, one too low for the band, a corrupt one)."""

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader

from conftest import edited_bundle, kill_group, small_benchmark, tiny_bundle, write_audio
from mgc_lightning.audio.manifest import WindowRow, load_manifest
from mgc_lightning.audio.raven import boxes_csv, read_boxes
from mgc_lightning.audio.reading import read_window
from mgc_lightning.cli import main
from mgc_lightning.core.errors import InputError
from mgc_lightning.core.labels import SOUND_TYPES
from mgc_lightning.core.sharding import Shard
from mgc_lightning.data.datamodules import WindowDataset, mask_loader
from mgc_lightning.deploy.bundle import Bundle, load_bundle, save_bundle
from mgc_lightning.deploy.calibration import (
    expected_calibration_error, fit_platt, fit_temperature, threshold_for_precision,
)
from mgc_lightning.deploy.detect import (
    RAVEN_HEADER, WINDOW_HEADER, DetectSettings, Journal, KeptWindows, RecordingWindows, csv_bytes, detect,
)
from mgc_lightning.deploy.detection_folder import output_name
from mgc_lightning.deploy.inference import type_probabilities
from mgc_lightning.deploy.partial_tables import PartialTables
from mgc_lightning.evaluate.event_scores import event_scores
from mgc_lightning.evaluate.ood import evaluate_checkpoint
from mgc_lightning.frontend.cache import compute_spectrograms, mask_store, spectrogram_store
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.masks.predict import predict_masks
from mgc_lightning.masks.sources import PREDICTED, PREDICTED_PROBABILITY
from mgc_lightning.models.classifier import ClassifierModule
from mgc_lightning.models.segmenter import load_segmenter

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
REPOSITORY = Path(__file__).resolve().parents[1]
RATE = 384_000
WINDOW = 0.25
OUTPUTS = ("windows", "raven", "errors.csv", "summary", "summary.html", "summary_settings.json")


# A U-Net of three encoder stages and a narrow decoder: the segmenter every bundle here carries draws masks in each
# detect run (seconds a run with smp's default decoder)
TINY_UNET = {"encoder_depth": 3, "decoder_channels": [16, 8, 4]}


def _fit(root, manifest, *args):
    return main(["fit", *args, "--data.init_args.manifest", str(manifest), "--data.init_args.cache_root",
                 str(root / "cache"), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                 "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A U-Net segmenter (tiny) and a soft-mask cross-attention classifier (narrow ResNet-18), one short epoch
    each."""
    root = tmp_path_factory.mktemp("detect")
    small_benchmark(root, windows=32, per_recording=8, deployments=2, seed=3)
    manifest = root / "bench" / "manifest.csv"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.chdir(root)
        patch.setattr(sys, "argv", ["mgc"])
        assert _fit(root, manifest, "--config", str(EXPERIMENTS / "seg_unet.yaml"),
                    "--data.init_args.split_fractions", "[0.5,0.25,0.25]",
                    "--model.init_args.network_kwargs", json.dumps(TINY_UNET),
                    "--model.init_args.figure_every_n_epochs", "100",
                    "--trainer.default_root_dir", str(root / "seg")) == 0
        assert _fit(root, manifest, "--config", str(EXPERIMENTS / "classifier_base.yaml"),
                    "--config", str(EXPERIMENTS / "mgc_xattn_soft.yaml"), "--data.init_args.mask_source", "ideal",
                    "--data.init_args.batch_size", "8", "--model.init_args.dim", "32",
                    "--model.init_args.backbone_kwargs", '{"channels": [8, 16, 32, 64], "stem_width": 8}',
                    "--trainer.default_root_dir", str(root / "cls")) == 0
    classifier = next((root / "cls").glob("*/*/checkpoints/last.ckpt"))
    segmenter = next((root / "seg").glob("*/*/checkpoints/last.ckpt"))
    bundle_path = root / "model.mgc"
    assert main(["export", "--classifier", str(classifier), "--segmenter", str(segmenter), "--out",
                 str(bundle_path)]) == 0
    # Thresholds that give both long and broken runs of positive windows whatever the tiny model learned.
    bundle, _ = load_bundle(bundle_path)
    bundle.thresholds = [0.0, 0.5, 1.0]
    save_bundle(bundle, bundle_path)
    return root, classifier, segmenter, bundle_path


@pytest.fixture(scope="module")
def recordings(models):
    """A 20 s recording named by its start time 10 s before midnight (benchmark audio end to end), a 1 s one, one at
    400 kHz (resampled), one at 96 kHz (too low for the 160 kHz band) and a corrupt one."""
    root = models[0]
    folder = root / "recordings"
    audio = np.concatenate([sf.read(str(p), dtype="float32")[0] for p in sorted((root / "bench" / "audio").glob("*"))])
    write_audio(folder / "site_20240131_235950.flac", np.resize(audio, 20 * RATE), RATE)
    write_audio(folder / "deep" / "short.wav", audio[: RATE], RATE)
    write_audio(folder / "other_rate.wav", np.resize(audio, 400_000) * 0.5, 400_000)
    write_audio(folder / "low_rate.wav", audio[:96_000], 96_000)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    return folder


def _detect_args(bundle, folder, out, *extra):
    return ["detect", str(folder), "--model", str(bundle), "--out", str(out), "--quiet", *extra]


def _env(root):
    return {**os.environ, "PYTHONPATH": str(REPOSITORY), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


def _here(models, folder, out, capsys, *extra):
    """`mgc detect` through its entry point in this process, in the processes' folder (the test asks for torch on one
    thread, as the processes run it, so both write the same bytes): (exit status, stdout, stderr). For the runs that
    are not about a process of their own: each new process pays the imports again (seconds)."""
    root, _, _, bundle = models
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setattr(sys, "argv", ["mgc"])
        code = main(_detect_args(bundle, folder, out, *extra))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _snapshot(out: Path) -> dict[str, bytes]:
    files = [p for name in OUTPUTS for p in ([out / name] if (out / name).is_file() else (out / name).rglob("*"))]
    return {str(p.relative_to(out)): p.read_bytes() for p in files if p.is_file()}


@pytest.fixture(scope="module")
def reference(models, recordings, preloaded_mgc):
    """`mgc detect` on the recordings: its result and its output folder, which every other run must reproduce byte
    for byte."""
    out = models[0] / "reference"
    return _run_preloaded(preloaded_mgc, models, recordings, out), out


def _run_preloaded(mgc: Path, models, folder, out, *extra):
    """`mgc detect` as a command of its own on the suite's preloaded `mgc` (a fork of the preloaded Python; further
    processes it starts are fresh ones). The killed runs start it with process_group=0: it then dies with its
    client's group (conftest.kill_group), as a command killed with SIGKILL."""
    root, _, _, bundle = models
    return subprocess.run([str(mgc), *_detect_args(bundle, folder, out, *extra)], env=_env(root), cwd=root,
                          capture_output=True, text=True, timeout=600)


def _rows(table: Path, delimiter=","):
    with open(table, newline="") as handle:
        return list(csv.DictReader(handle, delimiter=delimiter))


def _table(out, kind, stem):
    folder, suffix = {"windows": ("windows", ".csv"), "raven": ("raven", ".selections.txt")}[kind]
    found = [p for p in (out / folder).iterdir() if p.name.startswith(stem + ".") and p.name.endswith(suffix)]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.slow
def test_bundle_round_trip_needs_no_other_file_and_refuses_altered_or_foreign_files(models, tmp_path, capsys):
    root, classifier, segmenter, bundle_path = models
    # A classifier that was started from another checkpoint (init_from) that no longer exists still exports and loads.
    checkpoint = torch.load(classifier, map_location="cpu", weights_only=False)
    checkpoint["hyper_parameters"]["init_from"] = str(tmp_path / "gone.ckpt")
    moved = tmp_path / "cls.ckpt"
    torch.save(checkpoint, moved)
    assert main(["export", "--classifier", str(moved), "--segmenter", str(segmenter), "--out",
                 str(tmp_path / "m.mgc")]) == 0
    bundle, digest = load_bundle(tmp_path / "m.mgc")
    assert bundle.classifier["init_from"] is None and bundle.window_s == WINDOW
    assert bundle.front_end == get_preset("origin") and bundle.mask_kind == "soft"
    for name, tensor in checkpoint["state_dict"].items():
        assert torch.equal(bundle.classifier_state[name], tensor), name
    assert len(digest) == 64
    # A mask-guided classifier without its segmenter cannot detect anything.
    assert main(["export", "--classifier", str(classifier), "--out", str(tmp_path / "x.mgc")]) == 2
    assert "reads masks" in capsys.readouterr().err
    # The checkpoint records its training windows: a --window that contradicts them is refused with both.
    assert checkpoint["training_windows_s"] == [WINDOW]
    assert main(["export", "--classifier", str(moved), "--segmenter", str(segmenter), "--window", "0.5", "--out",
                 str(tmp_path / "w.mgc")]) == 2
    assert ("--window 0.5 s contradicts the classifier's training windows of 0.25 s (from its checkpoint)"
            in capsys.readouterr().err)

    payload = bytearray((tmp_path / "m.mgc").read_bytes())
    position = len(payload) // 2  # inside a tensor's bytes
    payload[position] ^= 0xFF
    (tmp_path / "altered.mgc").write_bytes(bytes(payload))
    with pytest.raises(InputError, match="content hash mismatch"):
        load_bundle(tmp_path / "altered.mgc")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.mgc")
    (tmp_path / "text.mgc").write_text("not a bundle")
    write_audio(tmp_path / "recording.wav", np.zeros(96_000, np.float32), 384_000)
    for name, message in (("altered", "content hash mismatch"), ("foreign", "not an mgc model bundle"),
                          ("text", "not a readable mgc model bundle")):
        assert main(["detect", str(tmp_path / "recording.wav"), "--model", str(tmp_path / f"{name}.mgc"), "--out",
                     str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err and f"{name}.mgc" in err, err


@pytest.mark.slow
def test_detect_writes_tables_raven_presence_and_lists_failed_files(models, recordings, reference, tmp_path):
    result, out = reference
    assert result.returncode == 1, result.stderr[-3000:]  # some files failed
    assert "5 files: 3 analysed, 0 already done, 2 failed" in result.stdout
    assert "available:" not in result.stderr and "Tip" not in result.stderr  # no Lightning start-up lines
    errors = {Path(r["file"]).name: r["reason"] for r in _rows(out / "errors.csv")}
    assert set(errors) == {"corrupt.wav", "low_rate.wav"}
    assert "corrupt" in errors["corrupt.wav"]
    assert "sample rate 96000 Hz is too low for a band up to 160000 Hz" in errors["low_rate.wav"]

    long_rows = _rows(_table(out, "windows", "site_20240131_235950"))
    assert len(long_rows) == 20 / WINDOW
    assert [float(r["start_s"]) for r in long_rows] == [i * WINDOW for i in range(len(long_rows))]
    for row in long_rows:
        p = [float(row[f"p_{t}"]) for t in SOUND_TYPES]
        assert all(0 <= v <= 1 for v in p) and 0 < float(row["joint_probability"]) <= 1
    assert len(_rows(_table(out, "windows", "short"))) == 4
    assert len(_rows(_table(out, "windows", "other_rate"))) == 4  # 1 s at 400 kHz, resampled

    # Raven: whistle (threshold 0) is one selection over the whole file, porpoise (threshold > 1) none, beluga
    # clicks one per run of consecutive windows at or above 0.5; bands from the masks lie inside the front end's.
    table = _table(out, "raven", "site_20240131_235950")
    selections = _rows(table, "\t")
    by_type = {t: [s for s in selections if s["Annotation"] == t] for t in SOUND_TYPES}
    assert [(float(s["Begin Time (s)"]), float(s["End Time (s)"])) for s in by_type["whistle"]] == [(0.0, 20.0)]
    assert by_type["porpoise_click"] == []
    positive = [float(r["p_beluga_click"]) >= 0.5 for r in long_rows]
    runs = sum(1 for i, p in enumerate(positive) if p and (i == 0 or not positive[i - 1]))
    assert len(by_type["beluga_click"]) == runs
    for s in selections:
        assert 1_000 <= float(s["Low Freq (Hz)"]) < float(s["High Freq (Hz)"]) <= 160_000
    masked = [(float(r["mask_low_hz"]), float(r["mask_high_hz"])) for r in long_rows if r["mask_low_hz"]]
    whistle = by_type["whistle"][0]
    if masked:
        assert float(whistle["Low Freq (Hz)"]) == pytest.approx(min(b[0] for b in masked), abs=0.1)
        assert float(whistle["High Freq (Hz)"]) == pytest.approx(max(b[1] for b in masked), abs=0.1)
    # ... and `mgc import-raven` reads the table back.
    mapping = ",".join(f"{t}={t}" for t in SOUND_TYPES)
    long_audio = recordings / "site_20240131_235950.flac"
    assert main(["import-raven", str(table), "--audio", str(long_audio), "--map", mapping, "--window", "0.25",
                 "--out", str(tmp_path / "imported.csv")]) == 0
    boxes = _rows(tmp_path / "imported_boxes.csv")
    assert len(boxes) == len(selections)
    imported = _rows(tmp_path / "imported.csv")
    assert all(r["whistle"] == "1" and r["porpoise_click"] == "0" for r in imported)

    # The season summary: the long file (in folder `recordings`, its deployment) starts 10 s before midnight, so its
    # windows fall on two days; the files without a timestamp in their name are listed apart, in no hour.
    season = out / "summary" / "recordings"
    hourly = _rows(season / "presence_hourly.csv")
    assert [(r["date"], r["hour"], r["windows"]) for r in hourly] == [("2024-01-31", "23", "40"),
                                                                      ("2024-02-01", "0", "40")]
    assert hourly[0]["whistle"] == "40" and hourly[0]["porpoise_click"] == "0"
    assert [r["date"] for r in _rows(season / "daily_detections.csv")] == ["2024-01-31", "2024-02-01"]
    assert (season / "diel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    undated = _rows(out / "summary" / "undated.csv")
    assert sorted(Path(r["file"]).name for r in undated) == ["other_rate.wav", "short.wav"]


@pytest.mark.slow
def test_detect_probabilities_equal_the_data_module_path(models, recordings, reference):
    """The windows through the training path (spectrogram cache, predicted-mask source, soft masks, the checkpoint's
    classifier) give the probabilities detect wrote."""
    root, classifier, segmenter, _ = models
    _, out = reference
    long_audio = recordings / "site_20240131_235950.flac"
    rows = [WindowRow(long_audio, i * WINDOW, WINDOW, 0, 0, 0, recording="long") for i in range(int(20 / WINDOW))]
    config, cache = get_preset("origin"), root / "cache-check"
    compute_spectrograms(rows, config, cache, progress=False)
    # other batches than detect's (16): masks drawn in bfloat16 must not depend on the company a window keeps
    predict_masks(load_segmenter(segmenter), segmenter, rows, config, cache, batch_size=7, progress=False)
    data = WindowDataset(rows, spectrogram_store(config, cache), mask_loader(config, PREDICTED, cache), "soft", 3.0)
    model = ClassifierModule.load_from_checkpoint(classifier, map_location="cpu").eval()
    batch = [data[i] for i in range(len(data))]
    with torch.no_grad():
        logits = model(torch.stack([b["image"] for b in batch]), torch.stack([b["mask"] for b in batch]))
    expected = type_probabilities(torch.softmax(logits, dim=-1)).numpy()
    written = np.array([[float(r[f"p_{t}"]) for t in SOUND_TYPES]
                        for r in _rows(_table(out, "windows", "site_20240131_235950"))])
    np.testing.assert_allclose(written, expected, atol=2e-5)


@pytest.mark.slow
def test_a_probability_mask_classifier_is_bundled_detected_and_evaluated_on_another_front_end(models, recordings,
                                                                                             tmp_path):
    """A classifier that reads the segmenter's probability maps, end to end: trained by `mgc fit` on the maps `mgc
    masks predict` stored, exported with its mask kind, run by detect (which draws the maps itself: the same
    probabilities as the training path gives) and tested on another front end (whose maps the same segmenter
    predicts)."""
    root, _, segmenter, _ = models
    manifest = root / "bench" / "manifest.csv"
    predict_masks(load_segmenter(segmenter), segmenter, load_manifest(manifest), get_preset("origin"), root / "cache",
                  progress=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.chdir(root)
        patch.setattr(sys, "argv", ["mgc"])
        assert _fit(root, manifest, "--config", str(EXPERIMENTS / "classifier_base.yaml"),
                    "--config", str(EXPERIMENTS / "mgc_xattn_probability.yaml"),
                    "--data.init_args.batch_size", "8", "--model.init_args.dim", "32",
                    "--model.init_args.backbone_kwargs", '{"channels": [8, 16, 32, 64], "stem_width": 8}',
                    "--trainer.default_root_dir", str(tmp_path / "cls")) == 0
        classifier = next((tmp_path / "cls").glob("*/*/checkpoints/last.ckpt"))
        bundle_path = tmp_path / "probability.mgc"
        assert main(["export", "--classifier", str(classifier), "--segmenter", str(segmenter), "--out",
                     str(bundle_path)]) == 0
        assert load_bundle(bundle_path)[0].mask_kind == "probability"
        detect([recordings / "deep"], bundle_path, tmp_path / "detected", DetectSettings(), progress=False)
        evaluation = evaluate_checkpoint(classifier, "mel", segmenter=segmenter, accelerator="cpu")
    assert 0 <= evaluation.metrics["test/mel/joint_acc"] <= 1
    assert len(mask_store(get_preset("mel"), PREDICTED_PROBABILITY, root / "cache"))  # mel's maps, predicted for it

    short = recordings / "deep" / "short.wav"
    rows = [WindowRow(short, i * WINDOW, WINDOW, 0, 0, 0, recording="short") for i in range(4)]
    config, cache = get_preset("origin"), tmp_path / "cache-check"
    compute_spectrograms(rows, config, cache, progress=False)
    predict_masks(load_segmenter(segmenter), segmenter, rows, config, cache, progress=False)
    data = WindowDataset(rows, spectrogram_store(config, cache), mask_loader(config, PREDICTED, cache, "probability"),
                         "probability")
    batch = [data[i] for i in range(len(data))]
    assert all(((b["mask"] > 0) & (b["mask"] < 1)).any() for b in batch)  # the maps themselves, not binary masks
    model = ClassifierModule.load_from_checkpoint(classifier, map_location="cpu").eval()
    with torch.no_grad():
        logits = model(torch.stack([b["image"] for b in batch]), torch.stack([b["mask"] for b in batch]))
    expected = type_probabilities(torch.softmax(logits, dim=-1)).numpy()
    written = np.array([[float(r[f"p_{t}"]) for t in SOUND_TYPES]
                        for r in _rows(_table(tmp_path / "detected", "windows", "short"))])
    np.testing.assert_allclose(written, expected, atol=2e-5)
    # a bundle whose mask kind was edited to one no model reads is refused with the kinds there are
    with pytest.raises(InputError, match=r"mask kind 'gauss' must be one of \('binary', 'soft', 'probability'\)"):
        load_bundle(edited_bundle(bundle_path, tmp_path / "gauss.mgc", mask_kind="gauss"))


@pytest.mark.slow
def test_killed_run_resumes_to_identical_outputs_and_changed_files_are_redone(models, recordings, reference, capsys,
                                                                              one_thread, preloaded_mgc):
    root, _, _, bundle = models
    _, out_reference = reference
    out = root / "killed"
    process = subprocess.Popen([str(preloaded_mgc), *_detect_args(bundle, recordings, out)], env=_env(root), cwd=root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / ".journal").glob("*.json"))) < 2:
        time.sleep(0.05)
    kill_group(process)
    assert len(list((out / ".journal").glob("*.json"))) < 5  # killed before the end
    code, stdout, _ = _here(models, recordings, out, capsys)  # the rerun: in this process
    assert code == 1
    assert "already done" in stdout and " 0 already done" not in stdout, stdout
    assert _snapshot(out) == _snapshot(out_reference)
    # A recording that changed (size or modification time) is analysed again, the others are not.
    short = recordings / "deep" / "short.wav"
    os.utime(short, ns=(short.stat().st_atime_ns, short.stat().st_mtime_ns + 10**9))
    code, stdout, _ = _here(models, recordings, out, capsys)
    assert "5 files: 1 analysed, 2 already done, 2 failed" in stdout, stdout
    assert _snapshot(out) == _snapshot(out_reference)


@pytest.mark.slow
def test_a_file_killed_half_way_resumes_from_its_last_finished_batch_to_identical_outputs(tmp_path, capsys,
                                                                                          one_thread, preloaded_mgc):
    """`mgc detect` killed (SIGKILL) in the middle of a long file, while a batch's row was being written: the rerun
    keeps the partial table's whole batches, analyses only the rest, counts only the rest in its progress bar, and
    ends with the bytes of an uninterrupted run."""
    model, noise = tiny_bundle(tmp_path / "model.mgc"), np.random.default_rng(0)
    recording = write_audio(tmp_path / "in" / "site_20240131_235950.wav",
                            noise.normal(0, 0.05, 40 * RATE).astype(np.float32), RATE)  # 160 windows, 40 batches
    command = _detect_args(model, recording, tmp_path / "out", "--batch-size", "4")
    # the uninterrupted run and the rerun in this process (torch on one thread, as in the killed one)
    assert main(_detect_args(model, recording, tmp_path / "reference", "--batch-size", "4")) == 0
    partial = tmp_path / "out" / ".partial" / output_name(recording)
    process = subprocess.Popen([str(preloaded_mgc), *command], env=_env(tmp_path), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, process_group=0)
    deadline = time.time() + 300
    while time.time() < deadline and sum(p.read_bytes().count(b"\n") for p in partial.glob("*.csv")) < 1 + 12:
        time.sleep(0.005)
    kill_group(process)
    assert not (tmp_path / "out" / "windows").exists()  # killed before the file was finished
    [table] = partial.glob("*.csv")
    rows = table.read_bytes().count(b"\n") - 1  # complete rows
    assert 12 <= rows < 160
    with open(table, "ab") as handle:  # the kill came while a row was being written
        handle.write(f"{recording},{rows * WINDOW:.6f},0.4".encode())

    rerun = [c for c in command if c != "--quiet"] + ["--workers", "1"]  # read by a worker, written by the main
    capsys.readouterr()
    code, stderr = main(rerun), capsys.readouterr().err
    assert code == 0, stderr[-3000:]
    entry = json.loads(next((tmp_path / "out" / ".journal").glob("*.json")).read_text())
    assert entry["resumed_from_s"] == rows // 4 * 4 * WINDOW  # the whole batches the killed run finished
    assert f"{(40 - entry['resumed_from_s']) / 3600:.3f}/{(40 - entry['resumed_from_s']) / 3600:.3f} h of audio" in (
        stderr)
    assert _snapshot(tmp_path / "out") == _snapshot(tmp_path / "reference")
    assert not (tmp_path / "out" / ".partial").exists()


@pytest.mark.slow
def test_decoding_workers_share_the_files_and_match_one_process(models, recordings, reference, capsys, one_thread):
    _, out_reference = reference
    out = models[0] / "workers"
    code, stdout, stderr = _here(models, recordings, out, capsys, "--workers", "2")  # two worker processes read
    assert code == 1, stderr[-3000:]
    assert "5 files: 3 analysed, 0 already done, 2 failed" in stdout  # each file once, failures reported
    assert _snapshot(out) == _snapshot(out_reference)


def test_negative_decoding_workers_are_refused_before_anything_is_read(tmp_path):
    with pytest.raises(InputError, match="--workers must be >= 0, got -1"):
        detect([tmp_path], tmp_path / "no-model.mgc", tmp_path / "out", DetectSettings(), workers=-1)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_processes_analyse_each_file_once_and_match_one_process(models, recordings, reference, preloaded_mgc):
    root = models[0]
    _, out_reference = reference
    out = root / "two"
    result = _run_preloaded(preloaded_mgc, models, recordings, out, "--devices", "2")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "5 files: 3 analysed, 0 already done, 2 failed" in result.stdout
    assert result.stdout.count("files:") == 1  # one summary, from the main process
    entries = [json.loads(p.read_text()) for p in (out / ".journal").glob("*.json")]
    assert len(entries) == 5 and {e["process"] for e in entries} == {0, 1}  # both processes took files
    assert _snapshot(out) == _snapshot(out_reference)


@pytest.mark.slow
def test_windows_without_signal_get_a_reason_instead_of_probabilities(models, tmp_path):
    """A recorder dropout (digital silence) in the middle of a file: its windows carry the reason and no scores,
    split the whistle selection (threshold 0: every analysed window is positive) in two, count in no presence total,
    and the summary says how many there were."""
    root, _, _, bundle = models
    audio = np.concatenate([sf.read(str(p), dtype="float32")[0] for p in sorted((root / "bench" / "audio").glob("*"))])
    samples = np.resize(audio, 2 * RATE)
    samples[RATE // 2 : RATE] = 0.0  # windows 0.5-0.75 s and 0.75-1.0 s
    write_audio(tmp_path / "in" / "dropout.wav", samples, RATE)
    summary = detect([tmp_path / "in"], bundle, tmp_path / "out", DetectSettings(), progress=False)
    assert "2 windows without usable signal" in summary.line()
    rows = _rows(_table(tmp_path / "out", "windows", "dropout"))
    silent = [float(r["start_s"]) for r in rows if r["signal_problem"]]
    assert silent == [0.5, 0.75]
    assert all(r["p_whistle"] == "" and r["joint_class"] == "" for r in rows if r["signal_problem"])
    assert all(r["p_whistle"] != "" for r in rows if not r["signal_problem"])
    whistles = [s for s in _rows(_table(tmp_path / "out", "raven", "dropout"), "\t")
                if s["Annotation"] == "whistle"]
    assert [(float(s["Begin Time (s)"]), float(s["End Time (s)"])) for s in whistles] == [(0.0, 0.5), (1.0, 2.0)]
    # an undated recording: listed apart with its totals
    assert [(r["windows"], r["whistle"]) for r in _rows(tmp_path / "out" / "summary" / "undated.csv")] == [("6", "6")]


@pytest.mark.slow
def test_raven_output_imports_back_as_the_same_boxes(models, tmp_path):
    """Round trip: `mgc detect`'s Raven table read back by `mgc import-raven` gives its selections as the boxes of the
    recording analysed, and labels exactly the windows detection found at or above each type's threshold."""
    root, _, _, bundle = models
    audio = np.concatenate([sf.read(str(p), dtype="float32")[0] for p in sorted((root / "bench" / "audio").glob("*"))])
    samples = np.resize(audio, 2 * RATE)
    samples[RATE // 2 : RATE] = 0.0  # a dropout: windows without signal belong to no selection
    clip = write_audio(tmp_path / "in" / "clip.wav", samples, RATE)
    detect([clip], bundle, tmp_path / "out", DetectSettings(), progress=False)
    table = _table(tmp_path / "out", "raven", "clip")
    written = [(s["Annotation"], *(float(s[c]) for c in RAVEN_HEADER[3:7])) for s in _rows(table, "\t")]
    manifest = tmp_path / "imported.csv"
    assert main(["import-raven", str(table), "--audio", str(clip), "--map", ",".join(f"{t}={t}" for t in SOUND_TYPES),
                 "--window", str(WINDOW), "--out", str(manifest)]) == 0
    boxes = read_boxes(boxes_csv(manifest))
    assert written and [(b.sound_type, b.begin_s, b.end_s, b.low_hz, b.high_hz) for b in boxes] == written
    assert {b.path for b in boxes} == {clip.resolve()}
    thresholds = load_bundle(bundle)[0].thresholds
    found = [tuple(int(not w["signal_problem"] and float(w[f"p_{t}"]) >= threshold)
                   for t, threshold in zip(SOUND_TYPES, thresholds))
             for w in _rows(_table(tmp_path / "out", "windows", "clip"))]
    assert [row.labels for row in load_manifest(manifest)] == found


@pytest.mark.slow
def test_runs_into_one_folder_add_up_to_one_run_over_all_their_files(tmp_path):
    """Day 1, then day 2, into one folder give the summaries (the season summary, errors.csv) and per-file
    outputs of one run over both days: before, the second run rewrote the summaries from its own files, and day 1's
    failure vanished from errors.csv. A file that failed and then succeeded shows as succeeded, its failure kept in
    its journal history; a run with other settings into that folder is refused, naming the difference."""
    model, noise = tiny_bundle(tmp_path / "model.mgc"), np.random.default_rng(0)
    day1, day2 = tmp_path / "day1", tmp_path / "day2"
    write_audio(day1 / "site_20240131_235959.wav", noise.normal(0, 0.05, RATE).astype(np.float32), RATE)
    (day1 / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    write_audio(day2 / "site_20240201_120000.wav", noise.normal(0, 0.05, RATE).astype(np.float32), RATE)
    write_audio(day2 / "undated.wav", noise.normal(0, 0.05, RATE // 2).astype(np.float32), RATE)

    def run(folders, out, **settings):
        return detect(folders, model, tmp_path / out, DetectSettings(**settings), progress=False)

    run([day1, day2], "together")
    run([day1], "day_by_day")
    second = run([day2], "day_by_day")
    assert _snapshot(tmp_path / "day_by_day") == _snapshot(tmp_path / "together")
    assert [Path(r["file"]).name for r in _rows(tmp_path / "day_by_day" / "errors.csv")] == ["broken.wav"]
    assert "2 files: 2 analysed, 0 already done, 0 failed" in second.line()
    assert "the folder's summaries cover 4 files of every run into it (1 failed)" in second.line()

    write_audio(day1 / "broken.wav", noise.normal(0, 0.05, RATE).astype(np.float32), RATE)  # copied again, whole
    run([day1], "day_by_day")
    assert _rows(tmp_path / "day_by_day" / "errors.csv") == []
    season = tmp_path / "day_by_day" / "summary"
    assert {day: [(r["date"], r["windows"]) for r in _rows(season / day / "daily_detections.csv")]
            for day in ("day1", "day2")} == {"day1": [("2024-01-31", "4")], "day2": [("2024-02-01", "4")]}
    assert sorted((Path(r["file"]).name, r["windows"]) for r in _rows(season / "undated.csv")) == [
        ("broken.wav", "4"), ("undated.wav", "2")]
    entries = [json.loads(p.read_text()) for p in (tmp_path / "day_by_day" / ".journal").glob("*.json")]
    repaired = next(e for e in entries if e["path"].endswith("broken.wav"))
    assert repaired["status"] == "done" and [h["status"] for h in repaired["history"]] == ["failed"]
    assert "unreadable or corrupt audio" in repaired["history"][0]["reason"]
    with pytest.raises(InputError, match=r"day_by_day: holds detections of 4 file\(s\) made with another model or "
                                         r"other settings \(hop_s 0.25 there, 0.125 now\)"):
        run([day2], "day_by_day", hop_s=0.125)


def test_a_folder_shows_one_bar_over_the_hours_left_to_analyse(tmp_path, capsys):
    """One progress bar over a folder's files, whose total is the audio of the files not done yet (from their
    headers, before the run): hours done out of it, hours left, the time left and the speed."""
    model, noise = tiny_bundle(tmp_path / "model.mgc"), np.random.default_rng(0)
    folder = tmp_path / "in"
    done = write_audio(folder / "done.wav", noise.normal(0, 0.05, 9 * RATE).astype(np.float32), RATE)
    detect([done], model, tmp_path / "out", DetectSettings(), progress=False)
    write_audio(folder / "a.wav", noise.normal(0, 0.05, int(10.8 * RATE)).astype(np.float32), RATE)
    write_audio(folder / "b.wav", noise.normal(0, 0.05, int(7.2 * RATE)).astype(np.float32), RATE)
    capsys.readouterr()
    detect([folder], model, tmp_path / "out", DetectSettings(), progress=True)
    states = [line for line in re.split(r"[\r\n]", capsys.readouterr().err) if line.startswith("detect:")]
    assert states and all(re.search(r"\d\.\d{3}/0\.005 h of audio", s) for s in states), states  # 18 s, not 27 s
    assert "0.000/0.005 h of audio [00:00<?]" in states[0]
    assert re.search(r" 0\.00[1-4]/0\.005 h of audio, 0\.00[1-4] h left, [\d.]+x real time \[\d\d:\d\d<\d\d:\d\d\]",
                     "\n".join(states)), states
    assert "100%" in states[-1] and "0.005/0.005 h of audio, 0.000 h left" in states[-1]


def test_block_reads_cut_the_same_windows_as_read_window(tmp_path):
    """Windows read in blocks (stereo, another rate, overlapping hops, hops with gaps) equal one-window reads; bad
    requests become per-file errors."""
    rng = np.random.default_rng(4)
    stereo = write_audio(tmp_path / "stereo.wav", rng.normal(0, 0.1, (int(1.1 * 400_000), 2)).astype(np.float32),
                         400_000, subtype="FLOAT")
    short = write_audio(tmp_path / "short.wav", np.zeros(1000, dtype=np.float32), RATE)
    bundle = Bundle(front_end=get_preset("origin"), window_s=WINDOW, classifier={}, classifier_state={})
    items = list(RecordingWindows([stereo], bundle, DetectSettings(hop_s=0.2, channel=1, batch_size=2)))
    starts = [s for item in items for s in item["start_s"].tolist()]
    assert starts == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert [item["last"] for item in items] == [False, False, True]
    waves = torch.cat([item["waves"] for item in items]).numpy()
    for start, wave in zip(starts, waves):
        expected = read_window(stereo, start, WINDOW, channel=1, target_rate=RATE, fmax_hz=160_000)
        np.testing.assert_array_equal(wave, expected[: len(wave)])
    # a hop leaving gaps between windows reads window by window: the same samples
    items = list(RecordingWindows([stereo], bundle, DetectSettings(hop_s=0.6, batch_size=4)))
    assert items[0]["start_s"].tolist() == pytest.approx([0.0, 0.6])
    for start, wave in zip(items[0]["start_s"].tolist(), items[0]["waves"].numpy()):
        expected = read_window(stereo, start, WINDOW, target_rate=RATE, fmax_hz=160_000)
        np.testing.assert_array_equal(wave, expected[: len(wave)])
    errors = list(RecordingWindows([stereo, short], bundle, DetectSettings(channel=2)))
    assert [e.get("error") for e in errors] == ["channel 2 requested but the file has 2 channel(s)",
                                               "channel 2 requested but the file has 1 channel(s)"]
    errors = list(RecordingWindows([short], bundle, DetectSettings()))
    assert [e.get("error") for e in errors] == ["shorter (0.00260417 s) than one window (0.25 s)"]


@pytest.mark.slow
def test_spawned_decoding_workers_read_this_process_share_and_resume_from_partial_tables(tmp_path, monkeypatch):
    """Workers started by spawn (macOS's default; forkserver on Linux from Python 3.14) carry no DDP state: they read
    the files of the process that started them, and ask the partial tables how far an earlier run got."""
    rng = np.random.default_rng(5)
    files = [write_audio(tmp_path / f"r{i}.wav", rng.normal(0, 0.1, RATE).astype(np.float32), RATE) for i in range(4)]
    bundle = Bundle(front_end=get_preset("origin"), window_s=WINDOW, classifier={}, classifier_state={})
    settings = DetectSettings(batch_size=2)
    journal = Journal(tmp_path / "out", "model", settings, WINDOW_HEADER)
    partials = PartialTables(tmp_path / "out" / ".partial", csv_bytes(WINDOW_HEADER, []))
    kept = partials.finished(output_name(files[3]), journal.fingerprint(files[3]), 4, 2)
    partials.open(output_name(files[3]), journal.fingerprint(files[3]), kept)
    partials.append(output_name(files[3]), b"".join(f"{files[3]},{i * WINDOW:.6f}{',' * 9}\n".encode()
                                                      for i in range(2)))  # a killed run finished its first batch
    monkeypatch.setattr(Shard, "of_this_process", classmethod(lambda cls: Shard(1, 2)))  # the second of 2 processes
    dataset = RecordingWindows(files, bundle, settings, KeptWindows(partials, journal, 2))
    loader = DataLoader(dataset, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    read = [(item["file"], item["first_window"]) for item in loader]
    assert sorted(read) == [(1, 0), (1, 2), (3, 2)]  # files 1 and 3 only; file 3 from its second batch


def test_event_scores_count_overlaps_per_type(tmp_path):
    """Recall over labelled events only; a selection on an unlabelled (faint) call of its type is not a false alarm."""
    bench = tmp_path / "bench"
    audio = write_audio(bench / "audio" / "R1.flac", np.zeros(RATE, dtype=np.float32), RATE)
    header = "recording,window,sound_type,start_s,end_s,low_hz,high_hz,snr_db,effective_snr_db,visible_pixels,labelled,params\n"
    events = ["R1,0,whistle,0.10,0.20,1,2,0,0,0,True,{}", "R1,0,whistle,0.60,0.70,1,2,0,0,0,True,{}",
              "R1,0,whistle,0.80,0.90,1,2,0,0,0,False,{}", "R1,0,beluga_click,0.30,0.40,1,2,0,0,0,True,{}"]
    (bench / "events.csv").write_text(header + "\n".join(events) + "\n")
    selections = [[1, "Spectrogram 1", 1, 0.0, 0.25, 1000, 2000, "whistle", 0.9],    # hits the first whistle
                  [2, "Spectrogram 1", 1, 0.75, 1.0, 1000, 2000, "whistle", 0.9],   # an unlabelled whistle
                  [3, "Spectrogram 1", 1, 0.5, 0.55, 1000, 2000, "beluga_click", 0.9]]  # nothing there
    (tmp_path / "out" / "raven").mkdir(parents=True)
    (tmp_path / "out" / "raven" / f"{output_name(audio.resolve())}.selections.txt").write_bytes(
        csv_bytes(RAVEN_HEADER, selections, "\t"))
    scores = event_scores(tmp_path / "out", bench, ["R1"])
    assert scores["whistle"] == {"events": 2, "detected": 1, "recall": 0.5, "selections": 2,
                                 "true_selections": 2, "precision": 1.0}
    assert (scores["beluga_click"]["recall"], scores["beluga_click"]["precision"]) == (0.0, 0.0)
    assert (scores["porpoise_click"]["recall"], scores["porpoise_click"]["precision"]) == (None, None)


def test_threshold_is_the_lowest_score_reaching_the_target_precision():
    scores = np.array([0.1, 0.4, 0.6, 0.8, 0.9])
    present = np.array([0, 1, 0, 1, 1])
    assert threshold_for_precision(scores, present, 0.9) == (0.8, 1.0, pytest.approx(2 / 3))
    assert threshold_for_precision(scores, present, 0.6) == (0.1, 0.6, 1.0)
    # Unreachable: the best precision there is, and the caller sees it is below the target.
    assert threshold_for_precision(scores, np.array([1, 0, 0, 0, 0]), 0.9) == (0.1, 0.2, 1.0)


def test_ece_and_temperature_scaling_recover_a_known_miscalibration():
    assert expected_calibration_error(np.full(10, 0.9), np.array([1, 0] * 5, dtype=float)) == pytest.approx(0.4)
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(4000, 8, generator=generator)
    joint = torch.multinomial(torch.softmax(logits / 2.0, dim=-1), 1, generator=generator)[:, 0]
    temperature = fit_temperature(logits, joint)  # the true probabilities are softmax(logits / 2)
    assert temperature == pytest.approx(2.0, rel=0.1)
    confidence = lambda t: torch.softmax(logits / t, dim=-1).max(dim=-1).values.numpy()  # noqa: E731
    correct = (logits.argmax(dim=-1) == joint).numpy().astype(float)
    assert expected_calibration_error(confidence(temperature), correct) < 0.03 < expected_calibration_error(
        confidence(1.0), correct)


def test_platt_scaling_recovers_known_per_type_scales_and_offsets():
    generator = torch.Generator().manual_seed(1)
    logits = 2 * torch.randn(6000, 3, generator=generator)
    truth = torch.tensor([[0.5, 1.0], [2.0, -1.0], [1.0, 0.0]])
    present = torch.bernoulli(torch.sigmoid(logits * truth[:, 0] + truth[:, 1]), generator=generator)
    np.testing.assert_allclose(fit_platt(logits, present), truth.numpy(), atol=0.15)


@pytest.mark.slow
def test_calibrate_writes_temperature_and_thresholds_into_the_bundle_and_logs_to_mlflow(models, tmp_path, capsys,
                                                                                     monkeypatch):
    root, _, _, bundle_path = models
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    calibrated = tmp_path / "calibrated.mgc"
    # the benchmark's 32 windows and a recorder dropout (digital silence), which detect would not score either
    write_audio(tmp_path / "dropout.wav", np.zeros(RATE // 4, dtype=np.float32), RATE)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text((root / "bench" / "manifest.csv").read_text().replace("audio/", f"{root / 'bench' / 'audio'}/")
                        + f"{tmp_path / 'dropout.wav'},0,0.25,0,0,0,dropout,D99,summer,tadoussac,\n")
    assert main(["calibrate", "--model", str(bundle_path), "--manifest", str(manifest), "--split-fractions", "0", "1",
                 "0", "--target-precision", "0.8", "--out", str(calibrated)]) == 0
    out = capsys.readouterr().out
    assert "32 validation windows (1 without usable signal left out): " in out and "ECE" in out
    bundle, _ = load_bundle(calibrated)
    record = bundle.calibration
    assert record["windows"] == 32 and record["windows_without_signal"] == 1 and record["target_precision"] == 0.8
    assert record["ece_after"] <= record["ece_before"]  # a fit that would make it worse is not applied
    assert (bundle.temperature == 1.0) == record["identity_kept"]
    assert ("raw scores kept" in out) == record["identity_kept"]
    assert f"ECE {record['ece_before']:.4f} -> {record['ece_after']:.4f}" in out
    assert bundle.thresholds == [record["validation"][t]["threshold"] for t in SOUND_TYPES]
    for name in SOUND_TYPES:
        chosen = record["validation"][name]
        assert (chosen["precision"] >= 0.8) == ("target 0.8 not reached" not in out.split(name)[1].splitlines()[0])
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("calibration").experiment_id])[0]
    assert run.data.metrics["ece_after"] == pytest.approx(record["ece_after"])
    assert run.data.metrics["temperature"] == pytest.approx(bundle.temperature)
    assert [a.path for a in client.list_artifacts(run.info.run_id, "figures")] == ["figures/reliability.png"]
    # The source bundle is untouched; its own calibration is still the identity.
    assert load_bundle(bundle_path)[0].temperature == 1.0
