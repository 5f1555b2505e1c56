"""One synthetic recording: a deployment's noise regime, calls placed window by window at drawn SNRs, the sensor.

The labelled calls and everything else are rendered separately and kept apart (the target stem), so ideal masks can
be computed exactly for any front end: a pixel is "sound" where target power beats the rest.

Window labels are what an annotator would mark: a sound type is present only where at least one of its calls is
detectable, that is, covers at least `DETECTABLE_PIXELS` pixels of the `origin` image grid at a local SNR of at least
`DETECTABLE_SNR_DB` (the call's own power against the noise, vessels and pings included, after the sensor). Fainter
calls stay in the audio, unlabelled, and events.csv keeps them with `labelled` false.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import torch

from ..core.labels import NUM_JOINT_CLASSES, SOUND_TYPES, label_vector
from ..frontend.spectrogram import SpectrogramTransform, get_preset
from .calls import Event, beluga_whistle, click_train
from .config import DETECTABLE_PIXELS, DETECTABLE_SNR_DB, DETECTION_PRESET, SOUND_MODELS
from .field import (
    FIELD_SENSORS, digital_artefacts, distant_shipping, flow_noise, mains_hum, rain, sea_noise_field, self_noise_psd,
    sensor_filter_field, vessel_passage_field,
)
from .noise import (
    ambient_noise, ambient_psd_db, echosounder, sensor_filter, shaped_noise, snapping_shrimp, vessel_passage,
)

if TYPE_CHECKING:
    from .real_mix import RealMix

# Band SNR of each call (dB, call power over its own duration vs. the ambient noise power in its band over the
# window). A click lasts ~100 us but a spectrogram frame ~3 ms, so a click's pixel SNR is ~15 dB below its own SNR:
# click ranges sit higher to span the same barely-visible-to-obvious range on the image. A passing vessel lowers the
# effective SNR further (events.csv records both). The lower ends leave about one call in six too faint to label
# (the detectability rule in `config`), as in real recordings.
SNR_RANGES_DB = {"whistle": (0.0, 20.0), "beluga_click": (12.0, 40.0), "porpoise_click": (16.0, 42.0)}
WINDOW_MARGIN_S = 0.005  # calls stay this far inside their window, so window labels are unambiguous
DIGITAL_NOISE_RMS = 0.003  # ambient noise level in the written files (-50 dBFS) before the sensor's gain: vessels fit below full scale


@dataclass(frozen=True)
class Deployment:
    """One recorder at one site in one season: what makes grouped splits a real domain shift."""

    name: str
    site: str
    season: str
    sensor: str
    sea_state: tuple[float, float]
    vessels_per_minute: float
    shrimp_rate_hz: tuple[float, float]
    shrimp_level_db: tuple[float, float]
    echosounder_probability: float
    highpass_hz: float
    rolloff_hz: float
    self_noise_db: float
    gain_db: float
    clipping_probability: float


# Sites differ in traffic, shrimp beds and fishing; seasons in weather, traffic and shrimp activity; sensors in
# frequency response, self-noise and gain.
SITES = {
    "tadoussac": {"vessels_per_minute": 4.0, "shrimp_rate_hz": (5, 40), "echosounder_probability": 0.3},
    "baie-ste-marguerite": {"vessels_per_minute": 1.0, "shrimp_rate_hz": (50, 300), "echosounder_probability": 0.1},
    "cap-de-bon-desir": {"vessels_per_minute": 2.0, "shrimp_rate_hz": (2, 20), "echosounder_probability": 0.5},
}
SEASONS = {
    "summer": {"sea_state": (0.0, 3.0), "traffic": 1.5, "shrimp_db": (-14.0, -4.0)},
    "autumn": {"sea_state": (2.0, 5.0), "traffic": 1.0, "shrimp_db": (-18.0, -8.0)},
    "winter": {"sea_state": (3.0, 6.0), "traffic": 0.4, "shrimp_db": (-22.0, -12.0)},
}
# Under the field sound model only: how often a recording holds flow noise (the Saguenay mouth's tidal currents run
# strongest at Tadoussac) and rain (snow makes little sound: Nystuen 1986).
FIELD_SITES = {"tadoussac": {"flow_probability": 0.8}, "baie-ste-marguerite": {"flow_probability": 0.3},
               "cap-de-bon-desir": {"flow_probability": 0.5}}
FIELD_SEASONS = {"summer": {"rain_probability": 0.15}, "autumn": {"rain_probability": 0.3},
                 "winter": {"rain_probability": 0.05}}
SENSORS = {
    # broadband recorder, flat to near Nyquist, quiet
    "broadband": {"highpass_hz": 20.0, "rolloff_hz": 180e3, "self_noise_db": 27.0, "gain_db": 0.0},
    # older hydrophone: earlier high-frequency roll-off (attenuates NBHF clicks), noisier, hotter gain
    "legacy": {"highpass_hz": 150.0, "rolloff_hz": 110e3, "self_noise_db": 34.0, "gain_db": 6.0},
}


def make_deployments(count: int, name_prefix: str = "") -> list[Deployment]:
    """A deterministic spread of deployments over sites, seasons and sensors. A name prefix gives deployments and
    sites names of their own (a second benchmark's recordings then never share a name with the first's)."""
    sites, seasons, sensors = list(SITES), list(SEASONS), list(SENSORS)
    deployments = []
    for i in range(count):
        site, season, sensor = sites[i % 3], seasons[(i + i // 3) % 3], sensors[(i // 2) % 2]
        s, w, r = SITES[site], SEASONS[season], SENSORS[sensor]
        deployments.append(Deployment(
            name=f"{name_prefix or 'D'}{i + 1:02d}", site=f"{name_prefix}-{site}" if name_prefix else site,
            season=season, sensor=sensor, sea_state=w["sea_state"],
            vessels_per_minute=s["vessels_per_minute"] * w["traffic"], shrimp_rate_hz=s["shrimp_rate_hz"],
            shrimp_level_db=w["shrimp_db"], echosounder_probability=s["echosounder_probability"],
            highpass_hz=r["highpass_hz"], rolloff_hz=r["rolloff_hz"], self_noise_db=r["self_noise_db"],
            gain_db=r["gain_db"], clipping_probability=0.15 if sensor == "legacy" else 0.03,
        ))
    return deployments


@dataclass(frozen=True)
class RecordingPlan:
    name: str
    deployment: Deployment
    n_windows: int
    window_s: float
    sample_rate: int
    seed: tuple[int, ...]
    class_weights: tuple[float, ...]
    sound_model: str = "v1"  # `config.SOUND_MODELS`
    real_mix: "RealMix | None" = None  # real recordings mixed in (synth/real_mix.py)


@dataclass
class RenderedRecording:
    mix: np.ndarray  # what the recorder wrote
    target: np.ndarray  # the target calls alone, after the same sensor response and gain
    typed_targets: dict[str, np.ndarray]  # the same, one sound type's calls each (they sum to `target`)
    windows: list[tuple[int, ...]]  # 3-bit labels per window
    events: list[dict]
    info: dict


def band_power(x: np.ndarray, sample_rate: int, low_hz: float, high_hz: float) -> float:
    """Mean power of x within [low_hz, high_hz] (Parseval on the real FFT)."""
    spectrum = np.fft.rfft(x)
    frequencies = np.fft.rfftfreq(x.size, 1 / sample_rate)
    band = (frequencies >= low_hz) & (frequencies <= high_hz)
    return float(2 * np.sum(np.abs(spectrum[band]) ** 2) / x.size**2)


def _draw_events(rng: np.random.Generator, sound_type: str, sample_rate: int, span: int,
                 model: str = "v1") -> list[Event]:
    if sound_type == "whistle":
        return [beluga_whistle(rng, sample_rate, span, model) for _ in range(min(1 + rng.poisson(0.6), 3))]  # bouts
    return [click_train(rng, sample_rate, span, sound_type, model) for _ in range(1 + int(rng.random() < 0.25))]


def _label_detectable(events: list[dict], placed: list[tuple[int, np.ndarray]], noise: np.ndarray, window: int,
                      sensor) -> None:
    """Count each call's pixels at >= DETECTABLE_SNR_DB on the detection grid (the call alone, after the sensor,
    against the window's noise) and mark it `labelled` when there are at least DETECTABLE_PIXELS of them."""
    grid = SpectrogramTransform(get_preset(DETECTION_PRESET))
    threshold = 10 ** (DETECTABLE_SNR_DB / 10)
    for index in sorted({e["window"] for e in events}):
        members = [i for i, e in enumerate(events) if e["window"] == index]
        start = index * window
        alone = np.zeros((len(members), window))
        for row, i in enumerate(members):
            offset, samples = placed[i]
            alone[row, offset - start : offset - start + samples.size] = samples
        with torch.no_grad():
            noise_power = grid.band_power(torch.from_numpy(noise[start : start + window])[None])
            call_power = grid.band_power(torch.from_numpy(sensor(alone)))
        pixels = (call_power > noise_power * threshold).sum(dim=(-2, -1))
        for i, count in zip(members, pixels.tolist()):
            events[i]["visible_pixels"] = int(count)
            events[i]["labelled"] = count >= DETECTABLE_PIXELS


