"""Each sound model of the benchmark generator against the literature's ranges and the real public clips."""

import numpy as np
import pytest
import soundfile as sf

from mgc_lightning.synth.calls import beluga_click, beluga_whistle, click_train, porpoise_click
from mgc_lightning.synth.noise import ambient_noise, echosounder, sensor_filter, snapping_shrimp, vessel_passage

RATE = 384_000
N_FFT = 4096


def _peak_and_bandwidth(pulse: np.ndarray, rate: int) -> tuple[float, float]:
    """Peak frequency and -3 dB bandwidth of a single click's power spectrum."""
    power = np.abs(np.fft.rfft(pulse, N_FFT)) ** 2
    frequencies = np.fft.rfftfreq(N_FFT, 1 / rate)
    peak = int(np.argmax(power))
    above = np.flatnonzero(power >= power[peak] / 2)
    return float(frequencies[peak]), float(frequencies[above.max()] - frequencies[above.min()])


def _slope_db_per_decade(signal: np.ndarray, rate: int, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(signal)) ** 2
    frequencies = np.fft.rfftfreq(signal.size, 1 / rate)
    band = (frequencies >= low) & (frequencies <= high)
    return float(np.polyfit(np.log10(frequencies[band]), 10 * np.log10(power[band]), 1)[0])


def test_porpoise_clicks_have_nbhf_peak_bandwidth_and_duration():
    rng = np.random.default_rng(0)
    for _ in range(100):
        pulse, params = porpoise_click(rng, RATE)
        peak, bandwidth = _peak_and_bandwidth(pulse, RATE)
        assert 124e3 <= peak <= 146e3
        assert 5e3 <= bandwidth <= 28e3
        assert 44 * 0.9 <= params["duration_us"] <= 176
        assert abs(peak - params["peak_hz"]) < 1e3


def test_synthetic_porpoise_clicks_cover_the_real_templates(real_data):
    rng = np.random.default_rng(1)
    synthetic = np.array([_peak_and_bandwidth(porpoise_click(rng, 500_000)[0], 500_000) for _ in range(300)])
    for name in ("pyporcc/standard_click.wav", "pamguard/example_porpoise_click_500kHz.wav"):
        template, rate = sf.read(str(real_data / name))
        peak, bandwidth = _peak_and_bandwidth(template, rate)
        # the real clicks' peak frequency and bandwidth sit inside what the generator draws
        assert synthetic[:, 0].min() <= peak <= synthetic[:, 0].max(), (name, peak)
        assert synthetic[:, 1].min() <= bandwidth <= synthetic[:, 1].max(), (name, bandwidth)
        # and not in its rarely drawn tails: within 12 kHz of the synthetic median peak frequency
        assert abs(peak - np.median(synthetic[:, 0])) < 12e3


def test_beluga_click_average_spectrum_matches_the_real_average(real_data):
    import csv

    with open(real_data / "zahn_beluga_narwhal/beluga_ex_spec.csv") as handle:
        real = np.array([(float(r["freq"]), float(r["avgSpec"])) for r in csv.DictReader(handle)])
    rng = np.random.default_rng(2)
    frequencies = np.fft.rfftfreq(N_FFT, 1 / RATE)
    power = np.zeros(frequencies.size)
    for _ in range(400):
        pulse, params = beluga_click(rng, RATE)
        assert 40e3 <= params["peak_hz"] <= 120e3 and 50 <= params["duration_us"] <= 100
        power += np.abs(np.fft.rfft(pulse / np.linalg.norm(pulse), N_FFT)) ** 2
    synthetic_db = 10 * np.log10(np.interp(real[:, 0], frequencies, power))
    # 20-65 kHz: above the recording's low-frequency noise and below its anti-alias roll-off (SoundTrap, 144 kHz)
    band = (real[:, 0] >= 20e3) & (real[:, 0] <= 65e3)
    correlation = np.corrcoef(synthetic_db[band], real[band, 1])[0, 1]
    print(f"beluga click mean spectrum vs Zahn et al. 2023, 20-65 kHz: r = {correlation:.3f}")
    assert correlation > 0.9


@pytest.mark.parametrize("sound_type", ["porpoise_click", "beluga_click"])
def test_click_trains_fit_their_span_with_documented_intervals(sound_type):
    rng = np.random.default_rng(3)
    span = int(0.5 * RATE)
    for _ in range(30):
        event = click_train(rng, RATE, span, sound_type)
        assert event.samples.size <= span and event.params["clicks"] >= 1
        ici = event.params["ici_ms"]
        if event.params["buzz"]:
            assert sound_type == "porpoise_click" and 1.5 <= ici <= 5
        elif sound_type == "porpoise_click":
            assert 30 <= ici <= 100
        else:
            assert 20 <= ici <= 60
        assert 0 <= event.low_hz < event.high_hz <= RATE / 2


