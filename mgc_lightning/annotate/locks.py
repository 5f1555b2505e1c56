"""One read-modify-write of a dataset's annotation record at a time, whichever process or thread does it: a `flock`
lock, which the system drops when its holder exits or dies."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold `path` (created if missing) for the block, waiting while another holds it."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
