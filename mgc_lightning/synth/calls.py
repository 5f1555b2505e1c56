"""Target sounds: beluga whistles, beluga echolocation click trains, harbour porpoise NBHF click trains.

Every generator takes a numpy Generator and returns float64 samples plus the parameters it drew, so the dataset's
events.csv can say exactly what was rendered. Parameter ranges come from the literature cited beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Gaussian envelope exp(-t^2 / 2 sigma^2): the power spectrum falls 3 dB at +-sqrt(ln 2) / (2 pi sigma) around the
# carrier, so a -3 dB bandwidth B needs sigma = sqrt(ln 2) / (pi B).
_SIGMA_PER_BANDWIDTH = np.sqrt(np.log(2)) / np.pi


@dataclass
class Event:
    """One rendered call (a whistle, or a whole click train); the scene decides where it goes."""

    sound_type: str
    samples: np.ndarray
    low_hz: float
    high_hz: float
    unit_duration_s: float  # duration over which the SNR is defined: a whistle's length, or one click's
    params: dict = field(default_factory=dict)


def gabor_pulse(sample_rate: int, centre_hz: float, bandwidth_hz: float, phase: float = 0.0) -> np.ndarray:
    """A Gaussian-windowed tone: the standard model of an odontocete click (Au 1993, The Sonar of Dolphins)."""
    sigma = _SIGMA_PER_BANDWIDTH / bandwidth_hz
    half = int(np.ceil(4 * sigma * sample_rate))
    t = np.arange(-half, half + 1) / sample_rate
    return np.exp(-(t**2) / (2 * sigma**2)) * np.cos(2 * np.pi * centre_hz * t + phase)


def porpoise_click(rng: np.random.Generator, sample_rate: int) -> tuple[np.ndarray, dict]:
    """Harbour porpoise NBHF click: peak 125-145 kHz, -3 dB bandwidth 6-26 kHz, duration 44-175 us
    (Villadsgaard et al. 2007, J Exp Biol 210:56; Kyhn et al. 2013, JASA 133:3211)."""
    peak = rng.uniform(125e3, 145e3)
    bandwidth = rng.uniform(6e3, 26e3)
    pulse = gabor_pulse(sample_rate, peak, bandwidth, rng.uniform(0, 2 * np.pi))
    # 4 sigma of the envelope (-35 dB points): 41-176 us for 26-6 kHz bandwidths.
    duration = 4 * _SIGMA_PER_BANDWIDTH / bandwidth
    return pulse, {"peak_hz": peak, "bandwidth_hz": bandwidth, "duration_us": duration * 1e6}


def porpoise_click_field(rng: np.random.Generator, sample_rate: int) -> tuple[np.ndarray, dict]:
    """The field model's NBHF click: the same carrier and bandwidth draws as `porpoise_click`, but an asymmetric
    envelope (the real templates rise up to twice as slowly as they fall: decay / rise 0.5-1.0) and a ringing or
    multipath tail, 2-3 delayed copies 14-24 dB down, 30-150 us after the peak (PyPorCC's standard click and
    PAMGuard's porp1 hold 86-120 us of their energy where the Gaussian model holds 47 us; BENCHMARKS.md, "Realism")."""
    peak = rng.uniform(125e3, 145e3)
    bandwidth = rng.uniform(6e3, 26e3)
    sigma = _SIGMA_PER_BANDWIDTH / bandwidth
    ratio = rng.uniform(0.5, 1.0)  # decay sigma over rise sigma
    rise, decay = 2 * sigma / (1 + ratio), 2 * sigma * ratio / (1 + ratio)
    tail_delays = np.sort(rng.uniform(30e-6, 150e-6, int(rng.integers(2, 4))))
    before, after = int(np.ceil(4 * rise * sample_rate)), int(np.ceil((4 * decay + tail_delays[-1]) * sample_rate))
    t = np.arange(-before, after + 1) / sample_rate
    phase = rng.uniform(0, 2 * np.pi)

    def component(delay: float) -> np.ndarray:
        u = t - delay
        return np.exp(-(u**2) / (2 * np.where(u < 0, rise, decay) ** 2)) * np.cos(2 * np.pi * peak * u + phase)
    pulse = component(0.0)
    for delay in tail_delays:
        pulse += 10 ** (-rng.uniform(14, 24) / 20) * rng.choice([-1.0, 1.0]) * component(delay)
    duration = 2 * (rise + decay)  # 4 sigma, as `porpoise_click`'s: the click's SNR is set on its main pulse
    return pulse, {"peak_hz": peak, "bandwidth_hz": bandwidth, "duration_us": duration * 1e6,
                   "decay_over_rise": ratio, "tail_us": tail_delays[-1] * 1e6}


def _centred_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Add two pulses aligned on their centres."""
    long, short = (a, b) if a.size >= b.size else (b, a)
    out = long.copy()
    start = (long.size - short.size) // 2
    out[start : start + short.size] += short
    return out


def beluga_click(rng: np.random.Generator, sample_rate: int) -> tuple[np.ndarray, dict]:
    """Beluga echolocation click: broadband, peak 40-120 kHz, 50-100 us, often bimodal spectra
    (Au et al. 1985, JASA 77:726; Au et al. 1987, JASA 82:807: peaks shift up in noisy water)."""
    peak = rng.uniform(40e3, min(120e3, 0.45 * sample_rate))
    duration = rng.uniform(50e-6, 100e-6)
    bandwidth = 4 * _SIGMA_PER_BANDWIDTH / duration * rng.uniform(1.2, 2.5)  # short pulse, wide band
    pulse = gabor_pulse(sample_rate, peak, bandwidth, rng.uniform(0, 2 * np.pi))
    params = {"peak_hz": peak, "bandwidth_hz": bandwidth, "duration_us": duration * 1e6,
              "low_hz": peak - bandwidth / 2, "high_hz": peak + bandwidth / 2}
    if rng.random() < 0.4:  # bimodal: a weaker lower-frequency component
        secondary = peak * rng.uniform(0.45, 0.7)
        extra = gabor_pulse(sample_rate, secondary, 0.7 * bandwidth, rng.uniform(0, 2 * np.pi))
        pulse = _centred_sum(pulse, rng.uniform(0.3, 0.7) * extra)
        params["low_hz"] = secondary - 0.35 * bandwidth
    return pulse, params


def beluga_click_field(rng: np.random.Generator, sample_rate: int) -> tuple[np.ndarray, dict]:
    """The field model's beluga click: peak 44-59 kHz, -3 dB bandwidth 8-20 kHz (Zahn et al. 2023's wild beluga
    event: mean spectrum peak 51.5 kHz, -3 dB width 17.8 kHz; `beluga_click`'s 40-120 kHz follow captive animals in
    noisy tanks, Au et al. 1985), sometimes bimodal with a weaker component an octave below."""
    peak = rng.uniform(44e3, 59e3)
    bandwidth = rng.uniform(8e3, 20e3)
    pulse = gabor_pulse(sample_rate, peak, bandwidth, rng.uniform(0, 2 * np.pi))
    params = {"peak_hz": peak, "bandwidth_hz": bandwidth, "duration_us": 4 * _SIGMA_PER_BANDWIDTH / bandwidth * 1e6,
              "low_hz": peak - bandwidth / 2, "high_hz": peak + bandwidth / 2}
    if rng.random() < 0.3:
        secondary = peak * rng.uniform(0.45, 0.7)
        extra = gabor_pulse(sample_rate, secondary, bandwidth, rng.uniform(0, 2 * np.pi))
        pulse = _centred_sum(pulse, rng.uniform(0.2, 0.5) * extra)
        params["low_hz"] = secondary - 0.5 * bandwidth
    return pulse, params


def click_train(rng: np.random.Generator, sample_rate: int, span: int, sound_type: str, model: str = "v1") -> Event:
    """A click train fitting in `span` samples: regular inter-click intervals drifting slowly, an amplitude that
    swells and fades as the animal's beam scans past the hydrophone, and for porpoises sometimes a feeding buzz.

    ICIs: porpoise 30-100 ms in regular trains, 1.5-5 ms in buzzes (Verfuss et al. 2009, J Exp Biol 212:823);
    beluga 20-60 ms (Au 1993; Roy et al. 2010, JASA 128:EL50).
    """
    porpoise = sound_type == "porpoise_click"
    buzz = porpoise and rng.random() < 0.25
    if buzz:
        ici = rng.uniform(1.5e-3, 5e-3)
    elif porpoise:
        ici = rng.uniform(30e-3, 100e-3)
    else:
        ici = rng.uniform(20e-3, 60e-3)
    span_s = span / sample_rate
    length_s = min(span_s, max(2.5 * ici, rng.uniform(0.3, 1.0) * span_s))
    drift = rng.uniform(-0.2, 0.2)  # the ICI changes by up to 20 % over the train
    beam, width = rng.uniform(0.2, 0.8), rng.uniform(0.3, 1.0)  # when the beam points at the hydrophone
    t = rng.uniform(0, min(ici, 0.3 * length_s))
    placed = []
    while t < length_s:
        if model == "v1":
            pulse, p = porpoise_click(rng, sample_rate) if porpoise else beluga_click(rng, sample_rate)
        else:
            pulse, p = porpoise_click_field(rng, sample_rate) if porpoise else beluga_click_field(rng, sample_rate)
        position = int(t * sample_rate)
        if position + pulse.size > span:
            break
        gain = np.exp(-((t / length_s - beam) ** 2) / (2 * width**2))
        placed.append((position, gain * pulse / np.sqrt(np.mean(pulse**2)), p))
        t += ici * (1 + drift * t / length_s) * rng.uniform(0.95, 1.05)
    samples = np.zeros(max(position + pulse.size for position, pulse, _ in placed))
    for position, pulse, _ in placed:
        samples[position : position + pulse.size] += pulse
    params = [p for _, _, p in placed]
    low = min(p.get("low_hz", p["peak_hz"] - p["bandwidth_hz"] / 2) for p in params)
    high = max(p.get("high_hz", p["peak_hz"] + p["bandwidth_hz"] / 2) for p in params)
    return Event(
        sound_type=sound_type, samples=samples, low_hz=max(low, 0.0), high_hz=min(high, sample_rate / 2),
        unit_duration_s=float(np.mean([p["duration_us"] for p in params])) * 1e-6,
        params={"clicks": len(params), "ici_ms": ici * 1e3, "buzz": buzz,
                "peak_hz_mean": float(np.mean([p["peak_hz"] for p in params])),
                "bandwidth_hz_mean": float(np.mean([p["bandwidth_hz"] for p in params]))},
    )


def beluga_whistle(rng: np.random.Generator, sample_rate: int, span: int, model: str = "v1") -> Event:
    """A frequency-modulated beluga whistle with harmonics, fitting in `span` samples.

    Fundamental contours of 1-20 kHz, 0.1-2 s (Sjare & Smith 1986, Can J Zool 64:407; Chmelnitsky & Ferguson
    2012, JASA 131:4821), shapes: flat, up-sweep, down-sweep, convex, concave, sinusoidal. Under the field model
    ("v2") no contour is flat: a "flat" whistle drifts by 3-10 % and wavers (none of PAMGuard's 67 real contours spans
    under 0.3 kHz), and the sinusoidal one oscillates 1-6 times a second by 0.3-1.5 kHz (real sweep rates stay under
    ~15 kHz/s).
    """
    duration = min(rng.uniform(0.1, 2.0), span / sample_rate)
    n = int(duration * sample_rate)
    t = np.arange(n) / sample_rate
    x = t / duration
    start = rng.uniform(2e3, 12e3)
    end = float(np.clip(start * rng.uniform(0.5, 2.0), 1e3, 20e3))
    shape = rng.choice(["flat", "up", "down", "convex", "concave", "sine"])
    if shape == "flat" and model != "v1":
        contour = start * (1 + rng.choice([-1, 1]) * rng.uniform(0.03, 0.1) * x
                           + 0.01 * np.sin(2 * np.pi * rng.uniform(1, 4) * t + rng.uniform(0, 6.3)))
    elif shape == "flat":
        contour = np.full(n, start)
    elif shape in ("up", "down"):
        low, high = sorted((start, end))
        contour = low + (high - low) * (x if shape == "up" else 1 - x)
    elif shape in ("convex", "concave"):
        bend = rng.uniform(1e3, 4e3) * (1 if shape == "convex" else -1)
        contour = start + (end - start) * x + bend * 4 * x * (1 - x)
    elif model != "v1":
        contour = start + rng.uniform(0.3e3, 1.5e3) * np.sin(2 * np.pi * rng.uniform(1, 6) * t + rng.uniform(0, 6.3))
    else:
        contour = start + rng.uniform(0.3e3, 2e3) * np.sin(2 * np.pi * rng.uniform(2, 12) * t + rng.uniform(0, 6.3))
    contour = np.clip(contour, 1e3, 20e3)
    phase = 2 * np.pi * np.cumsum(contour) / sample_rate
    harmonics = int(rng.integers(1, 5))
    rolloff = rng.uniform(1.0, 2.0)
    samples = np.zeros(n)
    for k in range(1, harmonics + 1):
        if contour.max() * k < 0.45 * sample_rate:
            samples += k**-rolloff * np.sin(k * phase)
    fade = max(int(0.01 * sample_rate), 1)
    envelope = np.ones(n)
    envelope[:fade] = np.linspace(0, 1, fade)
    envelope[-fade:] = np.linspace(1, 0, fade)
    samples *= envelope
    return Event(
        sound_type="whistle", samples=samples, low_hz=float(contour.min()) * 0.95,
        high_hz=float(contour.max()) * 1.05, unit_duration_s=duration,
        params={"shape": str(shape), "f_start_hz": float(contour[0]), "f_end_hz": float(contour[-1]),
                "harmonics": harmonics, "duration_s": duration},
    )
