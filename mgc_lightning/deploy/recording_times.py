"""When and where each recording was made: its start time from the recorder's file name, a user's name pattern or a
CSV of start times, and its deployment (the recording's folder, or that CSV's column). A recording whose start time
cannot be read is left undated with the reason, never guessed: the season summary lists it and keeps it out of the
diel plot."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..core.errors import InputError, missing_file

# strptime-style directives a name pattern may use, each a fixed number of digits; %y is 2000 + the two digits
DIGITS = {"Y": 4, "y": 2, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2}
REQUIRED = (("Y", "y"), ("m",), ("d",), ("H",))

# The recorders' own names, tried in this order; the first found in a file's name decides. SoundTrap (ST300 included:
# its host software names files as the ST400/ST500 manuals describe) writes the serial number, a dot and the start as
# YYMMDDHHMMSS; AudioMoth and Wildlife Acoustics' SM recorders YYYYMMDD_HHMMSS (SM with GPS: YYYYMMDD$HHMMSS).
RECORDER_PATTERNS = (
    ("SoundTrap serial.YYMMDDHHMMSS", ".%y%m%d%H%M%S"),
    ("AudioMoth/SM YYYYMMDD_HHMMSS", "%Y%m%d_%H%M%S"),
    ("SM with GPS YYYYMMDD$HHMMSS", "%Y%m%d$%H%M%S"),
    ("ISO 8601", "%Y%m%dT%H%M%S"),
    ("ISO 8601", "%Y-%m-%dT%H-%M-%S"),
    ("ISO 8601", "%Y-%m-%dT%H:%M:%S"),
    ("YYYYMMDD-HHMMSS", "%Y%m%d-%H%M%S"),
    ("YYYYMMDDHHMMSS", "%Y%m%d%H%M%S"),
)
START_TIMES_COLUMNS = ("path", "start_time")


class NamePattern:
    """A strptime-style pattern (%Y %y %m %d %H %M %S; %% is a percent sign, anything else itself) found anywhere in a
    file name, never inside a longer run of digits."""

    def __init__(self, text: str, label: str = ""):
        self.text, self.label = text, label or f"--time-pattern {text}"
        pieces, seen, index = [], [], 0
        first_is_digits = last_is_digits = False
        while index < len(text):
            char, directive = text[index], text[index + 1 : index + 2]
            index += 1 if char != "%" else 2
            last_is_digits = char == "%" and directive in DIGITS
            first_is_digits = first_is_digits or (last_is_digits and len(pieces) == 0)
            if char != "%":
                pieces.append(re.escape(char))
            elif directive == "%":
                pieces.append("%")
            elif directive in DIGITS:
                if directive in seen:
                    raise InputError(f"time pattern {text!r}: %{directive} appears twice")
                seen.append(directive)
                pieces.append(f"(?P<{directive}>\\d{{{DIGITS[directive]}}})")
            else:
                raise InputError(f"time pattern {text!r}: {'%' + directive if directive else 'a % at the end'} is "
                                 "not supported; use %Y or %y, %m, %d, %H, %M, %S (%% for a percent sign)")
        missing = [" or ".join(f"%{d}" for d in options) for options in REQUIRED if not set(options) & set(seen)]
        if missing:
            raise InputError(f"time pattern {text!r} lacks {', '.join(missing)}: a start time needs the date and hour")
        # never inside a longer run of digits: the 14 digits 20240131235959 hold no %y%m%d%H%M%S
        self.regex = re.compile(("(?<!\\d)" if first_is_digits else "") + "".join(pieces)
                                + ("(?!\\d)" if last_is_digits else ""))

    def start(self, name: str) -> tuple[datetime | None, str] | None:
        """(start, '') where the pattern is in the name, (None, why) where it is but is no real date (month 13, ...),
        None where it is not."""
        found = self.regex.search(name)
        if found is None:
            return None
        values = {key: int(value) for key, value in found.groupdict().items()}
        year = values["Y"] if "Y" in values else 2000 + values["y"]
        try:
            return datetime(year, values["m"], values["d"], values["H"], values.get("M", 0), values.get("S", 0)), ""
        except ValueError as error:
            return None, f"{found.group(0).lstrip('.')!r} in the name ({self.label}) is no date: {error}"


@dataclass(frozen=True)
class TimeSettings:
    """How recordings get start times and deployments: the options of `mgc detect` and `mgc summarize`."""

    pattern: str | None = None  # strptime-style, searched in file names instead of the recorders' own names
    start_times: Path | None = None  # CSV: path, start_time (ISO 8601) and optionally deployment, per recording

    def __post_init__(self) -> None:
        if self.pattern is not None:
            NamePattern(self.pattern)  # a bad pattern fails here, before any audio is read
        if self.start_times is not None:
            object.__setattr__(self, "start_times", Path(self.start_times).resolve())
            if not self.start_times.is_file():
                raise InputError(f"--start-times {self.start_times}: {missing_file(self.start_times, 'CSV file')}")
            read_start_times(self.start_times)  # a bad row fails here, before any audio is read

    def describe(self) -> str:
        names = f"time pattern {self.pattern}" if self.pattern else "the recorders' file names"
        return f"{self.start_times.name}, else {names}" if self.start_times else names


@dataclass(frozen=True)
class RecordingTime:
    """A recording's deployment and start (None: undated, `problem` says why)."""

    deployment: str
    start: datetime | None
    problem: str = ""