def test_porpoise_buzzes_pack_clicks_densely():
    rng = np.random.default_rng(4)
    trains = [click_train(rng, RATE, int(0.5 * RATE), "porpoise_click") for _ in range(60)]
    buzzes = [t for t in trains if t.params["buzz"]]
    regular = [t for t in trains if not t.params["buzz"]]
    assert buzzes and regular
    assert min(t.params["clicks"] for t in buzzes) > max(t.params["clicks"] for t in regular)


def test_whistles_are_tonal_contours_in_the_beluga_band():
    rng = np.random.default_rng(5)
    for _ in range(20):
        event = beluga_whistle(rng, RATE, int(0.5 * RATE))
        assert 0.08 <= event.samples.size / RATE <= 0.5
        assert 1e3 * 0.95 <= event.low_hz and event.high_hz <= 20e3 * 1.05
        middle = event.samples[event.samples.size // 2 - 2048 : event.samples.size // 2 + 2048]
        frequencies = np.fft.rfftfreq(middle.size, 1 / RATE)
        power = np.abs(np.fft.rfft(middle * np.hanning(middle.size))) ** 2
        peak = frequencies[np.argmax(power)]
        assert event.low_hz <= peak <= event.high_hz  # the fundamental dominates
        assert power.max() > 100 * np.median(power)  # narrowband, not noise


@pytest.mark.slow
def test_vessel_noise_falls_about_20_db_per_decade_and_peaks_at_closest_approach():
    rng = np.random.default_rng(6)
    slopes = []
    for _ in range(5):
        noise, params = vessel_passage(rng, 2 * RATE, RATE, level_db=0.0)
        slopes.append(_slope_db_per_decade(noise, RATE, 1e3, 10e3))
        assert abs(np.sqrt(np.mean(noise**2)) - 1.0) < 1e-6
        if 0.1 < params["cpa_s"] < 1.9:
            width = RATE // 20  # a 50 ms moving mean of the power, by cumulative sums (np.convolve's direct sum
            power = np.concatenate([[0.0], np.cumsum(noise.astype(np.float64) ** 2)])  # took seconds)
            envelope = np.sqrt((power[width:] - power[:-width]) / width)
            loudest_s = (np.argmax(envelope) + RATE // 40) / RATE
            assert abs(loudest_s - params["cpa_s"]) < 0.5
    print(f"vessel spectral slope 1-10 kHz: {np.mean(slopes):.1f} dB/decade")
    assert -26 < np.mean(slopes) < -14


def test_ambient_noise_follows_sea_state_and_wenz_slope():
    rng = np.random.default_rng(7)
    calm, rough = ambient_noise(rng, RATE, RATE, 1.0), ambient_noise(rng, RATE, RATE, 5.0)
    assert 10 * np.log10(np.mean(rough**2) / np.mean(calm**2)) == pytest.approx(20, abs=1.5)
    assert -20 < _slope_db_per_decade(rough, RATE, 1e3, 10e3) < -14
    assert _slope_db_per_decade(calm, RATE, 120e3, 180e3) > 0  # thermal noise rises at the top


def test_snapping_shrimp_are_sparse_broadband_impulses():
    rng = np.random.default_rng(8)
    snaps = snapping_shrimp(rng, RATE, RATE, rate_hz=100, level_db=0)
    loud = np.abs(snaps) > 10 * np.sqrt(np.mean(snaps**2))
    assert 0.0001 < loud.mean() < 0.01  # impulsive: a tiny fraction of samples carries the energy
    power = np.abs(np.fft.rfft(snaps)) ** 2
    frequencies = np.fft.rfftfreq(snaps.size, 1 / RATE)
    share_above_50k = power[frequencies > 50e3].sum() / power.sum()
    assert share_above_50k > 0.1  # energy reaches far above the band of any call


def test_echosounder_pings_are_narrowband_at_a_sonar_frequency():
    rng = np.random.default_rng(9)
    pings, params = echosounder(rng, RATE, RATE, level_db=0)
    power = np.abs(np.fft.rfft(pings)) ** 2
    frequencies = np.fft.rfftfreq(pings.size, 1 / RATE)
    near = np.abs(frequencies - params["frequency_hz"]) < 10e3
    assert power[near].sum() / power.sum() > 0.9
    onsets = np.flatnonzero(np.diff((pings != 0).astype(int)) == 1)
    assert np.allclose(np.diff(onsets) / RATE, params["interval_ms"] / 1e3, atol=1e-3)


def test_sensor_response_cuts_lows_and_rolls_off_highs():
    rng = np.random.default_rng(10)
    white = rng.standard_normal(RATE)
    filtered = sensor_filter(white, RATE, highpass_hz=150, rolloff_hz=110e3)
    frequencies = np.fft.rfftfreq(RATE, 1 / RATE)
    gain = np.abs(np.fft.rfft(filtered)) ** 2 / np.abs(np.fft.rfft(white)) ** 2

    def level(low, high):
        return 10 * np.log10(gain[(frequencies > low) & (frequencies < high)].mean())

    assert level(10, 50) < -15 and abs(level(5e3, 20e3)) < 1 and level(150e3, 180e3) < -3
