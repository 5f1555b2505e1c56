"""Measures that put generated and real underwater sound side by side (issue #25, `benchmarks/realism.py`).

Plain numpy/scipy, each measure gain-invariant so that uncalibrated clips compare: click spectra and durations,
band levels relative to a reference band, spectral slope per decade, spectral kurtosis per band (impulsiveness) and
tonal-line statistics (narrow peaks above the local median, how often, how many, how far they drift).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter
from scipy.signal import hilbert, stft, welch


def _edge(freqs: np.ndarray, level: np.ndarray, start: int, step: int, floor: float) -> float:
    """Frequency where `level` first falls below `floor` walking from `start` by `step`, interpolated linearly."""
    i = start
    while 0 <= i + step < level.size and level[i + step] >= floor:
        i += step
    j = i + step
    if not 0 <= j < level.size:
        return float(freqs[i])
    fraction = (level[i] - floor) / (level[i] - level[j])
    return float(freqs[i] + fraction * (freqs[j] - freqs[i]))


def spectrum_metrics(freqs: np.ndarray, power: np.ndarray, band: tuple[float, float] | None = None) -> dict:
    """Peak, centroid (power-weighted mean frequency) and -3 dB / -10 dB bandwidths (the contiguous span around the
    peak, edges interpolated) of a power spectrum (linear power, not dB), within `band` if given."""
    keep = np.ones(freqs.size, bool) if band is None else (freqs >= band[0]) & (freqs <= band[1])
    f, p = freqs[keep], np.maximum(power[keep], 1e-300)
    level = 10 * np.log10(p / p.max())
    peak = int(np.argmax(p))
    out = {"peak_hz": float(f[peak]), "centroid_hz": float(np.sum(f * p) / np.sum(p))}
    for drop in (3, 10):
        out[f"bw{drop}_hz"] = _edge(f, level, peak, 1, -drop) - _edge(f, level, peak, -1, -drop)
    return out


def click_metrics(x: np.ndarray, sample_rate: int, nfft: int = 8192, band: tuple[float, float] | None = None) -> dict:
    """A single click's spectrum (`spectrum_metrics` of its zero-padded FFT) and duration: the span where its Hilbert
    envelope stays within 10 dB of its maximum, the span holding the central 95 % of its energy, and the asymmetry
    of the envelope (time from the -10 dB point after the maximum over the time to it before; 1 for a Gaussian)."""
    x = np.asarray(x, float)
    freqs = np.fft.rfftfreq(max(nfft, x.size), 1 / sample_rate)
    out = spectrum_metrics(freqs, np.abs(np.fft.rfft(x, max(nfft, x.size))) ** 2, band)
    envelope = np.abs(hilbert(x))
    level = 20 * np.log10(np.maximum(envelope / envelope.max(), 1e-15))
    times = np.arange(x.size) / sample_rate
    top = int(np.argmax(envelope))
    rise, decay = times[top] - _edge(times, level, top, -1, -10), _edge(times, level, top, 1, -10) - times[top]
    out["duration_10db_us"] = (rise + decay) * 1e6
    out["decay_over_rise"] = decay / max(rise, 0.5 / sample_rate)
    energy = np.cumsum(x**2) / np.sum(x**2)
    out["duration_e95_us"] = (np.searchsorted(energy, 0.975) - np.searchsorted(energy, 0.025)) / sample_rate * 1e6
    return out


def robust_psd(x: np.ndarray, sample_rate: int, resolution_hz: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectral density with the median over frames: the long-term background, little moved by calls
    or passing transients that occupy fewer than half the frames."""
    nperseg = int(round(sample_rate / resolution_hz))
    return welch(x, sample_rate, nperseg=nperseg, average="median")


def band_levels(freqs: np.ndarray, psd: np.ndarray, centres, bands_per_octave: int = 1) -> np.ndarray:
    """Power in fractional-octave bands (dB, arbitrary reference) around `centres`; NaN where a band reaches past
    the spectrum's frequencies."""
    df = freqs[1] - freqs[0]
    out = []
    for centre in centres:
        low, high = centre * 2 ** (-0.5 / bands_per_octave), centre * 2 ** (0.5 / bands_per_octave)
        inside = (freqs >= low) & (freqs < high)
        covered = low >= freqs[0] and high <= freqs[-1] and inside.any()
        out.append(10 * np.log10(np.sum(psd[inside]) * df) if covered else np.nan)
    return np.array(out)


def spectral_slope(freqs: np.ndarray, psd: np.ndarray, low_hz: float, high_hz: float) -> float:
    """Least-squares slope of the PSD in dB per decade of frequency between low_hz and high_hz, on log-spaced points
    (so each decade weighs the same, not each Hz)."""
    points = np.geomspace(low_hz, high_hz, 40)
    level = 10 * np.log10(np.interp(points, freqs, psd))
    return float(np.polyfit(np.log10(points), level, 1)[0])


