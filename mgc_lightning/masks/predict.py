"""The predicted-mask job: a trained segmenter's masks for every window of a manifest on one preset's grid, into the
`predicted` source (binary), `predicted-probability` (its probability maps) and, from a typed segmenter,
`predicted-typed` (one mask per sound type). Resumable, tied to one checkpoint, and shared among DDP processes.

The segmenter comes loaded (models.segmenter.load_segmenter does it): the job needs only what a segmenter draws
(`MaskDrawer`), so the masks stage stays below the models in the layers (pyproject.toml's import contracts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..audio.manifest import WindowRow
from ..core.atomic import write_bytes_atomic
from ..core.sharding import Shard
from ..frontend.cache import ArrayStore, compute_spectrograms, mask_store, spectrogram_store
from ..frontend.spectrogram import SpectrogramConfig
from .ops import binary_mask
from .sources import PREDICTED, PREDICTED_PROBABILITY, PREDICTED_TYPED


class MaskDrawer(Protocol):
    """What the job needs of a segmenter (models.segmenter.SegmenterModule is one): whether it draws one mask per
    sound type (`hparams.typed`), and its (B, 1 or 3, H, W) probabilities for (B, 1, H, W) images."""

    hparams: Any

    def mask_probabilities(self, image: torch.Tensor) -> torch.Tensor: ...


def _checkpoint_identity(checkpoint: Path) -> dict:
    stat = checkpoint.stat()
    return {"checkpoint": str(checkpoint.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _claim(stores: Sequence[ArrayStore], identity: dict, replace: bool, shard: Shard) -> None:
    """Ties the sources' folders to one checkpoint: if any holds masks of another, all are refused, or emptied with
    `replace` (a source's binary masks and probability maps always come from one segmenter). In a DDP run the main
    process empties and records them while the others wait."""
    records = [store.folder / "source.json" for store in stores]
    foreign = [(store, json.loads(record.read_text())) for store, record in zip(stores, records)
               if record.is_file() and json.loads(record.read_text()) != identity]
    if foreign and not replace:
        store, stored = foreign[0]
        raise ValueError(f"{store.folder} holds masks predicted by another checkpoint ({stored['checkpoint']}); "
                         "pass --replace to start over")
    if shard.is_main:
        for store, record in zip(stores, records):
            if foreign:
                for old in store.folder.glob("*.npy"):
                    old.unlink()
            store.folder.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(record, json.dumps(identity).encode())  # read meanwhile by the other processes
    shard.barrier()


def predict_masks(
    segmenter: MaskDrawer,
    checkpoint: str | Path,
    rows: Sequence[WindowRow],
    config: SpectrogramConfig,
    cache_root: str | Path,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    replace: bool = False,
    progress: bool = True,
    shard: Shard = Shard(),
) -> int:
    """Predict with `segmenter` (loaded from `checkpoint` onto `device`: models.segmenter.load_segmenter) every window
    of this preset that has no mask yet, in one pass: its binary mask into the `predicted`
    source and its probability map (float16: 32 KB for a 128 x 128 window, twice the binary mask) into
    `predicted-probability`; returns how many windows were predicted.

    A typed segmenter also writes each window's per-type binary masks into `predicted-typed`.

    Resumable: windows with all of them are skipped (masks predicted before the maps were kept get them). The sources
    hold one segmenter's masks: masks from another checkpoint are refused unless `replace` clears them. In a DDP run
    every process calls this with the same rows and predicts its `shard` of the windows (and of their missing
    spectrograms); all return the run's total once every mask is written.
    """
    checkpoint = Path(checkpoint)
    claimed = [mask_store(config, source, cache_root) for source in (PREDICTED, PREDICTED_PROBABILITY, PREDICTED_TYPED)]
    # an untyped segmenter claims the typed source too, so it never leaves another checkpoint's typed masks there
    _claim(claimed, _checkpoint_identity(checkpoint), replace, shard)
    stores = claimed if segmenter.hparams.typed else claimed[:2]
    binary, probability, typed = (*stores, None)[:3]
    compute_spectrograms(rows, config, cache_root, device=device, progress=progress, shard=shard)
    images = spectrogram_store(config, cache_root)
    pending = [row for row in dict.fromkeys(rows) if not all(store.has(row.key) for store in stores)]
    mine = shard.agreed_share(pending) if pending else []  # every process finds the same windows missing, or none
    for first in tqdm(range(0, len(mine), batch_size), desc=f"predict masks {config.cache_key}",
                      disable=not progress or not mine or not shard.is_main):
        batch = mine[first : first + batch_size]
        image = torch.from_numpy(np.stack([images.load(r.key) for r in batch]).astype(np.float32))[:, None]
        drawn = segmenter.mask_probabilities(image.to(device)).cpu()
        for row, maps in zip(batch, drawn):
            sound = maps.amax(dim=0)  # as sound_probability draws it
            probability.save(row.key, sound.numpy().astype(np.float16))  # exact: the values are float16 ones
            binary.save(row.key, binary_mask(sound).numpy())
            if typed is not None:
                typed.save(row.key, binary_mask(maps).numpy())
    if pending:
        shard.barrier()  # every mask written before any process reads them
    return len(pending)
