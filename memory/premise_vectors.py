"""One repository's premises and their stored vectors in a plain NumPy file beside the premise store, for bulk reads.

Training and evaluation rank against every live premise, so a process that starts a learn step (a `resume`, a
run's first step) first needs the name, text, file and stored vector of every premise of the stream. It used to
parse every imported repository (theorems and traces included) and ask chroma for the vectors row by row; at 100k
premises that was most of what a learn step redone in a fresh process paid beyond the same step at 10k (design
notes 21 and 25). `lifelean add` therefore also writes each repository's premise table, with the vectors as the
store holds them, to one `.npz` file, and a reader takes the corpus from there.

The file is a cache, never the truth: it names the encoder version and the SHA-256 of the imported repository file
it was made from, and a file that does not match (another encoder, a re-import, a crash between the store's write
and the file's) is ignored, so the repository and the store answer instead. Written atomically (common.atomic), so
a reader never sees half a file; loaded without pickle.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard

from common.atomic import atomic_write_bytes

SCHEMA = 1


@dataclass(frozen=True)
class PremiseTable:
    """A repository's distinct premises (a name's first occurrence, as the store keeps them) and their vectors."""

    ids: list[str]
    names: list[str]
    texts: list[str]
    paths: list[str]
    vectors: np.ndarray


def source_digest(path: Path) -> str:
    """SHA-256 of an imported repository's file: the vectors belong to exactly that import."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_table(path: Path, table: PremiseTable, encoder: str, source: str) -> None:
    """Replace `path` with `table` atomically."""
    rows = json.dumps({"ids": table.ids, "names": table.names, "texts": table.texts, "paths": table.paths},
                      ensure_ascii=False).encode("utf-8")
    buffer = io.BytesIO()
    np.savez(buffer, vectors=np.asarray(table.vectors, dtype=np.float32), encoder=np.asarray(encoder),
             source=np.asarray(source), schema=np.asarray(SCHEMA),
             rows=np.frombuffer(zstandard.ZstdCompressor(level=3).compress(rows), dtype=np.uint8))
    atomic_write_bytes(path, buffer.getvalue())


def read_table(path: Path, encoder: str, source: str) -> PremiseTable | None:
    """The table in `path` when it was written for this encoder and this import; None otherwise (missing, stale or
    unreadable: the caller reads the repository and the store)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["schema"]) != SCHEMA or str(data["encoder"]) != encoder or str(data["source"]) != source:
                return None
            vectors = data["vectors"]
            rows = json.loads(zstandard.ZstdDecompressor().decompress(data["rows"].tobytes()))
        table = PremiseTable(rows["ids"], rows["names"], rows["texts"], rows["paths"], vectors)
    except (OSError, KeyError, ValueError, TypeError, zstandard.ZstdError):
        return None
    n = len(table.ids)
    if vectors.ndim != 2 or len(vectors) != n or not len(table.names) == len(table.texts) == len(table.paths) == n:
        return None
    return table
