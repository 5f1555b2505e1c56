"""Atomic file writes: a temporary file in the target folder renamed into place, so a killed run never leaves half
a file; the file gets the permissions any new file of the process gets (its umask), so a group can share caches."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | Path, payload: bytes, durable: bool = True) -> None:
    """durable=False skips the fsync: a killed process still leaves the whole file or none (the rename is atomic);
    only an operating-system crash could leave it truncated. For files that can be made again, where an fsync per
    small file costs more than making it."""
    write_chunks_atomic(path, [payload], durable)


def write_chunks_atomic(path: str | Path, chunks: Iterable[bytes], durable: bool = True) -> None:
    """write_bytes_atomic for content produced piece by piece: a table of any length is never held whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            for chunk in chunks:
                handle.write(chunk)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~_umask())  # NamedTemporaryFile creates 0600 whatever the umask
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
