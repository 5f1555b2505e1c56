"""Dataset-level jobs on mask sources: candidate masks for a preset, box masks from annotations, export for hand
refinement, the high-quality training set for the segmenter, agreement of any source with the ideal masks, and how
much of the labels a source's masks carry on their own."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..audio.manifest import SplitConfig, WindowRow, split_rows, write_manifest
from ..core.labels import NUM_JOINT_CLASSES
from ..frontend.cache import compute_spectrograms, mask_store, spectrogram_store
from ..frontend.spectrogram import SpectrogramConfig
from .ops import Box, box_mask, candidate_mask, mask_metrics

CANDIDATE = "candidate"
IDEAL = "ideal"
BOXES = "boxes"
# A segmenter's masks (`masks.predict.predict_masks`): binary, and beside them its probability maps (float16).
PREDICTED = "predicted"
PREDICTED_PROBABILITY = "predicted-probability"
# A typed segmenter's per-type binary masks, (3, H, W) in labels.SOUND_TYPES order (`predicted` holds their union).
PREDICTED_TYPED = "predicted-typed"


def is_typed_source(source: str) -> bool:
    """Per-sound-type masks (3 channels, `ideal-typed`, `predicted-typed`): what a typed segmenter learns from; a
    classifier reads their union (the source without `-typed`)."""
    return source.endswith("-typed")


def propose_masks(
    rows: Sequence[WindowRow], config: SpectrogramConfig, cache_root: str | Path, sensitivity: float = 0.7,
    progress: bool = True,
) -> int:
    """Candidate masks for every window into the `candidate` source (recomputed, so a new sensitivity applies)."""
    compute_spectrograms(rows, config, cache_root, progress=progress)
    images, store = spectrogram_store(config, cache_root), mask_store(config, CANDIDATE, cache_root)
    for row in tqdm(rows, desc=f"candidate masks {config.cache_key}", disable=not progress):
        store.save(row.key, candidate_mask(images.load(row.key), sensitivity))
    return len(rows)


def draw_box_masks(
    rows: Sequence[WindowRow], boxes: Sequence[Box], config: SpectrogramConfig, cache_root: str | Path
) -> int:
    """Every window's mask of its recording's annotated boxes on the preset's grid, into the `boxes` source (a
    window without a box gets an empty mask: nothing was annotated there). Returns how many windows have a box."""
    by_path: dict[Path, list[Box]] = {}
    for box in boxes:
        by_path.setdefault(Path(box.path).resolve(), []).append(box)
    store, drawn = mask_store(config, BOXES, cache_root), 0
    for row in dict.fromkeys(rows):
        mask = box_mask(by_path.get(Path(row.path).resolve(), []), row.start_s, row.duration_s, config)
        store.save(row.key, mask)
        drawn += bool(mask.any())
    return drawn


def _file_name_part(text: str) -> str:
    """`text` safe inside one file name: anything but letters, digits, '.', '-' and '_' (a '/', a '..' path) becomes
    '_', so a recording id can never place a file outside the export folder."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).replace("..", "_")


