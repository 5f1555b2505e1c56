"""Which windows the annotator sees, in which order. Every queue holds train-side windows only: the segmenter
draws better masks on the windows it trains on, so a drawn mask on a validation or test window would flatter the
classifier's checkpoint selection and test (the rule `mgc masks select` follows)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..audio.manifest import SplitConfig, WindowRow, split_rows
from ..frontend.cache import compute_spectrograms, spectrogram_store
from ..frontend.spectrogram import SpectrogramConfig
from ..masks.sources import select_high_quality

QUEUES = ("hq", "uncertain", "all")


def sound_probabilities(segmenter, images: np.ndarray) -> np.ndarray:
    """(N, H, W) images in [0, 1] -> (N, H, W) the segmenter's probability that each pixel is sound."""
    with torch.no_grad():
        logits = segmenter(torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None])
    return torch.softmax(logits, dim=1)[:, 1].numpy()


def mean_entropy(probabilities: np.ndarray) -> np.ndarray:
    """(N, H, W) sound probabilities -> (N,) mean pixel entropy in bits: 0 where the segmenter is sure of every
    pixel, 1 where it hesitates on all of them."""
    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).mean(axis=(1, 2))


def build_queue(
    rows: Sequence[WindowRow], queue: str, split: SplitConfig, config: SpectrogramConfig, cache_root: str | Path,
    count: int = 200, seed: int = 0, segmenter=None, batch_size: int = 16,
) -> list[WindowRow]:
    """hq: the stratified high-quality selection (`count` windows); uncertain: the `count` windows the segmenter is
    least sure about, most uncertain first (active learning); all: every train-side window in manifest order."""
    if queue not in QUEUES:
        raise ValueError(f"queue must be one of {QUEUES}, got {queue!r}")
    if queue == "hq":
        return select_high_quality(rows, split, count, seed)
    train = [rows[i] for i in split_rows(rows, split)["train"]]
    if queue == "all":
        return train
    if segmenter is None:
        raise ValueError("the uncertain queue ranks windows by a segmenter's uncertainty: pass --segmenter CKPT")
    compute_spectrograms(train, config, cache_root, progress=False)
    images = spectrogram_store(config, cache_root)
    scores = np.concatenate([
        mean_entropy(sound_probabilities(segmenter, np.stack([images.load(r.key) for r in train[i : i + batch_size]])))
        for i in range(0, len(train), batch_size)
    ])
    order = np.argsort(-scores, kind="stable")[:count]
    return [train[i] for i in order]
