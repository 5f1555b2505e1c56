"""Raven selection tables in the shapes Raven Pro writes: every selection becomes its boxes on the right file, at the
right place in that file, with its label and band, once however many views showed it, or the table is refused with
the file, the row and the problem. A box left out, cut, split or folded into another is said in a warning."""

import numpy as np
import pytest

from conftest import tone, write_audio
from mgc_lightning.audio.manifest import ManifestError, load_manifest
from mgc_lightning.audio.raven import RavenWarning, parse_label_mapping, read_boxes, read_selection_table
from mgc_lightning.cli import main

RATE = 8_000
MAPPING = parse_label_mapping("BW=whistle,BC=beluga_click,PP=porpoise_click,ship=ignore")
BOX_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)"]
WHISTLE, CLICK, PORPOISE = (4000.0, 12000.0), (40000.0, 120000.0), (120000.0, 145000.0)


def recording(folder, name, seconds=2.0, channels=1):
    samples = tone(1_000, seconds, RATE)
    return write_audio(folder / name, np.stack([samples] * channels, axis=1) if channels > 1 else samples, RATE)


def write_table(path, columns, rows, encoding="utf-8", newline="\n"):
    text = newline.join("\t".join(map(str, line)) for line in [columns, *rows]) + newline
    path.write_bytes(text.encode(encoding))
    return path


def views(selection, channel, *values):
    """One selection as Raven writes it with a spectrogram and a waveform view open: a row per view."""
    return [[selection, view, channel, *values] for view in ("Spectrogram 1", "Waveform 1")]


def placed(boxes):
    return sorted((b.path.name, b.sound_type, round(b.begin_s, 6), round(b.end_s, 6), b.low_hz, b.high_hz)
                  for b in boxes)


# ---- a table over a file sequence: Begin Time counts from the first file's start ---------------------------------

FILES = {"a.wav": 2.0, "b.wav": 3.0, "c.wav": 2.0}  # at 0, 2 and 5 s of the sequence
SEQUENCE = [  # (file the selection begins in, offset in it, length, band, label, file it ends in)
    ("a.wav", 0.5, 0.3, WHISTLE, "BW", "a.wav"), ("b.wav", 0.25, 0.5, CLICK, "BC", "b.wav"),
    ("c.wav", 1.0, 0.2, PORPOISE, "PP", "c.wav"), ("b.wav", 2.8, 0.5, WHISTLE, "BW", "c.wav"),
]
NAMING = {"Begin File": ("Begin File", "End File", lambda name: name),
          "Begin Path": ("Begin Path", "End Path", lambda name: "C:\\Users\\field\\survey 2024\\" + name.upper())}


def sequence_table(path, naming="Begin File", offsets=True):
    """A multi-file table as Raven writes it for a file sequence, files named by name or by (Windows) path."""
    begin_column, end_column, name = NAMING[naming]
    columns = BOX_COLUMNS + [begin_column, end_column] + ["File Offset (s)"] * offsets + ["Delta Time (s)",
                                                                                          "Annotation"]
    starts = dict(zip(FILES, np.cumsum([0.0, *FILES.values()])))
    rows = []
    for number, (file, offset, length, (low, high), label, end_file) in enumerate(SEQUENCE, start=1):
        begin = starts[file] + offset
        rows += views(number, 1, f"{begin:.6f}", f"{begin + length:.6f}", low, high, name(file), name(end_file),
                      *[offset] * offsets, length, label)
    return write_table(path, columns, rows)


@pytest.fixture
def sequence(tmp_path):
    return [recording(tmp_path, name, seconds) for name, seconds in FILES.items()]


