import dataclasses

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

from mgc_lightning.frontend.spectrogram import PRESETS, SpectrogramConfig, SpectrogramTransform, get_preset, pcen


def _band_profile(image: np.ndarray) -> np.ndarray:
    """How far each row's loudest moment rises above its own typical level."""
    return image.max(axis=1) - np.median(image, axis=1)


@pytest.mark.parametrize("window", ["hann", "hamming", "blackman"])
def test_stft_power_matches_librosa(window):
    config = SpectrogramConfig(sample_rate=48_000, n_fft=1024, hop_length=256, window=window, fmax=20_000)
    signal = np.random.default_rng(1).normal(size=24_000).astype(np.float32)
    ours = SpectrogramTransform(config).power(torch.from_numpy(signal)[None])[0].numpy()
    theirs = np.abs(librosa.stft(signal, n_fft=1024, hop_length=256, window=window, center=True,
                                 pad_mode="constant")) ** 2
    assert ours.shape == theirs.shape
    assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 1e-4


def test_pcen_matches_librosa_from_the_same_start():
    rng = np.random.default_rng(2)
    energy = (rng.gamma(1.0, 1.0, size=(16, 400)) * 1e9).astype(np.float64)
    energy[:, 200:210] *= 50  # a burst PCEN should lift
    params = dict(time_constant=0.06, gain=0.98, bias=2.0, power=0.5, eps=1e-6)
    ours = pcen(torch.from_numpy(energy), sample_rate=384_000, hop_length=256, **params).numpy()
    t_frames = 0.06 * 384_000 / 256
    b = (np.sqrt(1 + 4 * t_frames**2) - 1) / (2 * t_frames**2)
    first_time_constant = energy[:, : round(t_frames)].mean(axis=1, keepdims=True)
    start = scipy.signal.lfilter_zi([b], [1, b - 1]) * first_time_constant
    theirs = librosa.pcen(energy, sr=384_000, hop_length=256, zi=start, **params)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9 * np.abs(theirs).max())


def test_pcen_of_steady_noise_has_no_flare_at_the_window_start():
    """A smoother started from one weak first frame (noise, or a frame half made of the STFT's zero padding) lifts
    the first time constant of that row above the rest: spurious blobs at the image's left edge."""
    rng = np.random.default_rng(3)
    energy = rng.gamma(1.0, 1.0, size=(64, 800)) * 1e9
    energy[:, 0] *= rng.uniform(0.05, 0.5, size=64)  # weak first frames, as zero padding and chance make them
    params = dict(time_constant=0.06, gain=0.98, bias=2.0, power=0.5, eps=1e-6)
    out = pcen(torch.from_numpy(energy), sample_rate=384_000, hop_length=128, **params).numpy()
    t_frames = round(0.06 * 384_000 / 128)
    start_level, settled_level = out[:, 1:t_frames].mean(axis=1), out[:, 2 * t_frames:].mean(axis=1)
    assert np.abs(start_level / settled_level - 1).max() < 0.1


def test_config_is_validated_at_the_edge():
    with pytest.raises(ValueError, match="fmax=300000 Hz is above the Nyquist"):
        SpectrogramConfig(sample_rate=384_000, fmax=300_000)
    with pytest.raises(ValueError, match="window must be one of"):
        SpectrogramConfig(window="kaiser")
    with pytest.raises(ValueError, match="need 0 <= fmin < fmax"):
        SpectrogramConfig(fmin=5_000, fmax=1_000)
    with pytest.raises(ValueError, match="unknown SpectrogramConfig fields"):
        SpectrogramConfig.from_dict({"n_ftt": 512})
    with pytest.raises(ValueError, match="unknown front-end preset 'orgin'"):
        get_preset("orgin")


def test_hash_is_stable_name_free_and_parameter_sensitive():
    origin = get_preset("origin")
    assert origin.replace(name="renamed").hash == origin.hash
    assert SpectrogramConfig.from_dict(origin.to_dict()).hash == origin.hash
    assert origin.replace(fmax=160_000).hash == origin.replace(fmax=160_000.0).hash  # YAML ints vs floats
    assert origin.replace(hop_length=128).hash != origin.hash
    assert len({config.hash for config in PRESETS.values()}) == len(PRESETS)
    # PCEN images from before the smoother's start changed (cache folder pcen-cc3fe9a90a7f) are not reused
    assert get_preset("pcen").hash != "cc3fe9a90a7f"
    assert dataclasses.is_dataclass(origin) and origin.__dataclass_params__.frozen


def test_presets_differ_the_ways_the_paper_names():
    origin, mel, pcen_preset = (get_preset(n) for n in ("origin", "mel", "pcen"))
    assert origin.frequency_scale == "linear" and origin.scaling == "floor_db"
    assert mel.frequency_scale == "mel" and mel.scaling == "db" and (mel.fmin, mel.fmax) != (origin.fmin, origin.fmax)
    assert pcen_preset.scaling == "pcen" and pcen_preset.n_fft != origin.n_fft


def _coloured_noise_with_a_steady_tone(seconds: float = 0.25, sample_rate: int = 384_000) -> torch.Tensor:
    """Noise 40 dB stronger at the bottom of the band than at the top (like vessel noise and a hydrophone's
    roll-off), plus a 20 kHz tone lasting the whole window."""
    generator = torch.Generator().manual_seed(0)
    n = int(seconds * sample_rate)
    spectrum = torch.fft.rfft(torch.randn(n, generator=generator, dtype=torch.float64))
    frequencies = torch.fft.rfftfreq(n, 1 / sample_rate)
    noise = torch.fft.irfft(spectrum * 10 ** (-40 * frequencies / frequencies[-1] / 20), n)
    tone = 2 * noise.std() * torch.sin(2 * torch.pi * 20_000 * torch.arange(n) / sample_rate)
    return (noise / noise.std() * 1e-2 + tone / noise.std() * 1e-2).float()


