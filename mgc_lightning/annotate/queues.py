"""Which windows the annotator sees, in which order. Every queue holds train-side windows only: the segmenter
draws better masks on the windows it trains on, so a drawn mask on a validation or test window would flatter the
classifier's checkpoint selection and test (the rule `mgc masks select` follows)."""

from __future__ import annotations

from pathlib import Path
from typing import Collection, Sequence

import numpy as np
import torch

from ..audio.manifest import SplitConfig, WindowRow, refuse_test_only_training, split_rows
from ..frontend.spectrogram import SpectrogramConfig
from ..masks.sources import rank_by_uncertainty, select_high_quality

QUEUES = ("hq", "uncertain", "all")


def sound_probabilities(segmenter, images: np.ndarray) -> np.ndarray:
    """(N, H, W) images in [0, 1] -> (N, H, W) the segmenter's probability that each pixel is sound, as `mgc masks
    predict` and `mgc detect` draw it."""
    return segmenter.sound_probability(torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None]).numpy()


def build_queue(
    rows: Sequence[WindowRow], queue: str, split: SplitConfig, config: SpectrogramConfig, cache_root: str | Path,
    count: int = 200, seed: int = 0, segmenter=None, batch_size: int = 16, accepted: Collection[str] = (),
    manifest: str | Path | None = None,
) -> list[WindowRow]:
    """hq: the stratified high-quality selection (`count` windows); uncertain: the `count` windows the segmenter is
    least sure about among those without an `accepted` mask (window keys), most uncertain first (active learning: a
    round adds `count` new masks, as the few-shot curve's `uncertain` order does); all: every train-side window in
    manifest order. The `manifest` the rows came from is refused when it marks rows test-only: masks drawn on a test
    set would train the segmenter on it."""
    if queue not in QUEUES:
        raise ValueError(f"queue must be one of {QUEUES}, got {queue!r}")
    if manifest is not None:
        refuse_test_only_training(manifest, split.fractions)
    if queue == "hq":
        return select_high_quality(rows, split, count, seed)
    train = [rows[i] for i in split_rows(rows, split)["train"]]
    if queue == "all":
        return train
    if segmenter is None:
        raise ValueError("the uncertain queue ranks windows by a segmenter's uncertainty: pass --segmenter CKPT")
    pending = [row for row in train if row.key not in set(accepted)]
    return rank_by_uncertainty(segmenter, pending, config, cache_root, batch_size)[:count]
