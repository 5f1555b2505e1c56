"""The manifest: one CSV row per analysis window, validated with errors that name every bad row.

Columns: path,start_s,duration_s,whistle,beluga_click,porpoise_click,recording[,deployment,season,site,mask].
Relative paths are resolved against the manifest's folder, so a dataset folder can be moved whole.
"""

from __future__ import annotations

import csv
import math
import os
import random
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Sequence

from .audio import AudioError, probe
from .labels import SOUND_TYPES, joint_index

REQUIRED_COLUMNS: tuple[str, ...] = ("path", "start_s", "duration_s", *SOUND_TYPES, "recording")
OPTIONAL_COLUMNS: tuple[str, ...] = ("deployment", "season", "site", "mask")
GROUP_COLUMNS: tuple[str, ...] = ("recording", "deployment", "season", "site")
SPLITS: tuple[str, ...] = ("train", "val", "test")
# Tolerance for rounding of start/duration written with few decimals.
_END_TOLERANCE_S = 1e-6


class ManifestError(ValueError):
    """Every problem found in a manifest, one per line, each naming its row."""

    def __init__(self, path: str | Path, problems: Sequence[str]):
        self.path = Path(path)
        self.problems = list(problems)
        super().__init__(f"{path}: {len(self.problems)} problem(s)\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True)
class WindowRow:
    """One analysis window of one recording with its three presence labels."""

    path: Path
    start_s: float
    duration_s: float
    whistle: int
    beluga_click: int
    porpoise_click: int
    recording: str
    deployment: str = ""
    season: str = ""
    site: str = ""
    mask: str = ""

    @property
    def labels(self) -> tuple[int, int, int]:
        return (self.whistle, self.beluga_click, self.porpoise_click)

    @property
    def joint_class(self) -> int:
        return joint_index(self.labels)

    @property
    def key(self) -> str:
        """Identity of the window: the same audio span always gets the same key (used by caches)."""
        return f"{self.path.resolve()}|{self.start_s:.6f}|{self.duration_s:.6f}"

    def group(self, column: str) -> str:
        if column not in GROUP_COLUMNS:
            raise ValueError(f"group column must be one of {GROUP_COLUMNS}, got {column!r}")
        return getattr(self, column)


def _parse_row(values: dict[str, str], base: Path) -> tuple[WindowRow | None, list[str]]:
    problems: list[str] = []
    raw_path = (values.get("path") or "").strip()
    if not raw_path:
        problems.append("empty path")
    numbers = {}
    for name in ("start_s", "duration_s"):
        text = (values.get(name) or "").strip()
        try:
            numbers[name] = float(text)
            if not math.isfinite(numbers[name]):
                raise ValueError
        except ValueError:
            problems.append(f"{name} must be a number, got {text!r}")
    if "start_s" in numbers and numbers["start_s"] < 0:
        problems.append(f"start_s must be >= 0, got {numbers['start_s']}")
    if "duration_s" in numbers and numbers["duration_s"] <= 0:
        problems.append(f"duration_s must be > 0, got {numbers['duration_s']}")
    labels = {}
    for name in SOUND_TYPES:
        text = (values.get(name) or "").strip()
        if text not in ("0", "1"):
            problems.append(f"{name} must be 0 or 1, got {text!r}")
        else:
            labels[name] = int(text)
    recording = (values.get("recording") or "").strip()
    if not recording:
        problems.append("empty recording")
    if problems:
        return None, problems
    path = Path(raw_path)
    if not path.is_absolute():
        path = base / path
    extras = {name: (values.get(name) or "").strip() for name in OPTIONAL_COLUMNS}
    return WindowRow(path=path, recording=recording, **numbers, **labels, **extras), []


def _check_audio(row: WindowRow, durations: dict[Path, float | str]) -> list[str]:
    if row.path not in durations:
        try:
            durations[row.path] = probe(row.path).duration_s
        except AudioError as error:
            durations[row.path] = error.problem
    duration = durations[row.path]
    if isinstance(duration, str):
        return [f"{row.path}: {duration}"]
    end = row.start_s + row.duration_s
    if end > duration + _END_TOLERANCE_S:
        return [f"window {row.start_s:g}-{end:g} s runs past the end of {row.path} ({duration:g} s)"]
    return []


def load_manifest(csv_path: str | Path, check_audio: bool = True) -> list[WindowRow]:
    """Read and validate a manifest; raises ManifestError listing every bad row (row 1 = first data row)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ManifestError(csv_path, ["file not found"])
    base = csv_path.resolve().parent
    rows: list[WindowRow] = []
    problems: list[str] = []
    durations: dict[Path, float | str] = {}
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(csv_path, [f"header lacks required column(s) {missing}; expected {list(REQUIRED_COLUMNS)}"])
        for number, values in enumerate(reader, start=1):
            if None in values:
                problems.append(f"row {number} (line {number + 1}): more fields than the header has columns")
                continue
            row, row_problems = _parse_row(values, base)
            if row is not None and check_audio:
                row_problems = _check_audio(row, durations)
            problems.extend(f"row {number} (line {number + 1}): {p}" for p in row_problems)
            if row is not None and not row_problems:
                rows.append(row)
    if problems:
        raise ManifestError(csv_path, problems)
    if not rows:
        raise ManifestError(csv_path, ["no rows"])
    return rows


def relative_to_folder(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def write_csv_atomic(csv_path: str | Path, header: Sequence[str], records: Iterable[Sequence]) -> None:
    """Write a CSV through a temporary file and a rename, so a crash never leaves half a file."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", newline="", dir=csv_path.parent, delete=False, suffix=".tmp")
    try:
        with handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(records)
        os.replace(handle.name, csv_path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def write_manifest(rows: Sequence[WindowRow], csv_path: str | Path,
                   extra_columns: dict[str, Sequence[str]] | None = None) -> None:
    """Write rows with paths relative to the manifest's folder where possible; `extra_columns` (name -> one value
    per row) are appended after the manifest's own and ignored by `load_manifest`."""
    base = Path(csv_path).parent
    header = [f.name for f in fields(WindowRow)]
    records = [
        [relative_to_folder(r.path, base) if name == "path" else f"{getattr(r, name):.6f}".rstrip("0").rstrip(".")
         if name in ("start_s", "duration_s") else getattr(r, name) for name in header]
        for r in rows
    ]
    extra_columns = extra_columns or {}
    for name, values in extra_columns.items():
        if len(values) != len(records):
            raise ValueError(f"extra column {name!r} has {len(values)} values for {len(records)} rows")
        for record, value in zip(records, values):
            record.append(value)
    write_csv_atomic(csv_path, header + list(extra_columns), records)


@dataclass(frozen=True)
class SplitConfig:
    """Grouped train/val/test split: windows sharing a group value never sit on two sides."""

    group_by: str = "recording"
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.group_by not in GROUP_COLUMNS:
            raise ValueError(f"group_by must be one of {GROUP_COLUMNS}, got {self.group_by!r}")
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions) or abs(sum(self.fractions) - 1) > 1e-6:
            raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {self.fractions}")


