"""`mgc detect`: a bundle run over recordings of any length, through Lightning's `Trainer.predict`.

Audio is read in blocks of `batch_size` windows (never a whole file), and each block's rows are appended to the
file's partial table as they are predicted (partial_tables.py), so memory stays flat whatever the recording's length.
Files are sharded over processes by rank (each file exactly once), and every file's results are written by the
process that read it: at its last batch its table and Raven selections are moved into place whole, then a journal
entry is written. A rerun skips files whose journal entry matches the fingerprint of the model, the parameters and
the file (size, modification time), and goes on with a half-done file from its last finished batch, so a killed run
resumes and ends with the same bytes.
The summaries (errors.csv, the season summary of `season_summary`) are rebuilt from the journal of every file in
the output folder, so runs into one folder (day 1, then day 2) add up to what one run over all their files gives.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import heapq
import json
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import lightning as L
import numpy as np
import soundfile as sf
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..audio.reading import AudioError, check_band, probe, resample, signal_problem, window_starts
from ..core.atomic import write_bytes_atomic, write_chunks_atomic
from ..core.errors import InputError
from ..core.labels import JOINT_CLASS_NAMES, SOUND_TYPES
from ..core.sharding import Shard
from ..core.stopping import StopAtBatchEnd
from ..models.precision import device_defaults
from .audio_progress import AudioHoursBar
from .bundle import Bundle, TypeCalibration, load_bundle
from .detection_folder import (
    JOURNAL, csv_bytes, csv_lines, folder_outcomes, journal_entries, output_name, raven_table, read_entry,
    windows_table,
)
from .inference import BundlePipeline
from .partial_tables import PartialTables
from .recording_times import TimeSettings
from .season_summary import SETTINGS as SUMMARY_SETTINGS, SeasonSummary, SummarySettings, write_season_summary

AUDIO_SUFFIXES = (".wav", ".flac")
FORMATS = ("csv", "raven", "presence")
RAVEN_HEADER = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
                "Annotation", "Probability")


@contextlib.contextmanager
def lightning_quiet() -> Iterator[None]:
    """Lightning's start-up lines (which accelerators exist, a tip) tell a user of `mgc detect` nothing about the
    recordings: they stay off the terminal; its warnings still show."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@dataclass(frozen=True)
class DetectSettings:
    """What changes the results: part of every file's fingerprint."""

    hop_s: float | None = None  # None: the bundle's window length (no overlap)
    channel: int | None = None
    batch_size: int = 16
    formats: tuple[str, ...] = FORMATS

    def __post_init__(self) -> None:
        if self.hop_s is not None and self.hop_s <= 0:
            raise InputError(f"--hop must be positive, got {self.hop_s}")
        if self.batch_size <= 0:
            raise InputError(f"--batch-size must be positive, got {self.batch_size}")
        if self.channel is not None and self.channel < 0:
            raise InputError(f"--channel must be >= 0 (0 is the first channel), got {self.channel}")
        unknown = set(self.formats) - set(FORMATS)
        if unknown:
            raise InputError(f"--format: unknown {sorted(unknown)}; choose from {','.join(FORMATS)}")