def render_recording(plan: RecordingPlan) -> RenderedRecording:
    """The plan's recording in stages (background, calls, sensor, labels, recorder) that draw from one generator
    seeded by the plan, in this order: a plan always renders the same audio. The field sound model ("v2") draws its
    own ambient, vessels, calls and recorder (`field`); "v1" renders exactly what it always did."""
    rng = np.random.default_rng(np.random.SeedSequence(plan.seed))
    deployment, sr = plan.deployment, plan.sample_rate
    window = int(round(plan.window_s * sr))
    n = plan.n_windows * window
    if plan.sound_model not in SOUND_MODELS:
        raise ValueError(f"sound_model must be one of {', '.join(SOUND_MODELS)}, got {plan.sound_model!r}")
    field = plan.sound_model == "v2"
    baseline, ambient_rms, conditions = (_ambient_field if field else _ambient)(rng, deployment, n, sr)
    confusers, sources = _confusers(rng, deployment, baseline, ambient_rms, window, sr,
                                    vessel_passage_field if field else vessel_passage)
    info = {"recording": plan.name, "deployment": deployment.name, "site": deployment.site,
            "season": deployment.season, "sensor": deployment.sensor, **conditions, **sources, "clip_level": 0.0}
    if plan.real_mix is not None:  # from a generator of its own: the rendered sounds and calls are drawn as without
        from .real_mix import mix_real

        real_backgrounds, negatives, counts = mix_real(plan.real_mix, plan.seed, baseline, window, sr)
        baseline, confusers = baseline + real_backgrounds, confusers + negatives
        info.update(counts)
    target, placed, events = _place_calls(rng, plan, baseline, confusers, window)
    scale = DIGITAL_NOISE_RMS / ambient_rms * 10 ** (deployment.gain_db / 20)

    def sensor(x: np.ndarray) -> np.ndarray:
        if field:
            return sensor_filter_field(x, sr, deployment.sensor, deployment.highpass_hz, deployment.rolloff_hz) * scale
        return sensor_filter(x, sr, deployment.highpass_hz, deployment.rolloff_hz) * scale

    noise = sensor(baseline + confusers)
    keep = None
    if field:  # the recorder's DC offset and spikes are noise; its dropouts silence everything, calls included
        added, keep, artefacts = digital_artefacts(rng, n, sr, deployment.sensor)
        noise += added
        info.update(artefacts)
    _label_detectable(events, placed, noise, window, sensor)
    windows = [tuple(int(any(e["labelled"] for e in events if e["window"] == index and e["sound_type"] == t))
                     for t in SOUND_TYPES) for index in range(plan.n_windows)]
    # The target stem (and so the ideal masks) holds the labelled calls only, as an annotator draws masks on the
    # calls they mark; the faint ones stay in the mix as part of the background. Each sound type's labelled calls are
    # also kept alone (the typed stems, for the per-type ideal masks of a typed segmenter).
    faint, typed = _faint_and_typed_calls(events, placed, n)
    target = sensor(target - faint)
    mix = noise + sensor(faint) + target
    if keep is not None:
        mix, target = mix * keep, target * keep
    clip = 0.999
    if rng.random() < deployment.clipping_probability:  # an over-driven recorder flattens the loudest moments
        clip = min(clip, float(np.quantile(np.abs(mix), rng.uniform(0.995, 0.9999))))
        info["clip_level"] = round(clip, 5)
    return RenderedRecording(
        mix=np.clip(mix, -clip, clip).astype(np.float32), target=np.clip(target, -clip, clip).astype(np.float32),
        typed_targets={t: np.clip(sensor(x) if keep is None else sensor(x) * keep, -clip, clip).astype(np.float32)
                       for t, x in typed.items()},
        windows=windows, events=events, info=info,
    )


