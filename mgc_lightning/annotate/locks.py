"""Who may write a dataset's annotations: one server per dataset and preset (a lock file that names it), and one
read-modify-write of the record at a time, whichever process or thread does it.

Both are `flock` locks, which the system drops when their holder exits or dies: a lock file left by a killed server is
taken over by the next one, whatever it names. `mgc annotate` takes the server lock before it builds its queue, so a
second server or a read-only folder is refused at once."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..frontend.config import SpectrogramConfig


def inside(folder: Path, path: Path) -> Path:
    """`path` resolved, or ValueError when it lies outside `folder` (symbolic links followed)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise ValueError(f"{path}: refusing to write outside the dataset folder {folder}")
    return resolved


def server_lock_path(manifest: str | Path, config: SpectrogramConfig) -> Path:
    """The lock of the one server annotating a manifest's dataset with `config`: beside the manifest, as the record
    (ValueError when a link there points outside the dataset folder: the lock is written before anything else)."""
    folder = Path(manifest).resolve().parent
    path = folder / f"annotated-{config.name}.server.lock"
    inside(folder, path)
    return path


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold `path` (created if missing) for the block, waiting while another holds it."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on {holder['host']}, {holder['address']}, annotator {holder['annotator']}"
    except (ValueError, TypeError, KeyError):
        return "a server that has not yet said who it is"


@contextmanager
def held_by_this_server(path: Path, address: str, annotator: str) -> Iterator[None]:
    """Hold `path` for the block and write into it who holds it (this process's pid and host, the page's `address`,
    the `annotator`); RuntimeError naming the live server that holds it already, or saying why the folder cannot
    take it."""
    try:
        handle = open(path, "a+")
    except OSError as error:
        raise RuntimeError(f"cannot write in {path.parent} ({error.strerror}): mgc annotate saves the masks and "
                           "the record there; ask for write access or annotate a copy") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise RuntimeError(f"another mgc annotate ({describe_holder(handle.read())}) is annotating this dataset "
                               f"with this preset (it holds {path}): use its page, or stop it first") from None
        handle.truncate(0)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "address": address, "annotator": annotator}
        handle.write(json.dumps(holder))
        handle.flush()
        yield