def test_floor_db_whitens_coloured_noise_and_keeps_a_steady_tonal():
    origin, wave = get_preset("origin"), _coloured_noise_with_a_steady_tone()
    image = SpectrogramTransform(origin)(wave)[0]
    peak = SpectrogramTransform(origin.replace(scaling="db", top_db=80.0))(wave)[0]
    tone_row = int(np.argmin(np.abs(origin.row_frequencies_hz() - 20_000)))
    others = [r for r in range(origin.height) if abs(r - tone_row) > 2]
    floor_level = origin.floor_margin_db / origin.top_db
    row_medians = image[others].median(dim=-1).values
    assert torch.allclose(row_medians, torch.full_like(row_medians, floor_level), atol=0.03)  # flat noise floor
    peak_medians = peak[others].median(dim=-1).values
    assert peak_medians.max() - peak_medians.min() > 0.3  # peak-relative dB keeps the 40 dB colour
    assert image[tone_row].median() > floor_level + 0.2  # the tone lasts the whole window and still stands out


def test_floor_db_turns_digital_silence_into_a_flat_floor_not_a_saturated_image():
    image = SpectrogramTransform(get_preset("origin"))(torch.zeros(1, 96_000))[0]
    assert torch.allclose(image, torch.full_like(image, get_preset("origin").floor_margin_db / 50.0))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_images_have_the_configured_shape_and_range(name):
    config = get_preset(name)
    waves = torch.randn(3, config.sample_rate // 2) * 1e-3
    transform = SpectrogramTransform(config)
    images = transform(waves)
    assert images.shape == (3, config.height, config.width)
    assert images.min() >= 0 and images.max() <= 1 and torch.isfinite(images).all()
    single = transform(waves[1])
    torch.testing.assert_close(single[0], images[1], atol=1e-5, rtol=0)  # batching changes nothing


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_tone_lands_in_its_row(name):
    config = get_preset(name)
    t = np.arange(config.sample_rate // 2) / config.sample_rate
    # the tone starts after a quarter of the window: PCEN's gain control rightly flattens a tone that was always there
    tone = 0.1 * np.sin(2 * np.pi * 60_000 * t) * (t >= t[-1] / 4)
    wave = tone + np.random.default_rng(0).normal(0, 1e-4, t.size)
    image = SpectrogramTransform(config)(torch.tensor(wave, dtype=torch.float32))[0].numpy()
    brightest_row = int(np.argmax(image.mean(axis=1)))
    edges = config.row_edges_hz()
    assert edges[brightest_row + 1] - 200 <= 60_000 <= edges[brightest_row] + 200


def test_max_pooling_keeps_a_100_microsecond_click_that_mean_pooling_dilutes():
    config = get_preset("origin").replace(scaling="db", top_db=80.0)  # one fixed reference for both poolings
    rate = config.sample_rate
    wave = np.random.default_rng(3).normal(0, 1e-4, rate).astype(np.float32)  # 1 s -> 1501 frames into 128 columns
    t = np.arange(int(100e-6 * rate)) / rate
    wave[rate // 2 : rate // 2 + t.size] += 0.05 * np.sin(2 * np.pi * 130_000 * t) * np.hanning(t.size)
    rows = config.rows_in_band(120_000, 140_000)
    lift = {}
    for pooling in ("max", "mean"):
        image = SpectrogramTransform(config.replace(time_pooling=pooling))(torch.from_numpy(wave))[0].numpy()
        lift[pooling] = float(_band_profile(image)[rows].max())
    assert lift["max"] > 0.3, lift
    # Averaging ~12 frames of which the click fills ~2 costs it several dB of contrast; max pooling keeps them.
    assert (lift["max"] - lift["mean"]) * config.top_db > 4.0, lift


def test_real_porpoise_clicks_land_in_the_125_to_145_khz_rows(real_data):
    config = get_preset("origin")
    rng = np.random.default_rng(4)
    for name in ("pyporcc/standard_click.wav", "pamguard/example_porpoise_click_500kHz.wav"):
        click, rate = sf.read(str(real_data / name))
        assert rate == 500_000
        window = rng.normal(0, 1e-4, rate // 4)
        for start in np.arange(0.01, 0.24, 0.05):  # a regular click train, ICI 50 ms
            i = int(start * rate)
            window[i : i + click.size] += 0.05 * click / np.abs(click).max()
        resampled = librosa.resample(window, orig_sr=rate, target_sr=config.sample_rate)
        image = SpectrogramTransform(config)(torch.tensor(resampled, dtype=torch.float32))[0].numpy()
        peak_hz = config.row_frequencies_hz()[np.argmax(_band_profile(image))]
        assert 125_000 <= peak_hz <= 145_000, (name, peak_hz)


def test_real_delphinid_whistle_lands_in_the_4_to_9_khz_rows(real_data):
    whistle, rate = sf.read(str(real_data / "pamguard/dolphin_whistle.wav"))
    config = SpectrogramConfig(name="whistle-band", sample_rate=rate, n_fft=1024, hop_length=256, fmin=1_000,
                               fmax=20_000)
    image = SpectrogramTransform(config)(torch.tensor(whistle, dtype=torch.float32))[0].numpy()
    profile = _band_profile(image)
    rows_hz = config.row_frequencies_hz()
    strong = rows_hz[profile > profile.max() - 0.1]
    assert 4_000 <= strong.min() and strong.max() <= 9_000, strong
