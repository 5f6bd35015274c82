"""On-disk format of the memory bank: append-only segments of checksummed records, and their codecs.

A record is a 16-byte header (magic, type, payload length, CRC-32 of the payload) and a payload. A *block*
holds items written together: ids, reservoir keys, int8 codes with one scale per vector, and the item texts
as one zstd frame (items of one proof share most of their text, so compressing them together pays). A
*tombstone* lists ids that were evicted or forgotten. The manifest (`index.json`, written atomically)
records how many bytes of each segment are committed; bytes after that are a torn or uncommitted tail.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard

from common.errors import WorkspaceError

MAGIC = b"LLBK"
HEADER = struct.Struct("<4sB3xII")  # magic, record type, payload length, crc32(payload)
BLOCK_HEAD = struct.Struct("<IHBx")  # items, dim, quantization code
BLOCK, TOMBSTONE = 1, 2
QUANT_INT8, QUANT_INT4 = 1, 2
QUANT_CODES = {"int8": QUANT_INT8, "int4": QUANT_INT4}
ZSTD_LEVEL = 19


@dataclass
class Block:
    ids: np.ndarray       # int64 (n,)
    keys: np.ndarray      # float32 (n,) reservoir priorities
    scales: np.ndarray    # float32 (n,)
    raw_lens: np.ndarray  # uint32 (n,) uncompressed JSON length of each item (for per-item byte shares)
    codes: np.ndarray     # int8 (n, dim)
    texts: list[dict]     # item dicts
    nbytes: int = 0       # whole record on disk
    quant: int = QUANT_INT8
    dim: int = 0          # vector dimension (int4 packs two codes per byte)

    def item_bytes(self) -> np.ndarray:
        """Bytes on disk attributed to each item: its vector and fixed fields, plus a share of the shared parts."""
        n, width = self.codes.shape
        shared = self.nbytes - n * (width + 20)
        share = self.raw_lens / max(1, int(self.raw_lens.sum()))
        return (width + 20) + shared * share


def quantize_int8(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-vector int8 scalar quantization: v ≈ scale · code, scale = max|v| / 127."""
    vectors = np.asarray(vectors, dtype=np.float32)
    scales = np.abs(vectors).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    codes = np.clip(np.rint(vectors / scales[:, None]), -127, 127).astype(np.int8)
    return codes, scales.astype(np.float32)


