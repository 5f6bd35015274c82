"""On-disk format of the memory bank: append-only segments of checksummed records, and their codecs.

A record is a 16-byte header (magic, type, payload length, CRC-32 of the payload) and a payload. A *block*
holds items written together: ids, reservoir keys, one vector code per distinct proof state (a proof and its
first step share a state; so do many steps), and the item texts as one zstd frame (items of one proof share
most of their text, so compressing them together pays). A BLOCK3 block also holds a small uncompressed index
of its items (repository, kind, whether it names premises, content digest), so that opening a bank reads
what matching, sampling, eviction and de-duplication need without decompressing a single text: the text
frame is decoded the first time one of its items is asked for. Vector codes are int8/int4 scalar codes with one
scale per vector, or the codes of a trained faiss codec (:class:`FaissCodec`: product quantization or a
per-dimension scalar quantizer). A *tombstone* lists ids that were evicted or forgotten. The manifest (`index.json`, written atomically)
records how many bytes of each segment are committed; bytes after that are a torn or uncommitted tail.
"""
from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard

from common.errors import WorkspaceError

MAGIC = b"LLBK"
HEADER = struct.Struct("<4sB3xII")  # magic, record type, payload length, crc32(payload)
BLOCK_HEAD = struct.Struct("<IHBx")  # items, dim, quantization code
BLOCK2_HEAD = struct.Struct("<IIHBx")  # items, distinct vectors, dim, quantization code
BLOCK3_HEAD = struct.Struct("<IIHBxI")  # items, distinct vectors, dim, quantization code, index bytes
BLOCK, TOMBSTONE, BLOCK2, BLOCK3 = 1, 2, 3, 4  # BLOCK and BLOCK2 (no item index) are still read; new: BLOCK3
FLAG_STEP, FLAG_PREMISES = 1, 2       # per-item flags of a BLOCK3 index
DIGEST_BYTES = 20                      # sha1
QUANT_INT8, QUANT_INT4, QUANT_PQ, QUANT_SQ6 = 1, 2, 3, 4
QUANT_CODES = {"int8": QUANT_INT8, "int4": QUANT_INT4, "pq": QUANT_PQ, "sq6": QUANT_SQ6}
# faiss index_factory strings of the trained codecs. PQ192x8: 2-dimensional sub-vectors, 256 centroids each
# (Jégou, Douze & Schmid, "Product quantization for nearest neighbor search", TPAMI 2011); SQ6: 6 bits per
# dimension between per-dimension trained bounds. `bench/memory.py` measures both (and OPQ, Ge et al. 2013,
# which did not pay on MiniLM vectors: its 384x384 rotation costs more than it gains at these sizes).
FAISS_FACTORY = {"pq": "PQ192x8", "sq6": "SQ6"}
FAISS_QUANT = {QUANT_PQ: "pq", QUANT_SQ6: "sq6"}
ZSTD_LEVEL = 19


ITEM_FIXED = 18  # bytes of an item's id, key, raw length and vector index


