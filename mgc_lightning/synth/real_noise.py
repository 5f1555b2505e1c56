"""The real-noise test set (issue #25): real recorded backgrounds and hard negatives, with the two real porpoise NBHF
click templates embedded at known times, cut into the demo's windows (0.25 s at 384 kHz), written as FLAC files and a
manifest every tool reads (`mgc evaluate`, `mgc detect`).

What is real and what is not. Every background is a real recording (`../shared/data/real/`, SOURCES.md): North Sea
ambient (LifeWatch, 8 kHz), an Orcasound hydrophone clip (44.1 kHz), Southern Resident killer whale calls (44.1 kHz),
a delphinid whistle (48 kHz); Risso's, delphinid, beaked and sperm whale click templates are embedded as hard
negatives, the porpoise click templates as the only positives. No beluga audio exists, so whistle and beluga-click
labels are 0 throughout: the set measures false alarms of those two types in real noise, and porpoise recall and
precision. The recordings carry nothing above their Nyquist frequency (4 / 22.05 / 24 kHz); resampled to 384 kHz,
the band above is filled with the generator's own sea-noise model (`noise.ambient_noise`: Wenz wind noise and
thermal noise) at the level that continues the real clip's top band, so the porpoise band (~130 kHz) is generator
noise with real clicks in it.

Which real files are test-only and which are kept for training-time mixing is declared here (`TEST_ONLY`,
`TRAINING_RESERVED`, `role`); the builder refuses to use a file that is not test-only. docs/real_noise.md writes the
split down.

A porpoise click train is labelled (porpoise_click = 1) by the rule an annotator follows: a regular train of at least
`MIN_TRAIN_CLICKS` clicks (inter-click interval 30-100 ms, DESIGN.md), each click's power in 110-160 kHz drawn from
`RealNoiseConfig.porpoise_snr_db` (the upper half of the benchmark's porpoise range, same definition as
scene._at_drawn_snr: the click's power over its duration against the band's noise power), and visible by the rule
that labels the benchmark's calls (>= DETECTABLE_PIXELS pixels >= DETECTABLE_SNR_DB above the noise on the origin
grid). A train that misses the visibility rule stays in the audio, unlabelled, as the benchmark keeps faint calls.

Deterministic: everything is drawn from generators seeded by (seed, recording index); the same seed writes the same
bytes. A rerun with the same settings finds build.json and leaves the folder as it is.
"""

from __future__ import annotations

import functools
import io
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch

from ..audio.manifest import TEST_ONLY_USE, WindowRow, count_test_only_rows, write_manifest
from ..audio.reading import AudioError, probe, read_window, sample_digests
from ..core.atomic import write_bytes_atomic
from ..frontend.spectrogram import SpectrogramTransform, get_preset
from .config import DETECTABLE_PIXELS, DETECTABLE_SNR_DB, DETECTION_PRESET
from .noise import ambient_noise
from .scene import band_power

SAMPLE_RATE = 384_000
WINDOW_S = 0.25
VERSION = 1
TEST, TRAINING = TEST_ONLY_USE, "training-reserved"  # TEST: the manifest's `use`, refused for training
AMBIENT, ORCA_CALL, DOLPHIN_WHISTLE, ODONTOCETE_CLICK = "ambient", "orca_call", "dolphin_whistle", "odontocete_click"
BACKGROUND_KINDS = (AMBIENT, ORCA_CALL, DOLPHIN_WHISTLE, ODONTOCETE_CLICK)
PORPOISE_BAND_HZ = (110e3, 160e3)
MIN_TRAIN_CLICKS = 3
EDGE_S = 0.005  # clicks stay this far inside their window (scene.WINDOW_MARGIN_S), so window labels are unambiguous

# ---- the split of the real files: test-only here, reserved for training-time mixing (issue #25 item 2) ----------
LIFEWATCH = "lifewatch_pypam/67416073.{}.flac"
J_POD = "orcasound_orcadata/j_pod.wav"
ORCA_CATALOG = "orcasound_orcadata/catalog_flac"
# Southern Resident call types (Ford's catalogue numbers), every other one of the 30 present in sorted order; all
# variants of a type (-a, -b, -R, ...) go with it, so no call type lies on both sides.
ORCA_TEST_TYPES = ("S01", "S03", "S05", "S07", "S10", "S14", "S17", "S19", "S30", "S33", "S35", "S37", "S39", "S42",
                   "S45")
