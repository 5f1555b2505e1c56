"""Masks on the spectrogram image grid.

Box masks from annotations are rasterised for any front-end config through the config's own row frequencies and
column times, so a mask always lines up with the image it belongs to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .raven import AnnotationBox
from .spectrogram import SpectrogramConfig


def column_edges_s(config: SpectrogramConfig, duration_s: float) -> np.ndarray:
    """(width + 1,) time edges of the image columns, relative to the window start."""
    return np.linspace(0.0, duration_s, config.width + 1)


def box_mask(
    boxes: Sequence[AnnotationBox], start_s: float, duration_s: float, config: SpectrogramConfig
) -> np.ndarray:
    """Boolean (height, width) mask of the pixels that any box overlaps, for the window [start_s, start_s + duration_s)."""
    mask = np.zeros((config.height, config.width), dtype=bool)
    times = column_edges_s(config, duration_s) + start_s
    for box in boxes:
        columns = (times[:-1] < box.end_s) & (times[1:] > box.begin_s)
        rows = config.rows_in_band(box.low_hz, box.high_hz)
        mask |= rows[:, None] & columns[None, :]
    return mask


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


def read_mask_png(path: str | Path, config: SpectrogramConfig) -> np.ndarray:
    """A hand-made mask: single-channel PNG, 0 = background and 255 = sound, the preset's image size."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask file not found")
    with Image.open(path) as image:
        if image.mode not in ("L", "1", "P"):
            raise ValueError(f"{path}: mask must be a single-channel PNG (mode L), got mode {image.mode}")
        array = np.asarray(image.convert("L"))
    expected = (config.height, config.width)
    if array.shape != expected:
        raise ValueError(f"{path}: mask is {array.shape[0]}x{array.shape[1]}, preset {config.name!r} images are "
                         f"{expected[0]}x{expected[1]} (height x width)")
    return array > 127