def _add_shrimp(rng: np.random.Generator, deployment: Deployment, baseline: np.ndarray, ambient_rms: float,
                sr: int) -> tuple[float, float]:
    """Snapping shrimp at the deployment's drawn rate and level re the ambient RMS, added to `baseline` in place;
    the rate and level drawn."""
    rate, level_db = rng.uniform(*deployment.shrimp_rate_hz), rng.uniform(*deployment.shrimp_level_db)
    shrimp = snapping_shrimp(rng, baseline.size, sr, rate, 0.0)
    if shrimp.any():
        baseline += shrimp * ambient_rms * 10 ** (level_db / 20) / np.sqrt(np.mean(shrimp**2))
    return rate, level_db


def _ambient(rng: np.random.Generator, deployment: Deployment, n: int, sr: int) -> tuple[np.ndarray, float, dict]:
    """Sea-state noise, the sensor's self-noise and snapping shrimp: the background call SNRs are drawn against;
    with its RMS and the conditions drawn."""
    sea_state = rng.uniform(*deployment.sea_state)
    baseline = ambient_noise(rng, n, sr, sea_state)
    baseline += shaped_noise(rng, n, sr, lambda f: np.full_like(f, deployment.self_noise_db))
    ambient_rms = np.sqrt(np.mean(baseline**2))
    shrimp_rate, shrimp_db = _add_shrimp(rng, deployment, baseline, ambient_rms, sr)
    return baseline, ambient_rms, {"sea_state": round(sea_state, 2), "shrimp_rate_hz": round(shrimp_rate, 1),
                                   "shrimp_level_db": round(shrimp_db, 1)}


