"""Saving an imported repository inside a workspace: zstd-compressed JSON, written atomically."""
from __future__ import annotations

import json
from pathlib import Path

import zstandard

from common.atomic import atomic_write_bytes
from common.errors import WorkspaceError
from curriculum.lean_data import Repository


def save_repository(repo: Repository, path: Path) -> None:
    raw = json.dumps(repo.to_json(), ensure_ascii=False).encode("utf-8")
    atomic_write_bytes(path, zstandard.ZstdCompressor(level=10).compress(raw))


def load_repository(path: Path) -> Repository:
    try:
        raw = zstandard.ZstdDecompressor().decompress(Path(path).read_bytes())
        return Repository.from_json(json.loads(raw), source=str(path))
    except FileNotFoundError:
        raise WorkspaceError(f"{path}: imported repository data is missing; run `lifelean add` on its source again") from None
    except (zstandard.ZstdError, json.JSONDecodeError, KeyError, UnicodeDecodeError) as exc:
        raise WorkspaceError(f"{path}: imported repository data is corrupted ({exc}); "
                             "delete it and run `lifelean add` on its source again") from None
