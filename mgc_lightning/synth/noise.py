"""Everything that is not a target sound: ocean ambient, vessels, snapping shrimp, echosounders, the sensor.

Levels are relative (the benchmark sets call levels against the rendered noise), but spectral shapes and time
structure follow the literature cited beside each model.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt


def shaped_noise(rng: np.random.Generator, n: int, sample_rate: int, psd_db) -> np.ndarray:
    """Gaussian noise whose power spectral density follows psd_db(f) (dB re an arbitrary unit), by FFT shaping."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequencies = np.fft.rfftfreq(n, 1 / sample_rate)
    spectrum *= 10 ** (psd_db(np.maximum(frequencies, 1.0)) / 20)
    return np.fft.irfft(spectrum, n)


def ambient_psd_db(frequencies: np.ndarray, sea_state: float) -> np.ndarray:
    """Wind-driven sea noise (Wenz 1962, JASA 34:1936; Knudsen curves): flat-ish below ~500 Hz, falling about
    17 dB/decade above, +5 dB per sea-state step; thermal noise rising 20 dB/decade dominates above ~100 kHz
    (Mellen 1952, JASA 24:478)."""
    wind = 50 + 5 * sea_state - 17 * np.log10(np.maximum(frequencies, 500) / 500)
    thermal = -15 + 20 * np.log10(frequencies / 1e3)
    return 10 * np.log10(10 ** (wind / 10) + 10 ** (thermal / 10))


def ambient_noise(rng: np.random.Generator, n: int, sample_rate: int, sea_state: float) -> np.ndarray:
    return shaped_noise(rng, n, sample_rate, lambda f: ambient_psd_db(f, sea_state))


def vessel_psd_db(frequencies: np.ndarray, knee_hz: float) -> np.ndarray:
    """Ship-radiated broadband noise: strongest below ~1 kHz, then about -20 dB/decade (6 dB/octave; Ross 1976,
    Mechanics of Underwater Noise; McKenna et al. 2012, JASA 131:92)."""
    return -20 * np.log10(np.maximum(frequencies, knee_hz) / knee_hz)