def _ambient_field(rng: np.random.Generator, deployment: Deployment, n: int, sr: int) -> tuple[np.ndarray, float,
                                                                                             dict]:
    """The field model's background (`field`): bursty Wenz sea noise with 1/f self-noise (their RMS sets the level
    of vessels and of the written files, as in `_ambient`), shrimp as in `_ambient`, then distant shipping (its
    plateau 4-16 dB over the wind's, more where traffic is dense), flow noise, rain and mains hum when drawn."""
    sea_state = rng.uniform(*deployment.sea_state)
    baseline, conditions = sea_noise_field(rng, n, sr, sea_state, self_noise_psd(rng, deployment.self_noise_db))
    ambient_rms = np.sqrt(np.mean(baseline**2))
    shrimp_rate, shrimp_db = _add_shrimp(rng, deployment, baseline, ambient_rms, sr)
    wind_plateau = float(ambient_psd_db(np.array(100.0), sea_state))
    shipping_db = rng.uniform(4, 16) + 5 * np.log10(max(deployment.vessels_per_minute, 0.1) / 2)
    shipping, lines = distant_shipping(rng, n, sr, wind_plateau + shipping_db)
    baseline += shipping
    conditions.update(lines, distant_shipping_db=round(float(shipping_db), 1), flow_db=0.0, rain_drops_per_s=0.0,
                      rain_db=0.0, hum_db=0.0)
    site = deployment.site if deployment.site in FIELD_SITES else deployment.site.split("-", 1)[-1]  # a prefix
    if rng.random() < FIELD_SITES.get(site, {"flow_probability": 0.5})["flow_probability"]:
        conditions["flow_db"] = round(float(rng.uniform(0, 25)), 1)
        baseline += flow_noise(rng, n, sr, wind_plateau + conditions["flow_db"])
    if rng.random() < FIELD_SEASONS[deployment.season]["rain_probability"]:
        drops, rain_db = rng.uniform(200, 3000), rng.uniform(5, 20)
        drizzle = rain(rng, n, sr, drops)
        wind_band = 2 / sr * 10 ** (float(ambient_psd_db(np.array(15e3), sea_state)) / 10) * 12e3
        baseline += drizzle * np.sqrt(wind_band * 10 ** (rain_db / 10) / max(np.mean(drizzle**2), 1e-30))
        conditions.update(rain_drops_per_s=round(float(drops)), rain_db=round(float(rain_db), 1))
    if rng.random() < FIELD_SENSORS[deployment.sensor]["hum_probability"]:
        conditions["hum_db"] = round(float(rng.uniform(5, 25)), 1)
        baseline += mains_hum(rng, n, sr, conditions["hum_db"], wind_plateau)
    return baseline, ambient_rms, {"sea_state": round(sea_state, 2), "shrimp_rate_hz": round(shrimp_rate, 1),
                                   "shrimp_level_db": round(shrimp_db, 1), **conditions}


