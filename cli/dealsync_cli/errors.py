"""Errors the command line reports in one line."""

from __future__ import annotations


class CommandError(Exception):
    """A failure to report without a traceback, with an exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status