def vessel_passage(rng: np.random.Generator, n: int, sample_rate: int, level_db: float) -> tuple[np.ndarray, dict]:
    """One vessel passing the hydrophone: broadband machinery noise, propeller blade-rate tonals and harmonics,
    cavitation noise reaching tens of kHz modulated at the blade rate, all following the approach / closest point
    / recede envelope of spherical spreading with range; high frequencies fade faster with range (absorption,
    Francois & Garrison 1982, JASA 72:1879: ~10 dB/km at 30 kHz)."""
    duration = n / sample_rate
    t = np.arange(n) / sample_rate
    cpa_time = rng.uniform(-0.3, 1.3) * duration
    cpa_range = rng.uniform(50, 800)  # m
    # A real passage takes minutes; recordings here last seconds, so the passage is compressed in time: the
    # apparent closing speed makes the range change by a factor of 1.5-4 across the recording.
    closing_speed = rng.uniform(0.5, 3.0) * cpa_range / duration
    distance = np.sqrt(cpa_range**2 + (closing_speed * (t - cpa_time)) ** 2)
    spreading = cpa_range / distance
    absorption = 10 ** (-10 * (distance - cpa_range) / 1000 / 20)
    knee = rng.uniform(100, 600)
    broadband = shaped_noise(rng, n, sample_rate, lambda f: vessel_psd_db(f, knee)) * spreading
    shaft_hz, blades = rng.uniform(1.5, 5), int(rng.integers(3, 7))
    blade_rate = shaft_hz * blades
    tonals = np.zeros(n)
    for k in range(1, int(min(30, 3000 // blade_rate)) + 1):  # harmonics up to ~3 kHz
        tonals += k**-1.0 * np.sin(2 * np.pi * k * blade_rate * t + rng.uniform(0, 2 * np.pi))
    tonals *= spreading * np.sqrt(np.mean(broadband**2)) * rng.uniform(0.5, 2.0) / max(np.sqrt(np.mean(tonals**2)), 1e-12)
    cavitation_band = (rng.uniform(2e3, 5e3), min(rng.uniform(30e3, 80e3), 0.45 * sample_rate))
    sos = butter(4, cavitation_band, btype="bandpass", fs=sample_rate, output="sos")
    cavitation = sosfilt(sos, rng.standard_normal(n))
    cavitation *= (1 + 0.8 * np.sin(2 * np.pi * blade_rate * t)) * spreading * absorption
    cavitation *= np.sqrt(np.mean(broadband**2)) * 10 ** (rng.uniform(-25, -5) / 20) / np.sqrt(np.mean(cavitation**2))
    total = broadband + tonals + cavitation
    total *= 10 ** (level_db / 20) / np.sqrt(np.mean(total**2))
    params = {"cpa_s": cpa_time, "cpa_range_m": cpa_range, "closing_speed_ms": closing_speed, "blade_rate_hz": blade_rate,
              "cavitation_low_hz": cavitation_band[0], "cavitation_high_hz": cavitation_band[1], "level_db": level_db}
    return total, params


def snapping_shrimp(rng: np.random.Generator, n: int, sample_rate: int, rate_hz: float, level_db: float) -> np.ndarray:
    """Snapping shrimp (Alpheidae): a Poisson stream of very short broadband snaps, 2-200 kHz, with heavy-tailed
    amplitudes (Au & Banks 1998, JASA 103:41; Legg et al. 2007)."""
    out = np.zeros(n)
    count = rng.poisson(rate_hz * n / sample_rate)
    if count == 0:
        return out
    positions = rng.integers(0, n, count)
    amplitudes = rng.lognormal(0, 1.0, count) * 10 ** (level_db / 20)
    np.add.at(out, positions, amplitudes * rng.choice([-1, 1], count))
    decay = np.exp(-np.arange(int(50e-6 * sample_rate) + 1) / (10e-6 * sample_rate))
    out = np.convolve(out, decay)[:n]
    sos = butter(2, (2e3, min(200e3, 0.45 * sample_rate)), btype="bandpass", fs=sample_rate, output="sos")
    return sosfilt(sos, out)


ECHOSOUNDER_HZ = (38e3, 50e3, 70e3, 120e3, 130e3, 200e3)


def echosounder(rng: np.random.Generator, n: int, sample_rate: int, level_db: float) -> tuple[np.ndarray, dict]:
    """A ship's or fishing echosounder: narrowband pings (38-200 kHz, 0.1-1 ms) repeated every 50-500 ms; pings
    at 120-130 kHz look like porpoise clicks in a spectrogram (a classic false-alarm source for NBHF detectors)."""
    usable = [f for f in ECHOSOUNDER_HZ if f < 0.45 * sample_rate]
    frequency = float(rng.choice(usable))
    ping_s, interval_s = rng.uniform(0.1e-3, 1e-3), rng.uniform(0.05, 0.5)
    t = np.arange(int(ping_s * sample_rate)) / sample_rate
    ping = np.sin(2 * np.pi * frequency * t) * np.hanning(t.size) * 10 ** (level_db / 20)
    out = np.zeros(n)
    position = int(rng.uniform(0, interval_s) * sample_rate)
    while position + ping.size <= n:
        out[position : position + ping.size] += ping * rng.uniform(0.7, 1.0)
        position += int(interval_s * sample_rate)
    return out, {"frequency_hz": frequency, "ping_ms": ping_s * 1e3, "interval_ms": interval_s * 1e3}


def sensor_filter(signal: np.ndarray, sample_rate: int, highpass_hz: float, rolloff_hz: float) -> np.ndarray:
    """The recorder's frequency response: a preamplifier high-pass and the hydrophone's high-frequency roll-off."""
    high = butter(2, highpass_hz, btype="highpass", fs=sample_rate, output="sos")
    out = sosfilt(high, signal)
    if rolloff_hz < 0.45 * sample_rate:
        out = sosfilt(butter(1, rolloff_hz, btype="lowpass", fs=sample_rate, output="sos"), out)
    return out