def export_for_refinement(
    rows: Sequence[WindowRow], config: SpectrogramConfig, cache_root: str | Path, folder: str | Path
) -> Path:
    """Write each window's spectrogram and candidate mask as PNGs plus a manifest whose `mask` column points at the
    mask PNGs: edit the PNGs in any image editor, then train the segmenter on that manifest with mask source
    `manifest`."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, store = spectrogram_store(config, cache_root), mask_store(config, CANDIDATE, cache_root)
    exported = []
    for index, row in enumerate(rows):
        stem = f"{index:05d}_{_file_name_part(row.recording)}_{row.start_s:g}"
        Image.fromarray((images.load(row.key).astype(np.float32) * 255).round().astype(np.uint8)).save(
            folder / f"{stem}.spectrogram.png")
        Image.fromarray(store.load(row.key).astype(np.uint8) * 255).save(folder / f"{stem}.mask.png")
        exported.append(replace(row, mask=str((folder / f"{stem}.mask.png").resolve())))
    manifest = folder / "manifest.csv"
    write_manifest(exported, manifest)
    return manifest


def select_high_quality(
    rows: Sequence[WindowRow], split: SplitConfig, count: int = 200, seed: int = 0,
    available: Callable[[WindowRow], bool] | None = None,
) -> list[WindowRow]:
    """About `count` windows stratified over the 8 joint classes, drawn only from the train side of the classifier's
    split: the segmenter draws better masks on the windows it trained on, so such a window in validation or test
    would show checkpoint selection and the test better masks than unseen windows get."""
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    pool = [rows[i] for i in split_rows(rows, split)["train"]]
    if available is not None:
        pool = [row for row in pool if available(row)]
    by_class: dict[int, list[WindowRow]] = {c: [] for c in range(NUM_JOINT_CLASSES)}
    for row in pool:
        by_class[row.joint_class].append(row)
    generator = random.Random(seed)
    for members in by_class.values():
        generator.shuffle(members)
    chosen: list[WindowRow] = []
    while len(chosen) < count and any(by_class.values()):  # round robin: classes short of windows give way
        for members in by_class.values():
            if members and len(chosen) < count:
                chosen.append(members.pop())
    return chosen


def mean_entropy(probabilities: np.ndarray) -> np.ndarray:
    """(N, H, W) sound probabilities -> (N,) mean pixel entropy in bits: 0 where the segmenter is sure of every
    pixel, 1 where it hesitates on all of them."""
    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).mean(axis=(1, 2))


def rank_by_uncertainty(
    segmenter, rows: Sequence[WindowRow], config: SpectrogramConfig, cache_root: str | Path, batch_size: int = 16,
) -> list[WindowRow]:
    """`rows` ordered by the segmenter's mean pixel entropy on their spectrograms, least sure first: the order in
    which a person's refined masks teach the segmenter most (the annotation queue `uncertain`, the few-shot curve)."""
    compute_spectrograms(rows, config, cache_root, progress=False)
    images = spectrogram_store(config, cache_root)
    scores = np.concatenate([
        mean_entropy(segmenter.sound_probability(torch.from_numpy(
            np.stack([images.load(r.key) for r in rows[i : i + batch_size]]).astype(np.float32))[:, None]).numpy())
        for i in range(0, len(rows), batch_size)
    ]) if rows else np.zeros(0)
    return [rows[i] for i in np.argsort(-scores, kind="stable")]


def evaluate_masks(
    rows: Sequence[WindowRow], config: SpectrogramConfig, cache_root: str | Path, source: str,
    reference: str = IDEAL,
) -> dict[str, float]:
    """IoU, Dice and pixel F1 of one mask source against another (default: the ideal masks at the default criterion;
    `ideal-0db`, `ideal-3db`, ... hold other criteria, see synth.build.ideal_source)."""
    predicted, truth = mask_store(config, source, cache_root), mask_store(config, reference, cache_root)
    metrics = mask_metrics()
    for row in rows:
        for store in (predicted, truth):
            if not store.has(row.key):
                name = Path(store.folder).name
                hint = " (`mgc masks ideal --criterion-db ...` makes them)" if name.startswith(IDEAL) else ""
                raise FileNotFoundError(f"no {name!r} mask for window {row.key} in {store.folder}{hint}")
        metrics.update(torch.from_numpy(predicted.load(row.key)[None].astype(np.int64)),
                       torch.from_numpy(truth.load(row.key)[None].astype(np.int64)))
    return {name: float(value) for name, value in metrics.compute().items()}


READOUT_BANDS = 16  # frequency bands whose mask pixel counts the read-out sees


def _band_counts(rows: Sequence[WindowRow], store) -> np.ndarray:
    """(windows, READOUT_BANDS) log mask pixel counts per equal band of rows."""
    masks = np.stack([store.load(row.key).astype(bool) for row in rows])
    bands = np.array_split(np.arange(masks.shape[1]), READOUT_BANDS)
    return np.log1p(np.stack([masks[:, band].sum(axis=(1, 2)) for band in bands], axis=1))


def label_readout(
    train: Sequence[WindowRow], test: Sequence[WindowRow], config: SpectrogramConfig, cache_root: str | Path,
    source: str,
) -> float:
    """Joint accuracy of the labels read off the masks alone, without the image: per sound type a logistic
    regression on the mask's pixel counts in each frequency band, fitted on `train` and scored on `test`. Near 1, a
    source's masks carry the labels themselves (exact masks do, by construction, and so do exact masks with errors
    that ignore the labels), so a classifier given them can skip the image; a segmenter's masks carry only what it
    saw in the image."""
    from sklearn.linear_model import LogisticRegression

    store = mask_store(config, source, cache_root)
    features = {name: _band_counts(rows, store) for name, rows in (("train", train), ("test", test))}
    labels = {name: np.array([row.labels for row in rows]) for name, rows in (("train", train), ("test", test))}
    read = np.ones(len(test), dtype=bool)
    for kind in range(labels["train"].shape[1]):
        if len(set(labels["train"][:, kind])) < 2:
            raise ValueError(f"the training windows hold only one value of label {kind}: no read-out to fit")
        model = LogisticRegression(max_iter=1000).fit(features["train"], labels["train"][:, kind])
        read &= model.predict(features["test"]) == labels["test"][:, kind]
    return float(read.mean())
