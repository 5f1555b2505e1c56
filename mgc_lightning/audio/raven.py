"""Import of Raven selection tables: annotated boxes -> manifest window rows, keeping the boxes for box masks.

Tables as Raven Pro writes them, and what becomes of each shape (anything else is refused with the table, the row and
the problem; a box left out, cut, split or folded into another is said in a RavenWarning, never silently):
- tab-separated text in UTF-8 (a byte-order mark or not), UTF-16 with a byte-order mark, or Windows-1252 (text
  saved on Windows in its Western code page); LF or CRLF line ends. UTF-16 without a byte-order mark is refused.
- `Begin Time (s)`, `End Time (s)`, `Low Freq (Hz)`, `High Freq (Hz)` and a label column of any name. Labels map to
  the three sound types through a user-given mapping; `ignore` drops a label on purpose, and a label that is not
  mapped at all is an error (so a typo never silently becomes "absent").
- a selection once per view (`Spectrogram 1`, `Waveform 1`: rows with one `Selection` number) is one box, its
  spectrogram row's (the band drawn there).
- a selection on several channels (`Channel` 1, 2, ...) is one box where the channels draw the same box (windows
  have no channel), and a box per channel where their labels or bands differ.
- a table over a file sequence (`Begin File` or `Begin Path`, `File Offset (s)`) counts `Begin Time` from the first
  file's start: each box goes to its own file, at its offset there. A box that runs into the next file (`End File`)
  is split in two; boxes of files not given are left out. Such a table without `File Offset (s)` is refused.
Box CSVs keep paths relative to their own folder, like manifests.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import warnings
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path, PureWindowsPath
from typing import Sequence

from ..core.labels import SOUND_TYPES
from .manifest import ManifestError, WindowRow, header_problems, relative_to_folder, write_csv_atomic
from .reading import probe, window_starts

RAVEN_COLUMNS = ("Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)")
SELECTION, VIEW, CHANNEL = "Selection", "View", "Channel"
FILE_NAMES = (("Begin File", "End File"), ("Begin Path", "End Path"))  # where a multi-file table names its files
FILE_OFFSET = "File Offset (s)"
_NOT_LABELS = {SELECTION, VIEW, CHANNEL, *(name for pair in FILE_NAMES for name in pair)}
_END_TOLERANCE_S = 1e-6  # Raven writes times to 6 decimals
IGNORE = "ignore"


class RavenWarning(UserWarning):
    """A box of a Raven table left out, cut, split or folded into another on import: said, never silent."""


@dataclass(frozen=True)
class AnnotationBox:
    """One annotated call: a time-frequency rectangle in a recording."""

    path: Path
    sound_type: str
    begin_s: float
    end_s: float
    low_hz: float
    high_hz: float


@dataclass(frozen=True)
class _Row:
    """One row of a selection table, read: which selection and channel it belongs to, and the box it draws."""

    number: int
    selection: str
    channel: str
    sound_type: str
    begin_s: float
    end_s: float
    low_hz: float
    high_hz: float
    begin_file: str = ""  # the file the box begins in, in a table that names files
    end_file: str = ""
    offset_s: float | None = None  # where the box begins in that file, where the table says

    @property
    def drawn(self) -> tuple:
        return (self.sound_type, self.begin_s, self.end_s, self.low_hz, self.high_hz, self.begin_file, self.end_file,
                self.offset_s)


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
    table: str | Path, audio: str | Path | Sequence[str | Path], mapping: dict[str, str],
    label_column: str = "Annotation",
) -> list[AnnotationBox]:
    """Boxes of one selection table, validated row by row, each on its own recording among `audio` (the one file a
    table annotates, or the files a multi-file table names), once per selection however many views or channels
    repeat it. Boxes left out, cut, split or folded are said in RavenWarnings."""
    table = Path(table)
    recordings = [Path(audio)] if isinstance(audio, (str, Path)) else [Path(a) for a in audio]
    durations = {path: probe(path).duration_s for path in recordings}
    reader = csv.DictReader(io.StringIO(_table_text(table), newline=""), delimiter="\t")
    columns = reader.fieldnames or []
    _check_columns(table, columns, label_column)
    naming = next((pair for pair in FILE_NAMES if pair[0] in columns), None)
    offsets = naming is not None and FILE_OFFSET in columns
    problems, rows = [], []
    for number, values in _one_view(enumerate(reader, start=1)):
        row = _read_row(number, values, mapping, label_column, naming, offsets)
        (problems if isinstance(row, str) else rows).append(row)
    if problems:
        raise ManifestError(table, problems)
    rows, notes = _one_box_per_selection([row for row in rows if row.sound_type != IGNORE])
    if naming is None:
        boxes = _in_one_file(rows, recordings, durations, problems)
    else:
        boxes = _in_their_files(rows, recordings, durations, naming[0], offsets, problems, notes)
    if problems:
        raise ManifestError(table, problems)
    for note in notes:
        warnings.warn(RavenWarning(f"{table}: {note}"), stacklevel=2)
    return boxes


def _table_text(table: Path) -> str:
    """The table's text in any encoding Raven or a Windows editor saves it in."""
    raw = table.read_bytes()
    try:
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return raw.decode("utf-16")
        if b"\x00" in raw:  # valid UTF-8 byte by byte, but no tab-separated text
            raise ManifestError(table, ["UTF-16 text without a byte-order mark, or not text; save it as UTF-8"])
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return raw.decode("cp1252")
    except UnicodeDecodeError as error:
        raise ManifestError(table, [f"neither UTF-8, UTF-16 nor Windows-1252 text (byte {error.start})"]) from None


