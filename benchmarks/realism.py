"""Realism check: the synthetic benchmark's calls and noise against the real public clips (issue #25).

A model trained on the generator alone meets real water at deployment; where the generator's sounds differ from real
ones, the model learns the wrong cues. This script renders a handful of the generator's own calls and noises with
the `mgc_lightning.synth` functions (seeded, no files written but figures) and measures them with the same
gain-invariant functions (`mgc_lightning.synth.realism`) as the real clips in ../shared/data/real (see SOURCES.md):

1. porpoise clicks against the two real NBHF templates (500 kHz): peak, centroid, -3 / -10 dB bandwidth, -10 dB
   envelope duration, 95 %-energy duration and envelope asymmetry;
2. beluga clicks: the generator's mean click spectrum against Zahn et al.'s (2023) mean beluga and narwhal click
   spectra, on their 281.25 Hz grid up to 72 kHz;
3. background noise: octave-band levels relative to the 1 kHz band and the spectral slope per decade (median
   Welch spectra, so calls in the real clips weigh little), spectral kurtosis per band (impulsiveness) and
   tonal-line statistics (narrow peaks above the local median, their count, persistence and frequency drift), for
   the generator's ambient noise, vessel passages and complete call-free benchmark recordings against the North Sea
   ambient (8 kHz) and the Orcasound j_pod clip (44.1 kHz), over the bands they share;
4. whistles: the generator's beluga whistle contours (duration, frequency range, sweep rate) against PAMGuard's
   67 delphinid whistle contours (a proxy: no beluga audio is public).

It prints Markdown tables of every number and writes four PNG figures: about 20 s of CPU on a 2-core AMD EPYC,
mostly rendering six vessel passages and two benchmark recordings at 384 kHz.

    python benchmarks/realism.py [--out docs/realism] [--real ../shared/data/real]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.io  # noqa: E402
import soundfile as sf  # noqa: E402
from scipy.signal import hilbert, spectrogram  # noqa: E402

from mgc_lightning.synth.calls import (  # noqa: E402
    beluga_click, beluga_click_field, beluga_whistle, porpoise_click, porpoise_click_field,
)
from mgc_lightning.synth.field import distant_shipping, sea_noise_field, vessel_passage_field  # noqa: E402
from mgc_lightning.synth.noise import ambient_noise, ambient_psd_db, sensor_filter, vessel_passage  # noqa: E402
from mgc_lightning.synth.realism import (  # noqa: E402
    band_levels, band_mean, click_metrics, envelope_modulation, interference_delays, robust_psd, spectral_kurtosis,
    spectral_slope, spectrum_metrics, tonal_lines,
)
from mgc_lightning.synth.scene import RecordingPlan, make_deployments, render_recording  # noqa: E402

SR = 384_000  # the benchmark's sample rate
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
OCTAVES = (63, 125, 250, 500, 1000, 2000, 4000, 8000)
KURTOSIS_OCTAVES = (250, 500, 1000, 2000, 4000, 8000)
TONAL_BAND = (10.0, 3000.0)  # shared by every clip; the generator's blade-rate lines are 4.5-30 Hz and harmonics
WHISTLE_TONAL_BAND = (1000.0, 10000.0)  # where whistles live: ship lines there read as whistles to a model
VESSELS = 6  # generated vessel passages measured for the tonal-line statistics
SEGMENT_S = 6.0  # real clips are measured in pieces as long as the generated ones
ZAHN_BAND = (10e3, 72e3)  # above the low-frequency noise hump of Zahn's spectra, below their Nyquist
DPI = 80


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; floats with up to one decimal (or as given when already strings)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "n/a" if np.isnan(value) else f"{value:.1f}" if abs(value) < 1e4 else f"{value:.0f}"
        return str(value)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def spread(values) -> str:
    """Median [5th-95th percentile] of a sample, one decimal."""
    lo, mid, hi = np.percentile(values, [5, 50, 95])
    return f"{mid:.1f} [{lo:.1f}-{hi:.1f}]"


# 1. Porpoise clicks -------------------------------------------------------------------------------------------------

CLICK_KEYS = ("peak_hz", "centroid_hz", "bw3_hz", "bw10_hz", "duration_10db_us", "duration_e95_us", "decay_over_rise")


def real_porpoise_clicks(real: Path) -> dict[str, tuple[np.ndarray, int]]:
    clicks = {}
    for name, path in (("PyPorCC standard_click", "pyporcc/standard_click.wav"),
                       ("PAMGuard porp1", "pamguard/example_porpoise_click_500kHz.wav")):
        x, sr = sf.read(real / path)
        clicks[name] = (x, sr)
    return clicks


def porpoise_section(real: Path, count: int = 200) -> tuple[str, dict]:
    """The click table (real templates one row each; generated clicks as median [5-95 %] of `count`, raw and after
    the `legacy` sensor's 110 kHz roll-off) and the curves for the figure."""
    rng = np.random.default_rng(1)
    generated = [porpoise_click(rng, SR)[0] for _ in range(count)]
    legacy = [sensor_filter(np.pad(c, 200), SR, 150.0, 110e3) for c in generated]
    field = [porpoise_click_field(rng, SR)[0] for _ in range(count)]
    rows = []
    reals = real_porpoise_clicks(real)
    for name, (x, sr) in reals.items():
        m = click_metrics(x, sr)
        rows.append([f"{name} (real, {sr // 1000} kHz)"] + [m[k] / (1e3 if k.endswith("hz") else 1)
                                                             for k in CLICK_KEYS])
    for name, clicks in ((f"generator porpoise_click (x{count}, {SR // 1000} kHz)", generated),
                         ("the same after the legacy sensor", legacy),
                         (f"field model porpoise_click_field (v2, x{count})", field)):
        ms = [click_metrics(c, SR) for c in clicks]
        rows.append([name] + [spread([m[k] / (1e3 if k.endswith("hz") else 1) for m in ms]) for k in CLICK_KEYS])
    header = ["click", "peak kHz", "centroid kHz", "-3 dB bw kHz", "-10 dB bw kHz", "-10 dB dur. µs",
              "95 % energy dur. µs", "decay / rise (-10 dB)"]
    return table(header, rows), {"real": reals, "generated": generated[:6], "field": field[:6]}


def porpoise_figure(curves: dict, out: Path) -> None:
    fig, (spec, wave) = plt.subplots(1, 2, figsize=(10, 3.6))
    def draw(x, sr, **style):
        n = 8192
        p = np.abs(np.fft.rfft(x, n)) ** 2
        spec.plot(np.fft.rfftfreq(n, 1 / sr) / 1e3, 10 * np.log10(p / p.max() + 1e-12), **style)
        top = int(np.argmax(np.abs(hilbert(x))))
        wave.plot((np.arange(x.size) - top) / sr * 1e6, x / np.max(np.abs(x)), **style)
    for i, x in enumerate(curves["generated"]):
        draw(x, SR, color="0.6", lw=0.8, label="generator v1 (6 draws)" if i == 0 else None)
    for i, x in enumerate(curves["field"]):
        draw(x, SR, color="C2", lw=0.6, alpha=0.7, label="generator v2, field (6 draws)" if i == 0 else None)
    for (name, (x, sr)), color in zip(curves["real"].items(), ("C0", "C3")):
        draw(x, sr, color=color, lw=1.5, label=f"{name} (real)")
    spec.set(xlim=(0, 250), ylim=(-40, 2), xlabel="frequency (kHz)", ylabel="dB re peak",
             title="Porpoise click spectra")
    wave.set(xlim=(-150, 250), xlabel="time from envelope peak (µs)", ylabel="normalised amplitude",
             title="Waveforms")
    spec.legend(fontsize=7, loc="lower center")
    fig.tight_layout()
    fig.savefig(out / "porpoise_clicks.png", dpi=DPI)
    plt.close(fig)


# 2. Beluga clicks against Zahn's mean spectra ----------------------------------------------------------------------


def zahn_spectrum(real: Path, species: str) -> tuple[np.ndarray, np.ndarray]:
    """Zahn et al.'s mean click spectrum of one event: frequencies (Hz) and level (dB, relative)."""
    with open(real / "zahn_beluga_narwhal" / f"{species}_ex_spec.csv") as handle:
        rows = [(float(f), float(v)) for f, v in list(csv.reader(handle))[1:]]
    return np.array([f for f, _ in rows]), np.array([v for _, v in rows])


def generated_beluga_spectrum(count: int = 200, click=beluga_click) -> tuple[np.ndarray, np.ndarray, float]:
    """The generator's mean beluga click power spectrum (unit-energy clicks, 384 kHz), and the share of clicks whose
    peak lies above 72 kHz (out of reach of Zahn's recorders)."""
    rng = np.random.default_rng(2)
    n = 8192
    total, above = np.zeros(n // 2 + 1), 0
    freqs = np.fft.rfftfreq(n, 1 / SR)
    for _ in range(count):
        samples, _ = click(rng, SR)
        click_power = np.abs(np.fft.rfft(samples / np.sqrt(np.sum(samples**2)), n)) ** 2
        total += click_power
        above += freqs[np.argmax(click_power)] > 72e3
    return freqs, total / count, above / count


def beluga_section(real: Path) -> tuple[str, dict]:
    """Peak, centroid and bandwidths within 10-72 kHz of the generator's mean spectrum (on Zahn's grid) and Zahn's
    beluga and narwhal spectra; the RMS difference in dB (curves normalised to their peaks) from the beluga curve."""
    grid, beluga = zahn_spectrum(real, "beluga")
    _, narwhal = zahn_spectrum(real, "narwhal")
    freqs, mean_power, above = generated_beluga_spectrum()
    _, field_power, field_above = generated_beluga_spectrum(click=beluga_click_field)
    generated = 10 * np.log10(np.interp(grid, freqs, mean_power))
    field = 10 * np.log10(np.interp(grid, freqs, field_power))
    inside = (grid >= ZAHN_BAND[0]) & (grid <= ZAHN_BAND[1])

    def normalised(level):
        return level - level[inside].max()
    curves = {"Zahn beluga (real)": normalised(beluga), "Zahn narwhal (real)": normalised(narwhal),
              "generator beluga_click mean (x200)": normalised(generated),
              "field model beluga_click_field mean (v2, x200)": normalised(field)}
    rows = []
    for name, level in curves.items():
        m = spectrum_metrics(grid, 10 ** (level / 10), ZAHN_BAND)
        rms = np.sqrt(np.mean((level[inside] - curves["Zahn beluga (real)"][inside]) ** 2))
        peak = f"{m['peak_hz'] / 1e3:.1f}" + (" (band edge)" if m["peak_hz"] >= grid[inside][-1] else "")
        rows.append([name, peak] + [m[k] / 1e3 for k in ("centroid_hz", "bw3_hz", "bw10_hz")] + [rms])
    for name, power in (("generator mean, whole band to 192 kHz", mean_power),
                        ("field model (v2) mean, whole band to 192 kHz", field_power)):
        full = spectrum_metrics(freqs, power, (10e3, SR / 2))
        rows.append([name] + [full[k] / 1e3 for k in ("peak_hz", "centroid_hz", "bw3_hz", "bw10_hz")] + [""])
    header = ["spectrum (10-72 kHz)", "peak kHz", "centroid kHz", "-3 dB bw kHz", "-10 dB bw kHz",
              "RMS dB from beluga"]
    note = f"Generated beluga clicks peaking above 72 kHz: {above:.0%} (field model, v2: {field_above:.0%})."
    return table(header, rows) + "\n\n" + note, {"grid": grid, "curves": curves, "freqs": freqs,
                                                 "full": 10 * np.log10(mean_power / mean_power.max())}


def beluga_figure(data: dict, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for (name, level), color in zip(data["curves"].items(), ("C0", "C2", "C1", "C3")):
        ax.plot(data["grid"] / 1e3, level, color=color, lw=1.5, label=name)
    ax.plot(data["freqs"] / 1e3, data["full"], color="C1", lw=0.8, ls="--",
            label="generator mean, beyond Zahn's band (dB re its own peak)")
    ax.axvspan(*(np.array(ZAHN_BAND) / 1e3), color="0.9", zorder=0, label="band measured")
    ax.set(xlim=(0, 150), ylim=(-40, 3), xlabel="frequency (kHz)", ylabel="dB re peak in 10-72 kHz",
           title="Beluga click mean spectra: generator vs Zahn et al. (2023)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "beluga_click_spectra.png", dpi=DPI)
    plt.close(fig)


# 3. Background noise ----------------------------------------------------------------------------------------------


def generated_noise(seconds: float = 6.0) -> tuple[dict[str, tuple[np.ndarray, int, float]],
                                                   list[tuple[np.ndarray, dict]]]:
    """The generator's noise at 384 kHz: Wenz ambient; VESSELS passages over one ambient (sea state 2, the vessel
    +15 dB re the ambient's RMS, mid-range of the scene's 0-25 dB); two call-free benchmark recordings as long as
    the demo's (deployments D01, broadband sensor, and D03, legacy sensor: ambient, self-noise, shrimp, vessels and
    pings as drawn, after the sensor). The sources measured one by one, name -> (samples, rate, highest usable
    frequency), with the first two passages among them; and every passage with its drawn parameters."""
    rng = np.random.default_rng(3)
    n = int(seconds * SR)
    sources = {"generator ambient (Wenz, sea state 3)": (ambient_noise(rng, n, SR, 3.0), SR, 20e3)}
    ambient = ambient_noise(rng, n, SR, 2.0)
    vessels = _passages(rng, ambient, vessel_passage, "generator vessel {} (blade rate {:.0f} Hz)", sources)
    _benchmark_recordings(sources, "v1")
    return sources, vessels


def _passages(rng: np.random.Generator, ambient: np.ndarray, passage, name: str,
              sources: dict) -> list[tuple[np.ndarray, dict]]:
    """VESSELS passages of `passage` at +15 dB over `ambient`'s RMS, each with the ambient added; the first two also
    go into `sources` under `name` (formatted with their number and blade rate)."""
    vessels = []
    for i in range(VESSELS):
        vessel, p = passage(rng, ambient.size, SR, 20 * np.log10(np.sqrt(np.mean(ambient**2))) + 15)
        vessels.append((vessel + ambient, p))
        if i < 2:
            sources[name.format(i + 1, p["blade_rate_hz"])] = (vessels[-1][0], SR, 20e3)
    return vessels


def _benchmark_recordings(sources: dict, model: str) -> None:
    """Two call-free benchmark recordings of the sound model, added to `sources`."""
    weights = (1.0,) + (0.0,) * 7  # every window call-free
    for deployment in make_deployments(3)[::2]:
        plan = RecordingPlan(f"realism_{deployment.name}", deployment, 24, 0.25, SR, (0, 1), weights, model)
        recording = render_recording(plan)
        info = recording.info
        extra = "" if model == "v1" else (f", flow {info['flow_db']:.0f} dB, hum {info['hum_db']:.0f} dB, "
                                          f"shipping +{info['distant_shipping_db']:.0f} dB")
        name = (f"{'benchmark' if model == 'v1' else 'field benchmark (v2)'} {deployment.name} ({deployment.sensor}, "
                f"{info['vessels']} vessel(s), shrimp {info['shrimp_rate_hz']:.0f}/s{extra})")
        sources[name] = (recording.mix.astype(float), SR, 20e3)


def field_noise(seconds: float = 6.0) -> tuple[dict[str, tuple[np.ndarray, int, float]],
                                               list[tuple[np.ndarray, dict]]]:
    """The field sound model's (v2) noise, as `generated_noise` with another seed: its sea noise (sea state 3, wave
    bursts) with distant shipping 10 dB over the wind plateau, VESSELS passages of `vessel_passage_field` over a
    sea-state-2 field ambient (+15 dB), and the two call-free benchmark recordings rendered with sound_model "v2"."""
    rng = np.random.default_rng(5)
    n = int(seconds * SR)
    sea, _ = sea_noise_field(rng, n, SR, 3.0)
    shipping, _ = distant_shipping(rng, n, SR, float(ambient_psd_db(np.array(100.0), 3.0)) + 10)
    sources = {"field ambient (v2: sea state 3, wave bursts, shipping +10 dB)": (sea + shipping, SR, 20e3)}
    ambient, _ = sea_noise_field(rng, n, SR, 2.0)
    vessels = _passages(rng, ambient, vessel_passage_field, "field vessel {} (v2, blade rate {:.0f} Hz)", sources)
    _benchmark_recordings(sources, "v2")
    return sources, vessels


def vessel_tonal_row(vessels: list[tuple[np.ndarray, dict]], label: str = "generator",
                     band: tuple[float, float] = TONAL_BAND) -> tuple[list, int]:
    """The tonal-line statistics of every generated passage in `band` as one table row (medians [min-max]), and the
    index of the passage with the most persistent lines (for the spectrogram figure)."""
    results = [tonal_lines(v, SR, band, persistence=0.25) for v, _ in vessels]

    def summary(key: str, digits: int = 1) -> str:
        values = np.array([r[key] for r in results], float)
        if np.isnan(values).all():
            return "n/a"
        return f"{np.nanmedian(values):.{digits}f} [{np.nanmin(values):.{digits}f}-{np.nanmax(values):.{digits}f}]"
    lines = sorted({round(f) for r in results for f in r["line_hz"]})
    row = [f"{label} vessel passages (x{len(vessels)}: median [min-max])", summary("frames_with_line", 2),
           summary("lines_per_frame"), summary("persistent_lines", 0), summary("drift_hz", 2),
           summary("prominence_db"), f"{len(lines)} lines, {min(lines, default=0):.0f}-{max(lines, default=0):.0f} Hz"]
    return row, int(np.argmax([r["persistent_lines"] for r in results]))


def real_noise(real: Path) -> dict[str, tuple[np.ndarray, int, float]]:
    """The real background clips: name -> (samples, rate, highest usable frequency: below the anti-alias roll-off of
    the 8 kHz files, below the 12 kHz low-pass that the j_pod clip carries)."""
    folder = real / "lifewatch_pypam"
    pypam = np.concatenate([sf.read(path)[0] for path in sorted(folder.glob("*.flac"))])
    j_pod, sr = sf.read(real / "orcasound_orcadata" / "j_pod.wav")
    return {"North Sea ambient (pypam, 8 kHz, 900 s)": (pypam, 8000, 3200.0),
            "Orcasound j_pod (44.1 kHz, 20 s, left)": (j_pod[:, 0], sr, 11000.0)}


def segments(x: np.ndarray, sr: int) -> list[np.ndarray]:
    """Consecutive SEGMENT_S pieces of a clip (the generated clips' length), so that long real clips are measured
    on the same time scale: a line that wanders over 15 minutes is not a drift within 6 seconds."""
    step = int(SEGMENT_S * sr)
    return [x[i : i + step] for i in range(0, max(x.size - step, 0) + 1, step)]


def segment_tonal(pieces: list[np.ndarray], sr: int, band: tuple[float, float] = TONAL_BAND) -> dict:
    """Tonal-line statistics as the median over segments, and the lines (to 4 Hz) found in at least 10 % of them."""
    results = [tonal_lines(piece, sr, band, persistence=0.25) for piece in pieces]
    out = {key: float(np.nanmedian([r[key] for r in results])) if any(not np.isnan(r[key]) for r in results)
           else float("nan") for key in ("frames_with_line", "lines_per_frame", "persistent_lines", "drift_hz",
                                          "prominence_db")}
    found = np.array([round(f / 4) * 4 for r in results for f in set(r["line_hz"])])
    values, counts = np.unique(found, return_counts=True)
    out["line_hz"] = [float(v) for v in values[counts >= 0.1 * len(results)]]
    return out


def noise_measures(x: np.ndarray, sr: int, usable_hz: float) -> dict:
    """Every noise measure of one clip, within its usable band: the spectrum over the whole clip, the kurtosis and
    tonal lines per SEGMENT_S segment (medians)."""
    freqs, psd = robust_psd(x, sr)
    keep = freqs <= usable_hz
    freqs, psd = freqs[keep], psd[keep]
    levels = band_levels(freqs, psd, OCTAVES)
    pieces = segments(x, sr)
    kurtosis = []
    for piece in pieces:
        sk_freqs, sk = spectral_kurtosis(piece, sr, frame_s=0.01)
        kurtosis.append(band_mean(sk_freqs, sk, KURTOSIS_OCTAVES))
    sk_bands = np.median(kurtosis, axis=0)
    sk_bands[np.array(KURTOSIS_OCTAVES) * np.sqrt(2) > usable_hz] = np.nan
    top = min(10e3, usable_hz)
    return {"freqs": freqs, "psd": psd, "levels": levels - levels[OCTAVES.index(1000)],
            "slope_low": spectral_slope(freqs, psd, 200, 2000),
            "slope_high": spectral_slope(freqs, psd, 2000, top) if top >= 8e3 else np.nan,
            "sk": sk_bands, "tonal": segment_tonal(pieces, sr), "segments": len(pieces),
            "tonal_whistle": segment_tonal(pieces, sr, WHISTLE_TONAL_BAND) if usable_hz >= 10e3 else None}


def _tonal_rows(measures: dict[str, dict], key: str, vessel_rows: dict[str, list]) -> list[list]:
    """One tonal-line row per source holding `key`, each vessel row before the source it is keyed by."""
    rows = []
    for name, m in measures.items():
        if name in vessel_rows:
            rows.append(vessel_rows[name])
        t = m[key]
        if t is None:
            continue
        lines = ", ".join(f"{f:.0f}" for f in t["line_hz"][:6]) + (" ..." if len(t["line_hz"]) > 6 else "")
        rows.append([name, f"{t['frames_with_line']:.2f}", t["lines_per_frame"], t["persistent_lines"],
                     "n/a" if np.isnan(t["drift_hz"]) else f"{t['drift_hz']:.2f}", t["prominence_db"], lines or "-"])
    return rows


def noise_tables(measures: dict[str, dict], vessel_rows: dict[str, list], whistle_rows: dict[str, list]) -> str:
    """Four tables: band levels and slopes, spectral kurtosis per band, tonal lines in 10-3000 Hz and in the whistle
    band (each vessel-passage row before the source named by its key: the benchmark recordings)."""
    levels = [[name] + list(m["levels"]) + [m["slope_low"], m["slope_high"]] for name, m in measures.items()]
    sk = [[name] + [f"{v:.2f}" if not np.isnan(v) else "n/a" for v in m["sk"]] for name, m in measures.items()]
    tonal = _tonal_rows(measures, "tonal", vessel_rows)
    whistle = _tonal_rows(measures, "tonal_whistle", whistle_rows)
    tonal_header = ["frames with a line", "lines per frame", "persistent lines", "drift Hz (std)", "prominence dB",
                    "persistent line Hz"]
    return "\n\n".join([
        table(["source"] + [f"{f} Hz" if f < 1000 else f"{f // 1000} kHz" for f in OCTAVES]
              + ["slope 0.2-2 kHz dB/dec", "slope 2-10 kHz dB/dec"], levels),
        table(["spectral kurtosis"] + [f"{f} Hz" if f < 1000 else f"{f // 1000} kHz" for f in KURTOSIS_OCTAVES], sk),
        table(["tonal lines 10-3000 Hz"] + tonal_header, tonal),
        table(["tonal lines 1-10 kHz (whistle band)"] + tonal_header, whistle),
    ])


def vessel_structure(vessels: list[tuple[np.ndarray, dict]], label: str) -> list:
    """Lloyd's mirror and cavitation modulation over the passages, one row: the median cepstral prominence of a
    surface-image delay (`interference_delays`: ~3 without fringes), the delay's range over the frames of the most
    prominent passage (ms; it grows towards the closest point of approach), how often the DEMON line is the blade
    rate, the shaft rate or a harmonic of either (within 3 %), and its median prominence."""
    delays = [interference_delays(x, SR) for x, _ in vessels]
    prominence = [float(np.median(d["prominence"])) for d in delays]
    best = delays[int(np.argmax(prominence))]
    clear = best["prominence"] > 6
    span = (f"{best['delay_s'][clear].min() * 1e3:.2f}-{best['delay_s'][clear].max() * 1e3:.2f}" if clear.any()
            else "none")
    hits, heights = 0, []
    for x, p in vessels:
        demon = envelope_modulation(x, SR)
        heights.append(demon["prominence_db"])
        bases = [p["blade_rate_hz"]] + ([p["shaft_hz"]] if "shaft_hz" in p else [])
        hits += any(abs(demon["peak_hz"] / b - round(demon["peak_hz"] / b)) < 0.03 * round(demon["peak_hz"] / b)
                    and round(demon["peak_hz"] / b) >= 1 for b in bases)
    return [f"{label} vessel passages (x{len(vessels)})", f"{np.median(prominence):.1f} [{min(prominence):.1f}-"
            f"{max(prominence):.1f}]", span, f"{hits} of {len(vessels)}", f"{np.median(heights):.1f}"]


def spectra_figure(measures: dict[str, dict], out: Path) -> None:
    """Median spectra normalised at 1 kHz, and spectral kurtosis per octave band."""
    fig, (spec, kurt) = plt.subplots(1, 2, figsize=(11, 5.2))
    colours = plt.get_cmap("tab20").colors
    for i, (name, m) in enumerate(measures.items()):
        real = "real" in name or "pypam" in name or "j_pod" in name
        style = {"lw": 1.8 if real else 0.9, "ls": "-" if real else ":" if "field" in name else "--",
                 "color": colours[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20]}
        keep = m["freqs"] >= 10
        reference = 10 * np.log10(np.interp(1000, m["freqs"], m["psd"]))
        spec.semilogx(m["freqs"][keep], 10 * np.log10(m["psd"][keep]) - reference, label=name, **style)
        kurt.semilogx(KURTOSIS_OCTAVES, m["sk"], marker="o", **style)
    spec.set(xlim=(10, 20e3), ylim=(-45, 30), xlabel="frequency (Hz)", ylabel="dB re PSD at 1 kHz",
             title="Median Welch spectra (10 Hz bins)")
    kurt.set(xlabel="octave band centre (Hz)", ylabel="spectral kurtosis (0: Gaussian)", yscale="symlog",
             title="Spectral kurtosis, 10 ms frames, median over 6 s pieces")
    kurt.set_xticks(KURTOSIS_OCTAVES, [f"{f:g}" for f in KURTOSIS_OCTAVES])
    kurt.minorticks_off()
    fig.legend(*spec.get_legend_handles_labels(), fontsize=6.5, loc="lower center", ncol=2,
               title="solid: real; dashed: generator v1; dotted: field model v2", title_fontsize=7)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.savefig(out / "noise_spectra.png", dpi=DPI)
    plt.close(fig)


def _panel(ax, x: np.ndarray, sr: int, top_hz: float, resolution_hz: float, title: str, seconds: float) -> None:
    x = x[: int(seconds * sr)]
    nperseg = int(sr / resolution_hz)
    freqs, times, power = spectrogram(x, sr, nperseg=nperseg, noverlap=nperseg * 3 // 4)
    keep = freqs <= top_hz
    level = 10 * np.log10(power[keep] + 1e-30)
    ax.imshow(level, origin="lower", aspect="auto", cmap=plt.get_cmap("magma", 12),
              extent=(0, times[-1], 0, top_hz / 1e3),
              vmin=np.percentile(level, 5), vmax=np.percentile(level, 99.5), interpolation="nearest")
    ax.set(title=title, xlabel="time (s)", ylabel="kHz")


def spectrogram_figure(vessel: np.ndarray, which: str, real: dict, out: Path) -> None:
    """One generated vessel passage (the most tonal drawn) beside the j_pod clip (0-11 kHz), and beside the North
    Sea ambient at 0-1 kHz, where ship tonals live."""
    from scipy.signal import resample_poly

    low = resample_poly(vessel, 1, 8)  # 384 kHz -> 48 kHz, for plotting only
    j_pod, jr, _ = real["Orcasound j_pod (44.1 kHz, 20 s, left)"]
    pypam, pr, _ = real["North Sea ambient (pypam, 8 kHz, 900 s)"]
    fig, axes = plt.subplots(2, 2, figsize=(9, 5.4))
    _panel(axes[0, 0], low, SR // 8, 11e3, 40, f"generator vessel {which} (most tonal), 6 s", 6)
    _panel(axes[0, 1], j_pod, jr, 11e3, 40, "Orcasound j_pod, real (first 6 s)", 6)
    _panel(axes[1, 0], low, SR // 8, 1e3, 4, "the same generated passage, 0-1 kHz", 8)
    _panel(axes[1, 1], pypam, pr, 1e3, 4, "North Sea ambient, real, 0-1 kHz (first 60 s)", 60)
    fig.tight_layout()
    fig.savefig(out / "noise_spectrograms.png", dpi=70)
    plt.close(fig)


# 4. Whistles --------------------------------------------------------------------------------------------------------

WHISTLE_SR, WHISTLE_FFT, WHISTLE_HOP = 96_000, 2048, 1024  # the grid of PAMGuard's contours (46.9 Hz, 10.7 ms)


def contour_metrics(hz: np.ndarray, step_s: float) -> dict:
    """Duration, frequency range (kHz) and mean sweep rate (kHz/s: the frequency travelled by the contour, smoothed
    over 5 steps, per second) of one whistle contour."""
    smooth = np.convolve(hz, np.ones(5) / 5, mode="valid") if hz.size > 5 else hz
    return {"duration_s": hz.size * step_s, "min_khz": hz.min() / 1e3, "max_khz": hz.max() / 1e3,
            "range_khz": (hz.max() - hz.min()) / 1e3,
            "sweep_khz_s": np.sum(np.abs(np.diff(smooth))) / 1e3 / max(smooth.size * step_s, step_s)}


def track(x: np.ndarray, sr: int, band: tuple[float, float], prominence_db: float) -> np.ndarray:
    """The strongest frequency per frame on the contours' grid, kept where it stands `prominence_db` above the
    frame's median in the band (a crude whistle tracker)."""
    freqs, _, power = spectrogram(x, sr, nperseg=int(WHISTLE_FFT * sr / WHISTLE_SR),
                                  noverlap=int((WHISTLE_FFT - WHISTLE_HOP) * sr / WHISTLE_SR))
    inside = (freqs >= band[0]) & (freqs <= band[1])
    power = power[inside]
    peak = np.argmax(power, axis=0)
    strong = 10 * np.log10(power.max(axis=0) / np.median(power, axis=0)) > prominence_db
    return freqs[inside][peak[strong]]


def field_vessel_figure(vessel: tuple[np.ndarray, dict], out: Path) -> None:
    """The field model's (v2) passage with the clearest Lloyd's-mirror fringes: 0-11 kHz (machinery lines reaching
    the whistle band, interference fringes bending towards the closest approach) and 0-1 kHz (drifting lines)."""
    from scipy.signal import resample_poly

    x, p = vessel
    low = resample_poly(x, 1, 8)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    _panel(axes[0], low, SR // 8, 11e3, 40, f"field (v2) vessel, 0-11 kHz (CPA {p['cpa_s']:.1f} s, "
           f"{p['cpa_range_m']:.0f} m)", 6)
    _panel(axes[1], low, SR // 8, 1e3, 4, "the same, 0-1 kHz", 8)
    fig.tight_layout()
    fig.savefig(out / "field_vessel.png", dpi=70)
    plt.close(fig)


def whistle_section(real: Path, count: int = 120) -> str:
    """Generated whistles, tracked on the contours' grid, against PAMGuard's 67 delphinid contours: medians [5-95 %]."""
    rng = np.random.default_rng(4)
    generated = [contour_metrics(track(beluga_whistle(rng, WHISTLE_SR, 2 * WHISTLE_SR).samples, WHISTLE_SR,
                                       (500, 40e3), 20), WHISTLE_HOP / WHISTLE_SR) for _ in range(count)]
    rng = np.random.default_rng(6)
    field = [contour_metrics(track(beluga_whistle(rng, WHISTLE_SR, 2 * WHISTLE_SR, "v2").samples, WHISTLE_SR,
                                   (500, 40e3), 20), WHISTLE_HOP / WHISTLE_SR) for _ in range(count)]
    mat = scipy.io.loadmat(real / "pamguard" / "whistle_contours_20200918_123234.mat", squeeze_me=True,
                           struct_as_record=False)
    hz_per_bin, step = float(mat["samplerate"]) / float(mat["fftlen"]), float(mat["ffthop"]) / float(mat["samplerate"])
    contours = [contour_metrics(np.asarray(w.contour, float) * hz_per_bin, step) for w in mat["whistles"]]
    keys = ("duration_s", "min_khz", "max_khz", "range_khz", "sweep_khz_s")
    flat = [np.mean([m["range_khz"] < 0.1 for m in sample]) for sample in (generated, contours, field)]
    rows = [[f"generator beluga_whistle (x{count}, tracked)"] + [spread([m[k] for m in generated]) for k in keys]
            + [f"{flat[0]:.0%}"],
            [f"field model beluga_whistle (v2, x{count}, tracked)"] + [spread([m[k] for m in field]) for k in keys]
            + [f"{flat[2]:.0%}"],
            [f"PAMGuard delphinid contours (x{len(contours)}, real)"] + [spread([m[k] for m in contours])
                                                                          for k in keys] + [f"{flat[1]:.0%}"]]
    return table(["whistle", "duration s", "min kHz", "max kHz", "range kHz", "sweep kHz/s", "range < 0.1 kHz"],
                 rows)


# main ---------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/realism"), help="folder for the PNG figures")
    parser.add_argument("--real", type=Path, default=REAL, help="the public clips (shared/data/real)")
    args = parser.parse_args()
    if not args.real.is_dir():
        raise SystemExit(f"real clips not found at {args.real}: pass --real")
    args.out.mkdir(parents=True, exist_ok=True)
    text, curves = porpoise_section(args.real)
    print("## Porpoise clicks\n\n" + text + "\n")
    porpoise_figure(curves, args.out)
    text, data = beluga_section(args.real)
    print("## Beluga clicks\n\n" + text + "\n")
    beluga_figure(data, args.out)
    real = real_noise(args.real)
    generated, vessels = generated_noise()
    field, field_vessels = field_noise()
    measures = {name: noise_measures(x, sr, usable)
                for name, (x, sr, usable) in {**real, **generated, **field}.items()}
    benchmarks = [next(name for name in sources if "benchmark" in name) for sources in (generated, field)]
    vessel_row, most_tonal = vessel_tonal_row(vessels)
    rows = {benchmarks[0]: vessel_row, benchmarks[1]: vessel_tonal_row(field_vessels, "field (v2)")[0]}
    whistle_rows = {benchmarks[0]: vessel_tonal_row(vessels, band=WHISTLE_TONAL_BAND)[0],
                    benchmarks[1]: vessel_tonal_row(field_vessels, "field (v2)", WHISTLE_TONAL_BAND)[0]}
    print("## Background noise\n\n" + noise_tables(measures, rows, whistle_rows) + "\n")
    structure = [vessel_structure(vessels, "generator (v1)"), vessel_structure(field_vessels, "field (v2)")]
    print(table(["vessel passages", "cepstral prominence (Lloyd's mirror)", "image delay ms, clearest passage",
                 "DEMON line at blade or shaft rate", "DEMON prominence dB"], structure) + "\n")
    spectra_figure(measures, args.out)
    spectrogram_figure(vessels[most_tonal][0], f"{most_tonal + 1} of {len(vessels)}", real, args.out)
    clearest = int(np.argmax([np.median(interference_delays(x, SR)["prominence"]) for x, _ in field_vessels]))
    field_vessel_figure(field_vessels[clearest], args.out)
    print("## Whistles\n\n" + whistle_section(args.real) + "\n")
    print(f"figures: {', '.join(sorted(str(p) for p in args.out.glob('*.png')))}")


if __name__ == "__main__":
    main()