def split_rows(rows: Sequence[WindowRow], config: SplitConfig = SplitConfig()) -> dict[str, list[int]]:
    """Row indices per split. Deterministic for a seed: groups are shuffled, then each goes to the split furthest
    below its target share of windows."""
    by_group: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        value = row.group(config.group_by)
        if not value:
            raise ValueError(f"row {index + 1} has an empty {config.group_by!r}; every row needs a group value to split by it")
        by_group.setdefault(value, []).append(index)
    wanted = sum(1 for f in config.fractions if f > 0)
    if len(by_group) < wanted:
        raise ValueError(
            f"cannot split {len(by_group)} {config.group_by} group(s) into {wanted} non-empty sides; "
            "add recordings or change the fractions"
        )
    groups = sorted(by_group)
    random.Random(config.seed).shuffle(groups)
    # Large groups first so the greedy fill lands close to the target fractions.
    groups.sort(key=lambda g: -len(by_group[g]))
    assigned: dict[str, list[int]] = {name: [] for name in SPLITS}
    total = len(rows)
    for position, group in enumerate(groups):
        empty_needed = [s for s, f in zip(SPLITS, config.fractions) if f > 0 and not assigned[s]]
        remaining = len(groups) - position
        if empty_needed and remaining <= len(empty_needed):
            side = empty_needed[0]
        else:
            deficits = {s: f * total - len(assigned[s]) for s, f in zip(SPLITS, config.fractions) if f > 0}
            side = max(deficits, key=deficits.get)
        assigned[side].extend(by_group[group])
    return {name: sorted(indices) for name, indices in assigned.items()}
