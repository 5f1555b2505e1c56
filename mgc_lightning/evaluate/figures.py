"""Figures people look at instead of reading numbers: spectrogram / mask panels and confusion matrices (drawn with
matplotlib's file-only backend; the report draws its own figures with the `plt` configured here)."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def mask_panel(columns: dict[str, Sequence[np.ndarray]], titles: Sequence[str] | None = None):
    """One row per window, one column per named image (spectrogram, target, prediction, soft mask, ...)."""
    names = list(columns)
    count = len(columns[names[0]])
    figure, axes = plt.subplots(count, len(names), figsize=(2.4 * len(names), 2.2 * count), squeeze=False)
    for row in range(count):
        for column, name in enumerate(names):
            axis = axes[row, column]
            image = np.asarray(columns[name][row], dtype=np.float32)
            axis.imshow(image, aspect="auto", cmap="magma" if column == 0 else "gray", vmin=0, vmax=1,
                        interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=9)
        if titles:
            axes[row, 0].set_ylabel(titles[row], fontsize=7)
    figure.tight_layout()
    return figure


def confusion_figure(matrix: np.ndarray, names: Sequence[str], title: str = ""):
    """Row-normalised confusion matrix (true class per row), with the counts written in each cell."""
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.clip(counts.sum(axis=1, keepdims=True), 1, None)
    figure, axis = plt.subplots(figsize=(7.5, 6.5))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    labels = [name.replace("+", "+\n").replace("_click", " click") for name in names]
    axis.set_xticks(range(len(names)), labels, rotation=90, fontsize=7)
    axis.set_yticks(range(len(names)), labels, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            if counts[i, j]:
                axis.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                          color="white" if shares[i, j] > 0.5 else "black")
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure
