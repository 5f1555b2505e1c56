"""The layout of an `mgc detect` output folder (per-file output names, CSV bytes, the journal's entries, every file's
outcome), torch-free: `mgc summarize` reads a finished folder without loading torch."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from itertools import chain
from typing import Iterable, Mapping, Sequence

JOURNAL = ".journal"


def output_name(path: Path) -> str:
    """File stem plus a short digest of the full path: recordings with one name in two folders stay apart."""
    return f"{path.stem}.{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def windows_table(out: Path, path: Path) -> Path:
    """The recording's per-window CSV."""
    return out / "windows" / f"{output_name(path)}.csv"


def raven_table(out: Path, path: Path) -> Path:
    """The recording's Raven selection table."""
    return out / "raven" / f"{output_name(path)}.selections.txt"


def csv_lines(rows: Iterable[Sequence], delimiter: str = ",") -> bytes:
    """Rows as CSV, one line each: a batch's rows, appended to a table begun by csv_bytes, read as one table."""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence], delimiter: str = ",") -> bytes:
    return csv_lines(chain([header], rows), delimiter)


def read_entry(entry_path: Path) -> dict | None:
    """One journal entry; None when it is missing or unreadable (a rerun writes it again)."""
    try:
        return json.loads(entry_path.read_text())
    except (OSError, ValueError):
        return None


def journal_entries(out: Path) -> list[dict]:
    """Every file's latest journal entry in the folder, whichever run wrote it (unreadable entries are skipped)."""
    folder = out / JOURNAL
    found = (read_entry(p) for p in sorted(folder.glob("*.json"))) if folder.is_dir() else ()
    return [entry for entry in found if entry is not None]


def folder_outcomes(out: Path, recorded: Sequence[dict], this_run: Mapping[Path, dict]) -> dict[Path, dict]:
    """Every file of every run into the folder with its latest outcome: `this_run`'s files as given, the others as
    recorded, a finished file whose per-window table is gone as failed."""
    found = {**{Path(entry["path"]): entry for entry in recorded}, **this_run}
    for path, entry in found.items():
        if entry["status"] == "done" and not windows_table(out, path).is_file():
            found[path] = {**entry, "status": "failed", "reason": "its per-window table is missing from the folder; "
                                                                  "analyse it again"}
    return dict(sorted(found.items()))
