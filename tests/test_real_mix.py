"""Real recordings mixed into the generator's windows (synth/real_mix.py, issue #25 item 2): the reserved files only,
the mix drawn from its own generator, real stretches band-limited to their own content, settings recorded."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_DATA
from mgc_lightning.synth.build import build_benchmark, plan_recordings
from mgc_lightning.synth.config import BENCHMARK_PRESETS, BenchmarkConfig, sized
from mgc_lightning.synth.real_mix import RealMix, audio_files, stretch, tilt
from mgc_lightning.synth.real_noise import TEST_ONLY, is_test_only, training_reserved_files
from mgc_lightning.synth.scene import band_power, render_recording

SR = 384_000


@pytest.fixture(scope="module")
def reserved() -> dict[str, list[str]]:
    if not REAL_DATA.is_dir():
        pytest.skip(f"public reference clips not found at {REAL_DATA} (they live beside the repository in CI only)")
    files = [str(f) for f in training_reserved_files(REAL_DATA) if f.suffix != ".mat"]
    return {"backgrounds": [f for f in files if "lifewatch" in f], "calls": [f for f in files if "/FO-" in f],
            "clicks": [f for f in files if "clickwave" in f]}


def test_the_test_only_files_and_their_copies_are_refused(reserved, tmp_path):
    for relative in TEST_ONLY:
        assert is_test_only(REAL_DATA / relative)
        with pytest.raises(ValueError, match="real-noise test"):
            RealMix(backgrounds=(str(REAL_DATA / relative),))
    test_call = REAL_DATA / "orcasound_orcadata/catalog_flac/FO-S01.flac"
    copy = tmp_path / test_call.name
    shutil.copy(test_call, copy)
    with pytest.raises(ValueError, match="real-noise test"):
        RealMix(negative_calls=(str(copy),))
    assert not any(is_test_only(f) for kind in reserved.values() for f in kind)
    RealMix(tuple(reserved["backgrounds"]), tuple(reserved["calls"]), tuple(reserved["clicks"]))  # accepted


def test_bad_settings_are_refused(reserved, tmp_path):
    background = tuple(reserved["backgrounds"][:1])
    with pytest.raises(ValueError, match="no such file"):
        RealMix(backgrounds=(str(tmp_path / "missing.wav"),))
    with pytest.raises(ValueError, match="names no file"):
        RealMix()
    with pytest.raises(ValueError, match="background_share"):
        RealMix(background, background_share=1.5)
    with pytest.raises(ValueError, match="background_db"):
        RealMix(background, background_db=(10.0, 0.0))
    with pytest.raises(ValueError, match="RealMix"):
        BenchmarkConfig(name="x", n_windows=4, windows_per_recording=4, window_s=0.25, real_mix={"backgrounds": []})
    with pytest.raises(ValueError, match="384000"):
        BenchmarkConfig(name="x", n_windows=4, windows_per_recording=4, window_s=0.25, sample_rate=400_000,
                        real_mix=RealMix(background))


def test_folders_expand_to_their_audio_files(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.wav", "a/y.FLAC", "a/z.mat", "b.wav"):
        (tmp_path / name).write_bytes(b"")
    assert audio_files([tmp_path / "a", tmp_path / "b.wav"]) == (str(tmp_path / "a/x.wav"), str(tmp_path / "a/y.FLAC"),
                                                                  str(tmp_path / "b.wav"))


def test_a_tilt_moves_each_octave_by_its_slope():
    noise = np.random.default_rng(0).standard_normal(SR)
    tilted = tilt(noise, SR, 3.0)
    gain_db = [10 * np.log10(band_power(tilted, SR, f * 0.9, f * 1.1) / band_power(noise, SR, f * 0.9, f * 1.1))
               for f in (1000.0, 8000.0, 64000.0)]
    assert gain_db == pytest.approx([0.0, 9.0, 18.0], abs=0.2)


def test_a_real_stretch_holds_nothing_above_its_own_content(reserved):
    sound, band = stretch(np.random.default_rng(1), reserved["backgrounds"][0], SR // 4, SR, (0.0, 0.0))
    assert sound.size == SR // 4 and band[1] < 4000  # 8 kHz recording: its content ends below 4 kHz
    assert band_power(sound, SR, 5000, SR / 2) < 1e-3 * band_power(sound, SR, *band)
    short, _ = stretch(np.random.default_rng(2), reserved["clicks"][0], SR // 4, SR, (0.0, 0.0))
    assert np.count_nonzero(short) < SR // 40  # a file shorter than the window lies in one place of it


def test_the_mix_draws_from_its_own_generator_and_keeps_the_rendered_calls(reserved):
    mix = RealMix(tuple(reserved["backgrounds"]), tuple(reserved["calls"]), tuple(reserved["clicks"]),
                  background_share=1.0, background_db=(15.0, 15.0), call_share=0.5, click_share=0.5)
    plan = plan_recordings(sized(BENCHMARK_PRESETS["demo"], 6, 6), 0)[0]
    plain, mixed = render_recording(plan), render_recording(replace(plan, real_mix=mix))
    assert [(e["start_s"], e["snr_db"], e["sound_type"]) for e in plain.events] == \
        [(e["start_s"], e["snr_db"], e["sound_type"]) for e in mixed.events]  # the calls are drawn as without the mix
    assert mixed.info["real_backgrounds"] == 6 and mixed.info["real_negative_calls"] + \
        mixed.info["real_negative_clicks"] > 0 and "real_backgrounds" not in plain.info
    low = [band_power(x, SR, 100, 3000) for x in (plain.mix, mixed.mix)]
    assert low[1] > 5 * low[0]  # the real background stands 15 dB over the rendered one in its band
    assert np.array_equal(render_recording(replace(plan, real_mix=mix)).mix, mixed.mix)  # deterministic


def test_the_benchmark_records_its_mix_and_refuses_another(reserved, tmp_path):
    mix = RealMix(tuple(reserved["backgrounds"]), negative_clicks=tuple(reserved["clicks"]))
    config = replace(sized(BENCHMARK_PRESETS["demo"], 2, 2), real_mix=mix)
    build_benchmark(tmp_path, config, progress=False)
    stored = json.loads((tmp_path / "benchmark.json").read_text())["config"]["real_mix"]
    assert stored["backgrounds"] == reserved["backgrounds"] and stored["background_share"] == 0.5
    recording = json.loads(next((tmp_path / "parts").glob("*.json")).read_text())["info"]
    assert "real_backgrounds" in recording
    with pytest.raises(ValueError, match="other settings"):
        build_benchmark(tmp_path, replace(config, real_mix=replace(mix, background_share=0.1)), progress=False)
    plain = json.loads(Path(tmp_path / "benchmark.json").read_text())
    assert "real_mix" in plain["config"]
    other = tmp_path / "plain"
    build_benchmark(other, sized(BENCHMARK_PRESETS["demo"], 2, 2), progress=False)
    assert "real_mix" not in json.loads((other / "benchmark.json").read_text())["config"]


def test_mgc_synth_refuses_a_test_file_and_records_the_reserved_ones(reserved, tmp_path, capsys):
    from mgc_lightning.cli import main

    test_file = str(REAL_DATA / "lifewatch_pypam/67416073.210610034655.flac")
    assert main(["synth", str(tmp_path / "leak"), "--n", "1", "--quiet", "--backgrounds", test_file]) == 2
    assert "real-noise test" in capsys.readouterr().err and not (tmp_path / "leak" / "manifest.csv").exists()
    folder = Path(reserved["backgrounds"][0]).parent  # a folder: its test-only file would be refused too
    assert main(["synth", str(tmp_path / "folder"), "--quiet", "--backgrounds", str(folder)]) == 2


def test_mgc_synth_sets_the_tilt_and_the_background_level_of_a_mix(reserved, tmp_path, capsys):
    from mgc_lightning.cli import main

    assert main(["synth", str(tmp_path / "none"), "--n", "1", "--quiet", "--background-db", "10", "10"]) == 2
    assert "name its files too" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "flat"), "--n", "1", "--quiet", "--mask-presets", "", "--backgrounds",
                 *reserved["backgrounds"], "--tilt-db-per-octave", "0", "0", "--background-db", "10", "10"]) == 0
    mix = json.loads((tmp_path / "flat" / "benchmark.json").read_text())["config"]["real_mix"]
    assert (mix["tilt_db_per_octave"], mix["background_db"]) == ([0.0, 0.0], [10.0, 10.0])
