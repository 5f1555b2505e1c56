"""The one exception type for a user's mistake (a bad path, file, config or checkpoint): the CLI prints its message
as one line and exits with status 2, never a traceback. And the words for a file that is not there."""

from pathlib import Path


class InputError(ValueError):
    """A problem with what the user gave; the message names the file (and row) and says what to do."""


def missing_file(path: Path, what: str = "file") -> str:
    """Why `path` cannot be read as a file, for messages: a folder given where a file is expected says so."""
    return f"is a folder, not a {what}" if path.is_dir() else f"{what} not found"
