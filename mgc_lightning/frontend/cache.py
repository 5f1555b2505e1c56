"""Per-preset cache of spectrogram images and masks, keyed by the front-end config hash.

Layout: `<root>/<preset>-<hash>/config.json`, `.../spectrograms/<key>.npy`, `.../masks/<source>/<key>.npy`, and
`.../silent_windows.json` (windows without usable signal, which the data modules leave out).
Every file is written to a temporary name and renamed into place, so a killed run leaves only complete files
(plus stray temporaries that readers never look at), and rerunning recomputes only what is missing. The processes of
a DDP run share the windows (sharding.Shard) and leave the same files as one process.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..audio.manifest import WindowRow
from ..audio.reading import AudioError, SignalWarning, read_window_and_check
from ..core.atomic import write_bytes_atomic
from ..core.sharding import Shard
from .spectrogram import SpectrogramConfig, SpectrogramTransform

DEFAULT_CACHE_ROOT = Path("data/cache")
SILENT_WINDOWS = "silent_windows.json"


class WindowReadError(ValueError):
    """Windows whose audio could not be read, one line per file and problem with the manifest rows it hit; every
    other window was computed."""

    def __init__(self, failures: Sequence[tuple[WindowRow, str]], computed: int):
        self.failures = list(failures)
        by_problem: dict[tuple[Path, str], list[int]] = {}
        for row, problem in self.failures:
            by_problem.setdefault((row.path, problem), []).append(row.manifest_row)
        lines = [f"{path}: {problem}{_rows_text(rows)}" for (path, problem), rows in by_problem.items()]
        super().__init__(f"{len(self.failures)} window(s) could not be read ({computed} others computed and cached): "
                         + "\n  ".join(lines))


def _rows_text(rows: list[int]) -> str:
    rows = sorted(r for r in rows if r)
    if not rows:
        return ""
    shown = ", ".join(map(str, rows[:10])) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
    return f" (manifest row{'s' if len(rows) > 1 else ''} {shown})"


class ArrayStore:
    """A folder of .npy arrays addressed by window key; atomic writes, reads only complete files."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path_for(self, key: str) -> Path:
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()[:24]}.npy"

    def has(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def save(self, key: str, array: np.ndarray) -> None:
        """Atomic but not fsynced: arrays can be computed again, and an fsync per 32 KB image took 4 ms, longer than
        computing it (minutes for the paper's 39,000 cached images and masks)."""
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        write_bytes_atomic(self.path_for(key), buffer.getvalue(), durable=False)

    def load(self, key: str) -> np.ndarray:
        path = self.path_for(key)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not in the cache ({key})")
        return np.load(path, allow_pickle=False)

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*.npy")) if self.folder.is_dir() else 0


def preset_dir(config: SpectrogramConfig, root: str | Path = DEFAULT_CACHE_ROOT) -> Path:
    """The preset's cache folder; records the config beside the arrays and refuses a mismatching one."""
    folder = Path(root) / config.cache_key
    record = folder / "config.json"
    if record.is_file():
        stored = json.loads(record.read_text())
        if SpectrogramConfig.from_dict(stored).hash != config.hash:
            raise RuntimeError(f"{record} holds another front-end config than {config.cache_key}; delete the folder")
    else:
        write_bytes_atomic(record, json.dumps(config.to_dict(), indent=2).encode())
    return folder


def spectrogram_store(config: SpectrogramConfig, root: str | Path = DEFAULT_CACHE_ROOT) -> ArrayStore:
    return ArrayStore(preset_dir(config, root) / "spectrograms")


def mask_store(config: SpectrogramConfig, source: str, root: str | Path = DEFAULT_CACHE_ROOT) -> ArrayStore:
    """Masks of one source (ideal, candidate, predicted, boxes, ...) for this preset: boolean arrays, or float16
    probability maps for `predicted-probability`."""
    return ArrayStore(preset_dir(config, root) / "masks" / source)


def silent_windows(config: SpectrogramConfig, root: str | Path = DEFAULT_CACHE_ROOT) -> dict[str, str]:
    """Window key -> why it holds no usable signal, for the windows flagged when their images were computed."""
    return _flags(preset_dir(config, root))


# Each process's flags go to a record of its own, merged into silent_windows.json when its run ends: the processes of a
# DDP run never write one file together, and a killed run's flags are still read.
SILENT_WINDOWS_OF_RANK = "silent_windows.rank{}.json"


def _flags(folder: Path) -> dict[str, str]:
    records = [folder / SILENT_WINDOWS, *sorted(folder.glob(SILENT_WINDOWS_OF_RANK.format("*")))]
    return {key: reason for record in records if record.is_file()
            for key, reason in json.loads(record.read_text()).items()}


def _write_flags(record: Path, flags: dict[str, str]) -> None:
    write_bytes_atomic(record, json.dumps(flags, indent=1, sort_keys=True).encode())


def _merge_flags(folder: Path) -> None:
    """Every process's record into silent_windows.json, which is then what one process writes."""
    parts = list(folder.glob(SILENT_WINDOWS_OF_RANK.format("*")))
    if parts:
        _write_flags(folder / SILENT_WINDOWS, _flags(folder))
        for part in parts:
            part.unlink()


class _WindowAudio(Dataset):
    """Audio of windows at the config's rate, read in DataLoader workers: (index, samples, signal problem), or
    (index, None, error) for a window that cannot be read, so one bad file does not stop the others."""

    def __init__(self, rows: Sequence[WindowRow], config: SpectrogramConfig):
        self.rows, self.config = rows, config

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        row = self.rows[index]
        try:
            samples, problem = read_window_and_check(
                row.path, row.start_s, row.duration_s, target_rate=self.config.sample_rate, fmax_hz=self.config.fmax
            )
        except AudioError as error:
            return index, None, error.problem
        return index, torch.from_numpy(samples), problem


def _batches_of_equal_length(rows: Sequence[WindowRow], batch_size: int) -> list[list[int]]:
    by_duration: dict[float, list[int]] = {}
    for index, row in enumerate(rows):
        by_duration.setdefault(round(row.duration_s, 6), []).append(index)
    return [
        indices[i : i + batch_size] for indices in by_duration.values() for i in range(0, len(indices), batch_size)
    ]


def _stack(items: list[tuple[int, torch.Tensor | None, str | None]]) -> tuple[list, torch.Tensor | None, list, list]:
    """(indices, stacked waves, signal problems) of the windows read, and (index, error) of those that failed."""
    read = [item for item in items if item[1] is not None]
    failed = [(index, error) for index, wave, error in items if wave is None]
    if not read:
        return [], None, [], failed
    indices, waves, problems = zip(*read)
    length = min(w.shape[0] for w in waves)  # resampling can differ by one sample between windows
    return list(indices), torch.stack([w[:length] for w in waves]), list(problems), failed


def compute_spectrograms(
    rows: Sequence[WindowRow],
    config: SpectrogramConfig,
    root: str | Path = DEFAULT_CACHE_ROOT,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    num_workers: int = 0,
    progress: bool = True,
    shard: Shard = Shard(),
) -> int:
    """Fill the cache with every window's image that is not there yet; returns how many were computed.

    A window without usable signal (audio.signal_problem) is computed, warned about (SignalWarning, with its row) and
    recorded in the preset's silent_windows.json. A window that cannot be read does not stop the others: all the
    readable ones are computed, then WindowReadError lists the unreadable ones with their manifest rows.

    In a DDP run every process calls this with the same rows and computes its `shard` of the missing windows; all
    return (or raise the same error) once every window is cached, with the run's totals."""
    store = spectrogram_store(config, root)
    keyed, failures = {}, []
    for row in rows:
        try:
            key = row.key  # the audio file's fingerprint: a missing file fails here, and only its own windows
        except AudioError as error:
            failures.append((row, error.problem))
            continue
        if not store.has(key):
            keyed.setdefault(key, row)
    pending = list(keyed.values())
    mine = shard.agreed_share(pending) if pending else []  # every process finds the same windows missing, or none
    unread = _compute_images(mine, config, root, store, device, batch_size, num_workers, progress and shard.is_main,
                             shard)
    if pending:
        unread = sorted(failure for share in shard.gathered(unread) for failure in share)
        if shard.is_main:
            _merge_flags(preset_dir(config, root))
        shard.barrier()  # the merged record before any process reads it
    failures += [(pending[index], problem) for index, problem in unread]
    computed = len(pending) - len(unread)
    if failures:
        raise WindowReadError(failures, computed)
    return computed


def _compute_images(mine: Sequence[WindowRow], config: SpectrogramConfig, root: str | Path, store: ArrayStore,
                    device: str | torch.device, batch_size: int, num_workers: int, progress: bool,
                    shard: Shard) -> list[tuple[int, str]]:
    """This process's windows into the cache, with the flags of those without usable signal written before their
    images (so a kill in between cannot leave an image without its flag); returns (position in the run's missing
    windows, problem) of the windows that could not be read."""
    if not mine:
        return []
    folder = preset_dir(config, root)
    record = folder / SILENT_WINDOWS_OF_RANK.format(shard.rank)
    flags = json.loads(record.read_text()) if record.is_file() else {}  # a killed run's, kept
    transform = SpectrogramTransform(config).to(device)
    loader = DataLoader(
        _WindowAudio(mine, config),
        batch_sampler=_batches_of_equal_length(mine, batch_size),
        num_workers=num_workers,
        collate_fn=_stack,
    )
    unread = []
    with tqdm(total=len(mine), desc=f"spectrograms {config.cache_key}", unit="win", disable=not progress) as bar:
        for indices, waves, problems, failed in loader:
            unread += [(shard.rank + index * shard.world, error) for index, error in failed]
            if indices:
                with torch.no_grad():
                    images = transform(waves.to(device)).cpu().numpy().astype(np.float16)
                flagged = [(mine[index], problem) for index, problem in zip(indices, problems) if problem]
                for row, problem in flagged:
                    flags[row.key] = f"{row.path} {row.start_s:g}-{row.start_s + row.duration_s:g} s: {problem}"
                    warnings.warn(SignalWarning(f"{row.where}: {problem}; flagged in {folder / SILENT_WINDOWS} and "
                                                "left out of training (drop_silent: false keeps it)"), stacklevel=3)
                if flagged:
                    _write_flags(record, flags)
                for index, image in zip(indices, images):
                    store.save(mine[index].key, image)
            bar.update(len(indices) + len(failed))
    return unread
