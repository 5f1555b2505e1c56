"""The realism measures (`mgc_lightning.synth.realism`) read known signals right, and real clips as the literature
describes them: the yardsticks `benchmarks/realism.py` holds the generator against."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from mgc_lightning.synth.calls import gabor_pulse, porpoise_click
from mgc_lightning.synth.noise import shaped_noise
from mgc_lightning.synth.realism import (
    band_levels, band_mean, click_metrics, robust_psd, spectral_kurtosis, spectral_slope, spectrum_metrics,
    tonal_lines,
)

SR = 48_000


def test_a_gabor_pulse_has_the_bandwidth_and_duration_it_was_built_with():
    bandwidth = 12e3
    m = click_metrics(gabor_pulse(500_000, 130e3, bandwidth), 500_000, nfft=1 << 15)
    sigma = np.sqrt(np.log(2)) / (np.pi * bandwidth)  # the envelope's, for a -3 dB power bandwidth
    assert m["peak_hz"] == pytest.approx(130e3, abs=100)
    assert m["centroid_hz"] == pytest.approx(130e3, rel=0.01)
    assert m["bw3_hz"] == pytest.approx(bandwidth, rel=0.02)
    assert m["bw10_hz"] == pytest.approx(bandwidth * np.sqrt(10 / 3.0103), rel=0.02)  # Gaussian: width ~ sqrt(dB)
    assert m["duration_10db_us"] == pytest.approx(2 * sigma * np.sqrt(np.log(10)) * 1e6, rel=0.03)
    assert m["decay_over_rise"] == pytest.approx(1.0, abs=0.05)


def test_a_click_with_a_ringing_tail_decays_slower_than_it_rises():
    t = np.arange(400) / 500_000
    envelope = np.where(t < 20e-6, t / 20e-6, np.exp(-(t - 20e-6) / 60e-6))
    m = click_metrics(envelope * np.sin(2 * np.pi * 130e3 * t), 500_000)
    assert m["decay_over_rise"] > 3
    assert m["duration_e95_us"] > m["duration_10db_us"]


@pytest.mark.parametrize("path", ["pyporcc/standard_click.wav", "pamguard/example_porpoise_click_500kHz.wav"])
def test_the_real_porpoise_templates_are_nbhf_clicks(real_data, path):
    x, sr = sf.read(real_data / path)
    m = click_metrics(x, sr)
    assert 120e3 < m["peak_hz"] < 150e3
    assert 120e3 < m["centroid_hz"] < 150e3
    assert 5e3 < m["bw3_hz"] < 30e3
    assert 30 < m["duration_10db_us"] < 150


def test_a_generated_porpoise_click_lands_in_the_nbhf_band_too():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = click_metrics(porpoise_click(rng, 384_000)[0], 384_000)
        assert 120e3 < m["peak_hz"] < 150e3
        assert 4e3 < m["bw3_hz"] < 30e3


def zahn(real_data, species: str) -> tuple[np.ndarray, np.ndarray]:
    with open(real_data / "zahn_beluga_narwhal" / f"{species}_ex_spec.csv") as handle:
        rows = np.array([[float(v) for v in row] for row in list(csv.reader(handle))[1:]])
    return rows[:, 0], 10 ** (rows[:, 1] / 10)


def test_zahns_beluga_clicks_peak_near_50_khz_and_sit_higher_than_narwhal_clicks(real_data):
    beluga = spectrum_metrics(*zahn(real_data, "beluga"), band=(10e3, 72e3))
    narwhal = spectrum_metrics(*zahn(real_data, "narwhal"), band=(10e3, 72e3))
    assert 40e3 < beluga["peak_hz"] < 60e3
    assert beluga["bw3_hz"] < narwhal["bw3_hz"]
    assert beluga["centroid_hz"] > narwhal["centroid_hz"] + 5e3


def test_band_levels_and_slopes_of_white_and_pink_noise():
    rng = np.random.default_rng(1)
    white = rng.standard_normal(10 * SR)
    freqs, psd = robust_psd(white, SR)
    levels = band_levels(freqs, psd, [250, 500, 1000, 2000, 4000, 32000])
    assert np.diff(levels[:5]) == pytest.approx([3.0] * 4, abs=0.5)  # octave bands double in width
    assert np.isnan(levels[5])  # past Nyquist
    assert spectral_slope(freqs, psd, 200, 10e3) == pytest.approx(0, abs=1)
    pink = shaped_noise(rng, 10 * SR, SR, lambda f: -10 * np.log10(f))
    assert spectral_slope(*robust_psd(pink, SR), 200, 10e3) == pytest.approx(-10, abs=1)


def test_spectral_kurtosis_tells_gaussian_noise_from_impulses_and_tones():
    rng = np.random.default_rng(2)
    centres = [500, 1000, 2000, 4000, 8000]
    noise = rng.standard_normal(10 * SR)
    assert np.abs(band_mean(*spectral_kurtosis(noise, SR), centres)).max() < 0.1
    clicks = 0.01 * rng.standard_normal(10 * SR)
    clicks[:: SR // 10] += 1.0  # ten impulses a second: one frame in twenty holds one
    assert band_mean(*spectral_kurtosis(clicks, SR), centres).min() > 5
    t = np.arange(10 * SR) / SR
    tone = np.sin(2 * np.pi * 1000 * t) + 1e-3 * rng.standard_normal(t.size)
    assert band_mean(*spectral_kurtosis(tone, SR), [1000], bands_per_octave=12)[0] == pytest.approx(-1, abs=0.05)


def test_tonal_lines_see_tones_and_their_drift_and_not_noise():
    rng = np.random.default_rng(3)
    t = np.arange(10 * SR) / SR
    noise = rng.standard_normal(t.size)
    steady = tonal_lines(np.sin(2 * np.pi * 440 * t) + 0.3 * noise, SR, (10, 3000))
    assert steady["frames_with_line"] == 1.0 and steady["persistent_lines"] == 1
    assert steady["line_hz"][0] == pytest.approx(440, abs=2)
    assert steady["drift_hz"] < 0.1
    white = tonal_lines(noise, SR, (10, 3000))
    assert white["frames_with_line"] < 0.05 and white["persistent_lines"] == 0
    wobble = 440 * t + 4 * np.sin(2 * np.pi * 0.2 * t) / (2 * np.pi * 0.2)  # +-4 Hz at 0.2 Hz
    wandering = tonal_lines(np.sin(2 * np.pi * wobble) + 0.3 * noise, SR, (10, 3000))
    assert 1.5 < wandering["drift_hz"] < 4


def test_the_real_north_sea_ambient_falls_with_frequency_and_holds_lines(real_data):
    x, sr = sf.read(real_data / "lifewatch_pypam" / "67416073.210610033655.flac", frames=120 * 8000)
    freqs, psd = robust_psd(x, sr)
    assert -25 < spectral_slope(freqs, psd, 200, 2000) < -10
    assert tonal_lines(x, sr, (10, 3000))["frames_with_line"] > 0.2
