"""The season summary of an `mgc detect` folder: per deployment, when each sound type was there (a diel plot of hour
of day against date, daily counts as a figure and a CSV, presence per hour as a CSV), the recordings without a start
time listed apart, and summary.html showing it all. Built from the per-window CSVs and the journal without the model
(its thresholds are recorded in the folder), so `mgc detect` builds it at its end and `mgc summarize` rebuilds it at
any time, e.g. with other start times, the same way."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..core.atomic import write_bytes_atomic
from ..core.errors import InputError
from ..core.labels import SOUND_TYPES
from .detection_folder import csv_bytes, folder_outcomes, journal_entries, windows_table
from .presence import DAILY_HEADER, HOURLY_HEADER, by_deployment, recording_presence
from .recording_times import RecordingTimes, TimeSettings
from .season_figures import daily_figure, diel_figure, png_bytes
from .summary_page import summary_page

SUMMARY = "summary"  # rewritten whole by each summary: one folder per deployment, undated.csv
PAGE = "summary.html"
SETTINGS = "summary_settings.json"
UNDATED_HEADER = ("file", "deployment", "reason", "windows", *SOUND_TYPES)


@dataclass(frozen=True)
class SummarySettings:
    """What the summary is built with, recorded in the folder by every run: the model's thresholds (per sound type)
    and how recordings get start times."""

    model_sha256: str
    thresholds: tuple[float, ...]
    times: TimeSettings

    def to_json(self) -> bytes:
        start_times = self.times.start_times
        return json.dumps({"model_sha256": self.model_sha256,
                           "thresholds": dict(zip(SOUND_TYPES, self.thresholds)),
                           "time_pattern": self.times.pattern,
                           "start_times": None if start_times is None else str(start_times)}, indent=2).encode()

    @classmethod
    def read(cls, out: Path, times: TimeSettings | None = None) -> SummarySettings:
        """The recorded settings, with `times` instead of the recorded time settings where given."""
        record = out / SETTINGS
        try:
            saved = json.loads(record.read_text())
            thresholds = tuple(float(saved["thresholds"][name]) for name in SOUND_TYPES)
            model, pattern, start_times = saved["model_sha256"], saved["time_pattern"], saved["start_times"]
        except FileNotFoundError:
            raise InputError(f"{out}: no {SETTINGS}, so no thresholds to count detections with: is it an mgc detect "
                             "output folder? (one made by an mgc before the season summary: run the same mgc detect "
                             "command into it again, which skips finished files and writes it)") from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(f"{record}: not a readable record of the summary's settings ({error!r}); run the same "
                             "mgc detect command into the folder again to rewrite it") from None
        if times is None:
            try:
                times = TimeSettings(pattern, start_times)
            except InputError as error:
                raise InputError(f"{record}: the recorded time settings no longer hold ({error}); give "
                                 "--start-times or --time-pattern") from None
        return cls(model, thresholds, times)


@dataclass(frozen=True)
class SeasonSummary:
    page: Path
    deployments: int
    recordings: int
    undated: int

    def line(self) -> str:
        undated = f", {self.undated} without a start time (listed there, in no plot)" if self.undated else ""
        return f"season summary of {self.recordings} recordings in {self.deployments} deployment(s){undated}: " \
               f"{self.page}"


def folder_names(deployments: Sequence[str]) -> list[str]:
    """A folder name per deployment: its name with what a file name cannot hold replaced, numbered where two would
    meet."""
    names: list[str] = []
    for deployment in deployments:
        base = re.sub(r"[^\w.-]+", "_", deployment).strip("._") or "deployment"
        name, number = base, 1
        while name in names:
            number += 1
            name = f"{base}-{number}"
        names.append(name)
    return names


def write_season_summary(out: Path, entries: Sequence[dict], failed: int, settings: SummarySettings) -> SeasonSummary:
    """The summary of the analysed recordings (`entries`: their journal entries); `failed`: how many files of the
    folder could not be analysed."""
    times = RecordingTimes(settings.times)
    recordings = [recording_presence(Path(entry["path"]), windows_table(out, Path(entry["path"])),
                                     times.of(Path(entry["path"])), entry["audio_s"], settings.thresholds)
                  for entry in sorted(entries, key=lambda e: e["path"])]
    deployments = by_deployment(recordings)
    undated = [r for r in recordings if r.time.start is None]
    folders = [out / SUMMARY / name for name in folder_names([d.name for d in deployments])]
    written = {}
    for deployment, folder in zip(deployments, folders):
        hourly, daily = deployment.hourly_rows(), deployment.daily_rows()
        written[folder / "presence_hourly.csv"] = csv_bytes(HOURLY_HEADER, hourly)
        written[folder / "daily_detections.csv"] = csv_bytes(DAILY_HEADER, daily)
        if hourly:  # else every window lacked usable signal
            written[folder / "diel.png"] = png_bytes(diel_figure(f"{deployment.name}: detections by hour of day",
                                                                 hourly))
            written[folder / "daily.png"] = png_bytes(daily_figure(f"{deployment.name}: detections per day", daily))
    undated_table = out / SUMMARY / "undated.csv"
    written[undated_table] = csv_bytes(UNDATED_HEADER, [[str(r.path), r.time.deployment, r.time.problem,
                                                         r.total.windows, *r.total.positives] for r in undated])
    for path, payload in written.items():
        write_bytes_atomic(path, payload, durable=False)  # made again from the folder at will
    _remove_other_files(out / SUMMARY, set(written))
    page = summary_page(out, list(zip(deployments, folders)), undated, undated_table, settings.thresholds,
                        settings.times.describe(), settings.model_sha256, failed)
    write_bytes_atomic(out / PAGE, page.encode(), durable=False)
    return SeasonSummary(out / PAGE, len(deployments), len(recordings), len(undated))


def _remove_other_files(folder: Path, kept: set[Path]) -> None:
    """What an earlier summary wrote and this one did not (a deployment that is no more), and the folders it leaves
    empty."""
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file() and path not in kept:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def summarize(out: str | Path, times: TimeSettings | None = None) -> SeasonSummary:
    """`mgc summarize`: the summary of a finished `mgc detect` folder, with the time settings recorded there unless
    `times` replaces them (and is recorded in turn)."""
    out = Path(out)
    if not out.is_dir():
        raise InputError(f"{out}: no such folder (give the --out folder of mgc detect)")
    settings = SummarySettings.read(out, times)
    if times is not None:
        write_bytes_atomic(out / SETTINGS, settings.to_json())
    outcomes = folder_outcomes(out, journal_entries(out), {})
    done = [entry for entry in outcomes.values() if entry["status"] == "done"]
    return write_season_summary(out, done, len(outcomes) - len(done), settings)
