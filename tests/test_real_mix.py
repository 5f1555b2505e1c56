"""Real recordings mixed into the generator's windows (synth/real_mix.py, issue #25 item 2): the reserved files only,
the mix drawn from its own generator, real stretches band-limited to their own content, settings recorded."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REAL_DATA
from mgc_lightning.audio.reading import sample_digests
from mgc_lightning.core.errors import InputError
from mgc_lightning.synth import real_noise
from mgc_lightning.synth.build import build_benchmark, plan_recordings
from mgc_lightning.synth.config import BENCHMARK_PRESETS, BenchmarkConfig, sized
from mgc_lightning.synth.real_mix import RealMix, audio_files, stretch, tilt
from mgc_lightning.synth.real_noise import (
    TEST_ONLY, TEST_ONLY_DIGESTS, digests_of_test_only_files, training_reserved_files, why_test_only,
)
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
        assert why_test_only(REAL_DATA / relative) is not None
        with pytest.raises(ValueError, match="real-noise test"):
            RealMix(backgrounds=(str(REAL_DATA / relative),))
    test_call = REAL_DATA / "orcasound_orcadata/catalog_flac/FO-S01.flac"
    copy = tmp_path / test_call.name
    shutil.copy(test_call, copy)
    with pytest.raises(ValueError, match="real-noise test"):
        RealMix(negative_calls=(str(copy),))
    assert not any(why_test_only(f) for kind in reserved.values() for f in kind)
    RealMix(tuple(reserved["backgrounds"]), tuple(reserved["calls"]), tuple(reserved["clicks"]))  # accepted


def converted(source: Path, copy: Path) -> Path:
    """`source`'s samples in another file and format (WAV <-> FLAC by the suffix), as a user's converter would."""
    samples, rate = sf.read(str(source), dtype="int16")
    copy.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(copy), samples, rate, subtype="PCM_16")
    return copy


@pytest.mark.parametrize("relative, copy", [
    ("pamguard/clickwave_1.wav", "site-noise.wav"),  # renamed
    ("orcasound_orcadata/j_pod.wav", "j_pod.flac"),  # converted losslessly
    ("orcasound_orcadata/catalog_flac/FO-S05.flac", "FordOsborneLabeled/S_5.wav"),  # the catalogue's other spelling
])
def test_a_renamed_or_converted_copy_of_a_test_file_is_refused_by_its_samples(reserved, tmp_path, relative, copy):
    copy = converted(REAL_DATA / relative, tmp_path / copy)
    assert why_test_only(copy) == f"its samples are those of the test-only {relative}"
    with pytest.raises(InputError, match="belongs to the real-noise test: its samples") as refused:
        RealMix(backgrounds=(str(copy),))
    assert str(copy) in str(refused.value)


def test_the_stored_digests_are_those_of_the_test_only_clips(reserved):
    """The refusal reads TEST_ONLY_DIGESTS (a user's clone has no clips): recomputed here from the clips."""
    stored = json.loads(TEST_ONLY_DIGESTS.read_text())["files"]
    assert stored == digests_of_test_only_files(REAL_DATA)


def test_a_file_with_a_test_files_samples_is_refused_under_any_name_or_format(tmp_path, monkeypatch):
    """The mechanism without the clips: a tiny file stands for a test-only one; its renamed WAV and FLAC copies and
    one channel of a stereo copy are refused, a file with one sample changed is not."""
    samples = (np.random.default_rng(0).normal(0, 0.1, 500) * 32767).astype(np.int16)
    original = tmp_path / "held" / "test.wav"
    original.parent.mkdir()
    sf.write(str(original), samples, 48_000)
    stored = {500: {digest: "x/test.wav" for digest in sample_digests(original)}}
    monkeypatch.setattr(real_noise, "stored_digests", lambda: stored)
    sf.write(str(tmp_path / "mine.flac"), samples, 96_000)  # another name, format and header rate
    sf.write(str(tmp_path / "stereo.wav"), np.stack([samples, samples[::-1]], axis=1), 48_000)
    sf.write(str(tmp_path / "float.wav"), samples / 32768, 48_000, subtype="FLOAT")
    for copy in ("mine.flac", "stereo.wav", "float.wav"):
        assert why_test_only(tmp_path / copy) == "its samples are those of the test-only x/test.wav", copy
    changed = samples.copy()
    changed[250] += 1
    sf.write(str(tmp_path / "other.wav"), changed, 48_000)
    assert why_test_only(tmp_path / "other.wav") is None
    RealMix(backgrounds=(str(tmp_path / "other.wav"),))  # accepted


def test_the_sets_own_recordings_are_refused_by_name_and_by_their_folders_manifest(tmp_path):
    """A real-noise set's recordings hold generator noise (no stored digest names them): refused by their `rn-`
    names, and by the manifest.csv beside their audio/ folder that marks rows test-only, whatever they are called."""
    noise = np.random.default_rng(1).normal(0, 0.1, 400).astype(np.float32)
    named = tmp_path / "rn-ambient-orcasound-00.wav"
    sf.write(str(named), noise, 48_000)
    with pytest.raises(InputError, match="rn-\\*"):
        RealMix(backgrounds=(str(named),))
    built = tmp_path / "demo-real-noise"
    renamed = built / "audio" / "ambient.flac"
    renamed.parent.mkdir(parents=True)
    sf.write(str(renamed), noise, 48_000)
    (built / "manifest.csv").write_text("path,start_s,duration_s,use\naudio/ambient.flac,0,0.25,\n")
    RealMix(backgrounds=(str(renamed),))  # no test-only row: accepted
    (built / "manifest.csv").write_text("path,start_s,duration_s,use\naudio/ambient.flac,0,0.25,test-only\n")
    with pytest.raises(InputError, match=f"it lies under {built}, whose manifest.csv marks rows test-only"):
        RealMix(backgrounds=(str(renamed),))


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