class FaissCodec:
    """A trained faiss vector codec (`sa_encode`/`sa_decode`), stored once in the bank and never re-trained.

    Training is deterministic: the caller passes the training vectors in a content-defined order (sorted by
    state hash), faiss k-means uses its fixed seed, and training runs on one thread.
    """

    def __init__(self, name: str, index):
        self.name = name
        self.index = index
        self.code_size = int(index.sa_code_size())

    @classmethod
    def train(cls, name: str, vectors: np.ndarray) -> "FaissCodec":
        import faiss

        index = faiss.index_factory(int(vectors.shape[1]), FAISS_FACTORY[name], faiss.METRIC_INNER_PRODUCT)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            index.train(np.ascontiguousarray(vectors, dtype=np.float32))
        finally:
            faiss.omp_set_num_threads(threads)
        return cls(name, index)

    def to_bytes(self) -> bytes:
        import faiss

        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> "FaissCodec":
        import faiss

        return cls(name, faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8)))

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        return self.index.sa_encode(np.ascontiguousarray(vectors, dtype=np.float32)).view(np.int8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self.index.sa_decode(np.ascontiguousarray(codes).view(np.uint8))


def content_digest(kind: str, repo: str, theorem: str, state: str, tactic: str, proof: list[str]) -> bytes:
    """The content identity of a bank item (the same step or proof is stored once): sha1 of its key fields."""
    key = json.dumps([kind, repo, theorem, state, tactic, list(proof)])
    return hashlib.sha1(key.encode("utf-8")).digest()


def _text_digest(t: dict) -> bytes:
    return content_digest(t["kind"], t["repo"], t["theorem"], t["state"], t["tactic"], t.get("proof", ()))


@dataclass
class BlockIndex:
    """What a bank needs of every item without its text: repository, flags (FLAG_*) and content digest."""

    repos: list[str]      # the block's repository names
    repo: np.ndarray      # uint16 (n,) item -> index into `repos`
    flags: np.ndarray     # uint8 (n,)
    digests: bytes        # DIGEST_BYTES per item

    @classmethod
    def of_texts(cls, texts: list[dict]) -> "BlockIndex":
        names = sorted({t["repo"] for t in texts})
        code = {r: j for j, r in enumerate(names)}
        repo = np.asarray([code[t["repo"]] for t in texts], dtype=np.uint16)
        flags = np.asarray([(FLAG_STEP if t["kind"] == "step" else 0) | (FLAG_PREMISES if t.get("premises") else 0)
                            for t in texts], dtype=np.uint8)
        return cls(names, repo, flags, b"".join(_text_digest(t) for t in texts))

    def to_bytes(self) -> bytes:
        return (self.repo.tobytes() + self.flags.tobytes() + self.digests
                + json.dumps(self.repos, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))

    @classmethod
    def from_bytes(cls, data: bytes, n: int) -> "BlockIndex":
        fixed = n * (2 + 1 + DIGEST_BYTES)
        if len(data) < fixed:
            raise ValueError("item index is truncated")
        repo = np.frombuffer(data, dtype=np.uint16, count=n)
        flags = np.frombuffer(data, dtype=np.uint8, count=n, offset=2 * n)
        repos = json.loads(data[fixed:].decode("utf-8"))
        if not isinstance(repos, list) or not all(isinstance(r, str) for r in repos):
            raise ValueError("item index names no repositories")
        if n and int(repo.max()) >= len(repos):
            raise ValueError("item index repository out of range")
        return cls(repos, repo, flags, bytes(data[3 * n: fixed]))

    def digest(self, row: int) -> bytes:
        return self.digests[row * DIGEST_BYTES: (row + 1) * DIGEST_BYTES]


@dataclass
class Block:
    ids: np.ndarray       # int64 (n,)
    keys: np.ndarray      # float32 (n,) reservoir priorities
    scales: np.ndarray    # float32 (u,) (empty for faiss codes)
    raw_lens: np.ndarray  # uint32 (n,) uncompressed JSON length of each item (for per-item byte shares)
    codes: np.ndarray     # int8 (u, width): one code per distinct state
    texts: list[dict] | None  # item dicts (None until :meth:`item_texts` decodes `frame`)
    nbytes: int = 0       # whole record on disk
    quant: int = QUANT_INT8
    dim: int = 0          # vector dimension (int4 packs two codes per byte)
    vec_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint16))  # (n,) item -> code row
    index: BlockIndex | None = None  # per-item repository, flags, digest
    frame: bytes | None = None       # the zstd text frame while `texts` is not decoded
    index_bytes: int = 0             # bytes of the BLOCK3 item index: not charged to the items (see item_bytes)
    raw: bytes | None = None         # the decompressed text frame, while items are parsed one by one

    def _raw_texts(self) -> bytes:
        """The text frame decompressed, once (the one place texts are decompressed)."""
        if self.raw is None:
            self.raw = zstandard.ZstdDecompressor().decompress(self.frame or b"")
            self.frame = None
        return self.raw

    def item_text(self, row: int) -> dict:
        """One item's dict, parsing only its own JSON: a match wants a few items of many blocks, and
        parsing all 256 of each block it touches cost more than the match itself in a large bank. The
        frame is `[item,item,...]` with each item's length in `raw_lens` (:func:`encode_block`)."""
        if self.texts is not None:
            return self.texts[row]
        raw, lens = self._raw_texts(), self.raw_lens
        if len(raw) != int(lens.sum(dtype=np.int64)) + len(lens) + 1:
            return self.item_texts()[row]   # not the layout encode_block writes: parse it whole, checked
        start = 1 + int(lens[:row].sum(dtype=np.int64)) + row
        text = json.loads(raw[start:start + int(lens[row])])
        if not isinstance(text, dict):
            raise ValueError(f"item {row} of the block is not a JSON object")
        return text

    def item_texts(self) -> list[dict]:
        """The item dicts, decompressed on first use (a ValueError if the frame does not hold them)."""
        if self.texts is None:
            texts = json.loads(self._raw_texts())
            if not isinstance(texts, list) or len(texts) != len(self.ids):
                raise ValueError(f"block holds {len(self.ids)} vectors but "
                                 f"{len(texts) if isinstance(texts, list) else 'no'} texts")
            self.texts, self.raw = texts, None
        return self.texts

    def item_bytes(self) -> np.ndarray:
        """Bytes on disk attributed to each item: fixed fields, its share of its (shared) vector code, and a
        share of the text frame proportional to its raw length. The BLOCK3 item index is left out: an item
        costs what it cost before there was an index, so budgets and eviction are unchanged by it."""
        n = len(self.ids)
        u, width = self.codes.shape
        per_vec = width + (4 if len(self.scales) else 0)
        sharers = np.bincount(self.vec_index, minlength=u)[self.vec_index]
        text = self.nbytes - self.index_bytes - n * ITEM_FIXED - u * per_vec
        share = self.raw_lens / max(1, int(self.raw_lens.sum()))
        return ITEM_FIXED + per_vec / sharers + text * share


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


