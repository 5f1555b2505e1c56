"""Reading hydrophone audio safely: validation with errors that name the file, and windowed block reads.

Recordings can be many GB, so nothing here reads a whole file: every read seeks to a window and reads only its frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly


class AudioError(ValueError):
    """A recording that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def _open(path: Path) -> sf.SoundFile:
    """An open file handle, or an AudioError for missing, unreadable or empty audio."""
    if not path.is_file():
        raise AudioError(path, "file not found")
    try:
        handle = sf.SoundFile(str(path))
    except Exception as error:  # soundfile raises its own LibsndfileError / RuntimeError variants
        raise AudioError(path, f"unreadable or corrupt audio ({error})") from error
    if handle.frames <= 0:
        handle.close()
        raise AudioError(path, "empty audio (0 samples)")
    return handle


def _info(path: Path, handle: sf.SoundFile) -> AudioInfo:
    return AudioInfo(path=path, sample_rate=int(handle.samplerate), frames=int(handle.frames),
                     channels=int(handle.channels))


def probe(path: str | Path) -> AudioInfo:
    """Header facts of a WAV/FLAC file, raising AudioError for missing, unreadable or empty audio."""
    path = Path(path)
    with _open(path) as handle:
        return _info(path, handle)


def check_band(info: AudioInfo, fmax_hz: float) -> None:
    """Refuse audio whose Nyquist frequency is below the top of the band a front end asks for."""
    if info.sample_rate < 2 * fmax_hz:
        raise AudioError(
            info.path,
            f"sample rate {info.sample_rate} Hz is too low for a band up to {fmax_hz:g} Hz "
            f"(needs >= {2 * fmax_hz:g} Hz); choose a preset with a lower fmax",
        )


def read_window(
    path: str | Path,
    start_s: float,
    duration_s: float,
    channel: int | None = None,
    target_rate: int | None = None,
    fmax_hz: float | None = None,
) -> np.ndarray:
    """One window of float32 samples, mono-mixed unless `channel` picks one, resampled to `target_rate` if given.

    Reads only the window's frames. `fmax_hz` checks that the file's rate can carry that band.
    """
    path = Path(path)
    with _open(path) as handle:  # one open for the header checks and the read
        info = _info(path, handle)
        if fmax_hz is not None:
            check_band(info, fmax_hz)
        if channel is not None and not 0 <= channel < info.channels:
            raise AudioError(path, f"channel {channel} requested but the file has {info.channels} channel(s)")
        first = int(round(start_s * info.sample_rate))
        count = int(round(duration_s * info.sample_rate))
        if start_s < 0 or count <= 0:
            raise AudioError(path, f"invalid window start={start_s} s duration={duration_s} s")
        if first + count > info.frames:
            raise AudioError(path, f"window {start_s:g}-{start_s + duration_s:g} s runs past the end of the audio "
                                   f"({info.duration_s:g} s)")
        try:
            handle.seek(first)
            block = handle.read(count, dtype="float32", always_2d=True)
        except Exception as error:
            raise AudioError(path, f"unreadable or corrupt audio while reading {start_s:g} s ({error})") from error
    if block.shape[0] != count:
        raise AudioError(path, f"truncated audio: expected {count} samples at {start_s:g} s, read {block.shape[0]}")
    samples = block[:, channel] if channel is not None else block.mean(axis=1)
    if not np.isfinite(samples).all():
        bad = int(np.argmax(~np.isfinite(samples)))
        raise AudioError(path, f"NaN or infinite sample at {(first + bad) / info.sample_rate:.6f} s")
    if target_rate is not None and target_rate != info.sample_rate:
        samples = resample(samples, info.sample_rate, target_rate)
    return np.ascontiguousarray(samples, dtype=np.float32)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling with an anti-aliasing filter (exact rational ratio)."""
    divisor = math.gcd(int(rate_in), int(rate_out))
    return resample_poly(samples, rate_out // divisor, rate_in // divisor).astype(np.float32)


def window_starts(total_s: float, window_s: float, hop_s: float) -> list[float]:
    """Start times of every full window of `window_s` seconds, every `hop_s` seconds."""
    if window_s <= 0 or hop_s <= 0:
        raise ValueError(f"window and hop must be positive, got window={window_s} hop={hop_s}")
    count = int(math.floor((total_s - window_s) / hop_s + 1e-9)) + 1
    return [round(i * hop_s, 9) for i in range(max(count, 0))]

