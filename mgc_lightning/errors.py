"""The one exception type for a user's mistake (a bad path, file, config or checkpoint): the CLI prints its message
as one line and exits with status 2, never a traceback."""


class InputError(ValueError):
    """A problem with what the user gave; the message names the file (and row) and says what to do."""