WHISTLE_FILE = "pamguard/dolphin_whistle.wav"
CLICK_TEMPLATES = {  # hard-negative click templates of the test, by the name the manifest gives them
    "risso": "pamguard/clickwave_1.wav",
    "delphinid": "pamguard/example_dolphin_click_192kHz.wav",
    "beaked_whale": "pamguard/example_beaked_whale_click_192kHz.wav",
    "sperm_whale": "pamguard/example_sperm_whale_click_48kHz.wav",
}
PORPOISE_TEMPLATES = ("pyporcc/standard_click.wav", "pamguard/example_porpoise_click_500kHz.wav")
TEST_ONLY = (LIFEWATCH.format("210610034655"), J_POD, WHISTLE_FILE, *CLICK_TEMPLATES.values(), *PORPOISE_TEMPLATES)
SET_PREFIX = "rn-"  # the set's own recordings are named so (plan_segments)
TEST_ONLY_DIGESTS = Path(__file__).with_name("test_only_digests.json")  # their samples (digests_of_test_only_files)
TRAINING_RESERVED = (LIFEWATCH.format("210610033655"), LIFEWATCH.format("210610034155"),
                     "pamguard/clickwave_4205.wav", "pamguard/example_2000021.mat",
                     "pamguard/clicks_20200918_123234_classified.mat")


def orca_call_type(relative: str) -> str | None:
    found = re.fullmatch(rf"{ORCA_CATALOG}/FO-(S\d+)(-.*)?\.flac", relative)
    return found.group(1) if found else None


def role(relative: str) -> str | None:
    """TEST, TRAINING or None (a file this split does not cover) for a path relative to the clips folder."""
    call_type = orca_call_type(relative)
    if call_type is not None:
        return TEST if call_type in ORCA_TEST_TYPES else TRAINING
    return TEST if relative in TEST_ONLY else TRAINING if relative in TRAINING_RESERVED else None


def _test_only_name(name: str) -> bool:
    """A test-only file's name (and, for a killer whale call, its call type), or one of the set's own recordings."""
    if name.startswith(SET_PREFIX):
        return True
    call_type = orca_call_type(f"{ORCA_CATALOG}/{name}")
    if call_type is not None:
        return call_type in ORCA_TEST_TYPES
    return name in {Path(relative).name for relative in TEST_ONLY}


@functools.lru_cache(maxsize=256)
def _marks_test_only(manifest: Path, mtime_ns: int) -> bool:
    return count_test_only_rows(manifest) > 0


def marked_test_folder(path: str | Path) -> Path | None:
    """The nearest folder above `path` whose manifest.csv marks rows test-only (a built real-noise set keeps its
    recordings in audio/ beside it), else None: a recording of a test set is refused whatever its name."""
    for folder in Path(path).resolve().parents:
        manifest = folder / "manifest.csv"
        if manifest.is_file() and _marks_test_only(manifest, manifest.stat().st_mtime_ns):
            return folder
    return None


@functools.lru_cache(maxsize=1)
def stored_digests() -> dict[int, dict[str, str]]:
    """The test-only files' sample digests (TEST_ONLY_DIGESTS), by frame count: digest -> the file's path."""
    files = json.loads(TEST_ONLY_DIGESTS.read_text())["files"]
    by_frames: dict[int, dict[str, str]] = {}
    for relative, entry in files.items():
        by_frames.setdefault(entry["frames"], {}).update({digest: relative for digest in entry["sha256"]})
    return by_frames


def same_samples(path: str | Path) -> str | None:
    """The test-only file whose samples `path` holds (audio.reading.sample_digests: renamed, re-headed or
    converted losslessly), else None. Only a file with a test-only file's frame count is decoded; one that cannot
    be read is left to the reader's own message."""
    try:
        candidates = stored_digests().get(probe(path).frames)
        return next((candidates[d] for d in sample_digests(path) if d in candidates), None) if candidates else None
    except AudioError:
        return None


