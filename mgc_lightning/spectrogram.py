"""The front end: raw audio -> spectrogram image, defined by a frozen, validated `SpectrogramConfig`.

Implemented with torch so one code path runs batched on CPU or GPU. Image convention: float32 in [0, 1], shape
(height, width), row 0 = highest frequency (as a spectrogram is displayed), column 0 = start of the window.
The config hash keys caches and travels in checkpoints, so inference rebuilds exactly the training images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WINDOWS = {"hann": torch.hann_window, "hamming": torch.hamming_window, "blackman": torch.blackman_window}
FREQUENCY_SCALES = ("linear", "mel")
SCALINGS = ("db", "floor_db", "pcen")
TIME_POOLINGS = ("max", "mean")
_POWER_FLOOR = 1e-20
_SILENCE_DB = 10 * math.log10(_POWER_FLOOR)
# PCEN is designed for the power of integer-valued audio; float audio in [-1, 1] is scaled by 2**31 (librosa docs).
_PCEN_INPUT_SCALE = 2.0**31
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


def _frequency_matrix(config: SpectrogramConfig) -> np.ndarray:
    """(height, n_fft // 2 + 1) weights mapping STFT power bins to image rows, top row first.

    Each row averages the bins by how much of each bin's interval falls inside the row's interval (linear or
    mel-spaced edges). Rows narrower than a bin copy that bin, so no row is ever empty (unlike triangular mel
    filters at high resolution).
    """
    bin_hz = config.sample_rate / config.n_fft
    centres = np.arange(config.n_fft // 2 + 1) * bin_hz
    bin_lo, bin_hi = centres - bin_hz / 2, centres + bin_hz / 2
    edges = config.row_edges_hz()
    row_hi, row_lo = edges[:-1, None], edges[1:, None]
    overlap = np.clip(np.minimum(bin_hi[None], row_hi) - np.maximum(bin_lo[None], row_lo), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def pcen(
    energy: torch.Tensor, *, sample_rate: int, hop_length: int, time_constant: float, gain: float, bias: float,
    power: float, eps: float,
) -> torch.Tensor:
    """Per-channel energy normalisation (Wang et al. 2017) along the last axis, as librosa.pcen computes it.

    The first-order IIR smoother runs exactly, as an FFT convolution with its impulse response (GPU friendly). It
    starts in the steady state of the mean energy over its first time constant, as if that level had always been
    there: what a smoother running since before the window would hold. librosa's default start assumes a prior input
    of 1, which depends on the signal's scale and makes the first frames flare; a start from the first frame alone
    flares too, row by row, wherever that one noisy (and half zero-padded) frame happens to be weak.
    """
    frames = energy.shape[-1]
    t_frames = time_constant * sample_rate / float(hop_length)
    b = (math.sqrt(1 + 4 * t_frames**2) - 1) / (2 * t_frames**2)
    steps = torch.arange(frames, device=energy.device, dtype=energy.dtype)
    impulse = b * (1 - b) ** steps
    size = 2 * frames
    smooth = torch.fft.irfft(torch.fft.rfft(energy, n=size) * torch.fft.rfft(impulse, n=size), n=size)[..., :frames]
    start = energy[..., : max(1, min(frames, round(t_frames)))].mean(dim=-1, keepdim=True)
    smooth = smooth + (1 - b) ** (steps + 1) * start
    normalised = energy * torch.exp(-gain * torch.log(eps + smooth.clamp_min(0)))
    return (bias + normalised) ** power - bias**power


def noise_floor_db(decibels: torch.Tensor, rows: int) -> torch.Tensor:
    """(..., height, 1) noise floor of each row of a (..., height, width) dB image: the median over time (calls are
    sparse in time), median-filtered over `rows` neighbouring rows (a tonal lasting the whole window fills its own
    row's median, not its neighbours'). Removing it whitens coloured noise and the sensor's response, as the
    per-frequency median subtraction of PAMGuard, Koogu and Raven's noise reduction does."""
    per_row = decibels.median(dim=-1).values
    half = rows // 2
    padded = F.pad(per_row.unsqueeze(-2), (half, half), mode="replicate").squeeze(-2)
    return padded.unfold(-1, rows, 1).median(dim=-1).values.unsqueeze(-1)


class SpectrogramTransform(nn.Module):
    """Batched front end: (batch, samples) at config.sample_rate -> (batch, height, width) images in [0, 1]."""

    def __init__(self, config: SpectrogramConfig):
        super().__init__()
        self.config = config
        self.register_buffer("window", WINDOWS[config.window](config.n_fft, periodic=True), persistent=False)
        self.register_buffer("frequency_matrix", torch.from_numpy(_frequency_matrix(config)), persistent=False)

    def power(self, waveform: torch.Tensor) -> torch.Tensor:
        """|STFT|^2 of shape (batch, n_fft // 2 + 1, frames), centred frames with zero padding (librosa's default).
        Squares of the real and imaginary parts: complex abs() (a hypot per bin) took 60 % of the front end."""
        spectrum = torch.stft(
            waveform, n_fft=self.config.n_fft, hop_length=self.config.hop_length, window=self.window,
            center=True, pad_mode="constant", return_complex=True,
        )
        return spectrum.real.square() + spectrum.imag.square()

    def _rows(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.einsum("hf,bft->bht", self.frequency_matrix, self.power(waveform.float()))

    def _pool_time(self, rows: torch.Tensor) -> torch.Tensor:
        width = self.config.width
        if rows.shape[-1] < width:
            return F.interpolate(rows, size=width, mode="nearest")
        if self.config.time_pooling == "max":
            return F.adaptive_max_pool1d(rows, width)
        return F.adaptive_avg_pool1d(rows, width)

    def band_power(self, waveform: torch.Tensor) -> torch.Tensor:
        """Linear power on the image grid (no intensity scaling): what ideal masks compare, target vs noise."""
        return self._pool_time(self._rows(waveform))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        config = self.config
        rows = self._rows(waveform)
        if config.scaling == "pcen":
            rows = pcen(
                rows * _PCEN_INPUT_SCALE, sample_rate=config.sample_rate, hop_length=config.hop_length,
                time_constant=config.pcen_time_constant, gain=config.pcen_gain, bias=config.pcen_bias,
                power=config.pcen_power, eps=config.pcen_eps,
            )
            image = self._pool_time(rows)
            low = image.amin(dim=(-2, -1), keepdim=True)
            high = image.amax(dim=(-2, -1), keepdim=True)
            return ((image - low) / (high - low).clamp_min(1e-12)).clamp(0, 1)
        decibels = 10 * torch.log10(self._pool_time(rows).clamp_min(_POWER_FLOOR))
        if config.scaling == "floor_db":
            reference = noise_floor_db(decibels, config.floor_rows) - config.floor_margin_db
            return ((decibels - reference) / config.top_db).clamp(0, 1)
        peak = decibels.amax(dim=(-2, -1), keepdim=True)
        image = ((decibels - (peak - config.top_db)) / config.top_db).clamp(0, 1)
        # Digital silence has no peak to be relative to: a dark image, not one at full intensity.
        return image.masked_fill(peak <= _SILENCE_DB, 0.0)
