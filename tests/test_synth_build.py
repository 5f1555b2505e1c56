"""The benchmark as a dataset: labels, events, determinism, resume, ideal masks on two presets, the CLI."""

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from mgc_lightning.audio.manifest import load_manifest
from mgc_lightning.cli import main
from mgc_lightning.core.labels import SOUND_TYPES
from mgc_lightning.frontend.cache import mask_store
from mgc_lightning.frontend.spectrogram import SpectrogramTransform, get_preset
from mgc_lightning.synth.build import build_benchmark, target_stem_path, write_ideal_masks
from mgc_lightning.synth.config import BENCHMARK_PRESETS, DETECTABLE_PIXELS, DETECTABLE_SNR_DB, BenchmarkConfig
from mgc_lightning.synth.events import read_events
from mgc_lightning.synth.scene import SNR_RANGES_DB, WINDOW_MARGIN_S, RecordingPlan, make_deployments, render_recording

TINY = BenchmarkConfig(name="tiny", n_windows=32, windows_per_recording=8, window_s=0.25, n_deployments=4)


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return out, build_benchmark(out, TINY, seed=7, workers=1, progress=False)


def test_recording_labels_match_the_events_placed_in_each_window():
    plan = RecordingPlan("r", make_deployments(1)[0], 12, 0.25, 384_000, (1, 2), (1.0,) * 8)
    rendered = render_recording(plan)
    assert rendered.mix.shape == rendered.target.shape == (12 * 96_000,)
    for index, bits in enumerate(rendered.windows):
        inside = [e for e in rendered.events if e["window"] == index]
        assert {e["sound_type"] for e in inside if e["labelled"]} == {t for t, b in zip(SOUND_TYPES, bits) if b}
        assert all(e["labelled"] == (e["visible_pixels"] >= DETECTABLE_PIXELS) for e in inside)
        for event in inside:
            assert index * 0.25 + WINDOW_MARGIN_S - 1e-6 <= event["start_s"] < event["end_s"]
            assert event["end_s"] <= (index + 1) * 0.25 - WINDOW_MARGIN_S + 1e-6
            low, high = SNR_RANGES_DB[event["sound_type"]]
            assert low <= event["snr_db"] <= high
            assert event["effective_snr_db"] <= event["snr_db"] + 1e-6  # vessels and pings only add noise
        stem = rendered.target[index * 96_000 : (index + 1) * 96_000]
        assert bool(np.any(stem)) == any(bits)  # the stem holds labelled calls only; faint ones are background
    again = render_recording(plan)
    assert np.array_equal(again.mix, rendered.mix) and again.events == rendered.events


def test_labels_mark_the_calls_that_stand_out_of_the_noise_on_the_origin_grid():
    """Checked independently of the per-call count: the window's whole target stem against its noise, on the grid."""
    plan = RecordingPlan("r", make_deployments(3)[2], 16, 0.25, 384_000, (4, 2), (1.0,) * 8)
    rendered = render_recording(plan)
    assert any(not e["labelled"] for e in rendered.events) and any(e["labelled"] for e in rendered.events)
    grid = SpectrogramTransform(get_preset("origin"))
    noise = rendered.mix - rendered.target
    for index, bits in enumerate(rendered.windows):
        cut = slice(index * 96_000, (index + 1) * 96_000)
        with torch.no_grad():
            target, background = (grid.band_power(torch.from_numpy(x[cut].astype(np.float64))[None])
                                  for x in (rendered.target, noise))
        visible = int((target > background * 10 ** (DETECTABLE_SNR_DB / 10)).sum())
        if any(bits):
            assert visible >= DETECTABLE_PIXELS
        else:  # only faint calls (or none): nothing for an annotator, so an empty ideal mask
            assert visible == 0


def test_benchmark_files_and_tables(tiny_benchmark):
    out, manifest = tiny_benchmark
    rows = load_manifest(manifest)  # validates every row against its audio
    assert len(rows) == 32 and len({r.recording for r in rows}) == 4
    assert {r.deployment for r in rows} == {"D01", "D02", "D03", "D04"}
    assert all(r.site and r.season for r in rows)
    info = sf.info(str(rows[0].path))
    assert (info.samplerate, info.format, info.frames) == (384_000, "FLAC", 8 * 96_000)
    assert target_stem_path(rows[0].path).is_file()
    events = read_events(out)
    assert {e["sound_type"] for e in events} <= set(SOUND_TYPES) and events
    assert all(float(e["low_hz"]) < float(e["high_hz"]) and isinstance(e["params"], dict) for e in events)
    assert (out / "recordings.csv").read_text().count("\n") == 5


