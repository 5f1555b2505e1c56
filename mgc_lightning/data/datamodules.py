"""Datasets and LightningDataModules over the cached spectrogram images.

`setup` (every process under DDP) first fills the spectrogram cache, each process its share of the missing windows
(sharding.Shard), then splits the manifest the same deterministic way on every process, so Lightning's
DistributedSampler shards one identical list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..audio.manifest import SplitConfig, WindowRow, load_manifest, refuse_test_only_training, split_rows
from ..core.errors import InputError
from ..core.labels import NUM_JOINT_CLASSES
from ..core.sharding import Shard
from ..frontend.cache import (
    DEFAULT_CACHE_ROOT, ArrayStore, compute_spectrograms, mask_store, silent_windows, spectrogram_store,
)
from ..frontend.spectrogram import SpectrogramConfig, get_preset
from ..masks.ops import BINARY, PROBABILITY, check_mask_kind, check_mask_png, mask_of_kind, read_mask_png
from ..masks.sources import PREDICTED, PREDICTED_PROBABILITY, is_typed_source
from .augment import FrontEndAugment

# A mask source is a folder of the preset's cache (ideal, candidate, predicted, boxes, ...) or `manifest`:
# the PNG named in each row's `mask` column.
MANIFEST_MASKS = "manifest"


def manifest_mask_path(row: WindowRow) -> Path:
    """A row's `mask` PNG; a relative name is relative to the row's audio file."""
    return Path(row.mask) if Path(row.mask).is_absolute() else row.path.parent / row.mask


def check_manifest_masks(manifest: str | Path, config: SpectrogramConfig, every_row: bool) -> None:
    """Every mask PNG the manifest names exists and has the preset's size (and every row names one when
    `every_row`): checked when a data module is built, before any model or MLflow run, not mid-epoch."""
    problems = []
    for number, row in enumerate(load_manifest(manifest, check_audio=False), start=1):
        try:
            if row.mask:
                check_mask_png(manifest_mask_path(row), config)
            elif every_row:
                raise ValueError("no mask PNG in the `mask` column")
        except (ValueError, OSError) as error:
            problems.append(f"row {number} (line {number + 1}): {error}")
    if problems:
        more = f" (and {len(problems) - 1} more row(s))" if len(problems) > 1 else ""
        raise InputError(f"{manifest}: {problems[0]}{more}; fix the mask PNGs or the manifest's `mask` column")


def mask_loader(config: SpectrogramConfig, source: str, cache_root: str | Path,
                kind: str = BINARY) -> Callable[[WindowRow], np.ndarray]:
    """A function row -> (height, width) mask from the named source, with an error that says what to run: boolean,
    or float32 for a source of probability maps. Kind `probability` reads the `predicted` source's probability maps
    (`predicted-probability`); every other source's masks stay boolean (masks.ops.mask_of_kind reads them as 0/1)."""
    if source == MANIFEST_MASKS:
        def from_png(row: WindowRow) -> np.ndarray:
            if not row.mask:
                raise ValueError(f"window {row.key} has no `mask` PNG in the manifest")
            return read_mask_png(manifest_mask_path(row), config)
        return from_png
    folder = PREDICTED_PROBABILITY if kind == PROBABILITY and source == PREDICTED else source
    store = mask_store(config, folder, cache_root)
    older = " (`mgc masks predict` adds them beside masks predicted before they were kept)" if folder != source else ""

    def from_store(row: WindowRow) -> np.ndarray:
        if not store.has(row.key):
            raise FileNotFoundError(
                f"no {folder!r} mask for window {row.key} in {store.folder}; create the {source} masks for preset "
                f"{config.name!r} first{older} (see docs/configuration.md, 'Masks')"
            )
        mask = store.load(row.key)
        return mask.astype(np.float32) if np.issubdtype(mask.dtype, np.floating) else mask.astype(bool)
    return from_store


def labelled_subset(rows: Sequence[WindowRow], count: int, seed: int) -> list[WindowRow]:
    """`count` windows of `rows` as a user with that many labels would hold them: drawn at random, stratified over
    the joint classes in proportion to their shares (every class present keeps at least one window), the same for
    every model and every seed of a run so that their curves are paired."""
    generator = np.random.default_rng(seed)
    by_class: dict[int, list[WindowRow]] = {}
    for row in rows:
        by_class.setdefault(row.joint_class, []).append(row)
    quotas = {c: max(1, int(len(members) * count / len(rows))) for c, members in by_class.items()}
    for c in sorted(by_class, key=lambda c: -len(by_class[c])):  # rounding: the largest classes give or take
        if sum(quotas.values()) == count:
            break
        quotas[c] = max(1, min(len(by_class[c]), quotas[c] + count - sum(quotas.values())))
    chosen = [members[i] for c, members in sorted(by_class.items())
              for i in sorted(generator.choice(len(members), quotas[c], replace=False))]
    return chosen


