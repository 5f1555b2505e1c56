"""Datasets and LightningDataModules over the cached spectrogram images.

`prepare_data` (rank 0 only under DDP) fills the spectrogram cache; `setup` (every rank) splits the manifest the
same deterministic way on every rank, so Lightning's DistributedSampler shards one identical list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .cache import DEFAULT_CACHE_ROOT, ArrayStore, compute_spectrograms, mask_store, spectrogram_store
from .manifest import SplitConfig, WindowRow, load_manifest, split_rows
from .masks import read_mask_png, soft_mask
from .spectrogram import SpectrogramConfig, get_preset

MASK_KINDS = ("binary", "soft")
# A mask source is a folder of the preset's cache (ideal, candidate, predicted, boxes, ...) or `manifest`:
# the PNG named in each row's `mask` column.
MANIFEST_MASKS = "manifest"


def mask_loader(config: SpectrogramConfig, source: str, cache_root: str | Path) -> Callable[[WindowRow], np.ndarray]:
    """A function row -> boolean (height, width) mask from the named source, with an error that says what to run."""
    if source == MANIFEST_MASKS:
        def from_png(row: WindowRow) -> np.ndarray:
            if not row.mask:
                raise ValueError(f"window {row.key} has no `mask` PNG in the manifest")
            return read_mask_png(row.mask if Path(row.mask).is_absolute() else row.path.parent / row.mask, config)
        return from_png
    store = mask_store(config, source, cache_root)

    def from_store(row: WindowRow) -> np.ndarray:
        if not store.has(row.key):
            raise FileNotFoundError(
                f"no {source!r} mask for window {row.key} in {store.folder}; create the {source} masks for preset "
                f"{config.name!r} first (see README, 'Masks')"
            )
        return store.load(row.key).astype(bool)
    return from_store


class WindowDataset(Dataset):
    """Items: image (1, H, W) float32 in [0, 1]; joint (8-class index); labels (3,) float; optional mask (1, H, W)."""

    def __init__(
        self,
        rows: Sequence[WindowRow],
        images: ArrayStore,
        masks: Callable[[WindowRow], np.ndarray] | None = None,
        mask_kind: str = "binary",
        soft_sigma: float = 3.0,
        hflip: bool = False,
    ):
        if mask_kind not in MASK_KINDS:
            raise ValueError(f"mask_kind must be one of {MASK_KINDS}, got {mask_kind!r}")
        self.rows, self.images, self.masks = list(rows), images, masks
        self.mask_kind, self.soft_sigma, self.hflip = mask_kind, soft_sigma, hflip

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.rows[index]
        item = {
            "image": torch.from_numpy(self.images.load(row.key).astype(np.float32))[None],
            "joint": torch.tensor(row.joint_class, dtype=torch.long),
            "labels": torch.tensor(row.labels, dtype=torch.float32),
        }
        if self.masks is not None:
            binary = self.masks(row)
            mask = soft_mask(binary, self.soft_sigma) if self.mask_kind == "soft" else binary.astype(np.float32)
            item["mask"] = torch.from_numpy(mask)[None]
        if self.hflip and torch.rand(()) < 0.5:
            item["image"] = item["image"].flip(-1)
            if "mask" in item:
                item["mask"] = item["mask"].flip(-1)
        return item


class _WindowDataModule(L.LightningDataModule):
    """Shared plumbing: manifest, preset, cache, grouped split, loaders."""

    def __init__(
        self,
        manifest: str,
        preset: str = "origin",
        cache_root: str = str(DEFAULT_CACHE_ROOT),
        batch_size: int = 16,
        num_workers: int = 0,
        split_by: str = "recording",
        split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
        split_seed: int = 0,
        cache_device: str = "cpu",
    ):
        super().__init__()
        self.manifest = manifest
        self.config = get_preset(preset)
        self.cache_root = cache_root
        self.batch_size, self.num_workers = batch_size, num_workers
        self.split = SplitConfig(group_by=split_by, fractions=tuple(split_fractions), seed=split_seed)
        self.cache_device = cache_device
        self.datasets: dict[str, WindowDataset] = {}

    def prepare_data(self) -> None:
        rows = load_manifest(self.manifest)
        compute_spectrograms(rows, self.config, self.cache_root, device=self.cache_device, num_workers=self.num_workers)

    def split_rows(self) -> dict[str, list[WindowRow]]:
        rows = load_manifest(self.manifest, check_audio=False)
        return {name: [rows[i] for i in indices] for name, indices in split_rows(rows, self.split).items()}

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[name], batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class ClassificationDataModule(_WindowDataModule):
    """Spectrogram images with labels, plus an optional mask channel from a named source (binary or soft).

    Takes the shared window settings (preset, cache_root, batch_size, split_..., see _WindowDataModule) as keywords."""

    def __init__(self, manifest: str, *, mask_source: str | None = None, mask_kind: str = "binary",
                 soft_sigma: float = 3.0, hflip: bool = False, **window_settings):
        super().__init__(manifest, **window_settings)
        self.save_hyperparameters()  # travels in checkpoints: evaluation rebuilds the same data for another preset
        self.mask_source, self.mask_kind, self.soft_sigma, self.hflip = mask_source, mask_kind, soft_sigma, hflip

    def setup(self, stage: str | None = None) -> None:
        images = spectrogram_store(self.config, self.cache_root)
        masks = mask_loader(self.config, self.mask_source, self.cache_root) if self.mask_source else None
        for name, rows in self.split_rows().items():
            self.datasets[name] = WindowDataset(
                rows, images, masks, self.mask_kind, self.soft_sigma, hflip=self.hflip and name == "train"
            )


class SegmentationDataModule(_WindowDataModule):
    """Spectrogram images with their target masks (windows without one are left out), horizontal flips on train."""

    def __init__(self, manifest: str, *, mask_source: str = MANIFEST_MASKS, hflip: bool = True, **window_settings):
        super().__init__(manifest, **window_settings)
        self.save_hyperparameters()
        self.mask_source, self.hflip = mask_source, hflip

    def setup(self, stage: str | None = None) -> None:
        images = spectrogram_store(self.config, self.cache_root)
        masks = mask_loader(self.config, self.mask_source, self.cache_root)
        store = None if self.mask_source == MANIFEST_MASKS else mask_store(self.config, self.mask_source, self.cache_root)
        for name, rows in self.split_rows().items():
            with_masks = [row for row in rows if (store.has(row.key) if store else bool(row.mask))]
            self.datasets[name] = WindowDataset(
                with_masks, images, masks, hflip=self.hflip and name == "train"
            )