def test_all_eight_classes_by_default_and_weights_are_configurable(tmp_path, tiny_benchmark):
    # the module's benchmark: default class weights, 32 windows (a build of its own cost 96 windows, 3x the CPU)
    rows = load_manifest(tiny_benchmark[1])
    assert len({r.joint_class for r in rows}) == 8
    only_porpoise = replace(TINY, n_windows=8, class_weights=(0, 0, 0, 0, 1, 0, 0, 0))
    rows = load_manifest(build_benchmark(tmp_path / "b", only_porpoise, seed=1, progress=False))
    labels = [r.labels for r in rows]  # weights choose the calls drawn; a too-faint call is not labelled
    assert set(labels) <= {(0, 0, 1), (0, 0, 0)} and labels.count((0, 0, 1)) > len(labels) / 2
    with pytest.raises(ValueError, match="sample_rate must be >= 320000"):
        replace(TINY, sample_rate=192_000)


@pytest.mark.slow
def test_same_dataset_whatever_the_worker_count_and_resume_rebuilds_only_the_missing(tmp_path, tiny_benchmark):
    reference_dir, reference_manifest = tiny_benchmark
    out = tmp_path / "parallel"
    manifest = build_benchmark(out, TINY, seed=7, workers=2, progress=False)
    assert manifest.read_text() == reference_manifest.read_text()
    for row in load_manifest(manifest)[::8]:
        mine, theirs = sf.read(str(row.path))[0], sf.read(str(reference_dir / "audio" / row.path.name))[0]
        assert np.array_equal(mine, theirs)
    assert (out / "events.csv").read_text() == (reference_dir / "events.csv").read_text()

    victim = sorted((out / "parts").glob("*.json"))[1]
    victim.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "audio").glob("*.flac")}
    build_benchmark(out, TINY, seed=7, workers=1, progress=False)
    changed = [p.stem for p, t in stamps.items() if p.stat().st_mtime_ns != t]
    assert changed == [victim.stem]
    assert manifest.read_text() == reference_manifest.read_text()
    with pytest.raises(ValueError, match="built with other settings"):
        build_benchmark(out, TINY, seed=8, progress=False)


@pytest.mark.parametrize("preset", ["origin", "mel"])
def test_ideal_masks_follow_the_target_on_each_presets_grid(tiny_benchmark, tmp_path, preset):
    out, manifest = tiny_benchmark
    rows = load_manifest(manifest)
    config = get_preset(preset)
    assert write_ideal_masks(rows, config, tmp_path, progress=False) == len(rows)
    assert write_ideal_masks(rows, config, tmp_path, progress=False) == 0
    store = mask_store(config, "ideal", tmp_path)
    events = read_events(out)
    frequencies = config.row_frequencies_hz()
    checked = 0
    for row in rows:
        mask = store.load(row.key)
        assert mask.shape == (config.height, config.width) and mask.dtype == bool
        if row.joint_class == 0:
            assert not mask.any()  # no target sound, no mask
            continue
        window = round(row.start_s / row.duration_s)
        strong = [e for e in events if e["recording"] == row.recording and int(e["window"]) == window
                  and e["sound_type"] == "porpoise_click" and float(e["effective_snr_db"]) > 20]
        for event in strong:
            band = (frequencies > float(event["low_hz"]) - 10e3) & (frequencies < float(event["high_hz"]) + 10e3)
            columns = slice(int((float(event["start_s"]) - row.start_s) / row.duration_s * config.width),
                            int(np.ceil((float(event["end_s"]) - row.start_s) / row.duration_s * config.width)) + 1)
            assert mask[band, columns].any(), (row.key, event)
            checked += 1
    assert checked > 0


@pytest.mark.slow
def test_synth_command_end_to_end(tmp_path, capsys):
    out, cache = tmp_path / "bench", tmp_path / "cache"
    assert main(["synth", str(out), "--preset", "demo", "--n", "16", "--seed", "3", "--mask-presets", "origin,pcen",
                 "--cache-root", str(cache), "--quiet"]) == 0
    assert "16 windows" in capsys.readouterr().out
    rows = load_manifest(out / "manifest.csv")
    assert rows[0].duration_s == BENCHMARK_PRESETS["demo"].window_s
    for preset in ("origin", "pcen"):
        assert len(mask_store(get_preset(preset), "ideal", cache)) == 16
    assert main(["masks", "ideal", str(out / "manifest.csv"), "--preset", "mel", "--cache-root", str(cache),
                 "--quiet"]) == 0
    assert len(mask_store(get_preset("mel"), "ideal", cache)) == 16
