"""The front end: raw audio -> spectrogram image, defined by a frozen, validated `SpectrogramConfig`.

Implemented with torch so one code path runs batched on CPU or GPU. Image convention: float32 in [0, 1], shape
(height, width), row 0 = highest frequency (as a spectrogram is displayed), column 0 = start of the window.
The config and the presets are defined torch-free in `frontend.config` (the `mgc` parser reads them without
loading torch) and are imported from here as well, the front end's one public face.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import PRESETS, SpectrogramConfig, get_preset  # noqa: F401 (the public face)

_POWER_FLOOR = 1e-20
_SILENCE_DB = 10 * math.log10(_POWER_FLOOR)
# PCEN is designed for the power of integer-valued audio; float audio in [-1, 1] is scaled by 2**31 (librosa docs).
_PCEN_INPUT_SCALE = 2.0**31


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
        window = getattr(torch, f"{config.window}_window")  # torch.hann_window, ...: the names of WINDOWS
        self.register_buffer("window", window(config.n_fft, periodic=True), persistent=False)
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
