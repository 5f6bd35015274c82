"""Saving an imported repository inside a workspace: zstd-compressed JSON, written atomically.

Reading it back validates it like any input (the file may have been damaged or edited): anything wrong is
one :class:`WorkspaceError` line naming the file and, where there is one, the record and field.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import zstandard

from common.atomic import atomic_write_bytes
from common.errors import DataError, WorkspaceError
from curriculum.lean_data import MAX_FILE_BYTES, Repository

# Decompressed size of one repository file. The shared sample's largest pseudo-repository (Mathlib/Data)
# is about 0.2 MB of JSON and all 28 together about 1.4 MB; a whole benchmark fits in the same limit as
# an input file.
MAX_REPOSITORY_BYTES = MAX_FILE_BYTES

_AGAIN = "delete it and run `lifelean add` on its source again"


def save_repository(repo: Repository, path: Path) -> None:
    raw = json.dumps(repo.to_json(), ensure_ascii=False).encode("utf-8")
    atomic_write_bytes(path, zstandard.ZstdCompressor(level=10).compress(raw))


def _decompress(data: bytes, path: Path) -> bytes:
    limit = MAX_REPOSITORY_BYTES
    size = zstandard.frame_content_size(data)  # ZstdError when it is not a zstd frame
    if size > limit:
        raise WorkspaceError(f"{path}: imported repository data is too large to be real ({size:,} bytes "
                             f"declared, at most {limit:,}); {_AGAIN}")
    if size >= 0:
        return zstandard.ZstdDecompressor().decompress(data)
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:  # size not declared
        out = reader.read(limit + 1)
    if len(out) > limit:
        raise WorkspaceError(f"{path}: imported repository data is too large to be real (more than "
                             f"{limit:,} bytes); {_AGAIN}")
    return out


def load_repository(path: Path) -> Repository:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_REPOSITORY_BYTES:
            raise WorkspaceError(f"{path}: imported repository data is too large to be real; {_AGAIN}")
        raw = _decompress(path.read_bytes(), path)
        obj = json.loads(raw.decode("utf-8"))
        return Repository.from_json(obj, source=str(path))
    except FileNotFoundError:
        raise WorkspaceError(f"{path}: imported repository data is missing; run `lifelean add` on its source again") from None
    except DataError as exc:
        raise WorkspaceError(f"{exc} (imported repository data is corrupted; {_AGAIN})") from None
    except (zstandard.ZstdError, ValueError, UnicodeDecodeError, RecursionError, OSError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0][:200] or type(exc).__name__
        raise WorkspaceError(f"{path}: imported repository data is corrupted ({reason}); {_AGAIN}") from None
