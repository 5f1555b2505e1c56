"""A recording's per-window table while `mgc detect` analyses it: grown batch by batch in
<out>/.partial/<name>/<fingerprint>.csv, each batch's rows flushed as they are predicted, then moved into place whole.

Nothing of a recording is held in memory, so memory does not grow with its length, and a run killed in the middle
of a long file leaves the rows of the batches it finished. The next run with the same fingerprint (model, settings,
the file's size and modification time) keeps those rows and goes on from the batch after them; a partial table of
another fingerprint is deleted. A resumed file is cut into the same batches as an uninterrupted run, so its table
ends with the same bytes.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
from pathlib import Path
from typing import BinaryIO


class PartialTables:
    """The tables in progress under one folder, each opened for appending by `open`."""

    def __init__(self, folder: Path, header: bytes):
        self.folder, self.header = folder, header
        self.fields = len(next(csv.reader([header.decode()])))
        self.handles: dict[str, BinaryIO] = {}

    def __getstate__(self) -> dict:
        """A copy sent to another process (a DataLoader worker that asks `finished`) holds no open table."""
        return {**self.__dict__, "handles": {}}

    def finished(self, name: str, fingerprint: str, windows: int, batch_size: int) -> int:
        """How many of the recording's first `windows` an earlier run finished: its complete rows up to the last
        whole batch, never the recording's last batch (which completes the table). Only reads: the process that
        decodes the audio asks, the one that writes the rows `open`s."""
        table = self.folder / name / f"{fingerprint}.csv"
        last_batch = (windows - 1) // batch_size * batch_size
        return self._finished(table, last_batch, batch_size)[0] if table.is_file() else 0

    def open(self, name: str, fingerprint: str, kept: int) -> None:
        """Open the recording's table for appending after its first `kept` rows (what `finished` said, a whole
        number of batches), cutting whatever follows them; other fingerprints' tables of the recording are
        deleted."""
        table = self.folder / name / f"{fingerprint}.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        for other in table.parent.iterdir():
            if other != table:
                other.unlink()
        length = self._finished(table, kept, 1)[1] if kept else 0
        if length:
            os.truncate(table, length)
            self.handles[name] = open(table, "ab")
        else:
            self.handles[name] = open(table, "wb")
            self.append(name, self.header)

    def _finished(self, table: Path, limit: int, batch_size: int) -> tuple[int, int]:
        """Rows and bytes (header included) of the table's longest start of complete rows that ends on a batch
        boundary, at most `limit` rows; (0, 0) when even its header is incomplete. A row is complete when its line
        ends and holds every column: a kill can cut the last one anywhere."""
        with open(table, "rb") as handle:
            if handle.readline() != self.header:
                return 0, 0
            rows, length, kept = 0, len(self.header), (0, len(self.header))
            for line in handle:
                if rows == limit or not self._complete(line):
                    break
                rows, length = rows + 1, length + len(line)
                if rows % batch_size == 0:
                    kept = (rows, length)
        return kept

    def _complete(self, line: bytes) -> bool:
        if not line.endswith(b"\n"):
            return False
        try:
            return len(next(csv.reader([line.decode()]))) == self.fields
        except (UnicodeDecodeError, csv.Error):
            return False

    def append(self, name: str, rows: bytes) -> None:
        """Rows of one batch, flushed: a kill after this call keeps them."""
        handle = self.handles[name]
        handle.write(rows)
        handle.flush()

    def complete(self, name: str) -> Path:
        """The recording's whole table, synced to disk and closed, still in the partial folder."""
        handle = self.handles.pop(name)
        with handle:
            os.fsync(handle.fileno())
        return Path(handle.name)

    def publish(self, table: Path, target: Path) -> None:
        """Move a completed table into place (one rename: the target is whole or absent) and drop its folder."""
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(table, target)
        shutil.rmtree(table.parent, ignore_errors=True)

    def discard(self, name: str) -> None:
        """A recording that failed part-way: its rows are not results."""
        handle = self.handles.pop(name, None)
        if handle is not None:
            handle.close()
        shutil.rmtree(self.folder / name, ignore_errors=True)

    def tidy(self) -> None:
        """Remove the folder when no table is left in progress (a killed run's stay there for the next run)."""
        with contextlib.suppress(OSError):
            self.folder.rmdir()
