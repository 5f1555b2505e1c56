"""The presence summary monitoring reports use: windows with each sound type per hour and per day, and its plot."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence

import numpy as np

from .labels import SOUND_TYPES

# Recorders (SoundTrap, AudioMoth, ...) name files by their start time: 20240131_235959, 20240131T235959, ...
TIMESTAMP = re.compile(r"(\d{8})[_T-]?(\d{6})")
UNDATED = "undated"


def file_start(path: Path) -> datetime | None:
    match = TIMESTAMP.search(path.stem)
    if not match:
        return None
    try:
        return datetime.strptime("".join(match.groups()), "%Y%m%d%H%M%S")
    except ValueError:
        return None


def presence_tables(tables: Sequence[Path], thresholds: Sequence[float]) -> tuple[list[list], list[list]]:
    """Analysed and positive windows per sound type per hour and per day, from per-window CSVs of `mgc detect` (windows
    without usable signal count in neither). A window counts in the hour its start falls in: the recording's start
    time from its file name plus the window's offset; recordings without a timestamp in their name count as
    `undated`, in hours from their start."""
    hourly: dict[tuple[str, int], list[int]] = {}
    for table in tables:
        with open(table, newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("signal_problem"):
                    continue  # no usable signal: neither a window with nor one without the sound types
                origin = file_start(Path(row["file"]))
                offset = float(row["start_s"])
                if origin is None:
                    key = (UNDATED, int(offset // 3600))
                else:
                    moment = origin + timedelta(seconds=offset)
                    key = (moment.strftime("%Y-%m-%d"), moment.hour)
                counts = hourly.setdefault(key, [0] * (1 + len(SOUND_TYPES)))
                counts[0] += 1
                for t, name in enumerate(SOUND_TYPES):
                    counts[1 + t] += float(row[f"p_{name}"]) >= thresholds[t]
    daily: dict[str, list[int]] = {}
    for (day, _), counts in hourly.items():
        daily[day] = [a + b for a, b in zip(daily.get(day, [0] * len(counts)), counts)]
    return ([[day, hour, *counts] for (day, hour), counts in sorted(hourly.items())],
            [[day, *counts] for day, counts in sorted(daily.items())])


def presence_figure(hourly: list[list]) -> bytes:
    """Per sound type a day x hour-of-day image of the share of windows with that type: the monitoring plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = sorted({row[0] for row in hourly})
    hours = 24 if all(day != UNDATED for day in days) else max(24, 1 + max(row[1] for row in hourly))
    figure, axes = plt.subplots(len(SOUND_TYPES), 1, figsize=(max(6.0, 0.4 * len(days) + 3), 2.2 * len(SOUND_TYPES)),
                                squeeze=False)
    for t, name in enumerate(SOUND_TYPES):
        share = np.full((hours, len(days)), np.nan)
        for day, hour, windows, *positives in hourly:
            share[hour, days.index(day)] = positives[t] / windows if windows else np.nan
        axis = axes[t, 0]
        image = axis.imshow(share, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis",
                            interpolation="nearest")
        axis.set_title(f"{name}: share of windows with detections")
        axis.set_ylabel("hour")
        axis.set_xticks(range(len(days)), days, rotation=45, ha="right", fontsize=7)
        figure.colorbar(image, ax=axis)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})  # no version stamp: same bytes
    plt.close(figure)
    return buffer.getvalue()
