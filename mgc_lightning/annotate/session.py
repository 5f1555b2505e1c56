"""One annotation session on one dataset: the queue of windows, their images and starting masks, playback audio, and
the accepted masks.

Everything written stays inside the dataset's folder (the manifest's folder):
- `masks/<preset>/<name>.png`: each accepted mask, a single-channel PNG (0 background, 255 sound), written atomically;
  the name is built from a sanitised recording id and a digest of the window, never from a path;
- `annotated-<preset>.csv`: a manifest of the accepted windows with their `mask` column filled (and the labels as
  the annotator corrected them), plus `annotator`, `annotated_at` and `version` columns. Training the segmenter on it
  with `mask_source: manifest` uses the masks as they are; reopening the session reads it back and resumes;
- `annotated-<preset>.csv.lock` and `annotated-<preset>.server.lock`: the locks of locks.py.

The record on disk is the truth: every save reads it again and writes it back under the record lock, and is refused
when the window was saved since the version its editor started from, so two tabs or two sessions never overwrite each
other's work unknowingly.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from ..audio.manifest import WindowRow, load_manifest, write_manifest
from ..audio.reading import probe, read_window, resample
from ..core.atomic import write_bytes_atomic
from ..core.labels import SOUND_TYPES
from ..frontend.cache import compute_spectrograms, spectrogram_store
from ..frontend.spectrogram import SpectrogramConfig
from ..masks.ops import candidate_mask, read_mask_png
from .locks import exclusive, inside
from .queues import sound_probabilities

PLAYBACK_RATE = 48_000  # what browsers play everywhere; time expansion happens before it
MAX_SLOWDOWN = 50
DEFAULT_SENSITIVITY = 0.7  # `mgc masks propose`'s default


def mask_file_name(row: WindowRow) -> str:
    """A file name that identifies the window and cannot leave its folder: letters, digits, '-' and '_' of the
    recording id, the start time, and a digest of the window's key (two windows never share a name)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", row.recording).strip("-")[:40] or "window"
    digest = hashlib.sha1(row.key.encode()).hexdigest()[:10]
    return f"{slug}_{int(round(row.start_s * 1000))}ms_{digest}.png"


@dataclass(frozen=True)
class Accepted:
    row: WindowRow  # labels as corrected, `mask` naming the PNG relative to the audio's folder (data.datamodules.mask_loader)
    annotator: str
    annotated_at: str
    version: int  # 1 for a window's first save, one more for each save after it


class VersionConflict(Exception):
    """A save that started from an older version than the one on disk: someone saved the window in between."""

    def __init__(self, index: int, current: Accepted | None, base_version: int):
        self.current = current
        if current is None:
            message = f"window {index + 1} has no saved version any more: you edited version {base_version}"
        else:
            message = (f"window {index + 1} was saved by {current.annotator} at {current.annotated_at} "
                       f"(version {current.version}) since you opened it: you edited version {base_version}")
        super().__init__(message)


def record_path(manifest: str | Path, config: SpectrogramConfig) -> Path:
    """Where the accepted masks of `config`'s windows of a manifest are recorded: beside the manifest."""
    return Path(manifest).resolve().parent / f"annotated-{config.name}.csv"


def accepted_keys(manifest: str | Path, config: SpectrogramConfig) -> set[str]:
    """The windows of a manifest that already have an accepted mask on this front end."""
    record = record_path(manifest, config)
    return {row.key for row in load_manifest(record, check_audio=False)} if record.is_file() else set()


