"""Interruptions: SIGINT (Ctrl-C) and SIGTERM (`kill`, a scheduler's time limit) end an `mgc` command with the
shell's status for the signal, 130 and 143, never 0, so that a script or a scheduler does not take the command's
work for done.

Outside a Lightning loop the signal stops the command at once (every stage writes its files atomically and resumes).
While a loop runs (see stopping.StopAtBatchEnd) a first signal is only recorded, and the loop stops at the end of its
batch, so that what is logged and checkpointed stays whole; a second signal stops at once. Standard library only:
the CLI installs the handlers before anything heavy is imported."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """Raised in the main thread for SIGINT or SIGTERM: a BaseException, as KeyboardInterrupt is, so that no
    `except Exception` on the way takes it for an error."""

    def __init__(self, signum: int):
        self.signal = signal.Signals(signum)
        super().__init__(f"interrupted by {self.signal.name}")


class _State:
    received: signal.Signals | None = None
    deferring = False
    earlier: dict = {}  # the handlers before handled(), while it holds


_state = _State()


def exit_status(signum: signal.Signals) -> int:
    """The shell's convention: 128 + the signal number."""
    return 128 + int(signum)


def received() -> signal.Signals | None:
    """The signal that interrupted the current command, if one did."""
    return _state.received


def _handle(signum: int, frame) -> None:
    first = _state.received is None
    _state.received = signal.Signals(signum)
    if not (_state.deferring and first):
        raise Interrupted(signum)


def _restore() -> None:
    for signum, handler in _state.earlier.items():
        signal.signal(signum, handler)
    _state.earlier = {}


def _in_forked_worker() -> None:
    """A forked worker (DataLoader, process pool) ignores SIGINT, which a terminal's Ctrl-C sends to every process of
    the command, so that the command's own process stops it; SIGTERM ends it as before."""
    if _state.earlier:
        _restore()
        signal.signal(signal.SIGINT, signal.SIG_IGN)


os.register_at_fork(after_in_child=_in_forked_worker)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise Interrupted; the earlier handlers come back after it, so a command
    run inside another program (a test) leaves that program's handlers as they were. Outside the main thread,
    where Python cannot set handlers, signals keep their usual effect."""
    _state.received, _state.deferring = None, False
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        _state.earlier = {signum: signal.getsignal(signum) for signum in SIGNALS}
        for signum in SIGNALS:
            signal.signal(signum, _handle)
    try:
        yield
    finally:
        _state.received, _state.deferring = None, False
        if main_thread:
            _restore()


def defer(deferring: bool) -> None:
    """Start (True) or stop (False) only recording a first signal, for raise_if_received to act on it."""
    _state.deferring = deferring


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within the block a first signal is only recorded, and raised at its end: for a write that must not stop half
    way (an MLflow store's transaction: stopped inside it, SQLite stays locked for the run's closing write)."""
    outer = _state.deferring
    _state.deferring = True
    try:
        yield
    finally:
        _state.deferring = outer
    if not outer:
        raise_if_received()


def raise_if_received() -> None:
    """Where stopping is clean (a batch's end): raise Interrupted if a signal came."""
    if _state.received is not None:
        raise Interrupted(_state.received)
