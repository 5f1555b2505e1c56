"""Windows with each sound type per deployment, date and hour: the counts behind the season summary. A window counts
in the hour its start falls in (the recording's start plus the window's offset); a window without usable signal
counts nowhere, and an undated recording only in its own totals."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence

from ..core.labels import SOUND_TYPES
from .recording_times import RecordingTime

HOURLY_HEADER = ("date", "hour", "windows", *SOUND_TYPES)
# per day: windows and hours analysed, windows with each type, and hours with at least one (detection-positive hours)
DAILY_HEADER = ("date", "windows", "hours", *SOUND_TYPES, *(f"{name}_hours" for name in SOUND_TYPES))


@dataclass
class Counts:
    """Windows analysed and, per sound type, windows at or above its threshold."""

    windows: int = 0
    positives: list[int] = field(default_factory=lambda: [0] * len(SOUND_TYPES))

    def add(self, other: Counts) -> None:
        self.windows += other.windows
        self.positives = [a + b for a, b in zip(self.positives, other.positives)]


@dataclass
class RecordingPresence:
    path: Path
    time: RecordingTime
    audio_s: float
    total: Counts
    hours: dict[datetime, Counts]  # by the hour's start; empty for an undated recording


def recording_presence(path: Path, table: Path, time: RecordingTime, audio_s: float,
                       thresholds: Sequence[float]) -> RecordingPresence:
    """A recording's counts from its per-window CSV of `mgc detect`."""
    total, hours = Counts(), {}
    with open(table, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["signal_problem"]:
                continue  # no usable signal: neither a window with nor one without the sound types
            window = Counts(1, [int(float(row[f"p_{name}"]) >= threshold)
                                for name, threshold in zip(SOUND_TYPES, thresholds)])
            total.add(window)
            if time.start is not None:
                moment = time.start + timedelta(seconds=float(row["start_s"]))
                hours.setdefault(moment.replace(minute=0, second=0, microsecond=0), Counts()).add(window)
    return RecordingPresence(path, time, audio_s, total, hours)


@dataclass
class Deployment:
    """The dated recordings of one deployment and their windows per hour."""

    name: str
    recordings: list[RecordingPresence]

    def hours(self) -> dict[datetime, Counts]:
        merged: dict[datetime, Counts] = {}
        for recording in self.recordings:
            for hour, counts in recording.hours.items():
                merged.setdefault(hour, Counts()).add(counts)
        return dict(sorted(merged.items()))

    def hourly_rows(self) -> list[list]:
        return [[hour.date().isoformat(), hour.hour, counts.windows, *counts.positives]
                for hour, counts in self.hours().items()]

    def daily_rows(self) -> list[list]:
        days: dict[str, list] = {}
        for hour, counts in self.hours().items():
            day = days.setdefault(hour.date().isoformat(), [Counts(), 0, [0] * len(SOUND_TYPES)])
            day[0].add(counts)
            day[1] += 1
            day[2] = [h + (p > 0) for h, p in zip(day[2], counts.positives)]
        return [[day, counts.windows, hours, *counts.positives, *positive_hours]
                for day, (counts, hours, positive_hours) in days.items()]

    def total(self) -> Counts:
        total = Counts()
        for recording in self.recordings:
            total.add(recording.total)
        return total


def by_deployment(recordings: Sequence[RecordingPresence]) -> list[Deployment]:
    """The dated recordings grouped by deployment, in the order of its name, each in the order of its start."""
    grouped: dict[str, list[RecordingPresence]] = {}
    for recording in recordings:
        if recording.time.start is not None:
            grouped.setdefault(recording.time.deployment, []).append(recording)
    return [Deployment(name, sorted(grouped[name], key=lambda r: (r.time.start, str(r.path))))
            for name in sorted(grouped)]