def dequantize_int8(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return codes.astype(np.float32) * scales[:, None]


def quantize_int4(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-bit symmetric per-vector quantization (levels -7..7, scale = max|v| / 7), two codes per byte."""
    vectors = np.asarray(vectors, dtype=np.float32)
    scales = np.abs(vectors).max(axis=1) / 7.0
    scales[scales == 0] = 1.0
    q = (np.clip(np.rint(vectors / scales[:, None]), -7, 7).astype(np.int16) + 8).astype(np.uint8)
    if q.shape[1] % 2:
        q = np.pad(q, ((0, 0), (0, 1)), constant_values=8)
    return (q[:, 0::2] | (q[:, 1::2] << 4)).view(np.int8), scales.astype(np.float32)


def dequantize_int4(packed: np.ndarray, scales: np.ndarray, dim: int) -> np.ndarray:
    b = packed.view(np.uint8)
    q = np.empty((b.shape[0], b.shape[1] * 2), dtype=np.float32)
    q[:, 0::2] = (b & 0x0F).astype(np.float32) - 8
    q[:, 1::2] = (b >> 4).astype(np.float32) - 8
    return q[:, :dim] * scales[:, None]


def dequantize(block: "Block") -> np.ndarray:
    if block.quant == QUANT_INT4:
        return dequantize_int4(block.codes, block.scales, block.dim)
    return dequantize_int8(block.codes, block.scales)


def encode_block(ids: np.ndarray, keys: np.ndarray, vectors: np.ndarray, texts: list[dict],
                 quantization: str = "int8") -> tuple[bytes, Block]:
    quant = QUANT_CODES[quantization]
    dim = vectors.shape[1]
    codes, scales = quantize_int4(vectors) if quant == QUANT_INT4 else quantize_int8(vectors)
    raws = [json.dumps(t, ensure_ascii=False, separators=(",", ":")).encode("utf-8") for t in texts]
    raw_lens = np.asarray([len(r) for r in raws], dtype=np.uint32)
    text = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(b"[" + b",".join(raws) + b"]")
    n = codes.shape[0]
    payload = b"".join([
        BLOCK_HEAD.pack(n, dim, quant),
        np.asarray(ids, dtype=np.int64).tobytes(), np.asarray(keys, dtype=np.float32).tobytes(),
        scales.tobytes(), raw_lens.tobytes(), codes.tobytes(), text,
    ])
    record = _record(BLOCK, payload)
    block = Block(np.asarray(ids, dtype=np.int64), np.asarray(keys, dtype=np.float32), scales, raw_lens, codes,
                  texts, len(record), quant, dim)
    return record, block


def encode_tombstone(ids: list[int]) -> bytes:
    return _record(TOMBSTONE, np.asarray(ids, dtype=np.int64).tobytes())


def _record(kind: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, kind, len(payload), zlib.crc32(payload)) + payload


def _decode_block(payload: bytes, size: int) -> Block:
    n, dim, quant = BLOCK_HEAD.unpack_from(payload, 0)
    if quant not in (QUANT_INT8, QUANT_INT4):
        raise ValueError(f"unknown quantization code {quant}")
    width = dim if quant == QUANT_INT8 else (dim + 1) // 2
    off = BLOCK_HEAD.size

    def take(dtype, count):
        nonlocal off
        arr = np.frombuffer(payload, dtype=dtype, count=count, offset=off)
        off += arr.nbytes
        return arr

    ids, keys, scales, raw_lens = take(np.int64, n), take(np.float32, n), take(np.float32, n), take(np.uint32, n)
    codes = take(np.int8, n * width).reshape(n, width)
    texts = json.loads(zstandard.ZstdDecompressor().decompress(payload[off:]))
    if len(texts) != n:
        raise ValueError(f"block holds {n} vectors but {len(texts)} texts")
    return Block(ids, keys, scales, raw_lens, codes, texts, size, quant, dim)


def read_segment(path: Path, committed: int) -> list[tuple[int, Block | np.ndarray]]:
    """Records of the first `committed` bytes of a segment as `(type, Block | tombstone ids)`.

    Anything wrong inside the committed part is corruption: a :class:`WorkspaceError` naming the file.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(committed)
    except FileNotFoundError:
        raise WorkspaceError(f"{path}: memory bank segment is missing; {_REPAIR}") from None
    out: list[tuple[int, Block | np.ndarray]] = []
    pos = 0
    while pos < committed:
        try:
            if len(data) < pos + HEADER.size:
                raise ValueError("truncated header")
            magic, kind, length, crc = HEADER.unpack_from(data, pos)
            if magic != MAGIC:
                raise ValueError("bad record marker")
            payload = data[pos + HEADER.size: pos + HEADER.size + length]
            if len(payload) != length or zlib.crc32(payload) != crc:
                raise ValueError("checksum mismatch")
            if kind == BLOCK:
                out.append((BLOCK, _decode_block(payload, HEADER.size + length)))
            elif kind == TOMBSTONE:
                out.append((TOMBSTONE, np.frombuffer(payload, dtype=np.int64)))
            else:
                raise ValueError(f"unknown record type {kind}")
        except (ValueError, struct.error, zstandard.ZstdError, json.JSONDecodeError) as exc:
            raise WorkspaceError(f"{path}: memory bank segment is corrupted at byte {pos} ({exc}); {_REPAIR}") from None
        pos += HEADER.size + length
    return out


_REPAIR = ("move the bank/ folder of the workspace away to start the bank afresh "
           "(traced proofs re-enter it on the next `lifelean add` of their repository)")
