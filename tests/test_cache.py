import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import kill_group, write_audio, write_rows
from mgc_lightning.audio.manifest import load_manifest
from mgc_lightning.audio.reading import read_window
from mgc_lightning.frontend.cache import compute_spectrograms, preset_dir, spectrogram_store
from mgc_lightning.frontend.spectrogram import SpectrogramTransform, get_preset


def test_cache_holds_the_transform_output_and_skips_finished_windows(tiny_dataset, tmp_path):
    rows = load_manifest(tiny_dataset)
    config = get_preset("origin")
    root = tmp_path / "cache"
    assert compute_spectrograms(rows, config, root, batch_size=5, progress=False) == len(rows)
    store = spectrogram_store(config, root)
    assert store.folder == root / f"origin-{config.hash}" / "spectrograms"
    assert len(store) == len(rows)
    expected = SpectrogramTransform(config)(torch.from_numpy(read_window(rows[7].path, rows[7].start_s, 0.5)))[0]
    np.testing.assert_allclose(store.load(rows[7].key), expected.numpy(), atol=1e-3)  # stored as float16
    stamps = {p: p.stat().st_mtime_ns for p in store.folder.iterdir()}
    assert compute_spectrograms(rows, config, root, progress=False) == 0
    assert {p: p.stat().st_mtime_ns for p in store.folder.iterdir()} == stamps


def test_another_config_gets_its_own_folder_and_a_tampered_one_is_refused(tiny_dataset, tmp_path):
    rows = load_manifest(tiny_dataset)[:2]
    origin, pcen = get_preset("origin"), get_preset("pcen")
    compute_spectrograms(rows, origin, tmp_path, progress=False)
    compute_spectrograms(rows, pcen, tmp_path, progress=False)
    assert not np.allclose(spectrogram_store(origin, tmp_path).load(rows[0].key),
                           spectrogram_store(pcen, tmp_path).load(rows[0].key))
    (tmp_path / origin.cache_key / "config.json").write_text(json.dumps(pcen.replace(name="origin").to_dict()))
    with pytest.raises(RuntimeError, match="holds another front-end config"):
        preset_dir(origin, tmp_path)


def test_bad_audio_in_cache_run_names_the_file(tmp_path):
    write_audio(tmp_path / "low.wav", np.zeros(48_000, np.float32), 48_000)
    manifest = write_rows(tmp_path / "m.csv", [["low.wav", 0, 0.5, 0, 0, 0, "r", "s"]])
    result = subprocess.run([sys.executable, "-m", "mgc_lightning.cli", "spectrograms", str(manifest),
                             "--cache-root", str(tmp_path / "c")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "low.wav: sample rate 48000 Hz is too low for a band up to 160000 Hz" in result.stderr


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing_or_reading_half_files(tmp_path, preloaded_mgc):
    rate = 384_000
    noise = np.random.default_rng(0).normal(0, 1e-3, 7 * rate).astype(np.float32)
    write_audio(tmp_path / "long.wav", noise, rate, subtype="FLOAT")
    # 300 overlapping windows of 1 s (~13 ms each): killed at 40, the other 260 leave the poll seconds to spare
    starts = np.round(np.arange(0, 6.0, 0.02), 3)
    manifest = write_rows(tmp_path / "m.csv", [["long.wav", s, 1.0, 0, 0, 0, "long", "s"] for s in starts])
    root = tmp_path / "cache"
    # a fork of the suite's preloaded Python in the process group its client leads: SIGKILL to the group kills it
    command = [str(preloaded_mgc), "spectrograms", str(manifest), "--cache-root", str(root), "--batch-size", "1",
               "--quiet"]
    store = spectrogram_store(get_preset("origin"), root)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, process_group=0)
    deadline = time.monotonic() + 300
    while len(store) < 40 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    kill_group(process)
    done_before = {p: p.stat().st_mtime_ns for p in store.folder.glob("*.npy")}
    assert 40 <= len(done_before) < len(starts), "the run must be killed half-way for this test to mean anything"
    for path in done_before:
        np.load(path)  # every file under a final name is complete

    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert result.stdout.startswith(f"{len(starts) - len(done_before)} computed, {len(done_before)} already cached")
    assert {p: p.stat().st_mtime_ns for p in done_before} == done_before
    rows = load_manifest(manifest)
    assert all(store.has(row.key) for row in rows)
    assert all(np.isfinite(store.load(row.key)).all() for row in rows[::50])


def test_cached_arrays_are_written_whole_without_an_fsync_each(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    store = spectrogram_store(get_preset("origin"), tmp_path)  # its config record is written durably
    before = len(synced)
    for key in ("a", "b", "c"):
        store.save(key, np.full((4, 4), ord(key), dtype=np.float16))
    assert len(synced) == before  # images can be recomputed: no fsync per file
    assert [int(store.load(key)[0, 0]) for key in ("a", "b", "c")] == [97, 98, 99]
    assert not list(store.folder.glob(".*.tmp"))  # each renamed into place whole