def shift_and_mask_time(image: torch.Tensor, mask: torch.Tensor | None, max_shift: float, masks: int,
                        max_mask_width: float = 0.125) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training-time changes that keep every label true: a circular shift in time (a call may sit anywhere in its
    window) and SpecAugment-style time stripes set to the image's median (a call partly hidden by a dropout or a
    louder transient is still a call). The mask, if any, is shifted and blanked the same way."""
    width = image.shape[-1]
    if max_shift > 0:
        limit = int(max_shift * width)
        shift = int(torch.randint(-limit, limit + 1, ()))
        image = image.roll(shift, dims=-1)
        mask = mask.roll(shift, dims=-1) if mask is not None else None
    for _ in range(masks):
        stripe = int(torch.randint(0, int(max_mask_width * width) + 1, ()))
        start = int(torch.randint(0, width - stripe + 1, ()))
        image = image.clone()
        image[..., start : start + stripe] = image.median()
        if mask is not None:
            mask = mask.clone()
            mask[..., start : start + stripe] = 0
    return image, mask


class RepeatedDataset(Dataset):
    """`dataset` drawn out to `length` items (item i is item i modulo its size): a small labelled subset gets epochs
    as long as the whole split's, which any sampler, Lightning's DistributedSampler too, then shuffles and shards."""

    def __init__(self, dataset: Dataset, length: int):
        self.dataset, self.length = dataset, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.dataset[index % len(self.dataset)]


class WindowDataset(Dataset):
    """Items: image (1, H, W) float32 in [0, 1]; joint (8-class index); labels (3,) float; index (position in the
    dataset); optional mask (1, H, W) float32 of `mask_kind` (masks.ops.mask_of_kind), (3, H, W) for per-type masks.
    `augment` shows each item through a random front-end look (augment.py)."""

    def __init__(
        self,
        rows: Sequence[WindowRow],
        images: ArrayStore,
        masks: Callable[[WindowRow], np.ndarray] | None = None,
        mask_kind: str = BINARY,
        soft_sigma: float = 3.0,
        hflip: bool = False,
        time_shift: float = 0.0,
        time_masks: int = 0,
        augment: FrontEndAugment | None = None,
    ):
        check_mask_kind(mask_kind)
        self.rows, self.images, self.masks = list(rows), images, masks
        self.mask_kind, self.soft_sigma, self.hflip = mask_kind, soft_sigma, hflip
        self.time_shift, self.time_masks = time_shift, time_masks
        self.augment = augment

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.rows[index]
        item = {
            "image": torch.from_numpy(self.images.load(row.key).astype(np.float32))[None],
            "joint": torch.tensor(row.joint_class, dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),  # position in the split: pairs predictions across runs
            "labels": torch.tensor(row.labels, dtype=torch.float32),
        }
        mask = None if self.masks is None else torch.from_numpy(self.masks(row))
        if mask is not None and mask.dim() == 2:  # one mask per window; per-type masks (ideal-typed) have channels
            mask = mask[None]
        if self.augment is not None:  # a look that moves the calls (a warped axis) moves the mask with them
            item["image"], mask = self.augment(item["image"], mask)
        if mask is not None:  # soft masks are relaxed from the moved binary mask
            item["mask"] = mask_of_kind(mask, self.mask_kind, self.soft_sigma)
        if self.hflip and torch.rand(()) < 0.5:
            item["image"] = item["image"].flip(-1)
            if "mask" in item:
                item["mask"] = item["mask"].flip(-1)
        if self.time_shift > 0 or self.time_masks > 0:
            item["image"], mask = shift_and_mask_time(item["image"], item.get("mask"), self.time_shift, self.time_masks)
            if mask is not None:
                item["mask"] = mask
        return item


class _WindowDataModule(L.LightningDataModule):
    """Shared plumbing: manifest, preset, cache, grouped split, loaders.

    drop_silent leaves out the windows flagged without usable signal when their images were computed (digital
    silence, cancelling channels; see cache.silent_windows) after the split, so the split itself never changes.
    drop_duplicates drops exact copies of a manifest row instead of refusing the manifest."""

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
        drop_silent: bool = True,
        drop_duplicates: bool = False,
    ):
        super().__init__()
        self.manifest = manifest
        self.config = get_preset(preset)
        self.cache_root = cache_root
        self.batch_size, self.num_workers = batch_size, num_workers
        self.split = SplitConfig(group_by=split_by, fractions=tuple(split_fractions), seed=split_seed)
        self.cache_device = cache_device
        self.drop_silent, self.drop_duplicates = drop_silent, drop_duplicates
        self.datasets: dict[str, WindowDataset] = {}

    # With mask source `manifest`: must every row name a mask PNG (or are windows without one left out)?
    every_row_masked = True

    @classmethod
    def check_inputs(cls, settings: dict) -> None:
        """What the settings alone let us check, cheaply, before anything is built (LightningCLI calls this before it
        builds the model): no test-only rows on the train or validation side (refuse_test_only_training); with mask
        source `manifest`, every mask PNG the manifest names, with its row."""
        fractions = tuple(settings.get("split_fractions") or SplitConfig().fractions)
        refuse_test_only_training(settings["manifest"], fractions)
        if settings.get("mask_source") == MANIFEST_MASKS:
            check_manifest_masks(settings["manifest"], get_preset(settings.get("preset") or "origin"),
                                 cls.every_row_masked)

    def cache_spectrograms(self, stage: str | None) -> None:
        """Cache the windows this run reads: every split for fit, only the test (or validation) split when a trained
        model is tested on another front end, so an out-of-distribution test renders a sixth of the windows. Under
        DDP every process computes its share, on its own device (a `cuda` cache_device is each process's GPU)."""
        rows = load_manifest(self.manifest, drop_duplicates=self.drop_duplicates)
        if stage in ("test", "validate"):
            rows = [rows[i] for i in split_rows(rows, self.split)["test" if stage == "test" else "val"]]
        device = torch.device(self.cache_device)
        if self.trainer is not None and self.trainer.strategy.root_device.type == device.type:
            device = self.trainer.strategy.root_device
        compute_spectrograms(rows, self.config, self.cache_root, device=device, num_workers=self.num_workers,
                             shard=Shard.of_this_process())

    def split_rows(self) -> dict[str, list[WindowRow]]:
        rows = load_manifest(self.manifest, check_audio=False, drop_duplicates=self.drop_duplicates)
        silent = silent_windows(self.config, self.cache_root) if self.drop_silent else {}
        return {name: [rows[i] for i in indices if not silent or rows[i].key not in silent]
                for name, indices in split_rows(rows, self.split).items()}

    def _keep_looks(self, **probabilities: float) -> None:
        """Shares of training items shown through each front-end look (FrontEndAugment's probabilities), refused
        here if out of range, before any work."""
        FrontEndAugment(self.config, **probabilities)
        self.looks = probabilities

    def _training_looks(self, train: Sequence[WindowRow]) -> FrontEndAugment | None:
        """The training split's looks (None without any): time constants are set in seconds, so the looks learn
        the windows' length from the training rows."""
        if not any(self.looks.values()) or not train:
            return None
        return FrontEndAugment(self.config, window_s=float(np.median([row.duration_s for row in train])), **self.looks)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        # pinned batches copy to a GPU asynchronously, overlapping the step before
        return DataLoader(
            dataset, batch_size=self.batch_size, shuffle=shuffle,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["train"], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["val"], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["test"], shuffle=False)


class ClassificationDataModule(_WindowDataModule):
    """Spectrogram images with labels, plus an optional mask channel from a named source, read as a mask kind
    (binary, soft or probability; masks.ops.mask_of_kind).

    Takes the shared window settings (preset, cache_root, batch_size, split_..., see _WindowDataModule) as keywords."""

    def __init__(self, manifest: str, *, mask_source: str | None = None, mask_kind: str = "binary",
                 soft_sigma: float = 3.0, hflip: bool = False, time_shift: float = 0.0, time_masks: int = 0,
                 gain_control_probability: float = 0.0, power_probability: float = 0.0, warp_probability: float = 0.0,
                 train_windows: int | None = None, **window_settings):
        """train_windows keeps only that many labelled training windows (a learning curve's point; see
        labelled_subset), with epochs as long as the whole train split's, so that every size gets the same number
        of steps and validations. hflip, time_shift (largest circular shift, as a fraction of the width), time_masks (SpecAugment
        stripes per window) and the segmenter's front-end looks (shares of items shown through a random automatic
        gain control, else a power-like curve, and re-rendered on a random log-like frequency axis; FrontEndAugment)
        apply to the training split only. Intensity looks change the image only; an axis moves image and mask."""
        super().__init__(manifest, **window_settings)
        self.save_hyperparameters()  # travels in checkpoints: evaluation rebuilds the same data for another preset
        if not 0 <= time_shift <= 0.5 or time_masks < 0:
            raise ValueError(f"need 0 <= time_shift <= 0.5 and time_masks >= 0, got {time_shift} and {time_masks}")
        self.mask_source, self.mask_kind, self.soft_sigma, self.hflip = mask_source, mask_kind, soft_sigma, hflip
        self.check_inputs({"manifest": manifest, "preset": self.config.name, "mask_source": mask_source,
                           "mask_kind": mask_kind, "split_fractions": self.split.fractions})
        self.time_shift, self.time_masks = time_shift, time_masks
        if train_windows is not None and train_windows < NUM_JOINT_CLASSES:
            raise ValueError(f"train_windows must be at least {NUM_JOINT_CLASSES} (one per joint class), "
                             f"got {train_windows}")
        self.train_windows, self.epoch_windows = train_windows, None
        self._keep_looks(warp_probability=warp_probability, power_probability=power_probability,
                         gain_control_probability=gain_control_probability)

    @classmethod
    def check_inputs(cls, settings: dict) -> None:
        """The mask kind first (a typo names the kinds there are), then the shared checks."""
        check_mask_kind(settings.get("mask_kind", BINARY))
        source = settings.get("mask_source")
        if source and is_typed_source(source):
            raise ValueError(f"mask_source {source!r} holds per-type masks for a typed segmenter; a classifier reads "
                             f"their union: use {source.removesuffix('-typed')!r}")
        super().check_inputs(settings)

    def setup(self, stage: str | None = None) -> None:
        self.cache_spectrograms(stage)
        images = spectrogram_store(self.config, self.cache_root)
        masks = (mask_loader(self.config, self.mask_source, self.cache_root, self.mask_kind) if self.mask_source
                 else None)
        splits = self.split_rows()
        if self.train_windows is not None and stage in (None, "fit"):  # a test of the model rebuilds no train split
            if self.train_windows > len(splits["train"]):
                raise ValueError(f"{self.manifest}: train_windows={self.train_windows} but the train split holds "
                                 f"{len(splits['train'])} windows")
            self.epoch_windows = len(splits["train"])
            splits["train"] = labelled_subset(splits["train"], self.train_windows, self.split.seed)
        augment = self._training_looks(splits["train"])
        for name, rows in splits.items():
            train = name == "train"
            self.datasets[name] = WindowDataset(
                rows, images, masks, self.mask_kind, self.soft_sigma, hflip=self.hflip and train,
                time_shift=self.time_shift if train else 0.0, time_masks=self.time_masks if train else 0,
                augment=augment if train else None,
            )

    def train_dataloader(self) -> DataLoader:
        if self.epoch_windows is None:
            return super().train_dataloader()
        return self._loader(RepeatedDataset(self.datasets["train"], self.epoch_windows), shuffle=True)


class SegmentationDataModule(_WindowDataModule):
    """Spectrogram images with their target masks (windows without one are left out); on the training split only,
    horizontal flips and random front-end looks (augment.py), so that masks drawn on other front ends hold up
    although no image of theirs is ever seen (training on them would leak the out-of-distribution test)."""

    every_row_masked = False  # windows without a mask are left out

    def __init__(self, manifest: str, *, mask_source: str = MANIFEST_MASKS, hflip: bool = True,
                 warp_probability: float = 0.0, stretch_probability: float = 0.0, power_probability: float = 0.0,
                 gain_control_probability: float = 0.0, **window_settings):
        """Shares of the training items re-rendered on a random log-like frequency axis (warp_probability),
        stretched in time (stretch_probability) and shown through a random automatic gain control
        (gain_control_probability) or else a power-like intensity curve (power_probability), as FrontEndAugment
        draws them."""
        super().__init__(manifest, **window_settings)
        self.save_hyperparameters()
        self.mask_source, self.hflip = mask_source, hflip
        self.check_inputs({"manifest": manifest, "preset": self.config.name, "mask_source": mask_source,
                           "split_fractions": self.split.fractions})
        self._keep_looks(warp_probability=warp_probability, stretch_probability=stretch_probability,
                         power_probability=power_probability, gain_control_probability=gain_control_probability)

    def setup(self, stage: str | None = None) -> None:
        self.cache_spectrograms(stage)
        images = spectrogram_store(self.config, self.cache_root)
        masks = mask_loader(self.config, self.mask_source, self.cache_root)
        from_png = self.mask_source == MANIFEST_MASKS
        store = None if from_png else mask_store(self.config, self.mask_source, self.cache_root)
        splits = self.split_rows()
        augment = self._training_looks(splits["train"])
        for name, rows in splits.items():
            with_masks = [row for row in rows if (store.has(row.key) if store else bool(row.mask))]
            train = name == "train"
            self.datasets[name] = WindowDataset(with_masks, images, masks, hflip=self.hflip and train,
                                                augment=augment if train else None)