def collect_audio(paths: Sequence[str | Path]) -> list[Path]:
    """Audio files named directly, inside folders (recursively) or listed in a text file (one path a line, relative
    to the list's folder); sorted, each once."""
    found: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            found += [p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
        elif given.is_file() and given.suffix.lower() in AUDIO_SUFFIXES:
            found.append(given)
        elif given.is_file():
            try:
                lines = [line.strip() for line in given.read_text().splitlines()]
            except UnicodeDecodeError:
                raise InputError(f"{given}: neither WAV/FLAC audio nor a text list of audio files (one path a line)") \
                    from None
            listed = [Path(line) if Path(line).is_absolute() else given.parent / line
                      for line in lines if line and not line.startswith("#")]
            found += listed  # missing or bad listed files are reported per file, the run goes on
        else:
            raise InputError(f"{given}: no such file or folder")
    unique = sorted({p.resolve() for p in found})
    if not unique:
        raise InputError(f"no WAV or FLAC files in {', '.join(map(str, paths))}")
    return unique


class Journal:
    """One small JSON entry per file under <out>/.journal, written last, after the file's outputs. An entry keeps the
    file's earlier outcomes (`history`), so a file that failed and then succeeded shows both. Every entry of a folder
    belongs to one model and one set of settings (the run key): the folder's summaries are rebuilt from all of them."""

    def __init__(self, out: Path, model_hash: str, settings: DetectSettings, columns: Sequence[str]):
        self.out, self.folder = out, out / JOURNAL
        # the outputs' layout is part of the key: a folder begun with other columns is not mixed with this run
        results = {k: v for k, v in asdict(settings).items() if k != "batch_size"}  # a batch size changes no result
        self.run = json.loads(json.dumps({"model_sha256": model_hash, **results, "columns": list(columns)}))
        self.run_key = hashlib.sha256(json.dumps(self.run, sort_keys=True).encode()).hexdigest()

    def fingerprint(self, path: Path) -> str:
        try:
            stat = path.stat()
            identity = [self.run_key, str(path), stat.st_size, stat.st_mtime_ns]
        except OSError:
            identity = [self.run_key, str(path), None, None]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()

    def _entry_path(self, path: Path) -> Path:
        return self.folder / f"{hashlib.sha1(str(path).encode()).hexdigest()[:20]}.json"

    def entries(self) -> list[dict]:
        """Every file's latest entry in the folder, whichever run wrote it."""
        return journal_entries(self.out)

    def check_one_run(self) -> None:
        """Refuse a folder whose detections were made with another model or other settings: its summaries would mix
        scores and thresholds that mean different things."""
        other = [entry for entry in self.entries() if entry.get("run_key") != self.run_key]
        if not other:
            return
        earlier = other[0].get("run")
        differ = ["by an earlier mgc that did not record them"] if earlier is None else [
            f"{key} {earlier.get(key)!r} there, {value!r} now" for key, value in self.run.items()
            if earlier.get(key) != value]
        raise InputError(f"{self.out}: holds detections of {len(other)} file(s) made with another model or other "
                         f"settings ({'; '.join(differ)}); one folder's summaries need one model and one set of "
                         "settings: pass another --out, or the same model and options")

    def entry(self, path: Path) -> dict | None:
        """The file's entry if it belongs to this model, these settings and the file as it is now."""
        entry = read_entry(self._entry_path(path))
        return entry if entry is not None and entry.get("fingerprint") == self.fingerprint(path) else None

    def is_done(self, path: Path) -> bool:
        entry = self.entry(path)
        return entry is not None and entry["status"] == "done"

    def record(self, path: Path, status: str, reason: str = "", seconds: float = 0.0, process: int = 0,
               unusable: int = 0, resumed_s: float = 0.0) -> None:
        """`resumed_s`: where in the file this run began (0 unless an earlier run had analysed its start)."""
        earlier = read_entry(self._entry_path(path))
        history = [] if earlier is None else [*earlier.get("history", []), {
            key: earlier.get(key) for key in ("status", "reason", "recorded_at", "fingerprint")}]
        entry = {"path": str(path), "fingerprint": self.fingerprint(path), "status": status, "reason": reason,
                 "audio_s": seconds, "process": process, "unusable_windows": unusable, "resumed_from_s": resumed_s,
                 "run_key": self.run_key, "run": self.run,
                 "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "history": history}
        write_bytes_atomic(self._entry_path(path), json.dumps(entry, sort_keys=True).encode())


class RecordingWindows(IterableDataset):
    """Batches of windows of this process's share of the files, read block by block.

    Items: {"file": index, "start_s": (B,), "waves": (B, samples), "first_window": int, "last": bool, ...} or
    {"file": index, "error": reason}.
    Each window is cut exactly as `audio.read_window` cuts it (same rounding, mono mix or channel, resampling per
    window), so the images equal those of the spectrogram cache. `resume(path, windows)` says how many of a file's
    windows an earlier run finished (a whole number of batches): its batches begin after them.
    """

    def __init__(self, files: Sequence[Path], bundle: Bundle, settings: DetectSettings,
                 resume: Callable[[Path, int], int] | None = None):
        self.files, self.bundle, self.settings, self.resume = list(files), bundle, settings, resume
        self.process: Shard | None = None  # this process's place, fixed when the dataset is sent to a worker

    def __getstate__(self) -> dict:
        """A copy for a DataLoader worker started by spawn or forkserver (no DDP state there) keeps the place of
        the process that started it."""
        return {**self.__dict__, "process": self.process or Shard.of_this_process()}

    def shard(self) -> list[int]:
        """This process's files, dealt again among its DataLoader workers (each file read by one worker whole)."""
        mine = (self.process or Shard.of_this_process()).take(range(len(self.files)))
        worker = get_worker_info()
        return mine if worker is None else mine[worker.id :: worker.num_workers]

    def __iter__(self) -> Iterator[dict]:
        for index in self.shard():
            try:
                yield from self._file(index)
            except AudioError as error:
                yield {"file": index, "error": error.problem}
            except (OSError, RuntimeError, ValueError) as error:
                yield {"file": index, "error": f"unreadable or corrupt audio ({error})"}

    def _file(self, index: int) -> Iterator[dict]:
        path, config, settings = self.files[index], self.bundle.front_end, self.settings
        info = probe(path)
        check_band(info, config.fmax)
        channel = settings.channel
        if channel is not None and channel >= info.channels:
            raise AudioError(path, f"channel {channel} requested but the file has {info.channels} channel(s)")
        window_s = self.bundle.window_s
        starts = window_starts(info.duration_s, window_s, settings.hop_s or window_s)
        if not starts:
            raise AudioError(path, f"shorter ({info.duration_s:g} s) than one window ({window_s:g} s)")
        rate, count = info.sample_rate, int(round(window_s * info.sample_rate))
        with sf.SoundFile(str(path)) as handle:
            kept = self.resume(path, len(starts)) if self.resume else 0
            for first in range(kept, len(starts), settings.batch_size):
                batch = starts[first : first + settings.batch_size]
                windows, problems = read_windows(handle, path, [int(round(s * rate)) for s in batch], count, channel)
                for start, window in zip(batch, windows):
                    if not np.isfinite(window).all():
                        raise AudioError(path, f"NaN or infinite sample in the window at {start:g} s")
                if rate != config.sample_rate:
                    windows = [resample(w, rate, config.sample_rate) for w in windows]
                length = min(len(w) for w in windows)  # resampling can differ by one sample between windows
                yield {"file": index, "start_s": torch.tensor(batch, dtype=torch.float64),
                       "waves": torch.from_numpy(np.stack([w[:length] for w in windows])), "problems": problems,
                       "first_window": first, "last": first + settings.batch_size >= len(starts),
                       "duration_s": info.duration_s}


@dataclass(frozen=True)
class KeptWindows:
    """How many of a file's windows an earlier run finished, as its partial table says (a picklable callable: what
    a DataLoader worker asks before it reads the file)."""

    partials: PartialTables
    journal: Journal
    batch_size: int

    def __call__(self, path: Path, windows: int) -> int:
        return self.partials.finished(output_name(path), self.journal.fingerprint(path), windows, self.batch_size)


def read_windows(handle: sf.SoundFile, path: Path, offsets: Sequence[int], count: int,
                 channel: int | None) -> tuple[list[np.ndarray], list[str]]:
    """Mono (or one channel's) windows of `count` samples at sample `offsets`, and why each holds no usable signal
    ('' when it does; `audio.signal_problem`): one block read, or one read per window when the block would be more
    than twice the windows' samples (a hop much longer than the window: memory then stays at the windows' size)."""
    spans = [(offsets[0], offsets[-1] + count)]
    if offsets[-1] - offsets[0] > count * len(offsets):
        spans = [(o, o + count) for o in offsets]
    windows, problems = [], []
    for begin, end in spans:
        handle.seek(begin)
        block = handle.read(end - begin, dtype="float32", always_2d=True)
        if block.shape[0] != end - begin:
            raise AudioError(path, f"truncated audio: read {block.shape[0]} samples at "
                                   f"{begin / handle.samplerate:g} s")
        channels = block[:, [channel]] if channel is not None else block
        samples = channels.mean(axis=1)
        for o in (o - begin for o in offsets if begin <= o and o + count <= end):
            windows.append(samples[o : o + count])
            problems.append(signal_problem(channels[o : o + count], windows[-1]) or "")
    return windows, problems


class DetectionModule(L.LightningModule):
    """predict_step: a batch of windows -> calibrated per-type and joint probabilities and mask bands (and each sound
    type's mask extent, with a typed segmenter)."""

    def __init__(self, bundle: Bundle):
        super().__init__()
        self.pipeline = BundlePipeline(bundle)

    def predict_step(self, batch: dict, batch_index: int = 0) -> dict:
        if "error" in batch:
            return batch
        logits, probability = self.pipeline.logits(batch["waves"])
        types, joint = self.pipeline.calibrated(logits.float())
        typed = {"extents": self.pipeline.type_extents(probability)} if self.pipeline.bundle.typed_masks else {}
        return {**{k: v for k, v in batch.items() if k != "waves"}, "types": types.cpu(), "joint": joint.cpu(),
                "bands": self.pipeline.mask_bands(probability, len(types)), **typed}


def window_rows(path: Path, window_s: float, part: dict) -> list[list]:
    """Rows of the per-window CSV for one predicted batch. A window without usable signal (a recorder dropout,
    cancelling channels) gets no probabilities, only the reason: the model's output there would mean nothing, and no
    total counts it. With a typed segmenter (`extents` in the batch), each row ends with every sound type's mask band
    and time extent (TYPED_COLUMNS; empty where its mask is)."""
    rows = []
    extents = part.get("extents")
    for index, (start, types, joint, band, problem) in enumerate(zip(
            part["start_s"].tolist(), part["types"].tolist(), part["joint"].tolist(), part["bands"],
            part["problems"])):
        times = [str(path), f"{start:.6f}", f"{start + window_s:.6f}"]
        typed = [] if extents is None else _extent_cells(start, extents[index], without_signal=bool(problem))
        if problem:
            rows.append([*times, *[""] * (len(WINDOW_HEADER) - 4), problem, *typed])
            continue
        best = int(np.argmax(joint))
        rows.append([*times, *(f"{p:.6f}" for p in types), JOINT_CLASS_NAMES[best], f"{joint[best]:.6f}",
                     "" if band is None else f"{band[0]:.1f}", "" if band is None else f"{band[1]:.1f}", "", *typed])
    return rows


def _extent_cells(start: float, extents: Sequence[tuple[float, float, float, float] | None],
                  without_signal: bool) -> list:
    """A window's TYPED_COLUMNS cells: per sound type low and high Hz, begin and end s in the file."""
    return [cell for extent in extents for cell in (
        [""] * 4 if extent is None or without_signal else
        [f"{extent[0]:.1f}", f"{extent[1]:.1f}", f"{start + extent[2]:.6f}", f"{start + extent[3]:.6f}"])]


WINDOW_HEADER = ("file", "start_s", "end_s", *(f"p_{t}" for t in SOUND_TYPES), "joint_class", "joint_probability",
                 "mask_low_hz", "mask_high_hz", "signal_problem")
# With a typed segmenter, after WINDOW_HEADER: each sound type's own mask band and time extent in the window.
TYPED_COLUMNS = tuple(f"{t}_{c}" for t in SOUND_TYPES for c in ("low_hz", "high_hz", "begin_s", "end_s"))
_LOW, _HIGH, _PROBLEM = (WINDOW_HEADER.index(c) for c in ("mask_low_hz", "mask_high_hz", "signal_problem"))


def window_header(typed: bool) -> tuple[str, ...]:
    """The per-window table's columns: a bundle with a typed segmenter adds TYPED_COLUMNS at the end, so every
    reader of the untyped columns reads both."""
    return WINDOW_HEADER + TYPED_COLUMNS if typed else WINDOW_HEADER


def table_rows(table: Path) -> Iterator[list[str]]:
    """The rows of a per-window CSV, read one at a time."""
    with open(table, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        yield from reader


def _is_typed(table: Path) -> bool:
    with open(table, newline="") as handle:
        return tuple(next(csv.reader(handle))) == window_header(typed=True)


def selections(table: Path, thresholds: Sequence[float], band: tuple[float, float]) -> Iterator[list]:
    """Raven selections of a per-window table: per sound type, runs of overlapping or touching positive windows
    merged into one box, numbered by begin time, then sound type. A table of a typed segmenter bounds each box by its
    type's own masks in the box's windows (their rows and columns); else the box spans the run of windows and the
    rows the masks of its windows cover, every type's at once. The whole band and the run's time stand where no mask
    says otherwise. Each type's boxes come from a pass of their own over the table, merged as they come: no list of
    windows or boxes is held, whatever the recording's length."""
    typed = _is_typed(table)
    boxes = heapq.merge(*(_boxes(table_rows(table), t, threshold, typed) for t, threshold in enumerate(thresholds)))
    for number, (begin, t, end, p, low, high) in enumerate(boxes, start=1):
        low, high = band if low == math.inf else (low, high)
        yield [number, "Spectrogram 1", 1, f"{begin:.6f}", f"{end:.6f}", f"{low:.1f}", f"{high:.1f}", SOUND_TYPES[t],
               f"{p:.6f}"]


def _boxes(rows: Iterable[list[str]], t: int, threshold: float, typed: bool) -> Iterator[tuple]:
    """Sound type t's boxes in time order: (begin, t, end, highest probability, low, high), low and high infinite
    when no window of the box has a mask band (of type t's own mask when `typed`: then its columns also bound the
    box's begin and end, within the run of windows)."""
    first = len(WINDOW_HEADER) + 4 * t  # type t's TYPED_COLUMNS
    run = box = None  # run: (start, end) of the windows merged so far; box: what is reported of them
    for row in rows:
        if row[_PROBLEM] or float(row[3 + t]) < threshold:
            continue
        start, end, p = float(row[1]), float(row[2]), float(row[3 + t])
        low_cell, high_cell = (row[first], row[first + 1]) if typed else (row[_LOW], row[_HIGH])
        low, high = (float(low_cell), float(high_cell)) if low_cell else (math.inf, -math.inf)
        drawn = (float(row[first + 2]), float(row[first + 3])) if typed and low_cell else (math.inf, -math.inf)
        if run is not None and start <= run[1] + 1e-9:
            run, box = (run[0], end), (min(box[0], drawn[0]), t, max(box[2], drawn[1]), max(box[3], p),
                                       min(box[4], low), max(box[5], high))
            continue
        if box is not None:
            yield _within(box, run)
        run, box = (start, end), (drawn[0], t, drawn[1], p, low, high)
    if box is not None:
        yield _within(box, run)


def _within(box: tuple, run: tuple[float, float]) -> tuple:
    """A box whose masks said nothing of its time spans its run of windows."""
    return box if box[0] != math.inf else (run[0], *box[1:2], run[1], *box[3:])


class DetectionWriter(BasePredictionWriter):
    """Appends each batch's rows to its file's partial table as they are predicted; at the file's last batch writes
    its Raven selections from the finished table, moves the table into place, then writes the journal entry."""

    def __init__(self, files: Sequence[Path], out: Path, bundle: Bundle, settings: DetectSettings, journal: Journal,
                 partials: PartialTables, seconds: Sequence[float] | None):
        super().__init__(write_interval="batch")
        self.files, self.out, self.bundle, self.settings, self.journal = list(files), out, bundle, settings, journal
        self.partials = partials
        self.seconds = seconds  # each file's length, for the progress bar (None: no bar)
        self.began: dict[int, float] = {}  # where this run began each file it has started (s)
        self.bar: AudioHoursBar | None = None

    def on_predict_start(self, trainer, pl_module) -> None:
        if self.seconds is not None and trainer.is_global_zero:
            # each process sees only its own files: the bar follows the main process's share
            mine = Shard(trainer.global_rank, trainer.world_size).take(range(len(self.files)))
            self.bar = AudioHoursBar({i: self.seconds[i] for i in mine})

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_index,
                           dataloader_idx) -> None:
        index = prediction["file"]
        path = self.files[index]
        if "error" in prediction:
            self.began.pop(index, None)
            self.partials.discard(output_name(path))
            self.journal.record(path, "failed", prediction["error"], process=trainer.global_rank)
            if self.bar is not None:
                self.bar.drop(index)
            return
        starts = prediction["start_s"].tolist()
        if index not in self.began:  # the file's first batch of this run: its table goes on after the rows kept
            self.began[index] = starts[0]
            self.partials.open(output_name(path), self.journal.fingerprint(path), prediction["first_window"])
        self.partials.append(output_name(path), csv_lines(window_rows(path, self.bundle.window_s, prediction)))
        if self.bar is not None:
            self.bar.advance(index, self.began[index], starts[-1] + self.settings.hop_s, prediction["last"])
        if prediction["last"]:
            self._write_file(path, prediction["duration_s"], self.began.pop(index), trainer.global_rank)

    def _write_file(self, path: Path, duration_s: float, began_s: float, process: int) -> None:
        name = output_name(path)
        table = self.partials.complete(name)
        if "raven" in self.settings.formats:
            band = (self.bundle.front_end.fmin, self.bundle.front_end.fmax)
            raven = chain([RAVEN_HEADER], selections(table, self.bundle.thresholds, band))
            write_chunks_atomic(raven_table(self.out, path),
                                (csv_lines([row], "\t") for row in raven))
        unusable = sum(1 for row in table_rows(table) if row[_PROBLEM])
        self.partials.publish(table, windows_table(self.out, path))
        self.journal.record(path, "done", seconds=duration_s, process=process, unusable=unusable, resumed_s=began_s)

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
        trainer.strategy.barrier()  # every process has written its files before rank 0 sums up
        if trainer.is_global_zero:
            self.partials.tidy()


def audio_seconds(path: Path) -> float:
    """A recording's length from its header; 0 for one that cannot be read (the run reports it as failed)."""
    try:
        return probe(path).duration_s
    except AudioError:
        return 0.0


@dataclass
class DetectSummary:
    files: int
    done: int
    skipped: int  # finished by an earlier run
    failed: int
    audio_hours: float
    seconds: float
    out: Path
    unusable_windows: int = 0  # no usable signal: no probabilities, the reason in the signal_problem column
    folder_files: int = 0  # files of every run into the folder, which its summaries cover
    folder_failed: int = 0
    calibration: dict[str, TypeCalibration] = field(default_factory=dict)  # per sound type, from the bundle
    season: SeasonSummary | None = None  # None when --format leaves out presence

    def line(self) -> str:
        """The run in one line, then how each sound type's threshold was set and where the season summary is."""
        speed = self.audio_hours * 3600 / self.seconds if self.seconds > 0 else 0.0
        failures = f" (reasons in {self.out / 'errors.csv'})" if self.failed else ""
        unusable = (f"; {self.unusable_windows} windows without usable signal (dropouts or cancelling channels: "
                    "see the signal_problem column)" if self.unusable_windows else "")
        earlier = (f"; the folder's summaries cover {self.folder_files} files of every run into it "
                   f"({self.folder_failed} failed)" if self.folder_files > self.files else "")
        types = "; ".join(f"{name} {chosen.describe()}" for name, chosen in self.calibration.items())
        return (f"{self.files} files: {self.done} analysed, {self.skipped} already done, {self.failed} failed"
                f"{failures}; {self.audio_hours:.3f} h of audio in {self.seconds:.1f} s ({speed:.1f}x real time)"
                f"{unusable}; results in {self.out}{earlier}" + (f"\nsound types: {types}" if types else "")
                + (f"\n{self.season.line()}" if self.season else ""))


def detect(paths: Sequence[str | Path], model: str | Path, out: str | Path, settings: DetectSettings,
           devices: int = 1, accelerator: str = "cpu", num_nodes: int = 1, progress: bool = True,
           times: TimeSettings = TimeSettings(), workers: int = 0) -> DetectSummary | None:
    """Run the bundle over every file; returns the summary on the main process (None on the others). `workers`
    processes per process decode the audio (each a file at a time) while the models run: what keeps a GPU fed."""
    if workers < 0:
        raise InputError(f"--workers must be >= 0, got {workers}")
    files = collect_audio(paths)  # a wrong path fails at once, before the model is read
    bundle, model_hash = load_bundle(model)
    settings = replace(settings, hop_s=settings.hop_s or bundle.window_s)
    out = Path(out)
    header = window_header(bundle.typed_masks)
    journal = Journal(out, model_hash, settings, header)
    journal.check_one_run()
    pending = [path for path in files
               if not journal.is_done(path) or not windows_table(out, path).is_file()]
    began = time.perf_counter()
    if pending:
        partials = PartialTables(out / ".partial", csv_bytes(header, []))
        writer = DetectionWriter(pending, out, bundle, settings, journal, partials,
                                 [audio_seconds(path) for path in pending] if progress else None)
        # on a GPU the classifier runs as `mgc test` runs it there (bf16 autocast), so their probabilities agree
        precision = "32-true" if accelerator == "cpu" else device_defaults().get("precision", "32-true")
        with lightning_quiet():
            trainer = L.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, precision=precision,
                                strategy="ddp" if devices * num_nodes > 1 else "auto",
                                logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, use_distributed_sampler=False,
                                callbacks=[writer, StopAtBatchEnd()])  # after the writer: a written batch, then a stop

        resume = KeptWindows(partials, journal, settings.batch_size)
        loader = DataLoader(RecordingWindows(pending, bundle, settings, resume), batch_size=None, num_workers=workers,
                            pin_memory=accelerator != "cpu" and torch.cuda.is_available())
        with warnings.catch_warnings():  # items are whole batches of one file: there are no sampler indices to track
            warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
            trainer.predict(DetectionModule(bundle), dataloaders=loader, return_predictions=False)
        if not trainer.is_global_zero:
            return None
    return finish(files, pending, out, bundle, journal, settings, time.perf_counter() - began, times)


def finish(files: Sequence[Path], pending: Sequence[Path], out: Path, bundle: Bundle, journal: Journal,
           settings: DetectSettings, seconds: float, times: TimeSettings) -> DetectSummary:
    """errors.csv and the season summary over every file of every run into the folder, from the journal and the
    per-window CSVs: a second run into a folder adds to them. This run's files count as the journal holds them now
    (no entry: the run stopped before the file), earlier runs' files as they were recorded."""
    stopped = {"status": "failed", "reason": "not analysed (the run stopped before this file)"}
    entries = folder_outcomes(out, journal.entries(), {path: journal.entry(path) or stopped for path in files})
    failed = [[str(p), e["reason"]] for p, e in entries.items() if e["status"] != "done"]
    write_bytes_atomic(out / "errors.csv", csv_bytes(("file", "reason"), failed))
    # recorded whatever the formats: `mgc summarize` counts detections with these thresholds, without the model
    summary_settings = SummarySettings(journal.run["model_sha256"], tuple(bundle.thresholds), times)
    write_bytes_atomic(out / SUMMARY_SETTINGS, summary_settings.to_json())
    season = None
    if "presence" in settings.formats:
        season = write_season_summary(out, [e for e in entries.values() if e["status"] == "done"], len(failed),
                                      summary_settings)
    analysed = [p for p in pending if entries[p]["status"] == "done"]
    hours = sum(entries[p]["audio_s"] for p in analysed) / 3600
    run_done = sum(1 for p in files if entries[p]["status"] == "done")
    return DetectSummary(files=len(files), done=len(analysed), skipped=run_done - len(analysed),
                         failed=len(files) - run_done, audio_hours=hours, seconds=seconds, out=out,
                         unusable_windows=sum(entries[p].get("unusable_windows", 0) for p in analysed),
                         folder_files=len(entries), folder_failed=len(failed),
                         calibration=bundle.type_calibrations(), season=season)
