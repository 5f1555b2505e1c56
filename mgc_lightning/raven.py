"""Import of Raven selection tables: annotated boxes -> manifest window rows, keeping the boxes for box masks.

A Raven table is tab-separated with `Begin Time (s)`, `End Time (s)`, `Low Freq (Hz)`, `High Freq (Hz)` and a label
column. Labels map to the three sound types through a user-given mapping; `ignore` drops a label on purpose, and a
label that is not mapped at all is an error (so a typo never silently becomes "absent"). With several views open
Raven writes each selection once per view (`Spectrogram 1`, `Waveform 1`, ... rows with the same `Selection`
number): such rows are one box. Box CSVs keep paths relative to their own folder, like manifests.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

from .audio import probe, window_starts
from .labels import SOUND_TYPES
from .manifest import ManifestError, WindowRow, read_table, relative_to_folder, write_csv_atomic

RAVEN_COLUMNS = ("Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)")
SELECTION, VIEW = "Selection", "View"
IGNORE = "ignore"


@dataclass(frozen=True)
class AnnotationBox:
    """One annotated call: a time-frequency rectangle in a recording."""

    path: Path
    sound_type: str
    begin_s: float
    end_s: float
    low_hz: float
    high_hz: float


def parse_label_mapping(text: str) -> dict[str, str]:
    """'BW=whistle,BC=beluga_click,noise=ignore' -> dict, checking every target name."""
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        label, sep, target = item.partition("=")
        target = target.strip()
        if not sep or target not in (*SOUND_TYPES, IGNORE):
            raise ValueError(f"bad label mapping {item!r}: expected LABEL=one of {(*SOUND_TYPES, IGNORE)}")
        mapping[label.strip()] = target
    if not mapping:
        raise ValueError("empty label mapping")
    return mapping


def read_selection_table(
    table: str | Path, audio: str | Path, mapping: dict[str, str], label_column: str = "Annotation"
) -> list[AnnotationBox]:
    """Boxes of one selection table, validated row by row; one box per `Selection` number (its spectrogram-view row
    where Raven wrote one row per view)."""
    table = Path(table)
    problems, boxes = [], []
    audio_s = probe(audio).duration_s
    for number, values in _one_row_per_selection(read_table(table, (*RAVEN_COLUMNS, label_column), "\t")):
        label = (values[label_column] or "").strip()
        if label not in mapping:
            problems.append(f"row {number}: label {label!r} is not in the mapping {sorted(mapping)}")
            continue
        try:
            begin, end, low, high = (float(values[c]) for c in RAVEN_COLUMNS)
        except (TypeError, ValueError):
            problems.append(f"row {number}: times and frequencies must be numbers")
            continue
        if not (0 <= begin < end and 0 <= low < high):
            problems.append(f"row {number}: need 0 <= begin < end and 0 <= low < high, got {begin, end, low, high}")
            continue
        if begin >= audio_s:  # it would label no window: most likely the table of another recording
            problems.append(f"row {number}: box {begin:g}-{end:g} s starts after the end of {audio} "
                            f"({audio_s:g} s); is this the table of another recording?")
            continue
        if mapping[label] != IGNORE:
            boxes.append(AnnotationBox(Path(audio), mapping[label], begin, end, low, high))
    if problems:
        raise ManifestError(table, problems)
    return boxes


def _one_row_per_selection(numbered_rows):
    """(row number, values) pairs with the rows that repeat a `Selection` number in another view dropped, keeping
    the spectrogram view's row (the one with the frequency band drawn on the spectrogram)."""
    chosen: dict[str, tuple[int, dict]] = {}
    for number, values in numbered_rows:
        selection = (values.get(SELECTION) or "").strip() or f"row {number}"
        earlier = chosen.get(selection)
        if earlier is None or (not _spectrogram_view(earlier[1]) and _spectrogram_view(values)):
            chosen[selection] = (number, values)
    return sorted(chosen.values(), key=lambda item: item[0])


def _spectrogram_view(values: dict) -> bool:
    return (values.get(VIEW) or "").startswith("Spectrogram")


def windows_from_boxes(
    audio: str | Path,
    boxes: Sequence[AnnotationBox],
    window_s: float,
    hop_s: float,
    recording: str | None = None,
    min_overlap_s: float = 0.0,
    **metadata: str,
) -> list[WindowRow]:
    """Cut the whole recording into windows; a sound type is present in a window when one of its boxes overlaps it
    by more than `min_overlap_s` seconds."""
    info = probe(audio)
    recording = recording or Path(audio).stem
    rows = []
    for start in window_starts(info.duration_s, window_s, hop_s):
        end = start + window_s
        present = {t: 0 for t in SOUND_TYPES}
        for box in boxes:
            if min(end, box.end_s) - max(start, box.begin_s) > min_overlap_s:
                present[box.sound_type] = 1
        rows.append(WindowRow(Path(audio), start, window_s, recording=recording, **present, **metadata))
    return rows


def write_boxes(boxes: Sequence[AnnotationBox], csv_path: str | Path) -> None:
    """Boxes to a CSV, their audio paths relative to the CSV's folder where possible (as in a manifest)."""
    header = [f.name for f in fields(AnnotationBox)]
    base = Path(csv_path).parent
    write_csv_atomic(csv_path, header, [[relative_to_folder(b.path, base) if name == "path" else getattr(b, name)
                                         for name in header] for b in boxes])


def read_boxes(csv_path: str | Path) -> list[AnnotationBox]:
    """Boxes of a CSV written by write_boxes, with absolute audio paths."""
    base = Path(csv_path).resolve().parent
    with open(csv_path, newline="") as handle:
        return [
            AnnotationBox((base / r["path"]).resolve(), r["sound_type"], float(r["begin_s"]), float(r["end_s"]),
                          float(r["low_hz"]), float(r["high_hz"]))
            for r in csv.DictReader(handle)
        ]


def boxes_csv(manifest: str | Path) -> Path:
    """Where `mgc import-raven` keeps a manifest's boxes: <name>_boxes.csv beside it."""
    manifest = Path(manifest)
    return manifest.with_name(manifest.stem + "_boxes.csv")
