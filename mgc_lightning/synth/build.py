"""Write a whole synthetic benchmark to disk: audio, target stems, manifest, events, recordings, ideal masks.

Recordings are rendered in parallel worker processes, each seeded from (seed, recording index) alone, so the dataset
is identical whatever the worker count. Each finished recording leaves a small part file; a rerun skips those, so
an interrupted build resumes. Memory is bounded by one recording per worker.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from ..audio.manifest import WindowRow, write_csv_atomic, write_manifest
from ..audio.reading import read_window
from ..core.atomic import write_bytes_atomic
from ..core.labels import SOUND_TYPES
from ..frontend.cache import mask_store
from ..frontend.spectrogram import SpectrogramConfig, SpectrogramTransform
from .config import DETECTABLE_SNR_DB, BenchmarkConfig
from .events import write_events
from .scene import RecordingPlan, RenderedRecording, make_deployments, render_recording

AUDIO_DIR, STEMS_DIR, PARTS_DIR = "audio", "stems", "parts"


def plan_recordings(config: BenchmarkConfig, seed: int) -> list[RecordingPlan]:
    deployments = make_deployments(config.n_deployments, config.name_prefix)
    plans, remaining, index = [], config.n_windows, 0
    while remaining > 0:
        count = min(config.windows_per_recording, remaining)
        deployment = deployments[index % len(deployments)]
        plans.append(RecordingPlan(
            name=f"{deployment.name}_{index:04d}", deployment=deployment, n_windows=count, window_s=config.window_s,
            sample_rate=config.sample_rate, seed=(seed, index), class_weights=config.class_weights,
            sound_model=config.sound_model, real_mix=config.real_mix,
        ))
        remaining -= count
        index += 1
    return plans


def target_stem_path(audio_path: Path) -> Path:
    """Where the clean target sounds of a benchmark recording live, beside its audio folder."""
    return audio_path.parent.parent / STEMS_DIR / f"{audio_path.stem}.target.flac"


def typed_stem_path(audio_path: Path, sound_type: str) -> Path:
    """Where one sound type's clean target sounds of a benchmark recording live (the typed stems sum to the target
    stem)."""
    return audio_path.parent.parent / STEMS_DIR / f"{audio_path.stem}.target.{sound_type}.flac"


def _write_flac_atomic(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    sf.write(str(temporary), samples, sample_rate, subtype="PCM_24", format="FLAC")
    temporary.replace(path)


def _build_one(out_dir: Path, plan: RecordingPlan) -> str:
    rendered = render_recording(plan)
    audio = out_dir / AUDIO_DIR / f"{plan.name}.flac"
    _write_flac_atomic(audio, rendered.mix, plan.sample_rate)
    _write_flac_atomic(target_stem_path(audio), rendered.target, plan.sample_rate)
    _write_typed_stems(audio, rendered, plan.sample_rate)
    part = {"info": rendered.info, "windows": rendered.windows, "events": rendered.events}
    write_bytes_atomic(out_dir / PARTS_DIR / f"{plan.name}.json", json.dumps(part).encode())
    return plan.name


def _write_typed_stems(audio: Path, rendered: RenderedRecording, sample_rate: int) -> None:
    for sound_type, samples in rendered.typed_targets.items():
        _write_flac_atomic(typed_stem_path(audio, sound_type), samples, sample_rate)


def _typed_stems_only(out_dir: Path, plan: RecordingPlan) -> str:
    """The typed stems of a recording rendered again, written only when the new rendering's target equals the
    target stem on disk (to its 24-bit steps): a generator changed since the build would give stems of other calls."""
    audio, rendered = out_dir / AUDIO_DIR / f"{plan.name}.flac", render_recording(plan)
    stored, _ = sf.read(str(target_stem_path(audio)), dtype="float64")
    if stored.shape != rendered.target.shape or not np.allclose(stored, rendered.target, rtol=0, atol=2.0**-22):
        raise ValueError(f"{target_stem_path(audio)}: rendering {plan.name} again no longer gives this target stem "
                         "(the generator changed since the benchmark was built); build the benchmark again into a "
                         "new folder to get its typed stems")
    _write_typed_stems(audio, rendered, plan.sample_rate)
    return plan.name


def _render_each(render, out_dir: Path, plans: Sequence[RecordingPlan], workers: int, bar: tqdm) -> None:
    """`render(out_dir, plan)` for every plan, in `workers` processes when more than one, one bar step each; an
    interruption or a failure stops at once, not after every queued recording."""
    if workers <= 1:
        for plan in plans:
            render(out_dir, plan)
            bar.update(1)
        return
    with ProcessPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        try:
            for _ in pool.map(render, [out_dir] * len(plans), plans):
                bar.update(1)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def add_typed_stems(out_dir: str | Path, workers: int = 1, progress: bool = True) -> int:
    """Write the typed stems of a benchmark built before they were kept: each recording lacking one is rendered again
    from the settings in benchmark.json (deterministic, so its typed stems sum to the target stem on disk) and only
    its typed stems are written. Returns how many recordings got them."""
    out_dir = Path(out_dir)
    settings = out_dir / "benchmark.json"
    if not settings.is_file():
        raise FileNotFoundError(f"{settings}: not a benchmark folder of `mgc synth` (no benchmark.json)")
    stored = json.loads(settings.read_text())
    config = BenchmarkConfig(**{**stored["config"], "class_weights": tuple(stored["config"]["class_weights"])})
    todo = [plan for plan in plan_recordings(config, stored["seed"])
            if not all(typed_stem_path(out_dir / AUDIO_DIR / f"{plan.name}.flac", t).is_file() for t in SOUND_TYPES)]
    with tqdm(total=len(todo), desc=f"typed stems {config.name}", unit="rec", disable=not progress) as bar:
        _render_each(_typed_stems_only, out_dir, todo, workers, bar)
    return len(todo)


def build_benchmark(
    out_dir: str | Path, config: BenchmarkConfig, seed: int = 0, workers: int = 1, progress: bool = True
) -> Path:
    """Render every recording not yet on disk, then write manifest.csv, events.csv and recordings.csv."""
    out_dir = Path(out_dir)
    for folder in (AUDIO_DIR, STEMS_DIR, PARTS_DIR):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    plans = plan_recordings(config, seed)
    settings = out_dir / "benchmark.json"
    wanted = {"config": {**config.__dict__, "class_weights": list(config.class_weights)}, "seed": seed}
    if not config.name_prefix:  # benchmarks built before names could be prefixed keep their settings file
        del wanted["config"]["name_prefix"]
    if config.sound_model == "v1":  # nor do those built before the field sound model existed
        del wanted["config"]["sound_model"]
    if config.real_mix is None:  # nor do those built before real recordings could be mixed in
        del wanted["config"]["real_mix"]
    else:
        wanted["config"]["real_mix"] = config.real_mix.settings()
    if settings.exists() and json.loads(settings.read_text()) != wanted:
        raise ValueError(f"{out_dir} holds a benchmark built with other settings ({settings}); use another folder")
    write_bytes_atomic(settings, json.dumps(wanted, indent=2).encode())
    todo = [plan for plan in plans if not (out_dir / PARTS_DIR / f"{plan.name}.json").exists()]
    with tqdm(total=len(plans), initial=len(plans) - len(todo), desc=f"synth {config.name}", unit="rec",
              disable=not progress) as bar:
        _render_each(_build_one, out_dir, todo, workers, bar)
    return _write_tables(out_dir, plans)


def _write_tables(out_dir: Path, plans: Sequence[RecordingPlan]) -> Path:
    rows, events, recordings = [], [], []
    for plan in plans:
        part = json.loads((out_dir / PARTS_DIR / f"{plan.name}.json").read_text())
        info = part["info"]
        recordings.append(info)
        for index, bits in enumerate(part["windows"]):
            rows.append(WindowRow(
                path=out_dir / AUDIO_DIR / f"{plan.name}.flac", start_s=round(index * plan.window_s, 6),
                duration_s=plan.window_s, **dict(zip(SOUND_TYPES, bits)), recording=plan.name,
                deployment=info["deployment"], season=info["season"], site=info["site"],
            ))
        events.extend(part["events"])
    manifest = out_dir / "manifest.csv"
    write_manifest(rows, manifest)
    write_events(out_dir, events)
    columns = list(recordings[0])
    write_csv_atomic(out_dir / "recordings.csv", columns, [[r[c] for c in columns] for r in recordings])
    return manifest


IDEAL_SOURCE = "ideal"
CRITERION_RECORD = "criterion.json"


def ideal_source(criterion_db: float = DETECTABLE_SNR_DB) -> str:
    """The mask source holding ideal masks at this local SNR criterion: `ideal` at the default (DETECTABLE_SNR_DB),
    else `ideal-0db`, `ideal-3db`, `ideal-minus3db`, ..., so masks of two criteria never share a folder."""
    if criterion_db == DETECTABLE_SNR_DB:
        return IDEAL_SOURCE
    return f"{IDEAL_SOURCE}-{'minus' if criterion_db < 0 else ''}{abs(criterion_db):g}db"


def ideal_mask(
    target_power: torch.Tensor, noise_power: torch.Tensor, criterion_db: float = DETECTABLE_SNR_DB
) -> torch.Tensor:
    """Pixels where the target sounds' power exceeds the noise power by `criterion_db` (local SNR criterion).

    The default, 6 dB (DETECTABLE_SNR_DB), is where a call stands out of the noise on the image: what an annotator
    would draw, and the rule that decides the window labels. At 0 dB the mask also covers pixels where the call is
    merely as strong as the noise (faint calls, the fading edges of whistles), which no one sees in the image.
    """
    return target_power > noise_power * 10 ** (criterion_db / 10)


def _ideal_store(config: SpectrogramConfig, criterion_db: float, cache_root: str | Path):
    """The criterion's mask store; a folder without this criterion's record (masks of another criterion, or from
    before sources were named by criterion) is emptied first, so it never mixes two criteria."""
    store = mask_store(config, ideal_source(criterion_db), cache_root)
    record, wanted = store.folder / CRITERION_RECORD, {"criterion_db": criterion_db}
    if not (record.is_file() and json.loads(record.read_text()) == wanted):
        for stale in store.folder.glob("*.npy"):
            stale.unlink()
        write_bytes_atomic(record, json.dumps(wanted).encode())
    return store


class _MixAndTargets(torch.utils.data.Dataset):
    """A window's mix and clean target stems (`stems` of its audio path), read in DataLoader workers."""

    def __init__(self, rows: Sequence[WindowRow], config: SpectrogramConfig, stems: Callable[[Path], list[Path]]):
        self.rows, self.stems = rows, stems
        self.read = dict(target_rate=config.sample_rate, fmax_hz=config.fmax)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        row = self.rows[index]
        return (read_window(row.path, row.start_s, row.duration_s, **self.read),
                np.stack([read_window(stem, row.start_s, row.duration_s, **self.read) for stem in self.stems(row.path)]))


