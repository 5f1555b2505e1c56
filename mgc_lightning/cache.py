"""Per-preset cache of spectrogram images and masks, keyed by the front-end config hash.

Layout: `<root>/<preset>-<hash>/config.json`, `.../spectrograms/<key>.npy`, `.../masks/<source>/<key>.npy`.
Every file is written to a temporary name and renamed into place, so a killed run leaves only complete files
(plus stray temporaries that readers never look at), and rerunning recomputes only what is missing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .audio import read_window
from .manifest import WindowRow
from .spectrogram import SpectrogramConfig, SpectrogramTransform

DEFAULT_CACHE_ROOT = Path("data/cache")


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


class ArrayStore:
    """A folder of .npy arrays addressed by window key; atomic writes, reads only complete files."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path_for(self, key: str) -> Path:
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()[:24]}.npy"

    def has(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def save(self, key: str, array: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        write_bytes_atomic(self.path_for(key), buffer.getvalue())

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
    """Binary masks of one source (ideal, candidate, predicted, boxes, ...) for this preset."""
    return ArrayStore(preset_dir(config, root) / "masks" / source)


class _WindowAudio(Dataset):
    """Audio of windows at the config's rate, read in DataLoader workers."""

    def __init__(self, rows: Sequence[WindowRow], config: SpectrogramConfig):
        self.rows, self.config = rows, config

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        row = self.rows[index]
        samples = read_window(
            row.path, row.start_s, row.duration_s, target_rate=self.config.sample_rate, fmax_hz=self.config.fmax
        )
        return index, torch.from_numpy(samples)


def _batches_of_equal_length(rows: Sequence[WindowRow], batch_size: int) -> list[list[int]]:
    by_duration: dict[float, list[int]] = {}
    for index, row in enumerate(rows):
        by_duration.setdefault(round(row.duration_s, 6), []).append(index)
    return [
        indices[i : i + batch_size] for indices in by_duration.values() for i in range(0, len(indices), batch_size)
    ]


def _stack(items: list[tuple[int, torch.Tensor]]) -> tuple[list[int], torch.Tensor]:
    indices, waves = zip(*items)
    length = min(w.shape[0] for w in waves)  # resampling can differ by one sample between windows
    return list(indices), torch.stack([w[:length] for w in waves])


def compute_spectrograms(
    rows: Sequence[WindowRow],
    config: SpectrogramConfig,
    root: str | Path = DEFAULT_CACHE_ROOT,
    device: str = "cpu",
    batch_size: int = 16,
    num_workers: int = 0,
    progress: bool = True,
) -> int:
    """Fill the cache with every window's image that is not there yet; returns how many were computed."""
    store = spectrogram_store(config, root)
    pending = [row for row in dict.fromkeys(rows) if not store.has(row.key)]
    if not pending:
        return 0
    transform = SpectrogramTransform(config).to(device)
    loader = DataLoader(
        _WindowAudio(pending, config),
        batch_sampler=_batches_of_equal_length(pending, batch_size),
        num_workers=num_workers,
        collate_fn=_stack,
    )
    with tqdm(total=len(pending), desc=f"spectrograms {config.cache_key}", unit="win", disable=not progress) as bar:
        for indices, waves in loader:
            with torch.no_grad():
                images = transform(waves.to(device)).cpu().numpy().astype(np.float16)
            for index, image in zip(indices, images):
                store.save(pending[index].key, image)
            bar.update(len(indices))
    return len(pending)