def _check_columns(table: Path, columns: Sequence[str], label_column: str) -> None:
    problems = header_problems(columns, RAVEN_COLUMNS, "\t")  # a column twice; a comma-separated file
    if problems:
        raise ManifestError(table, problems)
    if label_column not in columns:  # Raven's measurements carry units, "(s)", "(Hz)"; annotation columns do not
        candidates = [repr(c) for c in columns if c and not c.endswith(")") and c not in _NOT_LABELS]
        raise ManifestError(table, [f"no label column {label_column!r}; columns that could hold labels: "
                                    f"{', '.join(candidates) or 'none'} (choose one with --label-column)"])


def _selection(number: int, values: dict) -> tuple[str, str]:
    """(selection, channel) of a row; a row without a `Selection` number is a selection of its own."""
    return (values.get(SELECTION) or "").strip() or f"row {number}", (values.get(CHANNEL) or "1").strip()


def _one_view(numbered_rows):
    """(row number, values) pairs without the rows that repeat a selection of the spectrogram view on the same
    channel in another view (Raven writes each selection once per view; the band is drawn on the spectrogram)."""
    numbered_rows = list(numbered_rows)
    drawn = {_selection(n, v) for n, v in numbered_rows if _spectrogram_view(v)}
    return [(n, v) for n, v in numbered_rows if _spectrogram_view(v) or _selection(n, v) not in drawn]


def _spectrogram_view(values: dict) -> bool:
    return (values.get(VIEW) or "").startswith("Spectrogram")


def _read_row(number: int, values: dict, mapping: dict[str, str], label_column: str,
              naming: tuple[str, str] | None, offsets: bool) -> _Row | str:
    """The row read, or the problem that stops it."""
    label = (values[label_column] or "").strip()
    if label not in mapping:
        return f"row {number}: label {label!r} is not in the mapping {sorted(mapping)}"
    try:
        numbers = [float(values[c]) for c in (*RAVEN_COLUMNS, *[FILE_OFFSET] * offsets)]
    except (TypeError, ValueError):
        return f"row {number}: times and frequencies must be numbers"
    if not all(map(math.isfinite, numbers)):
        return f"row {number}: times and frequencies must be numbers"
    begin, end, low, high, *offset = numbers
    if not (0 <= begin < end and 0 <= low < high):
        return f"row {number}: need 0 <= begin < end and 0 <= low < high, got {begin, end, low, high}"
    if offset and offset[0] < 0:
        return f"row {number}: {FILE_OFFSET} must be >= 0, got {offset[0]}"
    begin_file = end_file = ""
    if naming is not None:
        begin_file, end_file = (PureWindowsPath((values.get(column) or "").strip()).name for column in naming)
        if not begin_file:
            return f"row {number}: no file named in {naming[0]!r}"
    return _Row(number, *_selection(number, values), mapping[label], begin, end, low, high, begin_file, end_file,
                offset[0] if offset else None)


def _one_box_per_selection(rows: Sequence[_Row]) -> tuple[list[_Row], list[str]]:
    """Rows of one selection that draw the same box (its channels on a multi-channel recording) as one; rows that
    differ in label or band stay boxes of their own. Returns the rows kept and a note on the channels folded."""
    kept: dict[tuple, _Row] = {}
    folded: list[_Row] = []
    for row in rows:
        first = kept.setdefault((row.selection, *row.drawn), row)
        if first is not row and first.channel != row.channel:
            folded.append(row)
    if not folded:
        return list(kept.values()), []
    selections = {row.selection for row in folded}
    channels = sorted({row.channel for row in rows if row.selection in selections}, key=lambda c: (len(c), c))
    return list(kept.values()), [f"{len(selections)} selection(s) drawn alike on channels {', '.join(channels)} "
                                 f"imported once each (rows {_listed(row.number for row in folded)}); the "
                                 f"manifest's windows have no channel"]


