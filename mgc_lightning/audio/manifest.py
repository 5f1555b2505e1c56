"""The manifest: one CSV row per analysis window, validated with errors that name every bad row.

Columns: path,start_s,duration_s,whistle,beluga_click,porpoise_click,recording[,deployment,season,site,mask].
Relative paths are resolved against the manifest's folder, so a dataset folder can be moved whole.
An optional `use` column marks rows `test-only` (a test set, e.g. the real-noise test): the data modules refuse to
split such rows into a train or validation side (count_test_only_rows).
"""

from __future__ import annotations

import csv
import io
import math
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..core.atomic import write_bytes_atomic
from ..core.errors import InputError, missing_file
from ..core.labels import SOUND_TYPES, joint_index
from .reading import AudioError, check_complete, file_fingerprint, probe

REQUIRED_COLUMNS: tuple[str, ...] = ("path", "start_s", "duration_s", *SOUND_TYPES, "recording")
OPTIONAL_COLUMNS: tuple[str, ...] = ("deployment", "season", "site", "mask")
GROUP_COLUMNS: tuple[str, ...] = ("recording", "deployment", "season", "site")
SPLITS: tuple[str, ...] = ("train", "val", "test")
USE_COLUMN, TEST_ONLY_USE = "use", "test-only"
# Tolerance for rounding of start/duration written with few decimals.
_END_TOLERANCE_S = 1e-6


class ManifestError(ValueError):
    """Every problem found in a manifest, each naming its row: one line for one problem, else one line each."""

    def __init__(self, path: str | Path, problems: Sequence[str]):
        self.path = Path(path)
        self.problems = list(problems)
        listed = self.problems[0] if len(self.problems) == 1 else (
            f"{len(self.problems)} problems\n  " + "\n  ".join(self.problems))
        super().__init__(f"{path}: {listed}")


class SplitError(ValueError):
    """A valid manifest that cannot be split as asked (too few groups, a row without a group value)."""


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
    manifest_row: int = field(default=0, compare=False, repr=False)  # 1 = first data row; 0: not from a manifest

    @property
    def labels(self) -> tuple[int, int, int]:
        return (self.whistle, self.beluga_click, self.porpoise_click)

    @property
    def joint_class(self) -> int:
        return joint_index(self.labels)

    @property
    def key(self) -> str:
        """Identity of the window for caches: the audio file's name and content fingerprint and the span, so a
        window keeps its cached images and masks wherever its folder is moved or copied (the audio must exist)."""
        return f"{self.path.name}|{file_fingerprint(self.path)}|{self.start_s:.6f}|{self.duration_s:.6f}"

    @property
    def span(self) -> tuple[Path, float, float]:
        """Identity of the window within this machine's files (the resolved path and the span, no audio read)."""
        return self.path.resolve(), round(self.start_s, 6), round(self.duration_s, 6)

    @property
    def where(self) -> str:
        """Where the window comes from, for messages: 'row 3 (line 4) <path> 1-2 s'."""
        place = f"row {self.manifest_row} (line {self.manifest_row + 1}) " if self.manifest_row else ""
        return f"{place}{self.path} {self.start_s:g}-{self.start_s + self.duration_s:g} s"

    def group(self, column: str) -> str:
        if column not in GROUP_COLUMNS:
            raise ValueError(f"group column must be one of {GROUP_COLUMNS}, got {column!r}")
        return getattr(self, column)


def _parse_row(values: dict[str, str], base: Path, number: int) -> tuple[WindowRow | None, list[str]]:
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
    return WindowRow(path=path, recording=recording, **numbers, **labels, **extras, manifest_row=number), []


