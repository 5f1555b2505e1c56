"""The season summary's figures: a diel plot (hour of day against date) and daily counts per sound type, as PNG
bytes that are the same for the same figure."""

from __future__ import annotations

import io
from datetime import date, timedelta
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..core.labels import SOUND_TYPES  # noqa: E402


def png_bytes(figure) -> bytes:
    """The figure as PNG, closed; without a version stamp, so the same figure gives the same bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def _season_axes(title: str, days: Sequence[date]):
    """One panel per sound type over every date from the first to the last (gaps in the recording stay visible)."""
    count = (max(days) - min(days)).days + 1
    figure, axes = plt.subplots(len(SOUND_TYPES), 1, figsize=(min(16.0, 5.0 + 0.12 * count), 2.3 * len(SOUND_TYPES)),
                                squeeze=False, sharex=True)
    figure.suptitle(title, fontsize=10)
    axes[-1, 0].xaxis.set_major_locator(mdates.DayLocator(interval=max(1, count // 10)))  # ticks at midnights
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    return figure, axes[:, 0]


def diel_figure(title: str, hourly: Sequence[Sequence]) -> plt.Figure:
    """Hour of day against date, per sound type, coloured by the share of analysed windows at or above the type's
    threshold (the scale ends at the panel's highest share, 0.1 at least: shares are often small); grey where nothing
    was recorded. `hourly`: rows of date (ISO), hour, windows, positives per type."""
    days = [date.fromisoformat(row[0]) for row in hourly]
    first, last = min(days), max(days)
    share = np.full((len(SOUND_TYPES), 24, (last - first).days + 1), np.nan)
    for day, (_, hour, windows, *positives) in zip(days, hourly):
        share[:, hour, (day - first).days] = np.array(positives) / windows
    figure, axes = _season_axes(title, days)
    extent = (mdates.date2num(first), mdates.date2num(last + timedelta(days=1)), 0, 24)
    for axis, name, image in zip(axes, SOUND_TYPES, share):
        axis.set_facecolor("0.85")
        shown = axis.imshow(image, aspect="auto", origin="lower", extent=extent, vmin=0,
                            vmax=max(0.1, float(np.nanmax(image))), cmap="viridis", interpolation="nearest")
        axis.set_yticks(range(0, 25, 6))
        axis.set_ylabel("hour of day")
        axis.set_title(f"{name}: share of windows with detections (grey: not recorded)", fontsize=9)
        figure.colorbar(shown, ax=axis, pad=0.01)
    figure.autofmt_xdate(rotation=30)
    figure.tight_layout()
    return figure


def daily_figure(title: str, daily: Sequence[Sequence]) -> plt.Figure:
    """Windows with each sound type per day, one panel per type. `daily`: rows of date (ISO), windows, hours,
    positives per type, ...."""
    days = [date.fromisoformat(row[0]) for row in daily]
    figure, axes = _season_axes(title, days)
    for t, (axis, name) in enumerate(zip(axes, SOUND_TYPES)):
        axis.bar([mdates.date2num(day) + 0.5 for day in days], [row[3 + t] for row in daily], width=0.8,
                 color="tab:blue")
        axis.set_xlim(mdates.date2num(min(days)), mdates.date2num(max(days) + timedelta(days=1)))
        axis.set_ylim(0, 1.05 * max(1, *(row[3 + t] for row in daily)))
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel("windows")
        axis.set_title(f"{name}: windows with detections per day", fontsize=9)
    figure.autofmt_xdate(rotation=30)
    figure.tight_layout()
    return figure