def spectral_kurtosis(x: np.ndarray, sample_rate: int, frame_s: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """Spectral kurtosis per frequency bin (Antoni 2006, MSSP 20:282): <|X|^4> / <|X|^2>^2 - 2 over the STFT frames.
    0 for stationary Gaussian noise, -1 for a steady tone, large and positive for impulses (shrimp snaps, clicks)
    and for noise whose level swells and fades within the clip."""
    nperseg = max(int(round(frame_s * sample_rate)), 16)
    freqs, _, spectrum = stft(x, sample_rate, nperseg=nperseg, noverlap=nperseg // 2, boundary=None, padded=False)
    power = np.abs(spectrum) ** 2
    return freqs, np.mean(power**2, axis=1) / np.maximum(np.mean(power, axis=1) ** 2, 1e-300) - 2


def band_mean(freqs: np.ndarray, values: np.ndarray, centres, bands_per_octave: int = 1) -> np.ndarray:
    """Mean of a per-bin quantity (e.g. spectral kurtosis) in fractional-octave bands; NaN where a band is empty."""
    out = []
    for centre in centres:
        inside = (freqs >= centre * 2 ** (-0.5 / bands_per_octave)) & (freqs < centre * 2 ** (0.5 / bands_per_octave))
        out.append(float(np.mean(values[inside])) if inside.any() else np.nan)
    return np.array(out)


def _tonal_peaks(x: np.ndarray, sample_rate: int, band: tuple[float, float], resolution_hz: float, average: int,
                 threshold_db: float, median_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frequencies, the band's spectrogram in dB (frames averaged `average` at a time) and its tonal-peak mask: local
    maxima over frequency standing > threshold_db above the median of the +-median_hz around them."""
    nperseg = int(round(sample_rate / resolution_hz))
    freqs, _, spectrum = stft(x, sample_rate, nperseg=nperseg, noverlap=nperseg // 2, boundary=None, padded=False)
    inside = (freqs >= band[0]) & (freqs <= band[1])
    power = np.abs(spectrum[inside]) ** 2
    blocks = max(power.shape[1] // average, 1)
    power = power[:, : blocks * average].reshape(power.shape[0], blocks, -1).mean(axis=2)
    level = 10 * np.log10(np.maximum(power, 1e-300))
    width = 2 * int(round(median_hz / resolution_hz)) + 1
    background = median_filter(level, size=(width, 1), mode="nearest")
    padded = np.pad(level, ((1, 1), (0, 0)), constant_values=np.inf)  # a band's edge bins are never peaks
    local_max = (level >= padded[:-2]) & (level >= padded[2:])
    return freqs[inside], level, local_max & (level - background > threshold_db)


def _line_drift(freqs: np.ndarray, level: np.ndarray, peaks: np.ndarray, centre: int, reach: int) -> float:
    """Standard deviation over frames (Hz) of one line's peak frequency, found within +-reach bins of its centre
    bin and refined by a parabola through the peak bin and its neighbours."""
    low, high = max(centre - reach, 1), min(centre + reach + 1, freqs.size - 1)
    tracked = []
    for frame in np.flatnonzero(peaks[low:high].any(axis=0)):
        i = low + int(np.argmax(level[low:high, frame]))
        a, b, c = level[i - 1, frame], level[i, frame], level[i + 1, frame]
        shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c < 0 else 0.0
        tracked.append(freqs[i] + shift * (freqs[1] - freqs[0]))
    return float(np.std(tracked)) if len(tracked) > 1 else 0.0


def tonal_lines(x: np.ndarray, sample_rate: int, band: tuple[float, float], resolution_hz: float = 2.0,
                average: int = 4, threshold_db: float = 10.0, median_hz: float = 60.0, drift_reach_hz: float = 10.0,
                persistence: float = 0.5) -> dict:
    """Tonal lines in `band`: narrow spectral peaks > threshold_db above their local median, in frames of
    1 / resolution_hz seconds averaged `average` at a time (the average keeps noise peaks below the threshold).

    frames_with_line: fraction of averaged frames holding at least one such peak (a steady tone: 1, noise: ~0);
    lines_per_frame: mean count of peaks per frame; persistent_lines: lines present in >= `persistence` of the
    frames (peaks within +-1 bin count as the same line); drift_hz: the median over persistent lines of the standard
    deviation of the line's frequency over frames (0 for lines fixed in frequency, as Doppler and speed changes make
    real vessel lines wander); prominence_db: median height of the peaks above their local median; line_hz: the
    persistent lines' frequencies."""
    freqs, level, peaks = _tonal_peaks(x, sample_rate, band, resolution_hz, average, threshold_db, median_hz)
    near = peaks | np.pad(peaks, ((1, 0), (0, 0)))[:-1] | np.pad(peaks, ((0, 1), (0, 0)))[1:]
    present = near.mean(axis=1) >= persistence
    runs = np.flatnonzero(np.diff(np.concatenate([[0], present.astype(int), [0]])))
    reach = max(int(round(drift_reach_hz / resolution_hz)), 1)
    centres = [start + int(np.argmax(near[start:end].mean(axis=1))) for start, end in zip(runs[::2], runs[1::2])]
    drifts = [_line_drift(freqs, level, peaks, centre, reach) for centre in centres]
    width = 2 * int(round(median_hz / resolution_hz)) + 1
    heights = (level - median_filter(level, size=(width, 1), mode="nearest"))[peaks]
    return {"frames_with_line": float(peaks.any(axis=0).mean()), "lines_per_frame": float(peaks.sum(axis=0).mean()),
            "persistent_lines": len(drifts), "drift_hz": float(np.median(drifts)) if drifts else float("nan"),
            "prominence_db": float(np.median(heights)) if heights.size else float("nan"), "frames": peaks.shape[1],
            "line_hz": [float(freqs[centre]) for centre in centres]}


def interference_delays(x: np.ndarray, sample_rate: int, band: tuple[float, float] = (200.0, 20000.0),
                        frame_s: float = 0.25, delay_range_s: tuple[float, float] = (2e-4, 5e-3)) -> dict:
    """The delay of a surface image, frame by frame, from the cepstrum of the log spectrum (Bogert et al. 1963):
    Lloyd's-mirror interference puts nulls every 1 / delay Hz, a ripple of the log spectrum that the cepstrum turns
    into a peak at that quefrency. Each frame's log spectrum is detrended by a cubic in log frequency and clipped to
    -30..+10 dB (so tonal lines do not dominate). delay_s: the peak's quefrency per frame (s); prominence: its
    height over the median cepstral magnitude in delay_range_s (a smooth spectrum reads ~3; clear fringes > 6)."""
    nperseg = int(round(frame_s * sample_rate))
    freqs, _, spectrum = stft(x, sample_rate, nperseg=nperseg, noverlap=0, boundary=None, padded=False)
    inside = (freqs >= band[0]) & (freqs <= band[1])
    level = 10 * np.log10(np.maximum(np.abs(spectrum[inside]) ** 2, 1e-300))
    logf = np.log10(freqs[inside])
    trend = np.polynomial.polynomial.polyval(logf, np.polynomial.polynomial.polyfit(logf, level, 3)).T
    level = np.clip(level - trend, -30, 10)
    cepstrum = np.abs(np.fft.rfft(level - level.mean(axis=0), axis=0))
    quefrency = np.fft.rfftfreq(level.shape[0], freqs[1] - freqs[0])
    search = (quefrency >= delay_range_s[0]) & (quefrency <= delay_range_s[1])
    peak = np.argmax(cepstrum[search], axis=0)
    prominence = cepstrum[search].max(axis=0) / np.median(cepstrum[search], axis=0)
    return {"delay_s": quefrency[search][peak], "prominence": prominence,
            "times_s": (np.arange(level.shape[1]) + 0.5) * frame_s}


def envelope_modulation(x: np.ndarray, sample_rate: int, band: tuple[float, float] = (10e3, 40e3),
                        max_hz: float = 100.0) -> dict:
    """DEMON analysis (detection of envelope modulation on noise; Lourens & du Preez 1998): the spectrum of the
    band-passed signal's envelope, whose strongest line in 3 Hz-max_hz is a propeller's blade rate (or shaft rate)
    when cavitation swells at each blade pass. The default band lies above ships' machinery lines (< 10 kHz), whose
    beats would otherwise put lines in the envelope too. peak_hz, and prominence_db over the median envelope
    spectrum."""
    from scipy.signal import butter, resample_poly, sosfiltfilt

    banded = sosfiltfilt(butter(4, band, btype="bandpass", fs=sample_rate, output="sos"), x)
    envelope = np.abs(hilbert(banded))
    factor = max(int(sample_rate // (8 * max_hz)), 1)
    envelope = resample_poly(envelope - envelope.mean(), 1, factor)
    rate = sample_rate / factor
    power = np.abs(np.fft.rfft(envelope * np.hanning(envelope.size))) ** 2
    freqs = np.fft.rfftfreq(envelope.size, 1 / rate)
    inside = (freqs >= 3) & (freqs <= max_hz)
    peak = int(np.argmax(power[inside]))
    return {"peak_hz": float(freqs[inside][peak]),
            "prominence_db": float(10 * np.log10(power[inside][peak] / np.median(power[inside])))}
