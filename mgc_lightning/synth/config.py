"""The synthetic benchmark's sizes (`BenchmarkConfig` and its named presets) and the rule that labels a call.

Plain values without torch, so the `mgc` parser reads them without loading the renderer (`scene`, `build`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..core.labels import NUM_JOINT_CLASSES

if TYPE_CHECKING:
    from .real_mix import RealMix

# Detectability: a call is labelled where it stands >= 6 dB above the noise on at least 8 pixels of the origin grid
# (a short stroke, about 0.05 % of a 128 x 128 image): what a person scanning the image or listening would notice.
DETECTION_PRESET = "origin"
DETECTABLE_SNR_DB = 6.0
DETECTABLE_PIXELS = 8

# The generator's sound models. "v1": the sounds every published number was made with (RESULTS.md, BENCHMARKS.md),
# kept bit for bit. "v2" ("field"): the gaps the realism check found closed or narrowed (BENCHMARKS.md, "Realism"):
# vessel shaft, blade-rate, engine, generator and machinery lines that drift with speed and Doppler up to several kHz,
# the Lloyd's-mirror interference of a ship near the surface, breaking-wave bursts, distant shipping, flow noise and
# rain in the ambient, recorder artefacts (mains hum, 1/f self-noise, element resonance, anti-alias filter, DC offset,
# digital spikes and dropouts), beluga clicks peaking near 50 kHz, porpoise clicks with asymmetric envelopes and tails,
# and whistles that are never quite flat.
SOUND_MODELS = ("v1", "v2")


@dataclass(frozen=True)
class BenchmarkConfig:
    """Size and shape of a synthetic benchmark."""

    name: str
    n_windows: int
    windows_per_recording: int
    window_s: float
    sample_rate: int = 384_000
    n_deployments: int = 6
    # the joint class of the calls drawn in each window, balanced by default; labels keep only detectable calls
    class_weights: tuple[float, ...] = (1.0,) * NUM_JOINT_CLASSES
    # prefixes deployment and site names ("C": deployments C01.., sites C-tadoussac..); empty: D01.., tadoussac..
    name_prefix: str = ""
    # which sound model renders the recordings (SOUND_MODELS); "v1" for every benchmark built before "v2" existed
    sound_model: str = "v1"
    # real recordings mixed into the windows (synth/real_mix.py: backgrounds and hard negatives); None: none
    real_mix: "RealMix | None" = None

    def __post_init__(self) -> None:
        if self.n_windows <= 0 or self.windows_per_recording <= 0 or self.window_s <= 0:
            raise ValueError("n_windows, windows_per_recording and window_s must be positive")
        if self.sample_rate < 320_000:
            raise ValueError(f"sample_rate must be >= 320000 Hz to carry porpoise clicks, got {self.sample_rate}")
        if len(self.class_weights) != NUM_JOINT_CLASSES or min(self.class_weights) < 0 or sum(self.class_weights) <= 0:
            raise ValueError(f"class_weights must be {NUM_JOINT_CLASSES} non-negative numbers, not all zero")
        if self.sound_model not in SOUND_MODELS:
            raise ValueError(f"sound_model must be one of {', '.join(SOUND_MODELS)}, got {self.sound_model!r}")
        if self.real_mix is not None:
            from .real_mix import RealMix

            if not isinstance(self.real_mix, RealMix):
                raise ValueError(f"real_mix must be a synth.real_mix.RealMix or None, got {type(self.real_mix).__name__}")
            if self.sample_rate != 384_000:
                raise ValueError(f"real_mix needs the 384000 Hz sample rate, got {self.sample_rate}")


BENCHMARK_PRESETS = {
    # a few hundred short windows: builds in well under 2 minutes on 2 cores
    "demo": BenchmarkConfig(name="demo", n_windows=384, windows_per_recording=24, window_s=0.25, n_deployments=6),
    # the paper's scale: ~10,000 windows
    "paper": BenchmarkConfig(name="paper", n_windows=10_000, windows_per_recording=50, window_s=0.5,
                             n_deployments=12),
    # the demo's size with the field sound model ("v2"): the same deployments, more realistic noise and calls
    "demo-real": BenchmarkConfig(name="demo-real", n_windows=384, windows_per_recording=24, window_s=0.25,
                                 n_deployments=6, sound_model="v2"),
}


def sized(config: BenchmarkConfig, n_windows: int | None,
          windows_per_recording: int | None = None) -> BenchmarkConfig:
    """The preset with another number of windows and of windows per recording (None keeps the preset's)."""
    changes = {"n_windows": n_windows, "windows_per_recording": windows_per_recording}
    return replace(config, **{k: v for k, v in changes.items() if v is not None})

