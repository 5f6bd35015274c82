"""Errors a user can fix. The CLI prints their message as one line on stderr and exits 2.

Anything else that escapes is a bug in lifelean and keeps its traceback.
"""
from __future__ import annotations


class LifeleanError(Exception):
    """A failure caused by input or environment, explained in one line."""

    exit_code = 2


class InputError(LifeleanError):
    """A command-line argument, config key or file the user gave is wrong."""


class DataError(InputError):
    """A dataset file is malformed: the message names the file, the record and the field."""

    def __init__(self, path: object, message: str, record: int | None = None, field: str | None = None):
        where = str(path)
        if record is not None:
            where += f": record {record}"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")


class WorkspaceError(LifeleanError):
    """The workspace on disk is missing, corrupted or from an incompatible version."""


class WorkspaceBusy(WorkspaceError):
    """Another lifelean process holds the workspace lock."""
