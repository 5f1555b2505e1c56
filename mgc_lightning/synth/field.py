"""The field sound model's noise ("v2", `BenchmarkConfig.sound_model`): what the realism check found missing from
`noise` (BENCHMARKS.md, "Realism"), each source modelled from the literature cited beside it.

- vessels whose shaft, blade-rate, engine-firing, gear-mesh and generator lines follow the ship's speed changes and
  Doppler shift, up to several kHz (inside the whistle band), with blade-rate-modulated cavitation and the
  Lloyd's-mirror interference of a source near the surface;
- ambient sea noise in which breaking waves come in bursts (non-Gaussian), distant shipping filling 30-300 Hz with
  weak wandering lines, flow noise of the current over the hydrophone, and rain;
- the recorder: mains hum and its harmonics, 1/f self-noise, a hydrophone element resonance and an anti-alias filter,
  DC offset, digital spikes and dropouts.

Levels are relative, as in `noise`; every source is a function of a numpy Generator, so a plan renders the same.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.signal import butter, oaconvolve, resample_poly, sosfilt

from .noise import ambient_psd_db, shaped_noise, vessel_psd_db

SOUND_SPEED = 1500.0  # m/s
SLOW = 16  # tonal lines (all below 12 kHz) and slow envelopes are computed at 1/SLOW of the rate, then upsampled


def _slow_time(n: int, sample_rate: int) -> np.ndarray:
    """Times (s) of the samples at 1/SLOW of the rate, covering n samples at the full rate."""
    return np.arange(-(-n // SLOW)) * SLOW / sample_rate


def _upsample(slow: np.ndarray, n: int) -> np.ndarray:
    """Tonal content computed at 1/SLOW of the rate, to n samples at the full rate (polyphase, anti-imaging)."""
    return resample_poly(slow, SLOW, 1)[:n]


def _stretch(slow: np.ndarray, n: int) -> np.ndarray:
    """A slow envelope at 1/SLOW of the rate, linearly interpolated to n samples at the full rate."""
    return np.interp(np.arange(n) / SLOW, np.arange(slow.size), slow)


def _smooth_walk(rng: np.random.Generator, t: np.ndarray, duration: float, components: int = 3) -> np.ndarray:
    """A slow random curve of unit standard deviation: a few sinusoids of periods longer than a third of the clip."""
    out = np.zeros(t.size)
    for _ in range(components):
        out += np.sin(2 * np.pi * rng.uniform(0.1, 3.0) / duration * t + rng.uniform(0, 2 * np.pi))
    return out / max(np.std(out), 1e-12)


def _line(frequency: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A unit-amplitude tone following a frequency track (Hz per sample), from a random phase."""
    return np.sin(2 * np.pi * np.cumsum(frequency) / sample_rate + rng.uniform(0, 2 * np.pi))


def _line_amplitude(psd_db: float, sample_rate: int, above_db: float) -> float:
    """Amplitude of a tone `above_db` over the power that `shaped_noise` of level psd_db puts in a 10 Hz band
    (one-sided PSD 2 / rate x 10^(psd_db / 10) per Hz; a tone of amplitude A carries A^2 / 2)."""
    return float(np.sqrt(2 * 10 ** (above_db / 10) * 10 * 2 / sample_rate * 10 ** (psd_db / 10)))


def lloyd_mirror_delay(horizontal_m: np.ndarray, source_depth_m: float, receiver_depth_m: float) -> tuple:
    """Delay (s) of the surface-reflected path behind the direct one, and the image's amplitude relative to it
    (spherical spreading over the longer path): a source near the pressure-release surface interferes with its own
    image, nulling frequencies m / delay (m = 1, 2, ...) that fall as the range shrinks: the "bathtub" fringes of a
    passing ship (Lloyd's mirror; Urick 1983, Principles of Underwater Sound, 5.4; Jensen et al. 2011, 1.4)."""
    direct = np.sqrt(horizontal_m**2 + (receiver_depth_m - source_depth_m) ** 2)
    image = np.sqrt(horizontal_m**2 + (receiver_depth_m + source_depth_m) ** 2)
    return (image - direct) / SOUND_SPEED, direct / image