@pytest.mark.parametrize("naming", NAMING)
def test_multi_file_table_puts_each_box_on_its_own_file_at_its_offset(sequence, tmp_path, naming):
    table = sequence_table(tmp_path / "sequence.txt", naming)
    with pytest.warns(RavenWarning, match=r"row 7: the box spans b.wav and c.wav: split into a box in each"):
        boxes = read_selection_table(table, sequence, MAPPING)
    assert placed(boxes) == [("a.wav", "whistle", 0.5, 0.8, *WHISTLE), ("b.wav", "beluga_click", 0.25, 0.75, *CLICK),
                             ("b.wav", "whistle", 2.8, 3.0, *WHISTLE), ("c.wav", "porpoise_click", 1.0, 1.2, *PORPOISE),
                             ("c.wav", "whistle", 0.0, 0.3, *WHISTLE)]


def test_multi_file_table_with_one_file_given_says_what_it_leaves_out(sequence, tmp_path):
    """The bug: boxes went to the one --audio file at their Begin Time, counted from the sequence's start (a.wav's box
    onto b.wav at 0.5 s, b.wav's at 2.25 s instead of 0.25 s), or the table was refused for boxes of other files."""
    table = sequence_table(tmp_path / "sequence.txt")
    with pytest.warns(RavenWarning) as said:
        boxes = read_selection_table(table, sequence[1], MAPPING)
    assert placed(boxes) == [("b.wav", "beluga_click", 0.25, 0.75, *CLICK), ("b.wav", "whistle", 2.8, 3.0, *WHISTLE)]
    messages = [str(w.message) for w in said]
    assert any("2 selection(s) on files not given left out: a.wav (1), c.wav (1)" in m for m in messages), messages
    assert any("row 7: the box runs into c.wav, which was not given: cut at the end of b.wav (3 s)" in m
               for m in messages), messages


def test_multi_file_table_without_file_offsets_is_refused(sequence, tmp_path):
    table = sequence_table(tmp_path / "sequence.txt", offsets=False)
    with pytest.raises(ManifestError, match=r"sequence.txt: names 3 files in 'Begin File' but has no 'File Offset "
                                            r"\(s\)' column"):
        read_selection_table(table, sequence, MAPPING)


def test_import_raven_writes_every_file_of_a_sequence(sequence, tmp_path):
    table = sequence_table(tmp_path / "sequence.txt")
    out = tmp_path / "manifest.csv"
    args = ["import-raven", str(table), "--audio", *map(str, sequence), "--map", "BW=whistle,BC=beluga_click,"
            "PP=porpoise_click", "--window", "0.5", "--out", str(out)]
    with pytest.warns(RavenWarning, match="split into a box in each"):
        assert main(args) == 0
    rows = load_manifest(out)
    labelled = {(r.recording, r.start_s): r.labels for r in rows if any(r.labels)}
    assert labelled == {("a", 0.5): (1, 0, 0), ("b", 0.0): (0, 1, 0), ("b", 0.5): (0, 1, 0), ("b", 2.5): (1, 0, 0),
                        ("c", 0.0): (1, 0, 0), ("c", 1.0): (0, 0, 1)}
    assert len(rows) == 4 + 6 + 4 and len(read_boxes(tmp_path / "manifest_boxes.csv")) == 5
    with pytest.warns(RavenWarning):
        assert main(args[:-2] + ["--out", str(out), "--append"]) == 0
    assert len(load_manifest(out)) == 14  # imported again, the files' rows are replaced, not doubled
    assert main(args + ["--recording", "one"]) == 2  # one recording id for three files would merge them


# ---- one recording, several channels or views, labels in other columns, encodings ---------------------------------

ONE_FILE = [("a.wav", "porpoise_click", 1.1, 1.15, *PORPOISE), ("a.wav", "whistle", 0.2, 0.6, *WHISTLE)]


