"""Training-time changes of the front end's look, so a model trained on one front end holds up on others.

Front ends differ by their frequency axis (linear or mel, band edges), their time resolution (FFT length and hop)
and their intensity scale (dB above the noise floor, dB below the peak, PCEN's power-like compression). Each training
item may be re-rendered on a random frequency axis and stretched in time (image and mask together, where a
spectrogram on that grid would put them) and shown through a random power-like intensity curve or a random automatic
gain control (each row divided by its own running level, then compressed, as PCEN front ends do). The ranges keep
clear of the front ends models are tested on (`FrontEndAugment.settings_near`), so those stay unseen. Offsets,
ranges and coloured noise are left to input normalisation (the segmenter's removes them exactly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..frontend.spectrogram import SpectrogramConfig, pcen


def interval_weights(low: np.ndarray, high: np.ndarray, size: int) -> np.ndarray:
    """(intervals, size) weights that average the cells [j, j + 1) of an axis over each interval [low, high), given
    in cell units and clamped to the axis; an interval that collapsed to a point copies the cell holding it."""
    low, high = np.clip(low, 0, size)[:, None], np.clip(high, 0, size)[:, None]
    cells = np.arange(size)[None]
    overlap = np.clip(np.minimum(high, cells + 1) - np.maximum(low, cells), 0, None)
    point = overlap.sum(axis=1) < 1e-9
    overlap[point, np.minimum(low[point, 0].astype(int), size - 1)] = 1.0
    return overlap / overlap.sum(axis=1, keepdims=True)


def rows_resampling(source_edges_hz: np.ndarray, target_edges_hz: np.ndarray) -> torch.Tensor:
    """(target rows, source rows) weights that render an image with `source_edges_hz` rows on `target_edges_hz` rows
    (both top row first, as SpectrogramConfig.row_edges_hz): each target row averages the source rows it covers, a
    row narrower than a source row copies it, and a row beyond the source band repeats the edge row (as the front
    end's own bin-to-row matrix does)."""
    height = len(source_edges_hz) - 1
    # each target edge as a position on the source rows counted from the bottom; np.interp clamps it to the band
    position = np.interp(target_edges_hz[::-1], source_edges_hz[::-1], np.arange(height + 1))[::-1]
    weights = interval_weights(position[1:], position[:-1], height)
    return torch.from_numpy(weights[:, ::-1].copy()).float()  # source rows back to top-row-first


def warped_row_edges(height: int, corner_hz: float, fmin_hz: float, fmax_hz: float) -> np.ndarray:
    """Row edges (top first) of an axis spaced evenly in log(1 + f / corner_hz): mel-like for a corner near 700 Hz
    (HTK's mel), close to linear for a corner far above the band."""
    warp = np.log1p(np.array([fmin_hz, fmax_hz]) / corner_hz)
    return corner_hz * np.expm1(np.linspace(warp[1], warp[0], height + 1))


def columns_stretch(width: int, factor: float, start: float) -> torch.Tensor:
    """(width, width) weights that show `width / factor` columns from column `start` on the whole width: a longer
    FFT's or hop's wider calls, without changing the window's look otherwise."""
    edges = start + np.arange(width + 1) / factor
    return torch.from_numpy(interval_weights(edges[:-1], edges[1:], width)).float()


def resample(image: torch.Tensor, mask: torch.Tensor | None, rows: torch.Tensor | None = None,
             columns: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply resampling weights to the rows and/or columns of a (..., H, W) image and its mask, in one go: a boolean
    mask's pixel stays sound where at least half of what it covers was sound; a float mask (a segmenter's probability
    map) is averaged as the image is."""
    def apply(values: torch.Tensor) -> torch.Tensor:
        if rows is not None:
            values = torch.einsum("ts,...sw->...tw", rows, values)
        if columns is not None:
            values = torch.einsum("ts,...hs->...ht", columns, values)
        return values

    if mask is None:
        return apply(image), None
    moved = apply(mask.float())
    return apply(image), moved >= 0.5 if mask.dtype == torch.bool else moved.to(mask.dtype)


def power_look(image: torch.Tensor, exponent: float, range_db: float) -> torch.Tensor:
    """A dB image in [0, 1] spanning `range_db` shown as power**exponent instead, rescaled to [0, 1]: exponent 0 is
    the dB image itself, 0.5 an amplitude-like look close to PCEN's (power 0.5 of a normalised energy)."""
    steepness = exponent * range_db * math.log(10) / 10
    if steepness < 1e-6:
        return image
    return torch.expm1(steepness * image) / math.expm1(steepness)


def gain_control_look(image: torch.Tensor, range_db: float, time_constant_columns: float, gain: float, bias: float,
                      power: float) -> torch.Tensor:
    """A dB image in [0, 1] spanning `range_db` back to power, through automatic gain control along time (each row
    divided by its running level**gain, a first-order smoother of `time_constant_columns`) and compression
    ((bias + x)**power - bias**power), rescaled to [0, 1]: the looks of PCEN front ends. Steady sounds fade towards
    the level of the noise, onsets stand out."""
    energy = 10 ** (image.double() * range_db / 10)
    shown = pcen(energy, sample_rate=1, hop_length=1, time_constant=time_constant_columns, gain=gain, bias=bias,
                 power=power, eps=1e-6)
    low, high = shown.amin(dim=(-2, -1), keepdim=True), shown.amax(dim=(-2, -1), keepdim=True)
    return ((shown - low) / (high - low).clamp_min(1e-12)).to(image.dtype)


def rows_misplaced(config: SpectrogramConfig, corner_hz: float) -> float:
    """How many rows, at most, a config's row edges lie from those of a log(1 + f / corner) axis on its own band
    (`warped_row_edges`): 0 for a config spaced that way, about a sixth of the image between mel and linear."""
    edges = config.row_edges_hz()[::-1]  # bottom first, increasing
    warped = warped_row_edges(config.height, corner_hz, config.fmin, config.fmax)[::-1]
    return float(np.abs(np.interp(warped, edges, np.arange(config.height + 1)) - np.arange(config.height + 1)).max())


def _log_uniform(low: float, high: float) -> float:
    return math.exp(math.log(low) + (math.log(high) - math.log(low)) * float(torch.rand(())))


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


@dataclass(frozen=True)
class FrontEndAugment:
    """Random front-end looks for (1, H, W) training images of `config` and their masks (boolean, or float
    probability maps: `resample`), from torch's generator.

    warp_probability: chance of a random frequency axis, spaced evenly in log(1 + f / corner) with the corner drawn
    log-uniformly in corner_range_hz (log-like at the bottom of the band to nearly linear), fmin and fmax multiplied
    by log-uniform factors up to fmin_jitter and fmax_jitter either way. stretch_probability: chance of a time
    stretch by a factor drawn log-uniformly in [1, max_stretch]. power_probability: chance of a power-like intensity
    curve with an exponent drawn uniformly in [0, max_power_exponent]. gain_control_probability: chance of an
    automatic gain control look instead (`gain_control_look`), its time constant drawn log-uniformly in one of
    time_constant_bands_s (a band chosen by its log width; seconds, shown on columns of `window_s`-second windows),
    gain uniformly in gain_range, bias log-uniformly in bias_range, power uniformly in gain_power_range.

    The default ranges keep clear of every front end the project tests on (`settings_near` checks a preset): of
    `pcen`'s settings (0.06 s, gain 0.98, bias 2, power 0.5), no drawn time constant, gain, bias or power comes
    near; no drawn axis lies within 8 of 128 rows of `mel`'s (log-like above 1 kHz); neither preset's band edges
    lie within the drawn jitter. A model trained with these looks meets each tested front end for the first time at
    test. The intensity looks expect a dB image.
    """

    config: SpectrogramConfig
    warp_probability: float = 0.0
    stretch_probability: float = 0.0
    power_probability: float = 0.0
    gain_control_probability: float = 0.0
    corner_range_hz: tuple[float, float] = (3_000.0, 100_000.0)
    fmin_jitter: float = 1.5
    fmax_jitter: float = 1.05
    max_stretch: float = 2.0
    max_power_exponent: float = 0.75
    window_s: float = 0.25  # the windows' length: time constants in seconds become columns
    # fast (8-29 ms: 4-15 columns of a 0.25 s, 128-column window) and slow (0.125-0.5 s) gain controls
    time_constant_bands_s: tuple[tuple[float, float], ...] = ((4 / 512, 15 / 512), (0.125, 0.5))
    gain_range: tuple[float, float] = (0.5, 0.85)
    bias_range: tuple[float, float] = (5.0, 25.0)
    gain_power_range: tuple[float, float] = (0.1, 0.35)

    def __post_init__(self) -> None:
        probabilities = (self.warp_probability, self.stretch_probability, self.power_probability,
                         self.gain_control_probability)
        if not all(0 <= p <= 1 for p in probabilities):
            raise ValueError("warp_probability, stretch_probability, power_probability and gain_control_probability "
                             "must be in [0, 1]")
        ranges = (*self.time_constant_bands_s, self.gain_range, self.bias_range, self.gain_power_range)
        if not self.time_constant_bands_s or not all(0 < low <= high for low, high in ranges) \
                or self.gain_range[1] > 1 or self.window_s <= 0:
            raise ValueError("time_constant_bands_s, gain_range, bias_range and gain_power_range must be positive "
                             "(low, high) pairs, gains at most 1, window_s positive")
        if not 0 < self.corner_range_hz[0] <= self.corner_range_hz[1]:
            raise ValueError(f"need 0 < corner_range_hz[0] <= corner_range_hz[1], got {self.corner_range_hz}")
        if min(self.fmin_jitter, self.fmax_jitter, self.max_stretch) < 1 or self.max_power_exponent < 0:
            raise ValueError("fmin_jitter, fmax_jitter and max_stretch must be >= 1, max_power_exponent >= 0")

    def settings_near(self, preset: SpectrogramConfig) -> list[str]:
        """What of a tested front end these looks could reproduce (empty: none). Near means a PCEN preset's time
        constant within a factor of 2 of a drawn one (what fades and what stands out), or its bias within a factor
        of 2 and its gain and power within 0.1 all at once, a power-like curve up to PCEN's exponent, an FFT
        length whose wider clicks a drawn stretch reproduces within a factor of 2, a frequency axis that a drawn
        corner reproduces to within a sixteenth of the image's rows (`rows_misplaced`), or band edges within the
        drawn jitter: a look that could land there would make that preset a seen transform rather than an
        out-of-distribution test."""
        near = []
        pcen_like = preset.scaling == "pcen"
        if self.power_probability > 0 and pcen_like and self.max_power_exponent > preset.pcen_power - 0.1:
            near.append("intensity curve")  # power_look near PCEN's exponent is close to its compression
        if self.stretch_probability > 0 and 0.5 < preset.n_fft / self.config.n_fft < 2 * self.max_stretch:
            near.append("time resolution")  # a longer FFT draws clicks wider, as a stretch does
        if self.gain_control_probability > 0 and pcen_like:
            time_constant = preset.pcen_time_constant
            if any(low < 2 * time_constant and high > time_constant / 2 for low, high in self.time_constant_bands_s) \
                    or all((
                        self.gain_range[0] < preset.pcen_gain + 0.1 and self.gain_range[1] > preset.pcen_gain - 0.1,
                        self.bias_range[0] < 2 * preset.pcen_bias and self.bias_range[1] > preset.pcen_bias / 2,
                        self.gain_power_range[0] < preset.pcen_power + 0.1
                        and self.gain_power_range[1] > preset.pcen_power - 0.1)):
                near.append("gain control")
        if self.warp_probability > 0:
            corners = np.geomspace(*self.corner_range_hz, 50)
            if min(rows_misplaced(preset, corner) for corner in corners) < preset.height / 16:
                near.append("frequency axis")
            own = self.config
            if (own.fmin / self.fmin_jitter <= preset.fmin <= own.fmin * self.fmin_jitter
                    and own.fmax / self.fmax_jitter <= preset.fmax <= own.fmax * self.fmax_jitter):
                near.append("band edges")
        return near

    def random_time_constant(self) -> float:
        """A time constant in columns of this config's images."""
        widths = [math.log(high / low) for low, high in self.time_constant_bands_s]
        pick = float(torch.rand(())) * sum(widths)
        for (low, high), width in zip(self.time_constant_bands_s, widths):
            if pick <= width:
                break
            pick -= width
        return _log_uniform(low, high) * self.config.width / self.window_s

    def random_axis(self) -> np.ndarray:
        config = self.config
        fmin = max(config.fmin, 1.0) * _log_uniform(1 / self.fmin_jitter, self.fmin_jitter)
        fmax = min(config.fmax * _log_uniform(1 / self.fmax_jitter, self.fmax_jitter), config.sample_rate / 2)
        return warped_row_edges(config.height, _log_uniform(*self.corner_range_hz), fmin, fmax)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = columns = None
        if float(torch.rand(())) < self.warp_probability:
            rows = rows_resampling(self.config.row_edges_hz(), self.random_axis())
        if float(torch.rand(())) < self.stretch_probability:
            factor, width = _log_uniform(1.0, self.max_stretch), image.shape[-1]
            columns = columns_stretch(width, factor, start=float(torch.rand(())) * width * (1 - 1 / factor))
        if rows is not None or columns is not None:
            image, mask = resample(image, mask, rows, columns)
        # checked here, not when built: a model trained with looks is rebuilt for tests on PCEN presets, unlooked
        if self.config.scaling == "pcen" and (self.power_probability or self.gain_control_probability):
            raise ValueError(f"intensity looks render a dB image; preset {self.config.name!r} is PCEN-scaled: set "
                             "power_probability and gain_control_probability to 0 to train on it")
        if float(torch.rand(())) < self.gain_control_probability:
            image = gain_control_look(
                image, self.config.top_db, self.random_time_constant(), _uniform(*self.gain_range),
                _log_uniform(*self.bias_range), _uniform(*self.gain_power_range))
        elif float(torch.rand(())) < self.power_probability:
            image = power_look(image, self.max_power_exponent * float(torch.rand(())), self.config.top_db)
        return image, mask
