"""Bad input on the data side, tried as a user would: real files on disk, the real `mgc` command in a child process
(its entry point, one process for the cases of a kind, each in its own folder).

Each case states its exact outcome: exit status 2 with one line naming the file (and manifest or table row) and the
problem, or a stated warning with exit status 0; never a traceback. docs/bad_input.md, "Data: audio, manifests, Raven
tables, masks", lists the same table.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import MANIFEST_HEADER, run_cli_cases, write_audio, write_rows
from mgc_lightning.audio.manifest import load_manifest
from mgc_lightning.data.datamodules import ClassificationDataModule
from mgc_lightning.frontend.cache import silent_windows, spectrogram_store
from mgc_lightning.frontend.spectrogram import PRESETS, SpectrogramTransform, get_preset
from mgc_lightning.masks.ops import read_mask_png

REPOSITORY = Path(__file__).resolve().parents[1]
RATE = 8_000  # files only `validate` and `import-raven` read
WIDE = 384_000  # files the spectrogram front end reads (origin needs >= 320 kHz)
MAPPING = "BW=whistle,BC=beluga_click,PP=porpoise_click"
RAVEN_HEADER = "Selection\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tAnnotation\n"


ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",  # this checkout's package, anywhere
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))}


def mgc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mgc_lightning.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=ENVIRONMENT, timeout=300)


def noise(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    shape = (int(seconds * rate), channels) if channels > 1 else int(seconds * rate)
    return np.random.default_rng(seed).normal(0, 0.01, shape).astype(np.float32)


def audio(folder: Path, name: str = "a.wav", seconds: float = 2.0, rate: int = RATE) -> Path:
    return write_audio(folder / name, noise(seconds, rate), rate)


def truncated(folder: Path, name: str) -> Path:
    whole = audio(folder, "whole" + Path(name).suffix)
    payload = whole.read_bytes()
    (folder / name).write_bytes(payload[: len(payload) // 2])
    return folder / name


def text_named_wav(folder: Path) -> Path:
    (folder / "notes.wav").write_text("field notes, saved under the wrong name")
    return folder / "notes.wav"


def rows_of(name: str, count: int = 2, recordings: int = 1) -> list[list]:
    """`count` 0.5 s windows of one file, spread over `recordings` recording ids."""
    return [[name, 0.5 * i, 0.5, i % 2, 0, 0, f"r{i % recordings}", "s"] for i in range(count)]


def manifest(folder: Path, rows: list[list], header: list[str] = MANIFEST_HEADER) -> str:
    return str(write_rows(folder / "m.csv", rows, header))


def raven(folder: Path, body: str, header: str = RAVEN_HEADER) -> list[str]:
    (folder / "t.txt").write_text(header + body)
    return ["import-raven", str(folder / "t.txt"), "--audio", str(audio(folder)), "--map", MAPPING,
            "--window", "0.5", "--out", str(folder / "out.csv")]


BOX = "1\t0.2\t0.6\t4000\t12000\tBW\n"
SEQUENCE_HEADER = RAVEN_HEADER.replace("\tAnnotation", "\tBegin File\tEnd File\tFile Offset (s)\tAnnotation")


def raven_encoded(encode: Callable[[str], bytes]) -> Callable[[Path], list[str]]:
    """A one-box table saved in another encoding."""
    def setup(folder: Path) -> list[str]:
        args = raven(folder, BOX)
        (folder / "t.txt").write_bytes(encode(RAVEN_HEADER + BOX))
        return args
    return setup


def raven_sequence(folder: Path, body: str, files: tuple[str, ...] = ("a.wav", "b.wav"),
                   header: str = SEQUENCE_HEADER) -> list[str]:
    """A table over a sequence of 2-s files (Begin Time counts from the first file's start) and the files given."""
    args = raven(folder, body, header)
    given = [str(audio(folder, name)) for name in files]
    at = args.index("--audio") + 1
    return args[:at] + given + args[at + 1:]


def raven_latin1(folder: Path) -> list[str]:
    """A table saved in Windows-1252 / Latin-1 (an accented label): read as such, so the refusal names the table and
    the label it does not map (before, a decode error named no file)."""
    args = raven(folder, BOX)
    (folder / "t.txt").write_bytes((RAVEN_HEADER + BOX.replace("BW", "BW é")).encode("latin-1"))
    return args


def audio_folder(folder: Path) -> list[str]:
    (folder / "audio").mkdir()
    return ["validate", manifest(folder, rows_of("audio", 1))]


def swap(args: list[str], old: str, new: str) -> list[str]:
    return [new if a == old else a for a in args]


def spectrograms(folder: Path, rows: list[list], *extra: str) -> list[str]:
    return ["spectrograms", manifest(folder, rows), "--cache-root", str(folder / "cache"), "--quiet", *extra]


def cached_image(folder: Path, name: str, start_s: float) -> np.ndarray:
    rows = load_manifest(folder / "m.csv", check_audio=False)
    row = next(r for r in rows if r.path.name == name and r.start_s == start_s)
    return spectrogram_store(get_preset("origin"), folder / "cache").load(row.key).astype(np.float32)


# ---- setups: each writes its files into the folder and returns the command line -------------------------------

def digital_silence(folder: Path) -> list[str]:
    samples = noise(1.0, WIDE)
    samples[WIDE // 2:] = 0.0  # a recorder dropout in the second window
    write_audio(folder / "dropout.wav", samples, WIDE)
    return spectrograms(folder, rows_of("dropout.wav"))


def cancelling_channels(folder: Path) -> list[str]:
    left = noise(1.0, WIDE)
    write_audio(folder / "stereo.wav", np.stack([left, -left], axis=1), WIDE)  # one channel wired in reverse
    return spectrograms(folder, rows_of("stereo.wav", count=1))


def nan_among_good(folder: Path) -> list[str]:
    write_audio(folder / "good.wav", noise(1.0, WIDE), WIDE)
    bad = noise(1.0, WIDE)
    bad[WIDE // 2 + 100] = np.nan
    write_audio(folder / "nan.wav", bad, WIDE, subtype="FLOAT")
    return spectrograms(folder, rows_of("good.wav") + rows_of("nan.wav"))


def export_with_recording(recording: str) -> Callable[[Path], list[str]]:
    def setup(folder: Path) -> list[str]:
        write_audio(folder / "data" / "a.wav", noise(0.5, WIDE), WIDE)
        rows = [["a.wav", 0, 0.5, 1, 0, 0, recording, "s"]]
        return ["masks", "propose", str(write_rows(folder / "data" / "m.csv", rows)), "--cache-root",
                str(folder / "cache"), "--export", str(folder / "data" / "export" / "png"), "--quiet"]
    return setup


def only_inside_export(folder: Path, result) -> None:
    export = folder / "data" / "export" / "png"
    written = sorted(p.relative_to(folder) for p in folder.rglob("*.png"))
    assert written and all(export in (folder / p).parents for p in written), written
    assert {p.parent for p in written} == {export.relative_to(folder)}


def silence_flagged(folder: Path, result) -> None:
    assert np.allclose(cached_image(folder, "dropout.wav", 0.5), 0.2, atol=1e-3)  # the noise-floor level, not 1.0
    assert cached_image(folder, "dropout.wav", 0.0).std() > 0.02  # the window with sound is not flat
    flags = silent_windows(get_preset("origin"), folder / "cache")
    assert list(flags.values()) == [f"{folder / 'dropout.wav'} 0.5-1 s: digital silence (no sample above -120 dBFS)"]


def good_windows_cached(folder: Path, result, count: int = 3) -> None:
    assert len(spectrogram_store(get_preset("origin"), folder / "cache")) == count  # all but the unreadable window


@dataclass(frozen=True)
class Case:
    setup: Callable[[Path], list[str]]
    status: int
    stderr: tuple[str, ...] = ()  # fragments of stderr (for status 2 its only line)
    stdout: tuple[str, ...] = ()
    check: Callable[[Path, SimpleNamespace], None] | None = None  # the case's folder and its outcome


def validate(rows: list[list], header: list[str] = MANIFEST_HEADER, *extra: str) -> Callable[[Path], list[str]]:
    def setup(folder: Path) -> list[str]:
        audio(folder)
        return ["validate", manifest(folder, rows, header), *extra]
    return setup


def validate_file(write: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def setup(folder: Path) -> list[str]:
        audio(folder)
        write(folder / "m.csv")
        return ["validate", str(folder / "m.csv")]
    return setup


def validate_audio(make: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    def setup(folder: Path) -> list[str]:
        name = make(folder).name
        return ["validate", manifest(folder, rows_of(name, count=1))]
    return setup


GOOD = rows_of("a.wav", count=4, recordings=3)
CSV_TEXT = ",".join(MANIFEST_HEADER) + "\n" + "".join(f"a.wav,{0.5 * i},0.5,0,0,0,r{i},s\n" for i in range(3))
ROW1 = "m.csv: row 1 (line 2): "

CASES: dict[str, Case] = {
    # ---- audio files named by a manifest -------------------------------------------------------------------
    "audio missing": Case(validate(rows_of("gone.wav", 1)), 2, (ROW1, "gone.wav: file not found")),
    "audio empty": Case(validate_audio(lambda f: write_audio(f / "empty.wav", np.zeros(0, np.float32), RATE)), 2,
                        (ROW1, "empty.wav: empty audio (0 samples)")),
    "audio not audio": Case(validate_audio(text_named_wav),
                            2, (ROW1, "notes.wav: unreadable or corrupt audio")),
    "audio truncated FLAC": Case(validate_audio(lambda f: truncated(f, "cut.flac")), 2,
                                 (ROW1, "cut.flac: truncated or corrupt audio: the header promises 2 s")),
    # libsndfile reads a cut WAV as a shorter file: its windows in the lost part are past the end
    "audio truncated WAV": Case(lambda f: ["validate", manifest(f, [[truncated(f, "cut.wav").name, 1.5, 0.5, 0, 0, 0,
                                                                    "r", "s"]])], 2,
                                (ROW1, "window 1.5-2 s runs past the end of", "cut.wav (0.998625 s)")),
    "window past the end": Case(validate([["a.wav", 1.75, 0.5, 0, 0, 0, "r", "s"]]), 2,
                                (ROW1, "window 1.75-2.25 s runs past the end of", "a.wav (2 s)")),
    "sample rate below the band": Case(
        lambda f: spectrograms(f, rows_of(audio(f, "low.wav", 1.0, 48_000).name)), 2,
        ("2 window(s) could not be read (0 others computed and cached)",
         "low.wav: sample rate 48000 Hz is too low for a band up to 160000 Hz", "(manifest rows 1, 2)")),
    "missing audio among good files": Case(
        lambda f: spectrograms(f, rows_of(audio(f, "good.wav", 1.0, WIDE).name) + rows_of("gone.wav", 1)), 2,
        ("1 window(s) could not be read (2 others computed and cached)", "gone.wav: file not found (manifest row 3)"),
        check=lambda f, result: good_windows_cached(f, result, 2)),
    "NaN samples among good files": Case(
        nan_among_good, 2, ("1 window(s) could not be read (3 others computed and cached)",
                            "nan.wav: NaN or infinite sample at 0.500260 s (manifest row 4)"),
        check=good_windows_cached),
    "digital silence": Case(digital_silence, 0, ("mgc: warning: row 2 (line 3) ", "dropout.wav 0.5-1 s: digital "
                                                 "silence", "left out of training"),
                            ("2 computed, 0 already cached",), check=silence_flagged),
    "channels cancel in the mono mix": Case(
        cancelling_channels, 0, ("mgc: warning: row 1 (line 2) ", "stereo.wav 0-0.5 s: the channels cancel in the "
                                 "mono mix", "pick one channel")),
    # ---- manifests -----------------------------------------------------------------------------------------
    "manifest missing": Case(lambda f: ["validate", str(f / "nothing.csv")], 2, ("nothing.csv: file not found",)),
    "manifest empty file": Case(validate_file(lambda p: p.write_text("")), 2,
                                ("m.csv: header lacks required column(s) ['path',",)),
    "manifest header only": Case(validate([]), 2, ("m.csv: no rows",)),
    "manifest without a column": Case(validate([r[:6] + [r[7]] for r in GOOD],
                                               MANIFEST_HEADER[:6] + MANIFEST_HEADER[7:]), 2,
                                      ("m.csv: header lacks required column(s) ['recording']",)),
    "manifest with a byte-order mark": Case(validate_file(lambda p: p.write_text(CSV_TEXT, encoding="utf-8-sig")),
                                            0, stdout=("3 windows, 3 recordings",)),
    "manifest not UTF-8": Case(validate_file(lambda p: p.write_bytes(CSV_TEXT.replace(",s\n", ",Baie-Comeau é\n", 1)
                                                                     .encode("latin-1"))), 2,
                               ("m.csv: not UTF-8 text (byte", 'save it as UTF-8 (Excel: "CSV UTF-8")')),
    "manifest is a folder": Case(lambda f: ["validate", str(f)], 2, (": is a folder, not a file",)),
    "manifest with a column twice": Case(validate([r + [1] for r in GOOD], MANIFEST_HEADER + ["whistle"]), 2, (
        "m.csv: header has the same column more than once: 'whistle' (column 4), 'whistle' (column 9); the later "
        "would silently override the earlier: keep one",)),
    "manifest with columns differing in case or spaces": Case(
        validate([r + [1] for r in GOOD], MANIFEST_HEADER + ["Whistle "]), 2,
        ("m.csv: header has columns that differ only in case or spaces: 'whistle' (column 4), 'Whistle ' (column 9)",)),
    "manifest header with trailing spaces": Case(
        validate(GOOD, [name + " " if name == "recording" else name for name in MANIFEST_HEADER]), 2,
        ("m.csv: header lacks required column(s) ['recording']", "'recording ' is there: names are case- and "
         "space-sensitive")),
    "manifest semicolon-separated": Case(validate_file(lambda p: p.write_text(CSV_TEXT.replace(",", ";"))), 2,
                                         ("m.csv: header lacks required column(s) ['path',",
                                          "the file looks semicolon-separated: save it comma-separated")),
    "audio path is a folder": Case(audio_folder, 2, (ROW1, "audio: is a folder, not a file")),
    "label not 0 or 1": Case(validate([["a.wav", 0, 0.5, 0, 0, 2, "r", "s"]]), 2,
                             (ROW1 + "porpoise_click must be 0 or 1, got '2'",)),
    "label empty": Case(validate([["a.wav", 0, 0.5, "", 0, 0, "r", "s"]]), 2,
                        (ROW1 + "whistle must be 0 or 1, got ''",)),
    "start not a number": Case(validate([["a.wav", "0,5", 0.5, 0, 0, 0, "r", "s"]]), 2,
                               (ROW1 + "start_s must be a number, got '0,5'",)),
    "start NaN": Case(validate([["a.wav", "nan", 0.5, 0, 0, 0, "r", "s"]]), 2,
                      (ROW1 + "start_s must be a number, got 'nan'",)),
    "start negative": Case(validate([["a.wav", -1, 0.5, 0, 0, 0, "r", "s"]]), 2,
                           (ROW1 + "start_s must be >= 0, got -1.0",)),
    "duration zero": Case(validate([["a.wav", 0, 0, 0, 0, 0, "r", "s"]]), 2,
                          (ROW1 + "duration_s must be > 0, got 0.0",)),
    "path empty": Case(validate([["", 0, 0.5, 0, 0, 0, "r", "s"]]), 2, (ROW1 + "empty path",)),
    "recording empty": Case(validate([["a.wav", 0, 0.5, 0, 0, 0, "", "s"]]), 2, (ROW1 + "empty recording",)),
    "row with an extra field": Case(validate([["a.wav", 0, 0.5, 0, 0, 0, "r", "s", "x"]]), 2,
                                    (ROW1 + "more fields than the header has columns",)),
    "exact duplicate rows": Case(validate(GOOD + GOOD[:1]), 2, (
        "m.csv: rows 1, 5 (lines 2, 6): the same window (", "a.wav 0-0.5 s) 2 times; delete the copies, or drop "
        "them with --drop-duplicates")),
    "exact duplicates dropped on request": Case(validate(GOOD + GOOD[:1], MANIFEST_HEADER, "--drop-duplicates"),
                                                0, stdout=("4 windows, 3 recordings",)),
    "contradictory rows": Case(validate(GOOD + [["a.wav", 0, 0.5, 1, 1, 1, "r0", "s"]]), 2, (
        "m.csv: rows 1, 5 (lines 2, 6): the same window (", "a.wav 0-0.5 s) with different "
        "whistle,beluga_click,porpoise_click: 0,0,0 vs 1,1,1; keep the right one")),
    "contradictory rows with --drop-duplicates": Case(
        validate(GOOD + [["a.wav", 0, 0.5, 1, 1, 1, "r0", "s"]], MANIFEST_HEADER, "--drop-duplicates"), 2,
        ("rows 1, 5 (lines 2, 6)", "with different whistle,beluga_click,porpoise_click")),
    "one window in two recordings": Case(validate(GOOD + [["a.wav", 0, 0.5, 0, 0, 0, "other", "s"]]), 2,
                                         ("rows 1, 5 (lines 2, 6)", "with different recording: r0 vs other")),
    "fewer recordings than splits": Case(validate(rows_of("a.wav", 4, recordings=2)), 0, (
        "mgc validate: warning: no split by recording: cannot split 2 recording group(s) into 3 non-empty sides; "
        "add recordings or change the fractions",), ("4 windows, 2 recordings",)),
    "duplicates counted once in the cache": Case(
        lambda f: spectrograms(f, rows_of(audio(f, "w.wav", 1.0, WIDE).name) * 2, "--drop-duplicates"), 0,
        stdout=("2 computed, 0 already cached",)),
    # ---- Raven selection tables ----------------------------------------------------------------------------
    "Raven box past the end of the audio": Case(
        lambda f: raven(f, "1\t0.2\t0.6\t4000\t12000\tBW\n2\t5\t6\t4000\t12000\tBW\n"), 2,
        ("t.txt: row 2: box 5-6 s starts after the end of", "a.wav (2 s); is this the table of another recording?")),
    "Raven label not mapped": Case(lambda f: raven(f, "1\t0.2\t0.6\t4000\t12000\tXX\n"), 2,
                                   ("t.txt: row 1: label 'XX' is not in the mapping",)),
    "Raven time not a number": Case(lambda f: raven(f, "1\t0.2s\t0.6\t4000\t12000\tBW\n"), 2,
                                    ("t.txt: row 1: times and frequencies must be numbers",)),
    "Raven box ends before it begins": Case(lambda f: raven(f, "1\t0.6\t0.2\t4000\t12000\tBW\n"), 2,
                                            ("t.txt: row 1: need 0 <= begin < end and 0 <= low < high",)),
    "Raven table without a column": Case(
        lambda f: raven(f, "1\t0.2\t0.6\t12000\tBW\n", RAVEN_HEADER.replace("Low Freq (Hz)\t", "")), 2,
        ("t.txt: header lacks required column(s) ['Low Freq (Hz)']",)),
    "Raven table in Windows-1252 (an accented label)": Case(raven_latin1, 2, ("t.txt", "'BW é'")),
    "Raven table comma-separated": Case(lambda f: raven(f, BOX.replace("\t", ","), RAVEN_HEADER.replace("\t", ",")), 2,
                                        ("t.txt: header lacks required column(s)",
                                         "the file looks comma-separated: save it tab-separated")),
    "Raven audio missing": Case(lambda f: swap(raven(f, BOX), str(f / "a.wav"), str(f / "gone.wav")), 2,
                                ("gone.wav: file not found",)),
    "Raven label mapped to an unknown type": Case(lambda f: swap(raven(f, BOX), MAPPING, "BW=whistles"), 2,
                                                  ("bad label mapping 'BW=whistles'",)),
    "Raven label column under another name": Case(
        lambda f: raven(f, BOX, RAVEN_HEADER.replace("Annotation", "Species")), 2,
        ("t.txt: no label column 'Annotation'; columns that could hold labels: 'Species' (choose one with "
         "--label-column)",)),
    "Raven table saved on Windows (UTF-16, CRLF)": Case(
        raven_encoded(lambda text: text.replace("\n", "\r\n").encode("utf-16")), 0, stdout=("wrote 4 windows",)),
    "Raven table in UTF-16 without a byte-order mark": Case(
        raven_encoded(lambda text: text.encode("utf-16-le")), 2,
        ("t.txt: UTF-16 text without a byte-order mark, or not text; save it as UTF-8",)),
    "Raven table of one recording given several audio files": Case(
        lambda f: raven_sequence(f, BOX, header=RAVEN_HEADER), 2,
        ("t.txt: names no file (no 'Begin File' or 'Begin Path' column), so it annotates one recording; give it "
         "alone with its audio file, not with 2",)),
    "Raven table of several files without File Offset": Case(
        lambda f: raven_sequence(f, "1\t0.2\t0.6\t4000\t12000\ta.wav\ta.wav\tBW\n2\t2.2\t2.6\t4000\t12000\tb.wav"
                                    "\tb.wav\tBW\n", header=SEQUENCE_HEADER.replace("\tFile Offset (s)", "")), 2,
        ("t.txt: names 2 files in 'Begin File' but has no 'File Offset (s)' column",)),
    "Raven table of other recordings": Case(
        lambda f: raven_sequence(f, "1\t0.2\t0.6\t4000\t12000\tother.wav\tother.wav\t0.2\tBW\n", ("a.wav",)), 2,
        ("t.txt: its selections lie on other.wav, none of the audio files given (a.wav); is this the table of "
         "other recordings?",)),
    "Raven selections on files not given": Case(
        lambda f: raven_sequence(f, "1\t0.2\t0.6\t4000\t12000\ta.wav\ta.wav\t0.2\tBW\n2\t2.2\t2.6\t4000\t12000\t"
                                    "b.wav\tb.wav\t0.2\tBW\n", ("a.wav",)), 0,
        ("mgc: warning: ", "t.txt: 1 selection(s) on files not given left out: b.wav (1)"),
        ("wrote 4 windows", "and 1 boxes")),
    "Raven box running past its file": Case(
        lambda f: raven_sequence(f, "1\t1.8\t2.3\t4000\t12000\ta.wav\ta.wav\t1.8\tBW\n", ("a.wav",)), 0,
        ("t.txt: row 1: the box runs 0.3 s past the end of a.wav (2 s) into a file the table does not name: cut "
         "there",)),
    "Raven --recording with several audio files": Case(
        lambda f: raven_sequence(f, "1\t0.2\t0.6\t4000\t12000\ta.wav\ta.wav\t0.2\tBW\n") + ["--recording", "r"], 2,
        ("--recording names one recording; 2 --audio files are named by their files",)),
    # ---- recording ids used in file names ------------------------------------------------------------------
    "recording id climbing out of the export": Case(export_with_recording("../../../escape"), 0,
                                                    stdout=("PNGs for refinement",), check=only_inside_export),
    "recording id with a slash": Case(export_with_recording("deployment/42"), 0, stdout=("PNGs for refinement",),
                                      check=only_inside_export),
}


COMPUTING = {"sample rate below the band", "missing audio among good files", "NaN samples among good files",
             "digital silence", "channels cancel in the mono mix", "duplicates counted once in the cache",
             "recording id climbing out of the export", "recording id with a slash"}


def _outcomes(root: Path, names: list[str]) -> dict[str, tuple[Path, list[str], SimpleNamespace]]:
    """The cases set up each in a folder of its own, then run together by one `mgc` child process."""
    cases = {}
    for index, name in enumerate(names):
        (root / f"case{index}").mkdir()
        cases[name] = (root / f"case{index}", CASES[name].setup(root / f"case{index}"))
    results = run_cli_cases(cases, ENVIRONMENT, root)
    return {name: (folder, args, SimpleNamespace(returncode=results[name]["code"], stdout=results[name]["stdout"],
                                                 stderr=results[name]["stderr"]))
            for name, (folder, args) in cases.items()}


@pytest.fixture(scope="module")
def quick_outcomes(tmp_path_factory):
    return _outcomes(tmp_path_factory.mktemp("quick"), [name for name in CASES if name not in COMPUTING])


@pytest.fixture(scope="module")
def computing_outcomes(tmp_path_factory):
    return _outcomes(tmp_path_factory.mktemp("computing"), [name for name in CASES if name in COMPUTING])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in COMPUTING else n for n in CASES])
def test_bad_input_through_the_cli(name, request):
    folder, args, result = request.getfixturevalue("computing_outcomes" if name in COMPUTING else "quick_outcomes")[name]
    case = CASES[name]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == case.status, result.stderr
    for fragment in case.stderr:
        assert fragment in result.stderr, result.stderr
    for fragment in case.stdout:
        assert fragment in result.stdout, result.stdout
    if case.status == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"mgc {args[0]}: error: "), result.stderr
    if case.check is not None:
        case.check(folder, result)


# ---- the same defects below the CLI: the library's users and the data modules --------------------------------

@pytest.mark.parametrize("preset, level", [("origin", 0.2), ("mel", 0.0), ("pcen", 0.0)])
def test_digital_silence_gives_a_flat_image_at_the_no_sound_level(preset, level):
    config = PRESETS[preset]
    image = SpectrogramTransform(config)(torch.zeros(1, int(0.25 * config.sample_rate)))
    assert torch.allclose(image, torch.full_like(image, level), atol=1e-6)  # `mel` gave 1.0 everywhere before


def test_data_module_leaves_silent_windows_out_unless_asked(tmp_path):
    rows = []
    for recording in range(3):
        samples = noise(1.0, WIDE, seed=recording)
        if recording == 1:
            samples[: WIDE // 2] = 0.0
        write_audio(tmp_path / f"r{recording}.wav", samples, WIDE)
        rows += [[f"r{recording}.wav", 0.5 * w, 0.5, w, 0, 0, f"r{recording}", "s"] for w in range(2)]
    path = write_rows(tmp_path / "m.csv", rows)
    settings = dict(cache_root=str(tmp_path / "cache"), split_fractions=(0.34, 0.33, 0.33))
    module = ClassificationDataModule(str(path), **settings)
    with pytest.warns(UserWarning, match=r"row 3 \(line 4\) .*r1.wav 0-0.5 s: digital silence"):
        module.setup("fit")
    kept = [row for side in module.split_rows().values() for row in side]
    assert sorted((r.recording, r.start_s) for r in kept) == [("r0", 0.0), ("r0", 0.5), ("r1", 0.5), ("r2", 0.0),
                                                              ("r2", 0.5)]
    everything = ClassificationDataModule(str(path), drop_silent=False, **settings).split_rows()
    assert sum(map(len, everything.values())) == 6


@pytest.mark.slow
def test_moving_the_dataset_folder_keeps_the_cache(tmp_path):
    dataset = tmp_path / "survey"
    write_audio(dataset / "audio" / "a.wav", noise(1.0, WIDE), WIDE)
    write_rows(dataset / "m.csv", [["audio/a.wav", 0, 0.5, 0, 0, 0, "r", "s"], ["audio/a.wav", 0.5, 0.5, 1, 0, 0, "r",
                                                                                   "s"]])
    cache = ["--cache-root", str(tmp_path / "cache"), "--quiet"]
    assert "2 computed, 0 already cached" in mgc("spectrograms", str(dataset / "m.csv"), *cache, cwd=tmp_path).stdout
    moved = shutil.move(dataset, tmp_path / "elsewhere" / "survey-2025")
    result = mgc("spectrograms", str(Path(moved) / "m.csv"), *cache, cwd=tmp_path)
    assert "0 computed, 2 already cached" in result.stdout, result.stderr


def test_cache_files_follow_the_umask(tmp_path):
    write_audio(tmp_path / "a.wav", noise(0.5, WIDE), WIDE)
    path = write_rows(tmp_path / "m.csv", [["a.wav", 0, 0.5, 0, 0, 0, "r", "s"]])
    previous = os.umask(0o002)  # a group sharing the cache
    try:
        assert mgc("spectrograms", str(path), "--cache-root", "cache", "--quiet", cwd=tmp_path).returncode == 0
    finally:
        os.umask(previous)
    written = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert written and {oct(p.stat().st_mode & 0o777) for p in written} == {oct(0o664)}  # was 0o600


@pytest.mark.parametrize("make, problem", [
    (lambda p: Image.new("L", (64, 128)).save(p), "mask is 128x64, preset 'origin' images are 128x128"),
    (lambda p: Image.new("RGB", (128, 128)).save(p), "mask must be a single-channel PNG (mode L), got mode RGB"),
    (lambda p: None, "mask file not found"),
])
def test_mask_png_problems_name_the_file(make, problem, tmp_path):
    path = tmp_path / "w.mask.png"
    make(path)
    with pytest.raises((ValueError, FileNotFoundError), match="w.mask.png: " + problem.replace("(", r"\(")
                       .replace(")", r"\)")):
        read_mask_png(path, get_preset("origin"))