def dequantize(block: "Block", codecs: dict[str, FaissCodec] | None = None) -> np.ndarray:
    """The block's vectors, one row per item (distinct-state codes expanded)."""
    return dequantize_distinct(block, codecs)[block.vec_index]


def dequantize_distinct(block: "Block", codecs: dict[str, FaissCodec] | None = None) -> np.ndarray:
    """The block's distinct vectors, one row per stored code (`block.vec_index` maps items to them)."""
    if block.quant in FAISS_QUANT:
        codec = (codecs or {}).get(FAISS_QUANT[block.quant])
        if codec is None:
            raise ValueError(f"block uses the {FAISS_QUANT[block.quant]} codec, which the bank does not record")
        rows = codec.decode(block.codes)
    elif block.quant == QUANT_INT4:
        rows = dequantize_int4(block.codes, block.scales, block.dim)
    else:
        rows = dequantize_int8(block.codes, block.scales)
    return rows


def encode_block(ids: np.ndarray, keys: np.ndarray, vectors: np.ndarray, texts: list[dict],
                 quantization: str = "int8", codec: FaissCodec | None = None) -> tuple[bytes, Block]:
    """One BLOCK3 record; items with the same `state` text share one vector code."""
    if quantization in FAISS_FACTORY and codec is None:
        quantization = "int8"  # codec not trained yet (too few items): such blocks are re-coded once it is
    quant = QUANT_CODES[quantization]
    dim = vectors.shape[1]
    row_of: dict[str, int] = {}   # state -> code row
    firsts: list[int] = []        # item position of each code row
    for j, t in enumerate(texts):
        if t["state"] not in row_of:
            row_of[t["state"]] = len(firsts)
            firsts.append(j)
    vec_index = np.asarray([row_of[t["state"]] for t in texts], dtype=np.uint16)
    rows = np.asarray(vectors, dtype=np.float32)[firsts]
    if codec is not None:
        codes, scales = codec.encode(rows), np.zeros(0, np.float32)
    else:
        codes, scales = quantize_int4(rows) if quant == QUANT_INT4 else quantize_int8(rows)
    raws = [json.dumps(t, ensure_ascii=False, separators=(",", ":")).encode("utf-8") for t in texts]
    raw_lens = np.asarray([len(r) for r in raws], dtype=np.uint32)
    text = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(b"[" + b",".join(raws) + b"]")
    index = BlockIndex.of_texts(texts)
    meta = index.to_bytes()
    payload = b"".join([
        BLOCK3_HEAD.pack(len(texts), len(codes), dim, quant, len(meta)),
        np.asarray(ids, dtype=np.int64).tobytes(), np.asarray(keys, dtype=np.float32).tobytes(),
        raw_lens.tobytes(), vec_index.tobytes(), scales.tobytes(),
        struct.pack("<I", codes.shape[1]) if codec is not None else b"", codes.tobytes(), meta, text,
    ])
    record = _record(BLOCK3, payload)
    block = Block(np.asarray(ids, dtype=np.int64), np.asarray(keys, dtype=np.float32), scales, raw_lens, codes,
                  texts, len(record), quant, dim, vec_index, index=index,
                  index_bytes=BLOCK3_HEAD.size - BLOCK2_HEAD.size + len(meta))
    return record, block


