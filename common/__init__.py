"""Small pieces every lifelean package shares: user-facing errors, atomic file IO, typed TOML config.

This package sits below `curriculum → memory → provers → agent` and imports none of them.
"""
from common.atomic import append_jsonl, atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from common.errors import DataError, InputError, LifeleanError, WorkspaceBusy, WorkspaceError

__all__ = [
    "DataError",
    "InputError",
    "LifeleanError",
    "WorkspaceBusy",
    "WorkspaceError",
    "append_jsonl",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "read_json",
]
