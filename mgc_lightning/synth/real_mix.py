"""Real recordings mixed into a rendered benchmark (issue #25 item 2: training that survives real noise).

A user points the generator at their own site's recordings (`BenchmarkConfig.real_mix`, `mgc synth --backgrounds
... --negative-calls ... --negative-clicks ...`); each window then may get, drawn from a generator of its own (the
recording's seed and REAL_MIX_STREAM, so the rendered sounds and calls are drawn as without the mix):

- a **real background**: a 0.25 s stretch of a noise recording at a random offset, resampled to the benchmark's rate
  (it carries nothing above its own Nyquist frequency: the rendered noise fills the band above), its spectrum tilted
  by a drawn slope, its power in its own band set a drawn number of dB over the rendered background's there. It
  joins the quiet background, so the calls' SNRs are drawn against it and their labels follow the benchmark's rule;
- a **hard-negative call** ("none of the three"): a stretch of a recording of another species' calls (killer whale
  pulsed calls, dolphin whistles), tilted the same way, at a drawn SNR in its band over the quiet background. Like a
  vessel, it is a loud sound that is not a call: labels stay those of the beluga and porpoise calls;
- a **hard-negative click train**: a click template of another odontocete (a Risso's dolphin's), in a regular train
  (`real_noise.click_train`) at a drawn SNR in its own band.

Files the real-noise test owns are refused (`real_noise.why_test_only`: by name, by the test-only manifest of the
folder they lie in, by their decoded samples): training on them would leak the test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.reading import probe, read_window
from ..core.errors import InputError
from .real_noise import click_template, click_train, real_band_top, why_test_only
from .scene import band_power

REAL_MIX_STREAM = 7919  # appended to a recording's seed: the mix's own generator
FADE_S = 0.003  # each stretch fades in and out over this long, so its edges click no louder than the noise
REFERENCE_HZ = 1000.0  # a tilt leaves this frequency's level unchanged
LOWEST_HZ = 100.0  # a stretch's band (for its level) starts here and ends at 0.85 of where its content ends


def _range(name: str, values: tuple[float, float], low: float = -np.inf, high: float = np.inf) -> tuple[float, float]:
    values = tuple(float(v) for v in values)
    if len(values) != 2 or not low <= values[0] <= values[1] <= high:
        raise ValueError(f"real_mix.{name} must be (low, high) with {low} <= low <= high <= {high}, got {values}")
    return values


def _refuse_test_only(name: str, files: tuple[str, ...]) -> None:
    """Training on a file the real-noise test owns would leak the test: the first such file, and why, in an error."""
    leaked = [(f, reason) for f in files if (reason := why_test_only(f))]
    if leaked:
        more = f" (and {len(leaked) - 1} more file(s))" if len(leaked) > 1 else ""
        raise InputError(f"{leaked[0][0]}: belongs to the real-noise test: {leaked[0][1]}{more}; training on it "
                         f"would leak the test (docs/real_noise.md, 'Which real files the test owns'): drop it from "
                         f"real_mix.{name}")


@dataclass(frozen=True)
class RealMix:
    """Which real recordings are mixed into a benchmark's windows, and how (module docstring)."""

    backgrounds: tuple[str, ...] = ()  # noise recordings (any rate)
    negative_calls: tuple[str, ...] = ()  # recordings of other species' calls: "none of the three"
    negative_clicks: tuple[str, ...] = ()  # click templates of other odontocetes (one click each)
    background_share: float = 0.5  # windows given a real background
    background_db: tuple[float, float] = (0.0, 20.0)  # its band power over the rendered background's
    call_share: float = 0.25  # windows given a hard-negative call
    call_snr_db: tuple[float, float] = (5.0, 30.0)
    click_share: float = 0.2  # windows given a hard-negative click train
    click_snr_db: tuple[float, float] = (12.0, 40.0)  # the benchmark's beluga-click range
    click_ici_s: tuple[float, float] = (0.02, 0.15)
    tilt_db_per_octave: tuple[float, float] = (-3.0, 3.0)  # the spectral slope drawn for each stretch

    def __post_init__(self) -> None:
        for name in ("backgrounds", "negative_calls", "negative_clicks"):
            files = tuple(str(f) for f in getattr(self, name))
            object.__setattr__(self, name, files)
            missing = [f for f in files if not Path(f).is_file()]
            if missing:
                raise ValueError(f"real_mix.{name}: no such file(s): {missing}")
            _refuse_test_only(name, files)
        if not (self.backgrounds or self.negative_calls or self.negative_clicks):
            raise ValueError("real_mix names no file: give backgrounds, negative_calls or negative_clicks")
        for name in ("background_share", "call_share", "click_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"real_mix.{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("background_db", "call_snr_db", "click_snr_db", "tilt_db_per_octave"):
            object.__setattr__(self, name, _range(name, getattr(self, name)))
        object.__setattr__(self, "click_ici_s", _range("click_ici_s", self.click_ici_s, 1e-3, 1.0))

    def settings(self) -> dict:
        """JSON-ready settings (benchmark.json)."""
        return {name: list(value) if isinstance(value, tuple) else value for name, value in self.__dict__.items()}


def audio_files(paths) -> tuple[str, ...]:
    """The .wav and .flac files named, or found (sorted) in the folders named."""
    found: list[str] = []
    for path in map(Path, paths):
        found += ([str(p) for p in sorted(path.rglob("*")) if p.suffix.lower() in (".wav", ".flac")]
                  if path.is_dir() else [str(path)])
    return tuple(found)


def tilt(samples: np.ndarray, sample_rate: int, db_per_octave: float) -> np.ndarray:
    """The spectrum tilted by `db_per_octave` about REFERENCE_HZ (flat below LOWEST_HZ)."""
    spectrum = np.fft.rfft(samples)
    frequencies = np.maximum(np.fft.rfftfreq(samples.size, 1 / sample_rate), LOWEST_HZ)
    gain = 10 ** (db_per_octave * np.log2(frequencies / REFERENCE_HZ) / 20)
    return np.fft.irfft(spectrum * gain, samples.size)


def stretch(rng: np.random.Generator, path: str, window: int, sample_rate: int,
            db_per_octave: tuple[float, float]) -> tuple[np.ndarray, tuple[float, float]]:
    """A window's worth of `path` from a random offset at `sample_rate` (a shorter file lies at a random place in the
    window), tilted and faded; with its band (LOWEST_HZ to 0.85 of where its content ends)."""
    info = probe(path)
    duration = window / sample_rate
    if info.duration_s > duration:
        start = float(rng.uniform(0, info.duration_s - duration))
        samples = read_window(path, start, duration, target_rate=sample_rate).astype(np.float64)[:window]
    else:
        samples = read_window(path, 0.0, info.duration_s, target_rate=sample_rate).astype(np.float64)[:window]
    at = int(rng.integers(0, window - samples.size + 1))
    samples = samples - samples.mean()
    top = real_band_top(samples, info.sample_rate) if samples.size >= 64 else info.sample_rate / 2
    samples = tilt(samples, sample_rate, float(rng.uniform(*db_per_octave)))
    fade = min(int(FADE_S * sample_rate), samples.size // 2)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade))
    samples[:fade] *= ramp
    samples[samples.size - fade :] *= ramp[::-1]
    out = np.zeros(window)
    out[at : at + samples.size] = samples
    return out, (LOWEST_HZ, 0.85 * min(top, sample_rate / 2))


def _scaled(sound: np.ndarray, band: tuple[float, float], reference: np.ndarray, sample_rate: int,
            db: float) -> np.ndarray:
    power = band_power(sound, sample_rate, *band)
    return sound * np.sqrt(band_power(reference, sample_rate, *band) * 10 ** (db / 10) / max(power, 1e-30))


def mix_real(mix: RealMix, seed: tuple[int, ...], baseline: np.ndarray, window: int,
             sample_rate: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(real backgrounds to add to the quiet background, hard negatives to add to the loud sounds, counts) for a
    recording whose rendered quiet background is `baseline`, window by window, from the mix's own generator."""
    rng = np.random.default_rng(np.random.SeedSequence((*seed, REAL_MIX_STREAM)))
    backgrounds, negatives = np.zeros(baseline.size), np.zeros(baseline.size)
    counts = {"real_backgrounds": 0, "real_negative_calls": 0, "real_negative_clicks": 0}
    for start in range(0, baseline.size - window + 1, window):
        span = slice(start, start + window)
        if mix.backgrounds and rng.random() < mix.background_share:
            path = mix.backgrounds[int(rng.integers(len(mix.backgrounds)))]
            sound, band = stretch(rng, path, window, sample_rate, mix.tilt_db_per_octave)
            backgrounds[span] = _scaled(sound, band, baseline[span], sample_rate, rng.uniform(*mix.background_db))
            counts["real_backgrounds"] += 1
        quiet = baseline[span] + backgrounds[span]
        if mix.negative_calls and rng.random() < mix.call_share:
            path = mix.negative_calls[int(rng.integers(len(mix.negative_calls)))]
            sound, band = stretch(rng, path, window, sample_rate, mix.tilt_db_per_octave)
            negatives[span] += _scaled(sound, band, quiet, sample_rate, rng.uniform(*mix.call_snr_db))
            counts["real_negative_calls"] += 1
        if mix.negative_clicks and rng.random() < mix.click_share:
            click = click_template(mix.negative_clicks[int(rng.integers(len(mix.negative_clicks)))], sample_rate)
            train, _ = click_train(rng, click, quiet, click[2], mix.click_snr_db, mix.click_ici_s,
                                   sample_rate=sample_rate)
            negatives[span] += train
            counts["real_negative_clicks"] += 1
    return backgrounds, negatives, counts