class AnnotationSession:
    """The windows of one queue and what has been accepted so far; safe to call from several server threads and
    beside other sessions on the same dataset."""

    def __init__(self, manifest: str | Path, queue: Sequence[WindowRow], config: SpectrogramConfig,
                 cache_root: str | Path, annotator: str, queue_name: str = "all", segmenter=None):
        if not queue:
            raise ValueError(f"{manifest}: the {queue_name!r} queue is empty")
        if not annotator.strip():
            raise ValueError("the annotator name must not be empty")
        self.manifest = Path(manifest)
        self.folder = self.manifest.resolve().parent
        self.queue, self.config, self.cache_root = list(queue), config, Path(cache_root)
        self.annotator, self.queue_name, self.segmenter = annotator.strip(), queue_name, segmenter
        self.mask_folder = self.folder / "masks" / config.name
        self.record = record_path(manifest, config)
        self.record_lock = self.record.with_name(f"{self.record.name}.lock")
        for path in (self.mask_folder, self.record, self.record_lock):  # the server lock: locks.server_lock_path
            inside(self.folder, path)
        self._seen: tuple[tuple, dict[str, Accepted]] | None = None

    def _read_record(self) -> dict[str, Accepted]:
        if not self.record.is_file():
            return {}
        rows = load_manifest(self.record, check_audio=False)
        with open(self.record, newline="") as handle:
            extras = list(csv.DictReader(handle))
        return {row.key: Accepted(row, values.get("annotator") or "", values.get("annotated_at") or "",
                                  int(values.get("version") or 1))  # records written before versions: 1
                for row, values in zip(rows, extras)}

    def accepted(self) -> dict[str, Accepted]:
        """The record as it is on disk (parsed again only when the file changed: every save replaces it)."""
        try:
            stat = self.record.stat()
        except FileNotFoundError:
            return {}
        identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        seen = self._seen
        if seen is None or seen[0] != identity:
            seen = self._seen = (identity, self._read_record())
        return seen[1]

    def saved(self, index: int) -> Accepted | None:
        return self.accepted().get(self.row(index).key)

    # --- the queue ---------------------------------------------------------------------------------------------

    def row(self, index: int) -> WindowRow:
        if not 0 <= index < len(self.queue):
            raise IndexError(f"window {index} is not in the queue (0..{len(self.queue) - 1})")
        return self.queue[index]

    def accepted_count(self) -> int:
        accepted = self.accepted()
        return sum(1 for row in self.queue if row.key in accepted)

    def resume_index(self) -> int:
        """The first window of the queue without an accepted mask (the last one when all are done)."""
        accepted = self.accepted()
        return next((i for i, row in enumerate(self.queue) if row.key not in accepted), len(self.queue) - 1)

    # --- what the page shows -----------------------------------------------------------------------------------

    def image(self, index: int) -> np.ndarray:
        row = self.row(index)
        compute_spectrograms([row], self.config, self.cache_root, progress=False)
        return spectrogram_store(self.config, self.cache_root).load(row.key).astype(np.float32)

    def candidate(self, index: int, sensitivity: float = DEFAULT_SENSITIVITY) -> np.ndarray:
        return candidate_mask(self.image(index), sensitivity)

    def saved_mask(self, index: int) -> np.ndarray | None:
        return None if self.saved(index) is None else read_mask_png(self.mask_path(self.row(index)), self.config)

    def starting_mask(self, index: int) -> tuple[np.ndarray, str]:
        """The accepted mask if there is one, else the segmenter's prediction if one was given, else the candidate."""
        saved = self.saved_mask(index)
        if saved is not None:
            return saved, "accepted"
        if self.segmenter is not None:
            return sound_probabilities(self.segmenter, self.image(index)[None])[0] > 0.5, "predicted"
        return self.candidate(index), "candidate"

    def labels(self, index: int) -> tuple[int, int, int]:
        accepted = self.saved(index)
        return (accepted.row if accepted else self.row(index)).labels

    def playback_wav(self, index: int, slowdown: int) -> bytes:
        """The window's audio slowed down `slowdown` times (a 130 kHz click plays at 13 kHz at 10x), as 16-bit WAV
        at 48 kHz, peak-normalised: hydrophone levels are often far below full scale."""
        import soundfile as sf

        if not 1 <= slowdown <= MAX_SLOWDOWN:
            raise ValueError(f"slowdown must be 1..{MAX_SLOWDOWN}, got {slowdown}")
        row = self.row(index)
        samples = read_window(row.path, row.start_s, row.duration_s)
        samples = resample(samples, probe(row.path).sample_rate, PLAYBACK_RATE * slowdown)
        peak = float(np.abs(samples).max())
        if peak > 0:
            samples = samples * (0.9 / peak)
        buffer = io.BytesIO()
        sf.write(buffer, samples, PLAYBACK_RATE, format="WAV", subtype="PCM_16")
        return buffer.getvalue()

    # --- saving --------------------------------------------------------------------------------------------------

    def mask_path(self, row: WindowRow) -> Path:
        return inside(self.folder, self.mask_folder / mask_file_name(row))

    def accept(self, index: int, mask: np.ndarray, labels: Sequence[int], base_version: int) -> Accepted:
        """Save the mask PNG and the window's row of the record if the window's saved version is still `base_version`
        (0: never saved), else VersionConflict. Each file is written atomically: a crash leaves the previous state,
        never half a file; the record is read and written back under the record lock, keeping every other save."""
        from PIL import Image

        row = self.row(index)
        mask = np.asarray(mask)
        if mask.shape != (self.config.height, self.config.width):
            raise ValueError(f"mask is {mask.shape}, preset {self.config.name!r} images are "
                             f"{(self.config.height, self.config.width)}")
        labels = tuple(int(v) for v in labels)
        if len(labels) != len(SOUND_TYPES) or any(v not in (0, 1) for v in labels):
            raise ValueError(f"labels must be {len(SOUND_TYPES)} values of 0 or 1 ({', '.join(SOUND_TYPES)})")
        path = self.mask_path(row)
        png = io.BytesIO()
        Image.fromarray(mask.astype(bool).astype(np.uint8) * 255, mode="L").save(png, format="PNG")
        with exclusive(self.record_lock):
            accepted = self._read_record()
            current = accepted.get(row.key)
            if (current.version if current else 0) != base_version:
                raise VersionConflict(index, current, base_version)
            write_bytes_atomic(path, png.getvalue())
            corrected = replace(row, **dict(zip(SOUND_TYPES, labels)), mask=os.path.relpath(path, row.path.parent))
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            accepted[row.key] = Accepted(corrected, self.annotator, now, base_version + 1)
            done = list(accepted.values())
            write_manifest([a.row for a in done], self.record, {"annotator": [a.annotator for a in done],
                                                                "annotated_at": [a.annotated_at for a in done],
                                                                "version": [str(a.version) for a in done]})
        return accepted[row.key]
