import tracemalloc

import numpy as np
import pytest

from conftest import tone, write_audio
from mgc_lightning.audio.reading import AudioError, check_band, probe, read_window, window_starts


@pytest.mark.parametrize("rate", [48_000, 384_000, 500_000])
@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_reads_exact_window_at_any_rate(tmp_path, rate, suffix):
    samples = np.linspace(-0.5, 0.5, rate, dtype=np.float32)  # 1 s ramp: position is readable from the value
    path = write_audio(tmp_path / f"ramp.{suffix}", samples, rate, subtype="FLOAT" if suffix == "wav" else None)
    info = probe(path)
    assert (info.sample_rate, info.frames, info.channels) == (rate, rate, 1)
    window = read_window(path, 0.25, 0.5)
    assert window.shape == (rate // 2,)
    tolerance = 1e-6 if suffix == "wav" else 1e-4  # FLAC stores 16-bit integers
    np.testing.assert_allclose(window, samples[rate // 4 : rate // 4 + rate // 2], atol=tolerance)


def test_channel_selection_and_mono_mix(tmp_path):
    left, right = np.full(1000, 0.2, np.float32), np.full(1000, -0.6, np.float32)
    path = write_audio(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 10_000, subtype="FLOAT")
    np.testing.assert_allclose(read_window(path, 0, 0.05, channel=1), -0.6)
    np.testing.assert_allclose(read_window(path, 0, 0.05), -0.2, atol=1e-7)
    with pytest.raises(AudioError, match="channel 2 requested but the file has 2"):
        read_window(path, 0, 0.05, channel=2)


def test_resampling_keeps_a_tone_in_place(tmp_path):
    path = write_audio(tmp_path / "tone.wav", tone(5_000, 1.0, 48_000), 48_000, subtype="FLOAT")
    window = read_window(path, 0, 0.5, target_rate=96_000)
    assert window.shape == (48_000,)
    spectrum = np.abs(np.fft.rfft(window))
    assert abs(np.argmax(spectrum) * 96_000 / window.size - 5_000) < 5


def test_long_file_is_read_in_blocks_not_whole(tmp_path):
    rate = 48_000
    path = write_audio(tmp_path / "long.wav", np.zeros(120 * rate, np.float32), rate, subtype="FLOAT")  # 23 MB
    tracemalloc.start()
    for start in window_starts(probe(path).duration_s, 1.0, 1.0)[:20]:
        read_window(path, start, 1.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000, f"peak {peak} bytes: reading 1 s windows must not load the whole 23 MB file"


def test_corrupt_file_is_named(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF" + bytes(range(200)))
    with pytest.raises(AudioError, match="broken.wav: unreadable or corrupt audio"):
        probe(path)


def test_empty_file_is_named(tmp_path):
    path = write_audio(tmp_path / "empty.wav", np.zeros(0, np.float32), 48_000)
    with pytest.raises(AudioError, match="empty.wav: empty audio"):
        read_window(path, 0, 0.1)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(AudioError, match="nothere.flac: file not found"):
        probe(tmp_path / "nothere.flac")


def test_nan_samples_are_located(tmp_path):
    samples = np.zeros(48_000, np.float32)
    samples[24_000] = np.nan
    path = write_audio(tmp_path / "nan.wav", samples, 48_000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan.wav: NaN or infinite sample at 0.500000 s"):
        read_window(path, 0, 1.0)
    assert read_window(path, 0, 0.4).shape == (19_200,)  # the clean part is still usable


def test_sample_rate_too_low_for_band(tmp_path):
    path = write_audio(tmp_path / "low.wav", np.zeros(48_000, np.float32), 48_000)
    with pytest.raises(AudioError, match=r"low.wav: sample rate 48000 Hz is too low for a band up to 160000 Hz \(needs >= 320000 Hz\)"):
        read_window(path, 0, 0.5, fmax_hz=160_000)
    check_band(probe(path), 24_000)  # exactly Nyquist is fine


def test_window_past_end(tmp_path):
    path = write_audio(tmp_path / "short.wav", np.zeros(48_000, np.float32), 48_000)
    with pytest.raises(AudioError, match="runs past the end"):
        read_window(path, 0.8, 0.5)


def test_window_starts():
    assert window_starts(2.0, 0.5, 0.5) == [0.0, 0.5, 1.0, 1.5]
    assert window_starts(2.0, 1.0, 0.25) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert window_starts(0.3, 0.5, 0.5) == []
