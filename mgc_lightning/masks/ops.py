"""Masks on the spectrogram image grid: box masks from annotations, candidate masks (the classical first labelling
step), soft masks, the mask kinds a classifier reads, mask files, and the agreement metrics used everywhere masks are
compared.

Box masks are rasterised through the config's own row frequencies and column times, so a mask always lines up with
the image it belongs to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch

from ..frontend.spectrogram import SpectrogramConfig

# What a mask-guided classifier reads (its mask_input, the data module's and the bundle's mask_kind).
BINARY, SOFT, PROBABILITY = "binary", "soft", "probability"
MASK_KINDS = (BINARY, SOFT, PROBABILITY)
# A segmenter's pixel is sound where its probability of sound is above this: where its sound logit is the larger.
SOUND_THRESHOLD = 0.5


class Box(Protocol):
    """An annotated time-frequency rectangle in a recording, as a box mask reads it (audio.raven.AnnotationBox is
    one): masks need no annotation format."""

    path: Path
    begin_s: float
    end_s: float
    low_hz: float
    high_hz: float


def column_edges_s(config: SpectrogramConfig, duration_s: float) -> np.ndarray:
    """(width + 1,) time edges of the image columns, relative to the window start."""
    return np.linspace(0.0, duration_s, config.width + 1)


def mask_extents(masks: torch.Tensor, config: SpectrogramConfig,
                 window_s: float) -> list[tuple[float, float, float, float] | None]:
    """(B, H, W) binary masks of `window_s` windows on `config`'s grid -> each one's (low Hz, high Hz, begin s, end s)
    of the rows and columns it covers (times from the window's start), None where empty."""
    rows, columns = masks.any(dim=-1).cpu().numpy(), masks.any(dim=-2).cpu().numpy()  # rows: top row first
    edges, times = config.row_edges_hz(), column_edges_s(config, window_s)
    extents = []
    for active_rows, active_columns in zip(rows, columns):
        r, c = np.flatnonzero(active_rows), np.flatnonzero(active_columns)
        extents.append(None if not len(r) else (float(edges[r[-1] + 1]), float(edges[r[0]]), float(times[c[0]]),
                                                float(times[c[-1] + 1])))
    return extents


def box_mask(
    boxes: Sequence[Box], start_s: float, duration_s: float, config: SpectrogramConfig
) -> np.ndarray:
    """Boolean (height, width) mask of the pixels that any box overlaps, for the window [start_s, start_s + duration_s)."""
    mask = np.zeros((config.height, config.width), dtype=bool)
    times = column_edges_s(config, duration_s) + start_s
    for box in boxes:
        columns = (times[:-1] < box.end_s) & (times[1:] > box.begin_s)
        rows = config.rows_in_band(box.low_hz, box.high_hz)
        mask |= rows[:, None] & columns[None, :]
    return mask


def candidate_mask(image: np.ndarray, sensitivity: float = 0.7) -> np.ndarray:
    """Semi-automatic candidate mask of a spectrogram image (the paper's first labelling step, refined by a person).

    Each row's stationary level is removed (vessel tonals, sensor noise bands), the image is scaled by a robust noise
    estimate, then a pixel is kept where it beats a local (Gaussian-weighted) threshold by k noise units and sits on
    or next to a Canny edge (or is very strong); small specks are dropped and gaps closed. `sensitivity` in [0, 1]
    sets k = 4 - 3 * sensitivity: higher keeps more.
    """
    from scipy import ndimage
    from skimage import feature, filters, morphology

    if not 0 <= sensitivity <= 1:
        raise ValueError(f"sensitivity must be in [0, 1], got {sensitivity}")
    image = np.asarray(image, dtype=np.float32)
    whitened = image - np.median(image, axis=1, keepdims=True)
    noise = 1.4826 * np.median(np.abs(whitened)) + 1e-6
    z = whitened / noise
    k = 4.0 - 3.0 * sensitivity
    above_local = z > filters.threshold_local(z, block_size=31, method="gaussian") + k
    edges = ndimage.binary_dilation(feature.canny(z, sigma=1.0, low_threshold=k, high_threshold=2 * k))
    mask = above_local & (edges | (z > 2 * k))
    mask = morphology.remove_small_objects(mask, max_size=3)
    return ndimage.binary_closing(mask)


def mask_metrics(prefix: str = ""):
    """IoU and pixel F1 over all pixels, and Dice averaged over windows (windows empty in both are skipped)."""
    import warnings

    from torchmetrics import MetricCollection
    from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex
    from torchmetrics.segmentation import DiceScore

    with warnings.catch_warnings():  # DiceScore warns about a future default even when `average` is given
        warnings.filterwarnings("ignore", message="DiceScore metric currently defaults")
        dice = DiceScore(num_classes=2, include_background=False, average="micro", input_format="index")
    return MetricCollection({"iou": BinaryJaccardIndex(), "dice": dice, "pixel_f1": BinaryF1Score()}, prefix=prefix)


def soft_mask(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian relaxation of a binary mask: S = exp(-d^2 / (2 sigma^2)), d = Euclidean distance (pixels) to the
    nearest mask pixel. 1 on the mask, in (0, 1) elsewhere; an empty mask has no nearest pixel and gives all zeros."""
    from scipy.ndimage import distance_transform_edt

    if sigma <= 0:
        raise ValueError(f"soft-mask sigma must be positive, got {sigma}")
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.float32)
    distance = distance_transform_edt(~mask)
    return np.exp(-(distance**2) / (2 * sigma**2)).astype(np.float32)


def check_mask_kind(kind: str) -> None:
    """Refuses an unknown mask kind with the accepted ones, where settings enter (data module, model, bundle)."""
    if kind not in MASK_KINDS:
        raise ValueError(f"mask_kind must be one of {MASK_KINDS}, got {kind!r}")


def binary_mask(probability: torch.Tensor) -> torch.Tensor:
    """A segmenter's probability map -> its binary mask (the `predicted` source's, the bands `mgc detect` reports)."""
    return probability > SOUND_THRESHOLD


def mask_of_kind(mask: torch.Tensor, kind: str, soft_sigma: float) -> torch.Tensor:
    """(..., H, W) mask of a source -> the float mask of `kind` the classifier reads; the one place that decides it,
    for training, tests on other front ends and detection alike.

    A source's mask is boolean (exact, hand-made, candidate or degraded masks, a segmenter's binary masks) or a float
    probability map (the segmenter's own confidence). `binary` is 0/1 and `soft` its Gaussian relaxation
    (`soft_mask`); a probability map is thresholded at SOUND_THRESHOLD for them, where the segmenter's binary masks
    come from. `probability` passes a probability map as it is and reads a boolean mask as 0/1: an exact mask is
    certain, so the MGC recipe still runs on ideal, degraded or hand-made masks (the perfect-segmenter rows, the
    mask-quality curve) with that kind."""
    check_mask_kind(kind)
    if kind == PROBABILITY:
        return mask.float()
    binary = mask if mask.dtype == torch.bool else binary_mask(mask)
    if kind == BINARY:
        return binary.float()
    planes = binary.reshape(-1, *binary.shape[-2:]).cpu().numpy()
    relaxed = np.stack([soft_mask(plane, soft_sigma) for plane in planes])
    return torch.from_numpy(relaxed).reshape(binary.shape).to(mask.device)


def check_mask_png(path: str | Path, config: SpectrogramConfig) -> None:
    """A mask PNG's existence, mode and size, from its header only (cheap enough to check every file before
    training)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask file not found")
    try:
        with Image.open(path) as image:
            mode, (width, height) = image.mode, image.size
    except UnidentifiedImageError as error:
        raise ValueError(f"{path}: not an image file; masks are single-channel PNGs") from error
    if mode not in ("L", "1", "P"):
        raise ValueError(f"{path}: mask must be a single-channel PNG (mode L), got mode {mode}")
    if (height, width) != (config.height, config.width):
        raise ValueError(f"{path}: mask is {height}x{width}, preset {config.name!r} images are "
                         f"{config.height}x{config.width} (height x width)")


def read_mask_png(path: str | Path, config: SpectrogramConfig) -> np.ndarray:
    """A hand-made mask: single-channel PNG, 0 = background and 255 = sound, the preset's image size."""
    from PIL import Image

    check_mask_png(path, config)
    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 127
