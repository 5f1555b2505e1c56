"""Exact masks with segmenter-like errors at a controlled quality: the mask-quality curve (one MGC recipe trained and
tested on ideal masks degraded to IoU 0.5 ... 0.9) and, per window, a training-time augmentation (MGC taught on
masks with errors). The errors ignore the labels and never mark a call too faint to be labelled, so degraded masks
keep much of the exact masks' label leak: the curve bounds what masks of an IoU can give, it does not price a
segmenter's.

One severity in [0, 1] (0 = unchanged) scales every kind of error a segmenter makes: faint calls missed (the faintest
first), calls drawn too fat or too thin, false blobs on bright noise and vessel tonals (noise-only windows too), and
ragged boundaries. Each error step draws the same random numbers whatever the mask and severity (per-pixel fields; a
component reads its draws at its first pixel), so with one seed a higher severity makes the same errors and more:
the pooled IoU falls almost monotonically with severity, and a bisection finds the severity of a target IoU.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from ..audio.manifest import WindowRow
from ..core.atomic import write_bytes_atomic
from ..frontend.cache import compute_spectrograms, mask_store, spectrogram_store
from ..frontend.spectrogram import SpectrogramConfig
from .sources import IDEAL

CONNECTED = ndimage.generate_binary_structure(2, 2)  # a diagonal whistle contour is one component
CROSS = ndimage.generate_binary_structure(2, 1)
MISSED_SHARE = 0.5  # at severity 1, each component is missed with this chance (the faintest first)
MAX_EXTRA_RADIUS = 2  # at severity 1, a resized component moves its boundary by 1 + up to this many pixels
BLOB_ATTEMPTS, BLOB_SHARE = 8, 0.5  # at severity 1, each of 8 false-blob attempts is made with this chance
BLOB_Z = 2.5  # noise units above the background level where a false blob may lie
BLOB_HALF_HEIGHT, BLOB_HALF_WIDTH = 2, 12  # a false blob's extent around its seed: line-like, along time
BACKGROUND_ROWS = 15  # frequency rows over which the background level is smoothed, wider than a tonal
LINE_COLUMNS = 9  # columns along which a tonal stays bright and an impulse does not
JITTER_SHARE = 0.3  # at severity 1, each boundary pixel flips with this chance
CALIBRATION_WINDOWS = 300
SOURCE_PREFIX = "degraded-iou"
RECORD = "degradation.json"


def _component_draws(labels: np.ndarray, rng: np.random.Generator, draws: int) -> np.ndarray:
    """(components, draws) uniforms, each component's read at its first pixel from fields over the whole image, so
    they do not depend on which other components exist (dropping one leaves the others' draws as they were)."""
    fields = rng.random((draws, labels.size))
    values, first = np.unique(labels.ravel(), return_index=True)
    return fields[:, first[values > 0]].T


def drop_faint_components(
    mask: np.ndarray, image: np.ndarray, rate: float, rng: np.random.Generator
) -> np.ndarray:
    """Missed calls: about `rate` of the components disappear, the faintest (mean image intensity under them) first,
    as a segmenter loses the calls nearest the noise."""
    labels, count = ndimage.label(mask, CONNECTED)
    missed = int((_component_draws(labels, rng, 1)[:, 0] < rate).sum())
    brightness = ndimage.mean(image, labels, np.arange(1, count + 1))
    kept = np.ones(count + 1, dtype=bool)
    kept[0] = False
    kept[np.argsort(brightness, kind="stable")[:missed] + 1] = False
    return kept[labels]


def resize_components(mask: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Calls drawn too fat or too thin: each component, with chance `rate`, is dilated or eroded (even odds) by 1 to
    1 + MAX_EXTRA_RADIUS pixels (more with `rate`). An eroded component keeps its skeleton, so a thin click thins
    rather than vanishes: vanishing is drop_faint_components' error."""
    from skimage.morphology import skeletonize

    labels, count = ndimage.label(mask, CONNECTED)
    draws = _component_draws(labels, rng, 2 + MAX_EXTRA_RADIUS)
    changed, grows = draws[:, 0] < rate, draws[:, 1] < 0.5
    radii = 1 + (draws[:, 2:] < rate).sum(axis=1)
    result = mask.copy()
    for grow in (False, True):  # erosions first, so they never cut into a neighbour's dilation
        for radius in np.unique(radii[changed & (grows == grow)]):
            chosen = np.concatenate([[False], changed & (grows == grow) & (radii == radius)])[labels]
            if grow:
                result |= ndimage.binary_dilation(chosen, CROSS, iterations=int(radius))
            else:
                shrunk = ndimage.binary_erosion(chosen, CROSS, iterations=int(radius)) | skeletonize(chosen)
                result &= ~chosen | shrunk
    return result


def _noise_units(image: np.ndarray) -> np.ndarray:
    """The image's height above a row-wise background level (each row's median, smoothed over BACKGROUND_ROWS rows)
    in units of its robust spread: a vessel tonal stands above the rows around it, where each row's own median would
    take it away."""
    image = np.asarray(image, dtype=np.float32)
    level = ndimage.median_filter(np.median(image, axis=1), size=BACKGROUND_ROWS, mode="nearest")
    height = image - level[:, None]
    spread = 1.4826 * np.median(np.abs(height - np.median(height))) + 1e-6
    return height / spread


def add_false_blobs(mask: np.ndarray, image: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """False alarms: each of BLOB_ATTEMPTS attempts, made with chance `rate`, marks a bright region of the image that
    the mask leaves empty (above BLOB_Z noise units), cut to a line-like box around a seed pixel. Seeds are drawn
    weighted by how bright the image stays along time, so vessel tonals and other horizontal lines come first."""
    z = _noise_units(image)
    keys, attempted = rng.random(mask.shape), rng.random(BLOB_ATTEMPTS) < rate
    candidates = (z > BLOB_Z) & ~mask
    result = mask.copy()
    if not candidates.any():
        return result
    along_time = np.clip(ndimage.uniform_filter1d(z, size=LINE_COLUMNS, axis=1), 0.1, None)
    priority = np.where(candidates, np.log(keys) / along_time, -np.inf)  # weighted sampling (Efraimidis-Spirakis)
    count = min(BLOB_ATTEMPTS, int(candidates.sum()))
    seeds = np.argpartition(priority, -count, axis=None)[-count:]
    seeds = seeds[np.argsort(priority.ravel()[seeds])[::-1]]
    regions, _ = ndimage.label(candidates, CONNECTED)
    for seed in seeds[attempted[: len(seeds)]]:
        row, column = np.unravel_index(seed, mask.shape)
        box = (slice(max(row - BLOB_HALF_HEIGHT, 0), row + BLOB_HALF_HEIGHT + 1),
               slice(max(column - BLOB_HALF_WIDTH, 0), column + BLOB_HALF_WIDTH + 1))
        result[box] |= regions[box] == regions[row, column]
    return result


def jitter_boundaries(mask: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Ragged outlines: each pixel on a component's inner or outer boundary flips with chance `rate`."""
    flips = rng.random(mask.shape) < rate
    boundary = ndimage.binary_dilation(mask, CROSS) & ~ndimage.binary_erosion(mask, CROSS)
    return mask ^ (flips & boundary)


def degrade_mask(mask: np.ndarray, image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """`mask` (boolean, on `image`'s grid) with a segmenter's errors, all scaled by `severity` in [0, 1]: missed faint
    calls, then fat or thin calls, then false blobs, then ragged boundaries. Deterministic for a given rng state."""
    if not 0 <= severity <= 1:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    mask, image = np.asarray(mask, dtype=bool), np.asarray(image, dtype=np.float32)
    if mask.shape != image.shape:
        raise ValueError(f"mask is {mask.shape}, image is {image.shape}: they must share a grid")
    mask = drop_faint_components(mask, image, MISSED_SHARE * severity, rng)
    mask = resize_components(mask, severity, rng)
    mask = add_false_blobs(mask, image, BLOB_SHARE * severity, rng)
    return jitter_boundaries(mask, JITTER_SHARE * severity, rng)


def window_seed(seed: int, key: str) -> int:
    """A window's own seed from the job's seed and its key: its degraded mask does not depend on which other rows
    are degraded with it, nor on their order."""
    return int.from_bytes(hashlib.sha1(f"{seed}|{key}".encode()).digest()[:8], "big")


def _overlap(degraded: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.array([(degraded & reference).sum(), (degraded | reference).sum()])


def _pooled_iou(overlap: np.ndarray) -> float:
    """Intersection over union summed over windows, as mask_metrics' `iou` counts it (0 when both are empty)."""
    intersection, union = overlap
    return float(intersection / union) if union else 0.0


@dataclass(frozen=True)
class Calibration:
    severity: float
    iou: float  # pooled over the calibration windows at `severity`


def calibrate_severity(
    windows: Sequence[tuple[np.ndarray, np.ndarray]], seeds: Sequence[int], target_iou: float,
    tolerance: float = 0.005, steps: int = 16,
) -> Calibration:
    """The severity whose degraded masks reach `target_iou` against the originals, pooled over `windows` ((mask,
    image) pairs), by bisection with each window's draws fixed by its seed. The IoU returned is the one measured at
    that severity, not the target: masks change by whole components, so a small set may miss the target by more than
    `tolerance` (the closest severity tried is kept), and the IoU on other windows differs again; report it."""
    if not 0 < target_iou < 1:
        raise ValueError(f"target IoU must be in (0, 1), got {target_iou}")

    def iou_at(severity: float) -> float:
        return _pooled_iou(sum((_overlap(degrade_mask(mask, image, severity, np.random.default_rng(seed)), mask)
                                for (mask, image), seed in zip(windows, seeds)), np.zeros(2, dtype=np.int64)))

    best = Calibration(1.0, iou_at(1.0))
    if best.iou > target_iou:
        raise ValueError(f"the harshest degradation leaves IoU {best.iou:.3f} on these {len(windows)} windows; "
                         f"IoU {target_iou} is out of reach")
    low, high = 0.0, 1.0
    for _ in range(steps):
        if abs(best.iou - target_iou) <= tolerance:
            break
        severity = (low + high) / 2
        iou = iou_at(severity)
        if abs(iou - target_iou) < abs(best.iou - target_iou):
            best = Calibration(severity, iou)
        low, high = (severity, high) if iou > target_iou else (low, severity)
    return best


def degraded_source(target_iou: float) -> str:
    """The mask source of masks degraded to this target IoU, e.g. `degraded-iou0.70`."""
    if not 0 < target_iou < 1:
        raise ValueError(f"target IoU must be in (0, 1), got {target_iou}")
    return f"{SOURCE_PREFIX}{target_iou:.2f}"


def degraded_target(source: str) -> float | None:
    """The target IoU a mask source's name holds (`degraded-iou0.70` -> 0.7), None for any other source."""
    match = re.fullmatch(re.escape(SOURCE_PREFIX) + r"(0\.\d\d)", source)
    return float(match.group(1)) if match else None


def write_degraded_masks(
    rows: Sequence[WindowRow], config: SpectrogramConfig, cache_root: str | Path, target_iou: float, seed: int = 0,
    reference: str = IDEAL, progress: bool = True,
) -> float:
    """Every window's `reference` mask degraded to about `target_iou` into the `degraded_source(target_iou)` source;
    returns the IoU achieved, pooled over `rows`.

    The severity is calibrated on every call, on up to CALIBRATION_WINDOWS of these rows (a sample fixed by the seed,
    not by their order), and each call is appended to `degradation.json` beside the masks (target, severity, IoU
    on the calibration sample and on all rows, seed, reference): a preset or split degraded by separate calls got its
    own severity, and the record says which. Each window's draws come from (seed, window key)."""
    source = degraded_source(target_iou)
    compute_spectrograms(rows, config, cache_root, progress=progress)
    images, references = spectrogram_store(config, cache_root), mask_store(config, reference, cache_root)
    store = mask_store(config, source, cache_root)
    rows = list({row.key: row for row in rows}.values())
    seeds = {row.key: window_seed(seed, row.key) for row in rows}

    def window(row: WindowRow) -> tuple[np.ndarray, np.ndarray]:
        return references.load(row.key), images.load(row.key).astype(np.float32)

    sample = sorted(rows, key=lambda row: seeds[row.key])[:CALIBRATION_WINDOWS]
    calibration = calibrate_severity([window(row) for row in sample], [seeds[row.key] for row in sample], target_iou)
    overlap = np.zeros(2, dtype=np.int64)
    for row in tqdm(rows, desc=f"{source} masks {config.cache_key}", disable=not progress):
        mask, image = window(row)
        degraded = degrade_mask(mask, image, calibration.severity, np.random.default_rng(seeds[row.key]))
        store.save(row.key, degraded)
        overlap += _overlap(degraded, mask)
    achieved = _pooled_iou(overlap)
    record = store.folder / RECORD
    calls = json.loads(record.read_text())["calls"] if record.is_file() else []
    calls.append({"target_iou": target_iou, "severity": calibration.severity, "calibration_iou": calibration.iou,
                  "calibration_windows": len(sample), "achieved_iou": achieved, "windows": len(rows), "seed": seed,
                  "reference": reference})
    write_bytes_atomic(record, json.dumps({"calls": calls}, indent=1).encode())
    return achieved