def lloyd_mirror(signal: np.ndarray, sample_rate: int, delay_s: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """The signal plus its sign-inverted surface image, delayed by `delay_s` (per sample; linear interpolation)."""
    index = np.arange(signal.size, dtype=float)
    return signal - gain * np.interp(index - delay_s * sample_rate, index, signal, left=0.0)


def _vessel_speed(rng: np.random.Generator, t: np.ndarray, duration: float) -> tuple[np.ndarray, dict]:
    """The relative speed of the propeller shaft over the recording: a trend (the ship speeding up or slowing down)
    and a slow wander (load, waves, the helm), together 0.2-2 % of the mean, compressed in time as the passage is."""
    trend = rng.uniform(-1, 1) * rng.uniform(0.002, 0.02)
    wander = rng.uniform(0.0005, 0.004)
    return 1 + trend * (t / duration - 0.5) + wander * _smooth_walk(rng, t, duration), {
        "speed_trend": trend, "speed_wander": wander}


def _vessel_lines(rng: np.random.Generator, t: np.ndarray, sample_rate: int, speed: np.ndarray, doppler: np.ndarray,
                  knee: float) -> tuple[np.ndarray, dict]:
    """Tonal lines of one ship (Ross 1976; Arveson & Vendittis 2000, JASA 107:118; McKenna et al. 2012): shaft rate
    and harmonics, blade rate and 15 harmonics (to <= 1 kHz), engine firing rate and 8 harmonics (to <= 2 kHz) and
    reduction-gear mesh lines, all proportional to the shaft speed; diesel generator lines at multiples of 60 Hz (a
    governor holds them within ~0.1 %) and pump and auxiliary lines, 300 Hz to 8 kHz; every line Doppler-shifted by
    the ship's radial speed. Each line stands 3-25 dB above the broadband noise in a 10 Hz band around it. t, speed
    and doppler come at 1/SLOW of the rate, and the lines go back at that rate."""
    shaft, blades = rng.uniform(1.5, 5), int(rng.integers(3, 7))
    engine = shaft * rng.choice([1.0, rng.uniform(2, 5)])  # direct drive or geared
    firing = engine * int(rng.choice([3, 4, 6, 8])) / 2  # four-stroke: half the cylinders fire per revolution
    tracks: list[tuple[float, bool, float]] = []  # (frequency at mean speed, follows speed, dB above broadband)
    tracks += [(k * shaft, True, rng.uniform(3, 10)) for k in range(1, 5)]
    blade_rate = shaft * blades
    tracks += [(k * blade_rate, True, rng.uniform(8, 25) - 8 * np.log10(k))
               for k in range(1, 1 + int(min(1000 // blade_rate, 15)))]
    tracks += [(k * firing, True, rng.uniform(3, 18)) for k in range(1, 1 + int(min(2000 // firing, 8)))]
    tracks += [(engine * rng.uniform(20, 90), True, rng.uniform(5, 20)) for _ in range(int(rng.integers(1, 4)))]
    generator = 60.0 * rng.uniform(0.997, 1.003)
    tracks += [(k * generator, False, rng.uniform(3, 15)) for k in rng.choice(np.arange(1, 60), 6, replace=False)]
    tracks += [(float(np.exp(rng.uniform(np.log(300), np.log(8000)))), False, rng.uniform(5, 20))
               for _ in range(int(rng.integers(2, 7)))]
    governor = 1 + 0.001 * _smooth_walk(rng, t, t[-1] + SLOW / sample_rate)
    out = np.zeros(t.size)
    for frequency, follows, above_db in tracks:
        if not 5 <= frequency < 0.45 * sample_rate / SLOW:
            continue
        track = frequency * (speed if follows else governor) * doppler
        out += _line_amplitude(float(vessel_psd_db(np.array(frequency), knee)), sample_rate, above_db) * _line(
            track, sample_rate / SLOW, rng)
    lines = [round(f, 1) for f, _, _ in tracks]
    return out, {"shaft_hz": shaft, "blade_rate_hz": blade_rate, "firing_hz": firing, "lines": len(lines),
                 "highest_line_hz": max(lines)}


def vessel_passage_field(rng: np.random.Generator, n: int, sample_rate: int,
                         level_db: float) -> tuple[np.ndarray, dict]:
    """One vessel passing the hydrophone, as `noise.vessel_passage` (broadband, spreading, absorption, the passage
    compressed in time), with the lines of `_vessel_lines`, cavitation bursts at each blade pass (the envelope
    (1 + cos(blade phase))^p / norm, p 1-6: sharper than `vessel_passage`'s sine) and the Lloyd's mirror of a
    propeller 2-8 m deep heard by a hydrophone 8-40 m deep (image reflection 0.6-0.95 of the direct path)."""
    duration = n / sample_rate
    t = np.arange(n) / sample_rate
    cpa_time = rng.uniform(-0.3, 1.3) * duration
    cpa_range = rng.uniform(50, 800)
    closing_speed = rng.uniform(0.5, 3.0) * cpa_range / duration
    along = closing_speed * (t - cpa_time)
    distance = np.sqrt(cpa_range**2 + along**2)
    spreading = cpa_range / distance
    absorption = 10 ** (-10 * (distance - cpa_range) / 1000 / 20)
    # Doppler from the ship's true speed (3-10 m/s), not the compressed closing speed: +-0.2-0.7 % through the CPA
    slow_t = _slow_time(n, sample_rate)
    slow_along = closing_speed * (slow_t - cpa_time)
    doppler = 1 + rng.uniform(3, 10) * (-slow_along / np.sqrt(cpa_range**2 + slow_along**2)) / SOUND_SPEED
    speed, speed_params = _vessel_speed(rng, slow_t, duration)
    knee = rng.uniform(100, 600)
    broadband = shaped_noise(rng, n, sample_rate, lambda f: vessel_psd_db(f, knee))
    tonals, line_params = _vessel_lines(rng, slow_t, sample_rate, speed, doppler, knee)
    tonals = _upsample(tonals, n)
    blade_phase = 2 * np.pi * np.cumsum(line_params["blade_rate_hz"] * speed * doppler) * SLOW / sample_rate
    sharpness = rng.uniform(1, 6)
    envelope = (1 + np.cos(blade_phase)) ** sharpness
    cavitation_band = (rng.uniform(2e3, 5e3), min(rng.uniform(30e3, 80e3), 0.45 * sample_rate))
    cavitation = sosfilt(butter(4, cavitation_band, btype="bandpass", fs=sample_rate, output="sos"),
                         rng.standard_normal(n)) * _stretch(np.sqrt(envelope / envelope.mean()), n)
    cavitation *= np.sqrt(np.mean(broadband**2)) * 10 ** (rng.uniform(-25, -5) / 20) / np.sqrt(np.mean(cavitation**2))
    source_depth, receiver_depth = rng.uniform(2, 8), rng.uniform(8, 40)
    delay, image = lloyd_mirror_delay(distance, source_depth, receiver_depth)  # distance: horizontal range
    reflection = rng.uniform(0.6, 0.95)
    total = lloyd_mirror((broadband + tonals) * spreading + cavitation * spreading * absorption, sample_rate, delay,
                         reflection * image)
    total *= 10 ** (level_db / 20) / np.sqrt(np.mean(total**2))
    params = {"cpa_s": cpa_time, "cpa_range_m": cpa_range, "closing_speed_ms": closing_speed,
              "cavitation_low_hz": cavitation_band[0], "cavitation_high_hz": cavitation_band[1],
              "cavitation_sharpness": sharpness, "source_depth_m": source_depth, "receiver_depth_m": receiver_depth,
              "surface_reflection": reflection, "first_null_hz_at_cpa": 1 / float(delay.max()), "level_db": level_db,
              **speed_params, **line_params}
    return total, params


def _burst_envelope(rng: np.random.Generator, n: int, sample_rate: int, rate_hz: float, decay_s: float) -> np.ndarray:
    """Shot noise of unit mean: Poisson events with log-normal sizes, each decaying exponentially (computed at 1 kHz
    and interpolated)."""
    step = max(sample_rate // 1000, 1)
    m = n // step + 2
    impulses = np.zeros(m)
    count = rng.poisson(rate_hz * n / sample_rate)
    np.add.at(impulses, rng.integers(0, m, count), rng.lognormal(0, 1.0, count))
    kernel = np.exp(-np.arange(int(6 * decay_s * 1000) + 1) / (decay_s * 1000))
    coarse = oaconvolve(impulses, kernel)[:m] + 1e-3 * kernel.sum() * max(rate_hz, 1e-3) / 1000
    coarse /= coarse.mean()
    return np.interp(np.arange(n) / step, np.arange(m), coarse)


def sea_noise_field(rng: np.random.Generator, n: int, sample_rate: int, sea_state: float,
                    steady_db=None) -> tuple[np.ndarray, dict]:
    """Wenz wind noise (`noise.ambient_psd_db`, the same spectrum) of which a share rising with frequency comes in
    bursts: breaking waves entrain bubbles whose sound starts loud and dies in tens to hundreds of ms (Deane 1997,
    JASA 102:2671; Kerman 1984). The real North Sea ambient's spectral kurtosis rises from 0.1 at 250 Hz to 1.2 at
    2 kHz; Gaussian noise reads 0. `steady_db(f)`, if given, is a PSD added to the steady part (one FFT for both)."""
    share = rng.uniform(0.6, 0.95)
    corner = rng.uniform(1000, 3000)

    def bursty(f):
        return share * f / (f + corner)
    rate, decay = rng.uniform(2, 10), rng.uniform(0.03, 0.1)
    def steady_psd(f):
        wind = ambient_psd_db(f, sea_state) + 10 * np.log10(1 - bursty(f))
        return wind if steady_db is None else 10 * np.log10(10 ** (wind / 10) + 10 ** (steady_db(f) / 10))
    steady = shaped_noise(rng, n, sample_rate, steady_psd)
    waves = shaped_noise(rng, n, sample_rate, lambda f: ambient_psd_db(f, sea_state) + 10 * np.log10(bursty(f)))
    return steady + waves * np.sqrt(_burst_envelope(rng, n, sample_rate, rate, decay)), {
        "wave_burst_share": round(share, 2), "wave_bursts_per_s": round(rate, 1)}


def distant_shipping(rng: np.random.Generator, n: int, sample_rate: int, plateau_db: float) -> tuple[np.ndarray, dict]:
    """Traffic noise of ships too far to pass: a plateau at 40-100 Hz falling 20-25 dB/decade above 100 Hz and
    10 dB/decade below 40 Hz (Wenz 1962's shipping curves; Hildebrand 2009, MEPS 395:5; the North Sea ambient's
    125 Hz octave lies 7.8 dB above its 1 kHz octave), fading slowly in and out (multipath), with 0-4 weak lines
    of distant ships (10-16 dB over the noise in 2 Hz bins, 15-800 Hz) wandering by up to 1 %."""
    slope = rng.uniform(20, 25)

    def psd(f):
        return plateau_db - slope * np.log10(np.maximum(f, 100) / 100) - 10 * np.log10(np.maximum(40 / f, 1))
    t = _slow_time(n, sample_rate)
    noise = shaped_noise(rng, n, sample_rate, psd) * _stretch(np.exp(0.15 * _smooth_walk(rng, t, n / sample_rate)), n)
    lines = [float(np.exp(rng.uniform(np.log(15), np.log(800)))) for _ in range(int(rng.integers(0, 5)))]
    tonal = np.zeros(t.size)
    for frequency in lines:
        track = frequency * (1 + rng.uniform(0.001, 0.01) * _smooth_walk(rng, t, n / sample_rate))
        tonal += _line_amplitude(float(psd(np.array(frequency))), sample_rate, rng.uniform(10, 16) - 7) * _line(
            track, sample_rate / SLOW, rng)  # -7 dB: from a 10 Hz band to the 2 Hz bins the realism check reads
    return (noise + _upsample(tonal, n) if lines else noise), {"distant_lines": len(lines)}


def flow_noise(rng: np.random.Generator, n: int, sample_rate: int, level_db: float) -> np.ndarray:
    """Flow noise: turbulent current over the hydrophone makes pressure fluctuations below ~100 Hz that come in
    gusts, and strum and knocks of the mooring (Strasberg 1979, JASA 66:1487; Bassett et al. 2014, JASA 136:1336):
    a corner at 10-50 Hz, -40 dB/decade above, a log-normal gust envelope (0.1-1 s), and now and then a knock
    ringing at 20-120 Hz. Strongly non-Gaussian."""
    corner = rng.uniform(10, 50)
    t = _slow_time(n, sample_rate)
    gusts = _stretch(np.exp(rng.uniform(0.3, 0.7) * _smooth_walk(rng, t, n / sample_rate, components=8)), n)
    out = shaped_noise(rng, n, sample_rate, lambda f: level_db - 40 * np.log10(np.maximum(f, corner) / corner)) * gusts
    knocks = np.zeros(n)
    count = rng.poisson(rng.uniform(0.2, 2) * n / sample_rate)
    np.add.at(knocks, rng.integers(0, n, count), rng.lognormal(0, 0.7, count) * rng.choice([-1, 1], count))
    ring = rng.uniform(20, 120)
    kernel_t = np.arange(int(0.05 * sample_rate)) / sample_rate
    kernel = np.exp(-kernel_t / rng.uniform(0.005, 0.02)) * np.sin(2 * np.pi * ring * kernel_t)
    knocks = oaconvolve(knocks, kernel)[:n]
    if count:
        knocks *= np.sqrt(np.mean(out**2)) * rng.uniform(0.05, 0.3) / max(np.sqrt(np.mean(knocks**2)), 1e-30)
    return out + knocks


def rain(rng: np.random.Generator, n: int, sample_rate: int, drops_per_s: float) -> np.ndarray:
    """Rain on the surface: each small drop (0.8-1.1 mm) traps a bubble ringing at 13-25 kHz for a few ms, each
    larger drop adds a broadband impact (Nystuen 1986, JASA 79:972; Medwin et al. 1992, JASA 92:1613): the 15 kHz
    hump of light rain. Unit-free; the caller sets the level."""
    out = np.zeros(n)
    kernel_t = np.arange(int(0.006 * sample_rate)) / sample_rate
    for low, high in ((13e3, 16e3), (16e3, 19e3), (19e3, 25e3)):
        count = rng.poisson(drops_per_s / 3 * n / sample_rate)
        impulses = np.zeros(n)
        np.add.at(impulses, rng.integers(0, n, count), rng.lognormal(0, 0.8, count) * rng.choice([-1, 1], count))
        ring = np.exp(-kernel_t / rng.uniform(1e-3, 2.5e-3)) * np.sin(2 * np.pi * rng.uniform(low, high) * kernel_t)
        out += oaconvolve(impulses, ring)[:n]
    impacts = np.zeros(n)
    count = rng.poisson(drops_per_s / 10 * n / sample_rate)
    np.add.at(impacts, rng.integers(0, n, count), rng.lognormal(0, 1.0, count))
    out += 0.3 * sosfilt(butter(2, (1e3, min(50e3, 0.45 * sample_rate)), btype="bandpass", fs=sample_rate,
                               output="sos"), impacts)
    return out


def mains_hum(rng: np.random.Generator, n: int, sample_rate: int, above_db: float, floor_psd_db: float) -> np.ndarray:
    """Electrical interference of the mains (60 Hz in Canada) picked up by the recorder: the fundamental and its
    harmonics to ~1.5 kHz, the odd ones stronger (a rectifier's signature), the grid's frequency wandering by
    ~0.01 Hz; the fundamental `above_db` over a noise of PSD floor_psd_db in a 10 Hz band."""
    t = _slow_time(n, sample_rate)
    mains = 60.0 + 0.01 * _smooth_walk(rng, t, n / sample_rate)
    out = np.zeros(t.size)
    for k in range(1, 26):
        level = above_db - (6 if k % 2 == 0 else 0) - 12 * np.log10(k) + rng.uniform(-4, 4)
        out += _line_amplitude(floor_psd_db, sample_rate, level) * _line(k * mains, sample_rate / SLOW, rng)
    return _upsample(out, n)


def self_noise_psd(rng: np.random.Generator, level_db: float):
    """The preamplifier's self-noise PSD: white at `level_db` (`scene.SENSORS`) plus flicker (1/f) noise below a
    corner of 200-2000 Hz (Motchenbacher & Connelly 1993, Low-Noise Electronic System Design)."""
    corner = rng.uniform(200, 2000)
    return lambda f: level_db + 10 * np.log10(1 + corner / f)


# The recorders' responses under the field model, beyond `noise.sensor_filter`'s high-pass and roll-off: the
# hydrophone element's resonance and the recorder's anti-alias low-pass (a 6th-order filter below Nyquist), and the
# digital artefacts: DC offset (full-scale units) and how often spikes and dropouts come.
FIELD_SENSORS = {
    "broadband": {"resonance_hz": 150e3, "resonance_db": 4.0, "resonance_q": 3.0, "anti_alias_hz": 175e3,
                  "dc_offset": 0.001, "spikes_per_s": 0.1, "dropout_probability": 0.05, "hum_probability": 0.2},
    "legacy": {"resonance_hz": 90e3, "resonance_db": 6.0, "resonance_q": 2.5, "anti_alias_hz": 150e3,
               "dc_offset": 0.01, "spikes_per_s": 0.5, "dropout_probability": 0.2, "hum_probability": 0.6},
}


def _peaking(sample_rate: int, centre_hz: float, gain_db: float, q: float) -> tuple[np.ndarray, np.ndarray]:
    """A peaking-equaliser biquad (Bristow-Johnson's audio EQ cookbook)."""
    a, w = 10 ** (gain_db / 40), 2 * np.pi * centre_hz / sample_rate
    alpha = np.sin(w) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w), 1 - alpha / a])
    return b / den[0], den / den[0]


@lru_cache(maxsize=16)
def _sensor_sos(sample_rate: int, sensor: str, highpass_hz: float, rolloff_hz: float) -> np.ndarray:
    """One cascade of second-order sections: `noise.sensor_filter`'s high-pass and roll-off, then the element
    resonance and the anti-alias low-pass of a FIELD_SENSORS recorder."""
    spec = FIELD_SENSORS[sensor]
    sections = [butter(2, highpass_hz, btype="highpass", fs=sample_rate, output="sos")]
    if rolloff_hz < 0.45 * sample_rate:
        sections.append(butter(1, rolloff_hz, btype="lowpass", fs=sample_rate, output="sos"))
    if spec["resonance_hz"] < 0.45 * sample_rate:
        b, a = _peaking(sample_rate, spec["resonance_hz"], spec["resonance_db"], spec["resonance_q"])
        sections.append(np.concatenate([b, a])[None])
    if spec["anti_alias_hz"] < 0.49 * sample_rate:
        sections.append(butter(6, spec["anti_alias_hz"], fs=sample_rate, output="sos"))
    return np.concatenate(sections)


def sensor_filter_field(signal: np.ndarray, sample_rate: int, sensor: str, highpass_hz: float,
                        rolloff_hz: float) -> np.ndarray:
    """A FIELD_SENSORS recorder's response: `noise.sensor_filter`'s, then its element resonance and anti-alias
    filter, in one cascade (along the last axis)."""
    return sosfilt(_sensor_sos(sample_rate, sensor, float(highpass_hz), float(rolloff_hz)), signal, axis=-1)


def digital_artefacts(rng: np.random.Generator, n: int, sample_rate: int, sensor: str) -> tuple[np.ndarray, np.ndarray,
                                                                                                  dict]:
    """What the recorder's electronics add to the written samples: a DC offset, single-sample spikes (bit errors,
    0.05-0.5 of full scale) and dropouts (0.5-10 ms of zeros: a buffer overrun), as (added samples, a 0/1 mask that
    multiplies everything, the draws). Dropouts stay far shorter than any labelled call (>= 0.1 s whistles, click
    trains >= 2.5 intervals), so no label loses its call."""
    spec = FIELD_SENSORS[sensor]
    added = np.full(n, spec["dc_offset"] * rng.uniform(-1, 1))
    count = rng.poisson(spec["spikes_per_s"] * n / sample_rate)
    added[rng.integers(0, n, count)] += rng.uniform(0.05, 0.5, count) * rng.choice([-1, 1], count)
    keep = np.ones(n)
    dropouts = int(rng.integers(1, 4)) if rng.random() < spec["dropout_probability"] else 0
    for _ in range(dropouts):
        start, length = int(rng.integers(0, n)), int(rng.uniform(0.5e-3, 10e-3) * sample_rate)
        keep[start : start + length] = 0.0
    return added, keep, {"dc_offset": round(float(added[0]), 5), "spikes": int(count), "dropouts": dropouts}