def _check_audio(row: WindowRow, durations: dict[Path, float | str]) -> list[str]:
    if row.path not in durations:
        try:
            durations[row.path] = probe(row.path).duration_s
            check_complete(row.path)
        except AudioError as error:
            durations[row.path] = error.problem
    duration = durations[row.path]
    if isinstance(duration, str):
        return [f"{row.path}: {duration}"]
    end = row.start_s + row.duration_s
    if end > duration + _END_TOLERANCE_S:
        return [f"window {row.start_s:g}-{end:g} s runs past the end of {row.path} ({duration:g} s)"]
    return []


def _repeated_windows(rows: Sequence[WindowRow], drop_duplicates: bool) -> tuple[list[WindowRow], list[str]]:
    """Rows left after dropping exact copies (if asked), and a problem for each window listed more than once: with
    different labels or metadata always (which one is true?), as exact copies unless `drop_duplicates` (a copy
    would count twice in training and could sit in two splits)."""
    by_window: dict[tuple, list[WindowRow]] = {}
    for row in rows:
        by_window.setdefault(row.span, []).append(row)
    kept, problems = [], []
    for copies in by_window.values():
        first = copies[0]
        numbers = ", ".join(str(r.manifest_row) for r in copies)
        lines = ", ".join(str(r.manifest_row + 1) for r in copies)
        span = f"{first.path} {first.start_s:g}-{first.start_s + first.duration_s:g} s"
        exact = all(r == first for r in copies)
        if not exact:
            differ = [f.name for f in fields(WindowRow) if f.compare and len({getattr(r, f.name) for r in copies}) > 1]
            values = " vs ".join(",".join(str(getattr(r, name)) for name in differ) for r in copies)
            problems.append(f"rows {numbers} (lines {lines}): the same window ({span}) with different "
                            f"{','.join(differ)}: {values}; keep the right one")
        elif len(copies) > 1 and not drop_duplicates:
            problems.append(f"rows {numbers} (lines {lines}): the same window ({span}) {len(copies)} times; "
                            "delete the copies, or drop them with --drop-duplicates "
                            "(drop_duplicates: true in a data config)")
        kept.extend(copies[:1] if exact and drop_duplicates else copies)
    return sorted(kept, key=lambda r: r.manifest_row), problems


DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}


def header_problems(columns: Sequence[str], required: Sequence[str], delimiter: str = ",") -> list[str]:
    """What is wrong with a table's header, naming the columns: one name twice, or two names that differ only in
    case or surrounding spaces (a reader keyed by name would let the later column silently override the earlier),
    and required columns missing, with the near match or the delimiter the file seems to use."""
    by_name: dict[str, list[int]] = {}
    for number, name in enumerate(columns, start=1):
        if name.strip():  # empty trailing cells (Excel writes them) name no column
            by_name.setdefault(name.strip().casefold(), []).append(number)
    problems = []
    for numbers in (n for n in by_name.values() if len(n) > 1):
        names = [columns[n - 1] for n in numbers]
        listed = ", ".join(f"{name!r} (column {n})" for name, n in zip(names, numbers))
        kind = ("the same column more than once" if len(set(names)) == 1
                else "columns that differ only in case or spaces")
        problems.append(f"header has {kind}: {listed}; the later would silently override the earlier: keep one")
    missing = [c for c in required if c not in columns]
    if missing:
        hints = [f"{columns[n - 1]!r} is there: names are case- and space-sensitive"
                 for name in missing for n in by_name.get(name.casefold(), []) if len(by_name[name.casefold()]) == 1]
        header = "".join(columns)
        hints += [f"the file looks {word}-separated: save it {DELIMITERS[delimiter]}-separated"
                  for other, word in DELIMITERS.items() if other != delimiter and other in header]
        problems.append(f"header lacks required column(s) {missing}; expected {list(required)}"
                        + "".join(f"; {hint}" for hint in hints))
    return problems