def why_test_only(path: str | Path) -> str | None:
    """Why a file anywhere on disk belongs to the real-noise test (and training on it would leak the test), or
    None: its name, the folder it lies in, or its samples. A copy of a test file under another folder or name, or
    converted to another lossless format, is refused too."""
    if _test_only_name(Path(path).name):
        return f"its name is that of a test-only file or of the set's own recordings ({SET_PREFIX}*)"
    folder = marked_test_folder(path)
    if folder is not None:
        return f"it lies under {folder}, whose manifest.csv marks rows test-only"
    original = same_samples(path)
    return f"its samples are those of the test-only {original}" if original else None


def digests_of_test_only_files(clips: str | Path) -> dict:
    """The sample digests of the clips folder's test-only files, as TEST_ONLY_DIGESTS stores them (a test checks
    the stored ones against these wherever the clips are present)."""
    clips = Path(clips)
    return {relative: {"frames": probe(clips / relative).frames, "sha256": sorted(sample_digests(clips / relative))}
            for relative in declared_files(clips)[TEST]}


def write_test_only_digests(clips: str | Path) -> None:
    """Rewrite TEST_ONLY_DIGESTS from the clips folder (after the split changes)."""
    record = {"about": "sha256 of the decoded samples (audio.reading.sample_digests) of every test-only file of the "
                       "real-noise test: the refusal works where the clips are absent. Rewrite with "
                       "synth.real_noise.write_test_only_digests('../shared/data/real').",
              "files": digests_of_test_only_files(clips)}
    write_bytes_atomic(TEST_ONLY_DIGESTS, (json.dumps(record, indent=1) + "\n").encode())


def declared_files(clips: str | Path) -> dict[str, list[str]]:
    """The clips folder's audio files by role (paths relative to it); `None` collects files no side may use."""
    clips = Path(clips)
    found: dict = {TEST: [], TRAINING: [], None: []}
    for path in sorted(p for p in clips.rglob("*") if p.suffix in (".wav", ".flac", ".mat")):
        relative = path.relative_to(clips).as_posix()
        found[role(relative)].append(relative)
    return found


def training_reserved_files(clips: str | Path) -> list[Path]:
    """The real files training-time mixing may use: never a test-only one."""
    return [Path(clips) / relative for relative in declared_files(clips)[TRAINING]]


@dataclass(frozen=True)
class RealNoiseConfig:
    seed: int = 0
    windows_per_recording: int = 12  # the most windows cut from one background segment (one recording)
    lifewatch_recordings: int = 8  # ambient segments of the test LifeWatch file
    j_pod_recordings: int = 4  # the Orcasound clip cut into this many recordings
    orca_files: int | None = None  # test call-type files used (None: all)
    click_recordings: int = 2  # per hard-negative click template, each on its own LifeWatch segment
    porpoise_share: float = 0.35  # windows given a porpoise click train
    porpoise_snr_db: tuple[float, float] = (29.0, 42.0)  # upper half of scene.SNR_RANGES_DB["porpoise_click"]
    click_snr_db: tuple[float, float] = (12.0, 40.0)  # hard negatives: scene.SNR_RANGES_DB["beluga_click"]
    porpoise_ici_s: tuple[float, float] = (0.03, 0.10)
    click_ici_s: tuple[float, float] = (0.02, 0.15)


@dataclass(frozen=True)
class Segment:
    """One recording of the set: a stretch of one real background, optionally with hard-negative clicks."""

    name: str
    kind: str
    site: str
    background: str  # relative to the clips folder
    start_s: float
    windows: int
    clicks: str = ""  # a CLICK_TEMPLATES name, or ""

    @property
    def sources(self) -> list[str]:
        return [self.background] + ([CLICK_TEMPLATES[self.clicks]] if self.clicks else [])


def _full_windows(clips: Path, relative: str, cap: int) -> int:
    return min(int(probe(clips / relative).duration_s / WINDOW_S + 1e-9), cap)


