"""Errors that the `mgc` command prints as one line and answers with exit status 2."""

from __future__ import annotations


class InputError(ValueError):
    """Input the user gave (a file, a setting) that cannot be used; the message names it and the problem."""
