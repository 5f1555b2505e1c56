"""The front end's parameters: `SpectrogramConfig`, frozen and validated, and the named presets.

Plain values without torch, so the `mgc` parser and `mgc presets` start at once; `spectrogram` computes the images.
The config hash keys caches and travels in checkpoints, so inference rebuilds exactly the training images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from enum import Enum

import numpy as np

WINDOWS = ("hann", "hamming", "blackman")  # torch's hann_window, hamming_window, blackman_window
FREQUENCY_SCALES = ("linear", "mel")
SCALINGS = ("db", "floor_db", "pcen")
TIME_POOLINGS = ("max", "mean")
# Revision of how `pcen` starts its smoother, part of PCEN configs' hash: caches of an earlier start are not reused.
_PCEN_START = "steady state of the first time constant's mean"


@dataclass(frozen=True)
class SpectrogramConfig:
    """Every parameter of the front end. Two configs with equal parameters (whatever their name) share a hash."""

    name: str = "custom"
    sample_rate: int = 384_000  # audio at another rate is resampled to this one
    n_fft: int = 1024
    hop_length: int = 256
    window: str = "hann"  # hann | hamming | blackman
    fmin: float = 1_000.0  # Hz, bottom row of the image
    fmax: float = 160_000.0  # Hz, top row of the image; audio must be sampled at >= 2 * fmax
    frequency_scale: str = "linear"  # linear | mel
    # db: log power relative to each image's maximum (all 0 for digital silence) | floor_db: log power above each
    # frequency's noise floor |
    # pcen: per-channel energy normalisation
    scaling: str = "db"
    top_db: float = 80.0  # db: range kept below each image's maximum; floor_db: range shown, mapped to [0, 1]
    floor_margin_db: float = 10.0  # floor_db: how far below the noise floor the image still shows (noise dips)
    floor_rows: int = 9  # floor_db: rows over which each row's floor is median-filtered, so a steady tonal survives
    pcen_time_constant: float = 0.06  # s, PCEN smoother
    pcen_gain: float = 0.98
    pcen_bias: float = 2.0
    pcen_power: float = 0.5
    pcen_eps: float = 1e-6
    time_pooling: str = "max"  # max keeps 100-us clicks visible after pooling thousands of frames; mean averages
    height: int = 128
    width: int = 128

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            caster = {"int": int, "float": float, "str": str}[field.type]
            if caster is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(f"SpectrogramConfig.{field.name} must be an integer, got {value}")
            object.__setattr__(self, field.name, caster(value))
        problems = []
        for name in ("sample_rate", "n_fft", "hop_length", "height", "width"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if self.window not in WINDOWS:
            problems.append(f"window must be one of {sorted(WINDOWS)}, got {self.window!r}")
        if self.frequency_scale not in FREQUENCY_SCALES:
            problems.append(f"frequency_scale must be one of {FREQUENCY_SCALES}, got {self.frequency_scale!r}")
        if self.scaling not in SCALINGS:
            problems.append(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")
        if self.time_pooling not in TIME_POOLINGS:
            problems.append(f"time_pooling must be one of {TIME_POOLINGS}, got {self.time_pooling!r}")
        if not 0 <= self.fmin < self.fmax:
            problems.append(f"need 0 <= fmin < fmax, got fmin={self.fmin} fmax={self.fmax}")
        if self.fmax > self.sample_rate / 2:
            problems.append(f"fmax={self.fmax:g} Hz is above the Nyquist frequency of sample_rate={self.sample_rate} Hz")
        if self.top_db <= 0:
            problems.append(f"top_db must be positive, got {self.top_db}")
        if not 0 <= self.floor_margin_db < self.top_db:
            problems.append(f"need 0 <= floor_margin_db < top_db, got {self.floor_margin_db} and {self.top_db}")
        if self.floor_rows <= 0 or self.floor_rows % 2 == 0:
            problems.append(f"floor_rows must be a positive odd number, got {self.floor_rows}")
        if self.pcen_time_constant <= 0 or self.pcen_eps <= 0:
            problems.append("pcen_time_constant and pcen_eps must be positive")
        if problems:
            raise ValueError(f"invalid SpectrogramConfig {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SpectrogramConfig":
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown SpectrogramConfig fields: {sorted(unknown)}")
        return cls(**values)

    def replace(self, **changes) -> "SpectrogramConfig":
        return dataclasses.replace(self, **changes)

    @property
    def hash(self) -> str:
        """Stable 12-hex-digit digest of the parameters (not the name): keys caches, checked on load."""
        params = {k: v for k, v in self.to_dict().items() if k != "name"}
        if self.scaling == "pcen":
            params["pcen_start"] = _PCEN_START
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def cache_key(self) -> str:
        return f"{self.name}-{self.hash}"

    def row_edges_hz(self) -> np.ndarray:
        """(height + 1,) frequency edges of the image rows, from the top row's upper edge down."""
        if self.frequency_scale == "mel":
            import librosa

            edges = librosa.mel_frequencies(n_mels=self.height + 1, fmin=self.fmin, fmax=self.fmax)
        else:
            edges = np.linspace(self.fmin, self.fmax, self.height + 1)
        return edges[::-1].copy()

    def row_frequencies_hz(self) -> np.ndarray:
        """(height,) centre frequency of each row, top row first."""
        edges = self.row_edges_hz()
        return (edges[:-1] + edges[1:]) / 2

    def rows_in_band(self, low_hz: float, high_hz: float) -> np.ndarray:
        """Boolean (height,) of the rows whose frequency interval overlaps [low_hz, high_hz]."""
        edges = self.row_edges_hz()
        return (edges[1:] < high_hz) & (edges[:-1] > low_hz)


class Preset(str, Enum):
    """Named front ends. `origin` is what models train on; the others are out-of-distribution transforms."""

    ORIGIN = "origin"
    MEL = "mel"
    PCEN = "pcen"


PRESETS: dict[str, SpectrogramConfig] = {
    # Linear-frequency STFT in dB above each frequency's noise floor (0.2 of the image range at the floor, 50 dB
    # shown): the training transform. 384 kHz covers porpoise NBHF clicks (125-145 kHz).
    Preset.ORIGIN.value: SpectrogramConfig(name="origin", scaling="floor_db", top_db=50.0, floor_margin_db=10.0),
    # OOD by frequency axis and resolution: mel scale, longer FFT, Hamming window, narrower dynamic range.
    Preset.MEL.value: SpectrogramConfig(
        name="mel", n_fft=2048, hop_length=512, window="hamming", fmin=500.0, fmax=150_000.0,
        frequency_scale="mel", top_db=60.0,
    ),
    # OOD by intensity scaling and band: PCEN instead of dB, short Blackman FFT, band starting higher.
    Preset.PCEN.value: SpectrogramConfig(
        name="pcen", n_fft=512, hop_length=128, window="blackman", fmin=2_000.0, fmax=170_000.0, scaling="pcen",
    ),
}


def get_preset(name: str) -> SpectrogramConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown front-end preset {name!r}; choose one of {sorted(PRESETS)}") from None