def test_channels_fold_only_where_they_draw_the_same_box(tmp_path):
    """The bug: only the first row of a selection was kept, so channel 2's label was lost."""
    audio = recording(tmp_path, "stereo.wav", channels=2)
    rows = [*views(1, 1, 0.2, 0.6, *WHISTLE, "BW"), *views(1, 2, 0.2, 0.6, *WHISTLE, "BW"),
            *views(2, 1, 1.0, 1.4, *WHISTLE, "BW"), *views(2, 2, 1.0, 1.4, *CLICK, "BC")]
    table = write_table(tmp_path / "stereo.txt", BOX_COLUMNS + ["Annotation"], rows)
    with pytest.warns(RavenWarning, match=r"stereo.txt: 1 selection\(s\) drawn alike on channels 1, 2 imported "
                                          r"once each \(rows 3\)"):
        boxes = read_selection_table(table, audio, MAPPING)
    assert placed(boxes) == [("stereo.wav", "beluga_click", 1.0, 1.4, *CLICK),
                             ("stereo.wav", "whistle", 0.2, 0.6, *WHISTLE),
                             ("stereo.wav", "whistle", 1.0, 1.4, *WHISTLE)]


def test_labels_in_a_column_of_another_name(tmp_path):
    audio = recording(tmp_path, "a.wav")
    rows = [*views(1, 1, 0.2, 0.6, *WHISTLE, "Dleu", "BW"), *views(2, 1, 1.1, 1.15, *PORPOISE, "Pph", "PP")]
    table = write_table(tmp_path / "t.txt", BOX_COLUMNS + ["Species", "Call Type"], rows)
    boxes = read_selection_table(table, audio, MAPPING, label_column="Call Type")
    assert placed(boxes) == ONE_FILE
    with pytest.raises(ManifestError, match=r"t.txt: no label column 'Annotation'; columns that could hold labels: "
                                            r"'Species', 'Call Type' \(choose one with --label-column\)"):
        read_selection_table(table, audio, MAPPING)
    with pytest.raises(ManifestError, match=r"t.txt: 2 problems\n  row 1: label 'Dleu' is not in the mapping"):
        read_selection_table(table, audio, MAPPING, label_column="Species")


@pytest.mark.parametrize("encoding, newline", [("utf-8", "\n"), ("utf-8", "\r\n"), ("utf-8-sig", "\r\n"),
                                               ("utf-16", "\r\n"), ("cp1252", "\r\n"), ("latin-1", "\n")])
def test_tables_saved_on_windows_read_alike(tmp_path, encoding, newline):
    """UTF-8 with a byte-order mark doubled every box (the `Selection` column went unseen); UTF-16 and Windows-1252
    tables could not be read at all."""
    audio = recording(tmp_path, "a.wav")
    rows = [*views(1, 1, 0.2, 0.6, *WHISTLE, "Bélouga"), *views(2, 1, 1.1, 1.15, *PORPOISE, "PP")]
    table = write_table(tmp_path / "t.txt", BOX_COLUMNS + ["Annotation"], rows, encoding, newline)
    boxes = read_selection_table(table, audio, parse_label_mapping("Bélouga=whistle,PP=porpoise_click"))
    assert placed(boxes) == ONE_FILE


def test_utf16_without_byte_order_mark_is_refused(tmp_path):
    audio = recording(tmp_path, "a.wav")
    table = write_table(tmp_path / "t.txt", BOX_COLUMNS + ["Annotation"], views(1, 1, 0.2, 0.6, *WHISTLE, "BW"),
                        "utf-16-le")
    with pytest.raises(ManifestError, match="t.txt: UTF-16 text without a byte-order mark"):
        read_selection_table(table, audio, MAPPING)


def test_a_box_over_more_than_two_files_is_refused(sequence, tmp_path):
    columns = BOX_COLUMNS + ["Begin File", "End File", "File Offset (s)", "Annotation"]
    table = write_table(tmp_path / "long.txt", columns, views(1, 1, 1.5, 6.5, *WHISTLE, "a.wav", "c.wav", 1.5, "BW"))
    with pytest.raises(ManifestError, match=r"long.txt: row 1: the box runs from a.wav past the end of c.wav: it "
                                            r"spans more than two files"):
        read_selection_table(table, sequence, MAPPING)