@dataclass(frozen=True)
class StartTimesRow:
    start: datetime | None
    deployment: str
    row: int


class RecordingTimes:
    """Start time and deployment of each recording under one set of settings."""

    def __init__(self, settings: TimeSettings):
        self.settings = settings
        self.patterns = ([NamePattern(settings.pattern)] if settings.pattern else
                         [NamePattern(text, label) for label, text in RECORDER_PATTERNS])
        self.listed = read_start_times(settings.start_times) if settings.start_times else {}

    def of(self, path: Path) -> RecordingTime:
        listed = self.listed.get(path.resolve())
        folder = path.parent.name or str(path.parent)
        if listed is not None:
            deployment = listed.deployment or folder
            if listed.start is None:
                return RecordingTime(deployment, None, f"no start_time in {self.settings.start_times.name} "
                                                       f"(row {listed.row})")
            return RecordingTime(deployment, listed.start)
        for pattern in self.patterns:
            found = pattern.start(path.stem)
            if found is not None:
                return RecordingTime(folder, found[0], found[1])
        wanted = f"the pattern {self.settings.pattern}" if self.settings.pattern else "a recorder's date and time"
        return RecordingTime(folder, None, f"no start time in the name ({wanted} not found)")


def read_start_times(table: Path) -> dict[Path, StartTimesRow]:
    """path -> start time (naive, in the clock it is written in; a time with an offset is converted to UTC) and
    deployment, from a CSV; paths relative to the CSV's folder. A cell that is no date and time is an error, an empty
    one leaves its recording undated."""
    try:
        with open(table, newline="") as handle:
            rows = list(csv.DictReader(handle))
            columns = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{table}: not a readable CSV of start times ({error})") from None
    absent = [c for c in START_TIMES_COLUMNS if c not in columns]
    if absent:
        raise InputError(f"{table}: no column {', '.join(absent)} (a start-times CSV has columns path, start_time and "
                         "optionally deployment)")
    listed: dict[Path, StartTimesRow] = {}
    for number, row in enumerate(rows, start=1):
        where = f"{table}: row {number} (line {number + 1})"
        given = Path(row["path"].strip())
        path = (given if given.is_absolute() else table.parent / given).resolve()
        if path in listed:
            raise InputError(f"{where}: {given} is listed twice (first in row {listed[path].row})")
        text = (row["start_time"] or "").strip()
        try:
            start = datetime.fromisoformat(text) if text else None
        except ValueError:
            raise InputError(f"{where}: start_time {text!r} is no date and time; write ISO 8601, e.g. "
                             "2024-01-31T23:59:59") from None
        if start is not None and start.tzinfo is not None:
            start = start.astimezone(timezone.utc).replace(tzinfo=None)
        listed[path] = StartTimesRow(start, (row.get("deployment") or "").strip(), number)
    return listed