def _stack_pairs(items: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    mix, targets = zip(*items)
    return torch.from_numpy(np.stack(mix)), torch.from_numpy(np.stack(targets))


def _band_powers(pending: Sequence[WindowRow], config: SpectrogramConfig, stems: Callable[[Path], list[Path]],
                 batch_size: int, progress: bool, device: str, num_workers: int, description: str,
                 ) -> Iterator[tuple[list[WindowRow], torch.Tensor, torch.Tensor]]:
    """Per batch of windows: the rows, the band power of each of their stems (B, stems, H, W) and of their noise (the
    mix less the first stem, the whole target) (B, H, W)."""
    transform = SpectrogramTransform(config).to(device)
    loader = torch.utils.data.DataLoader(_MixAndTargets(pending, config, stems), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=_stack_pairs)
    done = 0
    for mix, targets in tqdm(loader, desc=description, disable=not progress):
        batch = list(pending[done : done + len(mix)])
        done += len(mix)
        mix, targets = mix.to(device), targets.to(device)
        with torch.no_grad():
            target_power = transform.band_power(targets.flatten(0, 1))
            noise_power = transform.band_power(mix - targets[:, 0])
        yield batch, target_power.reshape(*targets.shape[:2], *target_power.shape[-2:]), noise_power


def write_ideal_masks(
    rows: Sequence[WindowRow], config: SpectrogramConfig, cache_root: str | Path,
    criteria_db: Sequence[float] = (DETECTABLE_SNR_DB,), batch_size: int = 16, progress: bool = True,
    device: str = "cpu", num_workers: int = 0,
) -> int:
    """Rasterise ideal masks on this preset's grid from each recording's target stem, one source per local SNR
    criterion (`ideal_source`); returns how many windows were new. The audio is read once for all criteria, by
    `num_workers` processes; the band powers are computed on `device`."""
    stores = {criterion: _ideal_store(config, criterion, cache_root) for criterion in dict.fromkeys(criteria_db)}
    pending = [row for row in dict.fromkeys(rows) if not all(store.has(row.key) for store in stores.values())]
    if not pending:
        return 0
    powers = _band_powers(pending, config, lambda path: [target_stem_path(path)], batch_size, progress, device,
                          num_workers, f"ideal masks {config.cache_key}")
    for batch, target_power, noise_power in powers:
        for criterion, store in stores.items():
            for row, mask in zip(batch, ideal_mask(target_power[:, 0], noise_power, criterion).cpu().numpy()):
                store.save(row.key, mask)
    return len(pending)


TYPED_IDEAL_SOURCE = "ideal-typed"


def _typed_stems(audio_path: Path) -> list[Path]:
    stems = [target_stem_path(audio_path), *(typed_stem_path(audio_path, t) for t in SOUND_TYPES)]
    missing = [stem for stem in stems[1:] if not stem.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no typed stem for {audio_path} (a benchmark built before typed stems "
                                "were kept: `mgc masks ideal --typed` adds them)")
    return stems


def write_typed_ideal_masks(
    rows: Sequence[WindowRow], config: SpectrogramConfig, cache_root: str | Path, batch_size: int = 16,
    progress: bool = True, device: str = "cpu", num_workers: int = 0,
) -> int:
    """Per-type ideal masks into the `ideal-typed` source: (3, height, width) boolean, one channel per sound type
    (labels.SOUND_TYPES order), each that type's own target power against the noise by the default criterion (the
    rule of `ideal_mask`; the other types' calls are not noise, so a pixel can belong to two types). Their union is
    the `ideal` mask except where calls of two types meet in a pixel, where the power of their sum decides there.
    Returns how many windows were new."""
    store = mask_store(config, TYPED_IDEAL_SOURCE, cache_root)
    pending = [row for row in dict.fromkeys(rows) if not store.has(row.key)]
    if not pending:
        return 0
    for row in pending:
        _typed_stems(row.path)  # a missing stem is named before any work
    powers = _band_powers(pending, config, _typed_stems, batch_size, progress, device, num_workers,
                          f"typed ideal masks {config.cache_key}")
    for batch, target_power, noise_power in powers:
        for row, mask in zip(batch, ideal_mask(target_power[:, 1:], noise_power[:, None]).cpu().numpy()):
            store.save(row.key, mask)
    return len(pending)