def _confusers(rng: np.random.Generator, deployment: Deployment, baseline: np.ndarray, ambient_rms: float,
               window: int, sr: int, vessel_model=vessel_passage) -> tuple[np.ndarray, dict]:
    """Passing vessels and echosounder pings: loud sounds that are not calls; with how many vessels passed and the
    pings' frequency (0 without)."""
    n = baseline.size
    duration_s = n / sr
    confusers = np.zeros(n)
    sources = {"vessels": 0, "echosounder_hz": 0.0}
    for _ in range(rng.poisson(deployment.vessels_per_minute * duration_s / 60 + 0.3)):
        vessel, params = vessel_model(rng, n, sr, 20 * np.log10(ambient_rms) + rng.uniform(0, 25))
        confusers += vessel
        sources["vessels"] += 1
    if rng.random() < deployment.echosounder_probability:
        pings, params = echosounder(rng, n, sr, 0.0)
        band = (params["frequency_hz"] - 5e3, params["frequency_hz"] + 5e3)
        ping_power = np.mean(pings[pings != 0] ** 2)
        confusers += pings * np.sqrt(band_power(baseline[:window], sr, *band) * 10 ** (rng.uniform(5, 25) / 10)
                                     / ping_power)
        sources["echosounder_hz"] = params["frequency_hz"]
    return confusers, sources


def _place_calls(rng: np.random.Generator, plan: RecordingPlan, baseline: np.ndarray, confusers: np.ndarray,
                 window: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray]], list[dict]]:
    """Each window's joint class drawn from the plan's weights, then its calls at drawn places and band SNRs: the
    target stem, each call's (offset, samples) and its events.csv row, in the same order."""
    sr = plan.sample_rate
    target = np.zeros(baseline.size)
    weights = np.asarray(plan.class_weights, dtype=float)
    placed: list[tuple[int, np.ndarray]] = []
    events = []
    margin = int(WINDOW_MARGIN_S * sr)
    for index in range(plan.n_windows):
        joint = int(rng.choice(NUM_JOINT_CLASSES, p=weights / weights.sum()))
        start = index * window
        quiet = baseline[start : start + window]
        loud = quiet + confusers[start : start + window]
        for sound_type, present in zip(SOUND_TYPES, label_vector(joint)):
            if not present:
                continue
            for event in _draw_events(rng, sound_type, sr, window - 2 * margin, plan.sound_model):
                offset = start + margin + int(rng.integers(0, window - 2 * margin - event.samples.size + 1))
                samples, snr_db, effective = _at_drawn_snr(rng, event, sound_type, quiet, loud, sr)
                target[offset : offset + samples.size] += samples
                placed.append((offset, samples))
                events.append({
                    "recording": plan.name, "window": index, "sound_type": sound_type,
                    "start_s": round(offset / sr, 6), "end_s": round((offset + samples.size) / sr, 6),
                    "low_hz": round(event.low_hz, 1), "high_hz": round(event.high_hz, 1),
                    "snr_db": round(snr_db, 2), "effective_snr_db": round(float(effective), 2),
                    "params": event.params,
                })
    return target, placed, events


def _at_drawn_snr(rng: np.random.Generator, event: Event, sound_type: str, quiet: np.ndarray, loud: np.ndarray,
                  sr: int) -> tuple[np.ndarray, float, float]:
    """The call scaled to a band SNR drawn from its type's range against the quiet background; with that SNR and the
    effective one, against the background with vessels and pings."""
    snr_db = rng.uniform(*SNR_RANGES_DB[sound_type])
    band = (event.low_hz, event.high_hz)
    signal_power = band_power(event.samples, sr, *band) * event.samples.size / (event.unit_duration_s * sr)
    noise_power = band_power(quiet, sr, *band)
    samples = event.samples * np.sqrt(noise_power * 10 ** (snr_db / 10) / max(signal_power, 1e-30))
    return samples, snr_db, snr_db - 10 * np.log10(band_power(loud, sr, *band) / noise_power)


def _faint_and_typed_calls(events: list[dict], placed: list[tuple[int, np.ndarray]],
                           n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The calls too faint to label, alone; and each sound type's labelled calls, alone."""
    faint = np.zeros(n)
    typed = {sound_type: np.zeros(n) for sound_type in SOUND_TYPES}
    for event, (offset, samples) in zip(events, placed):
        kept = typed[event["sound_type"]] if event["labelled"] else faint
        kept[offset : offset + samples.size] += samples
    return faint, typed