def codec_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_tombstone(ids: list[int]) -> bytes:
    return _record(TOMBSTONE, np.asarray(ids, dtype=np.int64).tobytes())


def _record(kind: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, kind, len(payload), zlib.crc32(payload)) + payload


def _decode_block(payload: bytes, size: int, kind: int) -> Block:
    """A block record's arrays and item index; BLOCK3 texts stay compressed (`Block.frame`) until asked for."""
    v2, meta_len = kind in (BLOCK2, BLOCK3), 0
    if kind == BLOCK3:
        n, u, dim, quant, meta_len = BLOCK3_HEAD.unpack_from(payload, 0)
        off = BLOCK3_HEAD.size
    elif v2:
        n, u, dim, quant = BLOCK2_HEAD.unpack_from(payload, 0)
        off = BLOCK2_HEAD.size
    else:
        (n, dim, quant), u = BLOCK_HEAD.unpack_from(payload, 0), None
        off = BLOCK_HEAD.size
    if quant not in QUANT_CODES.values() or (not v2 and quant in FAISS_QUANT):
        raise ValueError(f"unknown quantization code {quant}")

    def take(dtype, count):
        nonlocal off
        arr = np.frombuffer(payload, dtype=dtype, count=count, offset=off)
        off += arr.nbytes
        return arr

    if v2:
        ids, keys, raw_lens, vec_index = take(np.int64, n), take(np.float32, n), take(np.uint32, n), take(np.uint16, n)
        scales = take(np.float32, 0 if quant in FAISS_QUANT else u)
    else:
        ids, keys, scales, raw_lens = take(np.int64, n), take(np.float32, n), take(np.float32, n), take(np.uint32, n)
        u, vec_index = n, np.arange(n, dtype=np.uint16)
    if len(vec_index) and int(vec_index.max()) >= u:
        raise ValueError("vector index out of range")
    width = dim if quant == QUANT_INT8 else (dim + 1) // 2 if quant == QUANT_INT4 else -1
    if width < 0:  # faiss codes: the width follows from what is left before the text frame
        width = int(struct.unpack_from("<I", payload, off)[0])
        off += 4
    codes = take(np.int8, u * width).reshape(u, width)
    if kind == BLOCK3:
        if off + meta_len > len(payload):
            raise ValueError("item index runs past the record")
        index = BlockIndex.from_bytes(payload[off: off + meta_len], n)
        return Block(ids, keys, scales, raw_lens, codes, None, size, quant, dim, vec_index, index=index,
                     frame=payload[off + meta_len:], index_bytes=BLOCK3_HEAD.size - BLOCK2_HEAD.size + meta_len)
    block = Block(ids, keys, scales, raw_lens, codes, None, size, quant, dim, vec_index, frame=payload[off:])
    block.index = BlockIndex.of_texts(block.item_texts())  # older blocks have no index: built from their texts
    block.frame = None
    return block


class SegmentMissing(WorkspaceError):
    """A segment named by the manifest is gone (corruption, or a concurrent compaction a reader can retry)."""


def read_segment(path: Path, committed: int) -> list[tuple[int, Block | np.ndarray]]:
    """Records of the first `committed` bytes of a segment as `(type, Block | tombstone ids)`.

    Anything wrong inside the committed part is corruption: a :class:`WorkspaceError` naming the file.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(committed)
    except FileNotFoundError:
        raise SegmentMissing(f"{path}: memory bank segment is missing; {_REPAIR}") from None
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
            if kind in (BLOCK, BLOCK2, BLOCK3):
                out.append((BLOCK, _decode_block(payload, HEADER.size + length, kind)))
            elif kind == TOMBSTONE:
                out.append((TOMBSTONE, np.frombuffer(payload, dtype=np.int64)))
            else:
                raise ValueError(f"unknown record type {kind}")
        except (ValueError, TypeError, KeyError, struct.error, zstandard.ZstdError) as exc:
            raise WorkspaceError(f"{path}: memory bank segment is corrupted at byte {pos} ({exc}); {_REPAIR}") from None
        pos += HEADER.size + length
    return out


_REPAIR = ("move the bank/ folder of the workspace away to start the bank afresh "
           "(traced proofs re-enter it on the next `lifelean add` of their repository)")