def read_table(path: Path, required: Sequence[str], delimiter: str = ",") -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, values) of each data row of a delimited text file read as UTF-8 (with or without the byte-order
    mark Excel's "CSV UTF-8" writes), once its header passed header_problems; ManifestError naming the file for a
    bad header or for bytes that are not UTF-8."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            problems = header_problems(reader.fieldnames or [], required, delimiter)
            if problems:
                raise ManifestError(path, problems)
            yield from enumerate(reader, start=1)
    except UnicodeDecodeError as error:
        raise ManifestError(path, [f"not UTF-8 text (byte {error.start}); save it as UTF-8 (Excel: \"CSV UTF-8\")"]) \
            from None


def load_manifest(csv_path: str | Path, check_audio: bool = True, drop_duplicates: bool = False) -> list[WindowRow]:
    """Read and validate a manifest; raises ManifestError listing every bad row (row 1 = first data row) and every
    window listed twice (exact copies are dropped instead with `drop_duplicates`)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ManifestError(csv_path, [missing_file(csv_path)])
    base = csv_path.resolve().parent
    rows: list[WindowRow] = []
    problems: list[str] = []
    durations: dict[Path, float | str] = {}
    for number, values in read_table(csv_path, REQUIRED_COLUMNS):
        if None in values:
            problems.append(f"row {number} (line {number + 1}): more fields than the header has columns")
            continue
        row, row_problems = _parse_row(values, base, number)
        if row is not None and check_audio:
            row_problems = _check_audio(row, durations)
        problems.extend(f"row {number} (line {number + 1}): {p}" for p in row_problems)
        if row is not None and not row_problems:
            rows.append(row)
    rows, repeated = _repeated_windows(rows, drop_duplicates)
    problems.extend(repeated)
    if problems:
        raise ManifestError(csv_path, problems)
    if not rows:
        raise ManifestError(csv_path, ["no rows"])
    return rows


def count_test_only_rows(csv_path: str | Path) -> int:
    """How many rows the manifest's optional `use` column marks `test-only`: one pass over the CSV's text, no audio
    read. 0 without the column; a file that cannot be read as CSV also gives 0 (load_manifest names its problems)."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if USE_COLUMN not in (reader.fieldnames or []):
                return 0
            return sum((row.get(USE_COLUMN) or "").strip().lower() == TEST_ONLY_USE for row in reader)
    except (OSError, UnicodeDecodeError, csv.Error):
        return 0


def refuse_test_only_training(manifest: str | Path, fractions: Sequence[float]) -> None:
    """A manifest whose `use` column marks rows test-only (a test set: docs/real_noise.md) may be tested, never split
    into a train or validation side: refused whenever the split gives train or val a share."""
    if fractions[0] <= 0 and fractions[1] <= 0:
        return
    count = count_test_only_rows(manifest)
    if count:
        raise InputError(f"{manifest}: {count} row(s) are marked test-only (its `use` column) and would be split into "
                         f"the train or validation side (split_fractions {list(fractions)}); a test set is never "
                         "trained on: test it with split_fractions [0, 0, 1] (mgc evaluate --manifest does), or "
                         "train on another manifest")


def relative_to_folder(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def write_csv_atomic(csv_path: str | Path, header: Sequence[str], records: Iterable[Sequence]) -> None:
    """Write a CSV through a temporary file and a rename, so a crash never leaves half a file."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(records)
    write_bytes_atomic(csv_path, text.getvalue().encode())


def write_manifest(rows: Sequence[WindowRow], csv_path: str | Path,
                   extra_columns: dict[str, Sequence[str]] | None = None) -> None:
    """Write rows with paths relative to the manifest's folder where possible; `extra_columns` (name -> one value
    per row) are appended after the manifest's own and ignored by `load_manifest`."""
    base = Path(csv_path).parent
    header = [f.name for f in fields(WindowRow) if f.name != "manifest_row"]
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
            raise SplitError(f"row {index + 1} has an empty {config.group_by!r}; every row needs a group value to "
                             "split by it")
        by_group.setdefault(value, []).append(index)
    wanted = sum(1 for f in config.fractions if f > 0)
    if len(by_group) < wanted:
        raise SplitError(
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