def _in_one_file(rows: Sequence[_Row], recordings: Sequence[Path], durations: dict[Path, float],
                 problems: list[str]) -> list[AnnotationBox]:
    """Boxes of a table that names no file: all on its one recording, at their Begin Time."""
    if len(recordings) != 1:
        problems.append(f"names no file (no 'Begin File' or 'Begin Path' column), so it annotates one recording; "
                        f"give it alone with its audio file, not with {len(recordings)}")
        return []
    audio, boxes = recordings[0], []
    audio_s = durations[audio]
    for row in rows:
        if row.begin_s >= audio_s:  # it would label no window: most likely the table of another recording
            problems.append(f"row {row.number}: box {row.begin_s:g}-{row.end_s:g} s starts after the end of {audio} "
                            f"({audio_s:g} s); is this the table of another recording?")
            continue
        boxes.append(AnnotationBox(audio, row.sound_type, row.begin_s, row.end_s, row.low_hz, row.high_hz))
    return boxes


def _in_their_files(rows: Sequence[_Row], recordings: Sequence[Path], durations: dict[Path, float], column: str,
                    offsets: bool, problems: list[str], notes: list[str]) -> list[AnnotationBox]:
    """Boxes of a table that names files: each in its own file, at its offset there; a box running into the next
    file split in two, or cut where that file was not given; boxes of files not given left out (in `notes`)."""
    given: dict[str, Path] = {}
    for path in recordings:
        if given.setdefault(_file_key(path.name), path) != path:
            problems.append(f"{given[_file_key(path.name)]} and {path} share a name; a table names files by name only")
    named = dict.fromkeys(row.begin_file for row in rows)
    if not offsets and len(named) > 1:
        problems.append(f"names {len(named)} files in {column!r} but has no {FILE_OFFSET!r} column: its Begin Time "
                        f"counts from the first file's start, so where a box lies in its own file is unknown; add the "
                        f"File Offset measurement in Raven and save the table again")
    if problems:
        return []
    boxes: list[AnnotationBox] = []
    left_out: Counter[str] = Counter()
    for row in rows:
        path = given.get(_file_key(row.begin_file))
        if path is None:
            left_out[row.begin_file] += 1
            continue
        audio_s = durations[path]
        begin = row.begin_s if row.offset_s is None else row.offset_s  # one file named and no offset: its own time
        end = begin + row.end_s - row.begin_s
        if begin >= audio_s:
            problems.append(f"row {row.number}: box {begin:g}-{end:g} s starts after the end of {path} ({audio_s:g} s)")
            continue
        boxes.append(AnnotationBox(path, row.sound_type, begin, min(end, audio_s), row.low_hz, row.high_hz))
        if end <= audio_s + _END_TOLERANCE_S:
            continue
        rest = end - audio_s
        same = _file_key(row.end_file) in ("", _file_key(path.name))
        following = None if same else given.get(_file_key(row.end_file))
        if same:
            notes.append(f"row {row.number}: the box runs {rest:g} s past the end of {path.name} ({audio_s:g} s) "
                         f"into a file the table does not name: cut there")
        elif following is None:
            notes.append(f"row {row.number}: the box runs into {row.end_file}, which was not given: cut at the end "
                         f"of {path.name} ({audio_s:g} s)")
        elif rest > durations[following] + _END_TOLERANCE_S:
            problems.append(f"row {row.number}: the box runs from {path.name} past the end of {following.name}: it "
                            f"spans more than two files")
        else:
            boxes.append(AnnotationBox(following, row.sound_type, 0.0, rest, row.low_hz, row.high_hz))
            notes.append(f"row {row.number}: the box spans {path.name} and {following.name}: split into a box in "
                         f"each")
    if left_out and not boxes and not problems:
        problems.append(f"its selections lie on {', '.join(left_out)}, none of the audio files given "
                        f"({', '.join(p.name for p in recordings)}); is this the table of other recordings?")
    elif left_out:
        notes.append(f"{sum(left_out.values())} selection(s) on files not given left out: "
                     + ", ".join(f"{name} ({count})" for name, count in sorted(left_out.items())))
    return boxes


def _file_key(name: str) -> str:
    """A file named in a table matches a recording by name, case and extension aside (a WAV saved as FLAC)."""
    return PureWindowsPath(name).stem.casefold()


def _listed(numbers, most: int = 10) -> str:
    numbers = [str(n) for n in numbers]
    return ", ".join(numbers[:most]) + (f", ... ({len(numbers)} in all)" if len(numbers) > most else "")


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
