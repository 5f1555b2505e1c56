"""The few-shot curve: how good the segmenter's masks get from how many high-quality masks, and whether choosing
the windows to annotate by the segmenter's uncertainty beats choosing them at random.

Two orders of the train side's windows, exact masks standing in for the annotator: `random` takes the stratified
draw that `hq.csv` is (`masks.sources.select_high_quality`; each size the first windows of one draw, so a larger
set holds the smaller ones); `uncertain` starts from the same smallest draw and grows it round by round with the
windows the previous round's segmenter is least sure of (the annotation queue `uncertain`). Quality is the pooled
IoU of the binary masks against the exact masks, with an interval over recordings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..audio.manifest import WindowRow
from ..frontend.cache import compute_spectrograms, mask_store, spectrogram_store
from ..frontend.spectrogram import SpectrogramConfig
from ..masks.ops import binary_mask
from ..masks.sources import IDEAL, rank_by_uncertainty
from .intervals import Interval, ratio_interval

ORDERS = ("random", "uncertain")


def grown_by_uncertainty(
    chosen: Sequence[WindowRow], pool: Sequence[WindowRow], size: int, segmenter, config: SpectrogramConfig,
    cache_root: str | Path,
) -> list[WindowRow]:
    """`chosen` and then the `size - len(chosen)` windows of `pool` outside it that the segmenter is least sure of."""
    if size < len(chosen):
        raise ValueError(f"cannot grow {len(chosen)} chosen windows to {size}")
    taken = {row.key for row in chosen}
    candidates = [row for row in pool if row.key not in taken]
    if len(candidates) < size - len(chosen):
        raise ValueError(f"{size} windows asked for, {len(chosen) + len(candidates)} on the train side")
    return [*chosen, *rank_by_uncertainty(segmenter, candidates, config, cache_root)[: size - len(chosen)]]


@dataclass(frozen=True)
class Overlaps:
    """Per window: sound pixels in both the drawn and the exact mask, in either, and the window's recording."""

    intersection: np.ndarray
    union: np.ndarray
    recordings: list[str]

    def iou(self) -> Interval:
        """Pooled IoU (all intersections over all unions, so large calls weigh by their pixels), interval over
        recordings."""
        return ratio_interval(self.intersection, self.union, groups=self.recordings)


def mask_overlaps(
    segmenter, rows: Sequence[WindowRow], config: SpectrogramConfig, cache_root: str | Path, batch_size: int = 32,
) -> Overlaps:
    """The segmenter's binary masks (as `mgc masks predict` draws them, kept in memory: the cache's `predicted`
    source stays the pipeline segmenter's) against the exact masks of `rows`."""
    compute_spectrograms(rows, config, cache_root, progress=False)
    images, exact = spectrogram_store(config, cache_root), mask_store(config, IDEAL, cache_root)
    intersection, union = [], []
    for first in range(0, len(rows), batch_size):
        batch = rows[first : first + batch_size]
        image = torch.from_numpy(np.stack([images.load(r.key) for r in batch]).astype(np.float32))[:, None]
        drawn = binary_mask(segmenter.sound_probability(image)).numpy()
        truth = np.stack([exact.load(r.key) for r in batch]).astype(bool)
        intersection += (drawn & truth).sum(axis=(1, 2)).tolist()
        union += (drawn | truth).sum(axis=(1, 2)).tolist()
    return Overlaps(np.array(intersection), np.array(union), [row.recording for row in rows])


def epochs_for(size: int, reference_size: int, reference_epochs: int) -> int:
    """Epochs that give a set of `size` windows about the optimiser steps the reference set gets, so each point of
    the curve differs in what the segmenter sees, not in how long it trains."""
    return max(1, round(reference_epochs * reference_size / size))


@dataclass(frozen=True)
class FewShotPoint:
    """One segmenter of the curve: its order, its number of masks and its IoU on each tested set."""

    order: str
    size: int
    iou: dict[str, Interval]  # per tested set ("validation origin", "confirmation mel", ...)


def few_shot_table(points: Sequence[FewShotPoint]) -> str:
    """Markdown: one row per number of masks, one column per order and tested set."""
    sets = list(dict.fromkeys(name for point in points for name in point.iou))
    orders = [order for order in ORDERS if any(point.order == order for point in points)]
    cell = {(p.order, p.size, name): str(p.iou[name]) for p in points for name in p.iou}
    header = ["high-quality masks", *(f"{order}: {name}" for name in sets for order in orders)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size in sorted({point.size for point in points}):
        lines.append("| " + " | ".join([str(size), *(cell.get((order, size, name), "—")
                                                     for name in sets for order in orders)]) + " |")
    return "\n".join(lines)


def few_shot_figure(points: Sequence[FewShotPoint]):
    """IoU against the number of masks (log axis), one panel per tested set, one line per order with its interval."""
    from .figures import plt

    sets = list(dict.fromkeys(name for point in points for name in point.iou))
    figure, axes = plt.subplots(1, len(sets), figsize=(3.6 * len(sets), 3.4), squeeze=False, sharey=True)
    for axis, name in zip(axes[0], sets):
        for order, marker in zip(ORDERS, "os"):
            line = sorted((p.size, p.iou[name]) for p in points if p.order == order and name in p.iou)
            if not line:
                continue
            sizes, intervals = [size for size, _ in line], [interval for _, interval in line]
            estimates = np.array([i.estimate for i in intervals])
            errors = np.array([[i.estimate - i.low for i in intervals], [i.high - i.estimate for i in intervals]])
            axis.errorbar(sizes, estimates, yerr=errors, marker=marker, capsize=3, label=order)
        axis.set_xscale("log")
        axis.set_xticks(sorted({p.size for p in points}), [str(size) for size in sorted({p.size for p in points})])
        axis.minorticks_off()
        axis.set_title(name)
        axis.set_xlabel("high-quality masks")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("IoU against the exact masks")
    axes[0][0].legend(title="windows chosen")
    figure.tight_layout()
    return figure