def plan_segments(clips: str | Path, config: RealNoiseConfig) -> list[Segment]:
    """The set's recordings, drawn from the seed: LifeWatch stretches that never overlap (plain ambient, and beds
    for the hard-negative clicks), the Orcasound clip in equal parts, each test call-type file, the whistle clip."""
    clips, per = Path(clips), config.windows_per_recording
    rng = np.random.default_rng(np.random.SeedSequence((config.seed, 0)))
    lifewatch = LIFEWATCH.format("210610034655")
    slots = int(probe(clips / lifewatch).duration_s // (per * WINDOW_S))
    beds = len(CLICK_TEMPLATES) * config.click_recordings
    starts = [float(s * per * WINDOW_S) for s in rng.choice(slots, config.lifewatch_recordings + beds, replace=False)]
    segments = [Segment(f"rn-ambient-lifewatch-{i:02d}", AMBIENT, "lifewatch-north-sea", lifewatch, start, per)
                for i, start in enumerate(starts[: config.lifewatch_recordings])]
    beds_starts = iter(starts[config.lifewatch_recordings:])
    segments += [Segment(f"rn-clicks-{name}-{i:02d}", ODONTOCETE_CLICK, "lifewatch-north-sea", lifewatch,
                         next(beds_starts), per, clicks=name)
                 for name in CLICK_TEMPLATES for i in range(config.click_recordings)]
    part = int(probe(clips / J_POD).duration_s / WINDOW_S) // config.j_pod_recordings
    segments += [Segment(f"rn-ambient-orcasound-{i:02d}", AMBIENT, "orcasound", J_POD, i * part * WINDOW_S,
                         min(part, per)) for i in range(config.j_pod_recordings)]
    calls = sorted(p.relative_to(clips).as_posix() for p in (clips / ORCA_CATALOG).glob("*.flac"))
    calls = [c for c in calls if role(c) == TEST][: config.orca_files]
    segments += [Segment(f"rn-orca-{Path(c).stem}", ORCA_CALL, "orca-catalog", c, 0.0, _full_windows(clips, c, per))
                 for c in calls]
    segments.append(Segment("rn-dolphin-whistle", DOLPHIN_WHISTLE, "pamguard", WHISTLE_FILE, 0.0,
                            _full_windows(clips, WHISTLE_FILE, per)))
    return [s for s in segments if s.windows > 0]


def real_band_top(low: np.ndarray, rate_in: int, cliff_db: float = 25.0) -> float:
    """Where a clip's real content ends (Hz): the lower edge of the first 1/20-of-Nyquist band whose level lies
    `cliff_db` below the band under it (a low-pass, not a falling spectrum), in the upper 3/4 of the band, else its
    Nyquist frequency. The
    Orcasound clip, sampled at 44.1 kHz, holds nothing above ~12 kHz."""
    from scipy.signal import welch

    nyquist = rate_in / 2
    frequencies, power = welch(low, SAMPLE_RATE, nperseg=min(low.size, 16384))
    below = -np.inf
    for edge in np.arange(0.05, 1.0, 0.05) * nyquist:
        inside = (frequencies >= edge) & (frequencies < edge + 0.05 * nyquist)
        level = 10 * np.log10(max(float(power[inside].mean()), 1e-30))
        if edge >= 0.25 * nyquist and level < below - cliff_db:  # a call's loud low band is no low-pass
            return float(edge)
        below = level
    return float(nyquist)


def high_band_fill(rng: np.random.Generator, low: np.ndarray, rate_in: int) -> tuple[np.ndarray, dict]:
    """The generator's sea noise (Wenz wind + thermal, sea state drawn 1-4) for the band the clip does not carry:
    scaled so that its power in the clip's top band (0.6-0.85 of where its content ends, `real_band_top`) equals the
    clip's there, so the model's spectrum continues the real one, then kept above 0.9 of that edge."""
    from scipy.signal import butter, sosfiltfilt

    top, sea_state = real_band_top(low, rate_in), float(rng.uniform(1, 4))
    reference = (0.6 * top, 0.85 * top)
    noise = ambient_noise(rng, low.size, SAMPLE_RATE, sea_state)
    noise *= np.sqrt(band_power(low, SAMPLE_RATE, *reference) / max(band_power(noise, SAMPLE_RATE, *reference), 1e-30))
    noise = sosfiltfilt(butter(10, 0.9 * top, btype="highpass", fs=SAMPLE_RATE, output="sos"), noise)
    return noise, {"sea_state": round(sea_state, 3), "real_top_hz": round(top, 1), "fill_from_hz": round(0.9 * top, 1)}


@functools.lru_cache(maxsize=32)
def click_template(path: str, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float, tuple[float, float]]:
    """A click recording at `sample_rate` (read by the project's reader), its duration (the span holding the middle
    95 % of its energy, s) and its band (where its spectrum lies within 10 dB of its peak, Hz)."""
    samples = read_window(path, 0.0, probe(path).duration_s, target_rate=sample_rate).astype(np.float64)
    energy = np.cumsum(samples**2) / np.sum(samples**2)
    duration = (np.searchsorted(energy, 0.975) - np.searchsorted(energy, 0.025) + 1) / sample_rate
    spectrum = np.abs(np.fft.rfft(samples, 8192)) ** 2
    frequencies = np.fft.rfftfreq(8192, 1 / sample_rate)
    strong = frequencies[spectrum >= spectrum.max() / 10]
    return samples, float(duration), (float(strong.min()), float(strong.max()))


def visible_pixels(alone: np.ndarray, noise: np.ndarray) -> int:
    """Pixels of the origin grid where the sound alone stands >= DETECTABLE_SNR_DB above the window's noise: the
    benchmark's labelling rule (scene._label_detectable)."""
    grid = SpectrogramTransform(get_preset(DETECTION_PRESET))
    with torch.no_grad():
        noise_power = grid.band_power(torch.from_numpy(noise.astype(np.float32))[None])
        call_power = grid.band_power(torch.from_numpy(alone.astype(np.float32))[None])
    return int((call_power > noise_power * 10 ** (DETECTABLE_SNR_DB / 10)).sum())


def click_train(rng: np.random.Generator, click: tuple[np.ndarray, float, tuple[float, float]], noise: np.ndarray,
                band: tuple[float, float], snr_db: tuple[float, float], ici_s: tuple[float, float],
                sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, dict]:
    """A regular train of one template in a window of `noise`: at least MIN_TRAIN_CLICKS clicks at a drawn
    inter-click interval, all inside the window, random polarity, each click +-3 dB around a drawn SNR (its power in
    `band` over its duration against the noise's power there)."""
    samples, duration, _ = click
    usable = noise.size / sample_rate - 2 * EDGE_S - samples.size / sample_rate
    ici = rng.uniform(ici_s[0], min(ici_s[1], usable / (MIN_TRAIN_CLICKS - 1)))  # the train fits in the window
    count = int(rng.integers(MIN_TRAIN_CLICKS, int(usable // ici) + 2))
    first = EDGE_S + rng.uniform(0, usable - (count - 1) * ici)
    snr = float(rng.uniform(*snr_db))
    power = band_power(samples, sample_rate, *band) * samples.size / (duration * sample_rate)
    unit = np.sqrt(band_power(noise, sample_rate, *band) * 10 ** (snr / 10) / max(power, 1e-30))
    out = np.zeros(noise.size)
    for k in range(count):
        at = int(round((first + k * ici) * sample_rate))
        out[at : at + samples.size] += samples * unit * 10 ** (rng.uniform(-3, 3) / 20) * rng.choice([-1, 1])
    return out, {"clicks": count, "snr_db": round(snr, 2), "ici_ms": round(ici * 1e3, 2)}


def render_segment(clips: str | Path, segment: Segment, config: RealNoiseConfig,
                   index: int) -> tuple[np.ndarray, list[dict], dict]:
    """One recording: the real background at 384 kHz with the high band filled, its hard-negative clicks, porpoise
    trains in a drawn share of its windows; returns the samples (peak 0.5), each window's facts and the fill's."""
    clips = Path(clips)
    rng = np.random.default_rng(np.random.SeedSequence((config.seed, 1, index)))
    step, n = int(WINDOW_S * SAMPLE_RATE), segment.windows * int(WINDOW_S * SAMPLE_RATE)
    low = read_window(clips / segment.background, segment.start_s, segment.windows * WINDOW_S,
                      target_rate=SAMPLE_RATE).astype(np.float64)
    low = np.pad(low[:n], (0, max(n - low.size, 0)))
    fill, fill_info = high_band_fill(rng, low, probe(clips / segment.background).sample_rate)
    mix = low + fill
    windows = []
    for w in range(segment.windows):
        span = slice(w * step, (w + 1) * step)
        facts = {"click_template": "", "porpoise_template": "", "porpoise_clicks": 0, "porpoise_snr_db": "",
                 "visible_pixels": 0, "porpoise_click": 0}
        if segment.clicks:
            click = click_template(str(Path(clips) / CLICK_TEMPLATES[segment.clicks]))
            train, _ = click_train(rng, click, mix[span], click[2], config.click_snr_db, config.click_ici_s)
            mix[span] += train
            facts["click_template"] = CLICK_TEMPLATES[segment.clicks]
        if rng.random() < config.porpoise_share:
            chosen = PORPOISE_TEMPLATES[int(rng.integers(len(PORPOISE_TEMPLATES)))]
            train, drawn = click_train(rng, click_template(str(Path(clips) / chosen)), mix[span], PORPOISE_BAND_HZ,
                                       config.porpoise_snr_db, config.porpoise_ici_s)
            pixels = visible_pixels(train, mix[span])
            mix[span] += train
            facts.update(porpoise_template=chosen, porpoise_clicks=drawn["clicks"], porpoise_snr_db=drawn["snr_db"],
                         visible_pixels=pixels, porpoise_click=int(pixels >= DETECTABLE_PIXELS))
        windows.append(facts)
    return (0.5 * mix / max(np.abs(mix).max(), 1e-12)).astype(np.float32), windows, fill_info


def _flac(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_24")
    return buffer.getvalue()


EXTRA_COLUMNS = ("background", "sources", "use", "click_template", "porpoise_template", "porpoise_clicks",
                 "porpoise_snr_db", "visible_pixels")


def _refuse_training_files(segments: Sequence[Segment]) -> None:
    used = {source for segment in segments for source in segment.sources} | set(PORPOISE_TEMPLATES)
    wrong = sorted(source for source in used if role(source) != TEST)
    if wrong:
        raise ValueError(f"the real-noise test may use test-only files alone; these are not: {wrong}")


def build_real_noise(clips: str | Path, out_dir: str | Path, config: RealNoiseConfig = RealNoiseConfig()) -> Path:
    """Write the set into `out_dir` (audio/*.flac, manifest.csv with the columns EXTRA_COLUMNS after the manifest's
    own, build.json); returns the manifest. A folder built with the same settings is left as it is."""
    clips, out = Path(clips), Path(out_dir)
    manifest, record = out / "manifest.csv", out / "build.json"
    settings = json.loads(json.dumps({"version": VERSION, **asdict(config)}))
    if manifest.is_file() and record.is_file() and json.loads(record.read_text()).get("settings") == settings:
        return manifest
    segments = plan_segments(clips, config)
    _refuse_training_files(segments)
    rows, extra, fills = [], {name: [] for name in EXTRA_COLUMNS}, {}
    for index, segment in enumerate(segments):
        samples, windows, fills[segment.name] = render_segment(clips, segment, config, index)
        audio = out / "audio" / f"{segment.name}.flac"
        write_bytes_atomic(audio, _flac(samples))
        for w, facts in enumerate(windows):
            rows.append(WindowRow(audio, w * WINDOW_S, WINDOW_S, 0, 0, facts["porpoise_click"], segment.name,
                                  deployment="real-noise", site=segment.site))
            sources = segment.sources + ([facts["porpoise_template"]] if facts["porpoise_template"] else [])
            values = {"background": segment.kind, "sources": ";".join(sources), "use": TEST, **facts}
            for name in EXTRA_COLUMNS:
                extra[name].append(str(values[name]))
    write_manifest(rows, manifest, extra)
    write_bytes_atomic(record, json.dumps({"settings": settings, "clips": str(clips.resolve()),
                                           "segments": [asdict(s) for s in segments], "fills": fills,
                                           "split": {TEST: list(TEST_ONLY) + [f"{ORCA_CATALOG}/FO-{t}*.flac"
                                                                              for t in ORCA_TEST_TYPES],
                                                     TRAINING: list(TRAINING_RESERVED)}}, indent=2).encode())
    return manifest
