"""Reading hydrophone audio safely: validation with errors that name the file, and windowed block reads.

Recordings can be many GB, so nothing here reads a whole file: every read seeks to a window and reads only its frames.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import soundfile as sf

from ..core.errors import missing_file


# Below any real recording's noise (a 24-bit converter's LSB is 2**-23): a window this quiet is a dropout.
SILENCE_PEAK = 2.0**-20
CANCEL_DB = 40.0  # a mono mix this far below its channels is cancellation, not two uncorrelated signals (-3 dB)
_FINGERPRINT_BLOCKS, _FINGERPRINT_BLOCK = 16, 65536


class AudioError(ValueError):
    """A recording that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class SignalWarning(UserWarning):
    """A window without usable signal (silence, cancelling channels): flagged and left out, not an error."""


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
        raise AudioError(path, missing_file(path))
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


def file_fingerprint(path: str | Path) -> str:
    """A digest of a file's size and of 16 blocks spread over its content: names the same audio wherever it lies
    (moved or copied folders keep their caches) while reading at most 1 MiB of a file of any size. Computed once
    per file version (path, size, modification time) in a process."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, missing_file(path))
    try:
        stat = path.stat()
    except OSError as error:
        raise AudioError(path, f"cannot identify the audio for the cache ({error.strerror or error})") from error
    return _fingerprint(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=65536)
def _fingerprint(resolved: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256(str(size).encode())
    with open(resolved, "rb") as handle:
        for block in range(_FINGERPRINT_BLOCKS):
            handle.seek(max(size - _FINGERPRINT_BLOCK, 0) * block // (_FINGERPRINT_BLOCKS - 1))
            digest.update(handle.read(_FINGERPRINT_BLOCK))
    return digest.hexdigest()[:24]


def sample_digests(path: str | Path) -> set[str]:
    """sha256 digests of a file's decoded samples at its own rate, rounded to 16 bit: of all channels interleaved,
    and of each channel alone. Unlike file_fingerprint they name the sound, not the file: a rename, a rewritten
    header or a lossless conversion (WAV <-> FLAC) keeps them; a resampled, trimmed, re-scaled, lossy-coded or
    down-mixed copy does not. Decodes the whole file: check its frame count first where files may be long."""
    path = Path(path)
    with _open(path) as handle:
        samples = handle.read(dtype="float64", always_2d=True)
    quantised = np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2")
    channels = [quantised] + ([quantised[:, c] for c in range(quantised.shape[1])] if quantised.shape[1] > 1 else [])
    return {hashlib.sha256(np.ascontiguousarray(c).tobytes()).hexdigest() for c in channels}


def probe(path: str | Path) -> AudioInfo:
    """Header facts of a WAV/FLAC file, raising AudioError for missing, unreadable or empty audio."""
    path = Path(path)
    with _open(path) as handle:
        return _info(path, handle)


def check_complete(path: str | Path) -> None:
    """Refuse a file whose data ends before its header says (a truncated copy or download): read its last block."""
    path = Path(path)
    with _open(path) as handle:
        tail, promised_s = min(handle.frames, 4096), handle.frames / handle.samplerate
        try:
            handle.seek(handle.frames - tail)
            read = handle.read(tail, dtype="float32", always_2d=True).shape[0]
        except Exception as error:
            raise AudioError(path, f"truncated or corrupt audio: the header promises {promised_s:g} s but the last "
                                   f"samples cannot be read ({error}); copy the file again") from error
        if read != tail:
            raise AudioError(path, f"truncated audio: the header promises {promised_s:g} s but the data ends early; "
                                   "copy the file again")


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
    return read_window_and_check(path, start_s, duration_s, channel, target_rate, fmax_hz)[0]


def read_window_and_check(
    path: str | Path,
    start_s: float,
    duration_s: float,
    channel: int | None = None,
    target_rate: int | None = None,
    fmax_hz: float | None = None,
) -> tuple[np.ndarray, str | None]:
    """`read_window`'s samples and, for a window without signal, what is wrong with it (see `signal_problem`)."""
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
    problem = signal_problem(block if channel is None else block[:, [channel]], samples)
    if target_rate is not None and target_rate != info.sample_rate:
        samples = resample(samples, info.sample_rate, target_rate)
    return np.ascontiguousarray(samples, dtype=np.float32), problem


def signal_problem(channels: np.ndarray, mixed: np.ndarray) -> str | None:
    """Why a window holds no usable signal, or None: digital silence (a recorder dropout: every sample below
    SILENCE_PEAK), or channels that cancel in the mono mix (the mix CANCEL_DB or more below its channels, e.g. one
    channel wired in reverse). A dB image of such a window would only show rounding noise scaled to full range."""
    if np.abs(channels).max(initial=0.0) < SILENCE_PEAK:
        return "digital silence (no sample above -120 dBFS)"
    channel_rms = float(np.sqrt(np.mean(np.square(channels, dtype=np.float64))))
    mix_rms = float(np.sqrt(np.mean(np.square(mixed, dtype=np.float64))))
    if channels.shape[1] > 1 and mix_rms < channel_rms * 10 ** (-CANCEL_DB / 20):
        level = 20 * math.log10(max(mix_rms, 1e-30) / channel_rms)
        return f"the channels cancel in the mono mix ({level:.0f} dB below the channels); pick one channel"
    return None


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling with an anti-aliasing filter (exact rational ratio). scipy.signal is loaded here, at
    first use: it takes most of a second, which commands that only probe files (`mgc validate`) need not pay."""
    from scipy.signal import resample_poly

    divisor = math.gcd(int(rate_in), int(rate_out))
    return resample_poly(samples, rate_out // divisor, rate_in // divisor).astype(np.float32)


def window_starts(total_s: float, window_s: float, hop_s: float) -> list[float]:
    """Start times of every full window of `window_s` seconds, every `hop_s` seconds."""
    if window_s <= 0 or hop_s <= 0:
        raise ValueError(f"window and hop must be positive, got window={window_s} hop={hop_s}")
    count = int(math.floor((total_s - window_s) / hop_s + 1e-9)) + 1
    return [round(i * hop_s, 9) for i in range(max(count, 0))]

