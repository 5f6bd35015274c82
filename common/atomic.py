"""Crash-safe file writes: write to a temporary file in the same directory, fsync, then rename.

A reader (or a process killed half-way) sees either the old file or the new one, never a mix.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from common.errors import WorkspaceError


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data` atomically (temp file + fsync + rename + fsync of the directory)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(target.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented UTF-8 JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike[str], what: str = "file") -> Any:
    """Read a JSON file we wrote; a corrupted one is a :class:`WorkspaceError` naming it."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkspaceError(f"{p}: {what} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WorkspaceError(
            f"{p}: {what} is corrupted ({exc}); restore it from a backup or move it away to start this part afresh"
        ) from None


def append_jsonl(path: str | os.PathLike[str], record: Any) -> None:
    """Append one JSON line with a single write + fsync.

    One `write` of one line means a crash leaves at most a truncated last line, which
    :func:`iter_jsonl_tolerant` skips; earlier lines are never touched.
    """
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # A previous crash may have left a partial line without newline: start on a fresh line.
        size = os.fstat(fd).st_size
        if size:
            with open(p, "rb") as reader:
                reader.seek(size - 1)
                if reader.read(1) != b"\n":
                    line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def iter_jsonl_tolerant(path: str | os.PathLike[str]) -> list[Any]:
    """Read a JSONL log written by :func:`append_jsonl`, skipping a line torn by a crash."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for raw in p.read_bytes().splitlines():
        if not raw.strip():
            continue
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return out
