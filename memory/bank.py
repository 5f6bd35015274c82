"""The compressed memory bank: CMT's encode → store → self-match → top-k aggregate, without training an LLM.

CMT (Compressed Memory Training, AAAI 2025) keeps a bank of compressed memories, matches a query against it
with the same encoder that wrote it, and aggregates the top-k into the model's input. Here the items are
proof steps `(state, tactic, next state, premises)` and whole proofs; the encoder is always the frozen base
encoder (learning never makes bank vectors stale); vectors are quantized (int8/int4 scalar codes, or a trained
faiss codec: product quantization, Jégou et al. 2011, or a 6-bit per-dimension scalar quantizer), one code per
distinct state, texts zstd-compressed, in append-only checksummed segments (:mod:`memory.bank_format`) with an
atomically written manifest. `match` is exhaustive (every stored vector is scored), never a graph search.

A trained codec is part of the bank's data: trained once, deterministically (on the distinct states held when
the bank first has enough of them, in state-hash order, one faiss thread, faiss's fixed seed), written to
`codec-NAME-HASH.faiss` and recorded in the manifest in the same commit as the blocks it encodes; a resume
finds it, nothing re-trains it. Items stored before it existed are int8 and are re-coded by that commit. The
training vectors are encoded in that one fixed call, and the `add` that trains the codec stores those same
vectors for its new states: no state is encoded twice.

Readers never write: opening, matching and sampling read the committed part of each segment only, and a
reader that loses a race with a compaction (a segment gone under it) reads the new manifest and starts over.
Opening reads every committed byte (a snapshot: nothing is read from disk afterwards) but decodes only each
block's item index; an item's text is decompressed when it is first asked for (`get`, a `match` or `sample`
result, `items`), its block's vectors when `match` or `vectors` first needs them. Every process of a run and every
command that reads the bank opens it, so opening must not cost the whole bank's text.

A byte budget is kept by per-repository balanced eviction: while over budget, the repository holding the
most bytes loses the item with the smallest random key. Keeping the largest random keys is reservoir
sampling (Efraimidis & Spirakis 2006, equal weights), so what a repository keeps is a uniform sample of all
it ever stored, and no repository crowds out the others. The bank doubles as the replay buffer (`sample`).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Collection, Iterator, Literal, Sequence

import numpy as np

from common.atomic import atomic_write_bytes, atomic_write_json, read_json
from common.errors import InputError, WorkspaceError
from curriculum.lean_data import Repository
from memory.bank_format import (BLOCK, DIGEST_BYTES, FAISS_FACTORY, FAISS_QUANT, FLAG_PREMISES, FLAG_STEP,
                                QUANT_CODES, Block, FaissCodec, SegmentMissing, codec_digest, content_digest,
                                dequantize, dequantize_distinct, encode_block, encode_tombstone, read_segment)
from memory.embedder import Encoder

SCHEMA = 1
MANIFEST = "index.json"
SEGMENT_BYTES = 16 << 20
BLOCK_ITEMS = 256
# Distinct states needed before a codec is trained: PQ's k-means wants at least its 256 centroids per
# sub-space; below that items stay int8 (faiss advises ~39 points per centroid; more only helps).
CODEC_MIN_TRAIN = {"pq": 256, "sq6": 64}
CODEC_MAX_TRAIN = 16384  # ~39 points per PQ centroid; encoded once, when the codec is trained
LOAD_RETRIES = 5
SCREEN_MIN_ROWS = 8192   # a part this large is screened in float16 before its exact scores (`_scored`)
SCREEN_MAX_NORM = 1e3    # vectors or queries larger than this are scored exactly (float16 would overflow)


@dataclass(frozen=True)
class BankItem:
    kind: Literal["step", "proof"]
    repo: str
    theorem: str
    state: str
    tactic: str
    next_state: str
    premises: tuple[str, ...] = ()
    proof: tuple[str, ...] = ()
    checked_by: str = "trace"  # "trace" | "replay" | "lean"
    commit: str = ""
    split: str = "train"       # "train" (a traced proof) | "found" (a proof the prover found)
    path: str = ""             # the theorem's file, part of a replayed step's retrieval query ("" = not recorded)

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, obj: dict) -> "BankItem":
        split = obj.get("split") or ("train" if obj.get("checked_by", "trace") == "trace" else "found")
        item = cls(**{**obj, "premises": tuple(obj.get("premises", ())), "proof": tuple(obj.get("proof", ())),
                      "split": split})
        if not all(isinstance(getattr(item, f), str) for f in ("kind", "repo", "theorem", "state", "tactic", "path")):
            raise ValueError("item fields must be strings")
        return item

    @property
    def digest(self) -> str:
        """Content identity: the same step or proof is stored once."""
        return self.digest_bytes.hex()

    @property
    def digest_bytes(self) -> bytes:
        """:attr:`digest` as the 20 raw bytes a block's item index stores."""
        return content_digest(self.kind, self.repo, self.theorem, self.state, self.tactic, list(self.proof))


@dataclass(frozen=True)
class Match:
    id: int
    item: BankItem
    score: float


class _Stored:
    """One block as the bank holds it: items and vectors decoded on first use, then kept."""

    __slots__ = ("block", "path", "codecs", "items", "_vectors", "_lock")

    def __init__(self, block: Block, path: Path, codecs: dict[str, FaissCodec],
                 items: Sequence[BankItem] | None = None):
        self.block = block
        self.path = path
        self.codecs = codecs
        self.items: list[BankItem | None] = list(items) if items is not None else [None] * len(block.ids)
        self._vectors: np.ndarray | None = None
        self._lock = threading.Lock()
        if items is not None:
            block.texts = block.frame = None  # the caller's items are what is kept

    def item(self, row: int) -> BankItem:
        """Item `row`: its block's text frame is decompressed once, each item parsed when first asked for."""
        item = self.items[row]
        if item is not None:
            return item
        with self._lock:   # threads of one process may share a bank: decode once, never half-way
            item = self.items[row]
            if item is None:
                try:
                    item = self.items[row] = BankItem.from_json(self.block.item_text(row))
                except Exception as exc:  # noqa: BLE001 - zstd, JSON or field errors: all mean a damaged block
                    raise WorkspaceError(f"{self.path}: memory bank segment holds a malformed block ({exc!r}); "
                                         "move the bank/ folder away to start the bank afresh") from None
                if all(it is not None for it in self.items):
                    self.block.texts = self.block.frame = self.block.raw = None  # every item is built: drop texts
        return item

    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = dequantize(self.block, self.codecs)
        return self._vectors

    def vectors_of(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of items `rows`, decoded without being kept: the bank's matrix holds them, and a
        per-block float copy of every vector beside it would double the matrix's memory."""
        if self._vectors is not None:
            return self._vectors[rows]
        return dequantize_distinct(self.block, self.codecs)[self.block.vec_index[rows]]


@dataclass(slots=True)
class _Entry:
    stored: _Stored
    row: int
    key: float
    nbytes: float
    segment: str
    quant: int
    repo: str
    step: bool
    premises: bool
    digest: bytes

    @property
    def item(self) -> BankItem:
        return self.stored.item(self.row)

    @property
    def vector(self) -> np.ndarray:
        return self.stored.vectors()[self.row]


def items_of_repository(repo: Repository, splits: Sequence[str] = ("train",)) -> list[BankItem]:
    """A repository's traced human proofs as bank items: every step, and each whole proof."""
    items: list[BankItem] = []
    for thm in repo.theorems_in(*splits):
        if not thm.tactics or thm.is_sorry:
            continue
        for t in thm.tactics:
            items.append(BankItem("step", repo.name, thm.full_name, t.state_before, t.tactic, t.state_after,
                                  premises=tuple(dict.fromkeys(a.full_name for a in t.annotations)),
                                  commit=repo.commit, split=thm.split or "train", path=thm.file_path))
        proof = tuple(t.tactic for t in thm.tactics)
        used = tuple(dict.fromkeys(a.full_name for t in thm.tactics for a in t.annotations))
        items.append(BankItem("proof", repo.name, thm.full_name, thm.tactics[0].state_before, proof[0],
                              thm.tactics[-1].state_after, premises=used, proof=proof, commit=repo.commit,
                              split=thm.split or "train", path=thm.file_path))
    return items


class MemoryBank:
    """Items in `path/seg-NNNNNN.bin`, manifest `path/index.json`; a dequantized matrix in memory for matching.

    `read_only=True` opens a snapshot that never writes a byte (for commands that only read); its writing
    methods raise :class:`WorkspaceError`.
    """

    def __init__(self, path: Path, encoder: Encoder, budget_bytes: int = 64 << 20, quantization: str = "int8",
                 seed: int = 3407, read_only: bool = False):
        if quantization not in QUANT_CODES:
            raise InputError(f"[memory] bank_quantization {quantization!r}: expected one of {', '.join(QUANT_CODES)}")
        self.path = Path(path)
        self.encoder = encoder
        self.budget_bytes = budget_bytes
        self.quantization = quantization
        self.read_only = read_only
        self._rng = np.random.default_rng(seed)
        for attempt in range(LOAD_RETRIES):
            try:
                self._load()
                break
            except SegmentMissing:
                if attempt == LOAD_RETRIES - 1 or not self._manifest_changed():
                    raise

    # -- persistence --------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def _reset(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._digests: dict[bytes, int] = {}
        self._disk_bytes: dict[str, int] = {}
        self._codecs: dict[str, FaissCodec] = {}
        self._truncated: set[str] = set()
        self._invalidate()

    def _invalidate(self) -> None:
        """Forget every per-row cache (rows were dropped or re-laid out): rebuilt when next needed."""
        self._mats: dict[bool, np.ndarray] = {}   # steps' / other items' vectors, then spare capacity (`_part`)
        self._halves: dict[bool, np.ndarray] = {}  # the same rows in float16, for the screen (`_scored`)
        self._max_norm: dict[bool, float] = {}     # the largest row norm of each matrix
        self._mat_rows: dict[bool, int] = {}      # rows of each matrix written so far
        self._part_rows: dict[bool, np.ndarray] = {}  # each matrix's rows' positions among `_columns()`'s rows
        self._part_known = 0                      # `_columns()` rows already sorted into the two parts
        self._cols: dict[str, np.ndarray] = {}
        self._repo_code: dict[str, int] = {}
        self._masks: dict[tuple, np.ndarray] = {}
        self._appended: list[int] = []

    def _manifest_changed(self) -> bool:
        try:
            return read_json(self.manifest_path, "memory bank index") != self.manifest
        except WorkspaceError:
            return True

    def _load(self) -> None:
        self._reset()
        if not self.manifest_path.exists():
            if any(self.path.glob("seg-*.bin")):
                raise WorkspaceError(f"{self.manifest_path}: memory bank index is missing but segments exist; "
                                     "move the bank/ folder away to start the bank afresh")
            self.manifest = {"schema": SCHEMA, "encoder": self.encoder.version, "dim": self.encoder.dim,
                             "quantization": self.quantization, "next_id": 0, "segments": [], "sources": {},
                             "codecs": {}}
            return
        self.manifest = read_json(self.manifest_path, "memory bank index")
        try:
            self._load_manifest()
        except SegmentMissing:
            raise
        except WorkspaceError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise WorkspaceError(f"{self.manifest_path}: memory bank index or its data is malformed ({exc!r}); "
                                 "move the bank/ folder away to start the bank afresh") from None

    def _load_manifest(self) -> None:
        m = self.manifest
        if not isinstance(m, dict) or m.get("schema") != SCHEMA:
            raise WorkspaceError(f"{self.manifest_path}: memory bank schema "
                                 f"{m.get('schema') if isinstance(m, dict) else None} is not "
                                 f"supported (expects {SCHEMA}); move the bank/ folder away to start afresh")
        if m["encoder"] != self.encoder.version:
            raise WorkspaceError(f"{self.manifest_path}: the bank was written with encoder "
                                 f"{m['encoder']}, not {self.encoder.version}; set [memory] encoder back "
                                 "or move the bank/ folder away")
        m.setdefault("codecs", {})
        for name, rec in m["codecs"].items():
            file = self.path / rec["file"]
            try:
                data = file.read_bytes()
            except OSError:
                raise WorkspaceError(f"{file}: memory bank codec is missing; move the bank/ folder away") from None
            if codec_digest(data) != rec["sha256"]:
                raise WorkspaceError(f"{file}: memory bank codec is corrupted (checksum mismatch); "
                                     "move the bank/ folder away")
            self._codecs[name] = FaissCodec.from_bytes(name, data)
        dead: set[int] = set()
        for seg in m["segments"]:
            path = self.path / seg["file"]
            for kind, rec in read_segment(path, int(seg["committed"])):
                if kind == BLOCK:
                    try:
                        self._index_block(rec, seg["file"])  # type: ignore[arg-type]
                    except (KeyError, TypeError, ValueError) as exc:
                        raise WorkspaceError(f"{path}: memory bank segment holds a malformed block ({exc}); "
                                             "move the bank/ folder away to start the bank afresh") from None
                else:
                    dead.update(int(i) for i in rec)  # type: ignore[union-attr]
            self._disk_bytes[seg["file"]] = int(seg["committed"])
        for i in dead:
            self._drop(i)

    def _index_block(self, block: Block, segment: str, items: Sequence[BankItem] | None = None) -> None:
        """Enter a block's items from its index alone (texts and vectors are decoded when first needed);
        `items` are the block's items when the caller has them already (it just wrote them)."""
        if block.quant in FAISS_QUANT and FAISS_QUANT[block.quant] not in self._codecs:
            raise ValueError(f"block uses the {FAISS_QUANT[block.quant]} codec, which the bank does not record")
        index = block.index
        assert index is not None
        stored = _Stored(block, self.path / segment, self._codecs, items)
        ids, names, quant = block.ids.tolist(), index.repos, block.quant
        raw = index.digests
        digests = [raw[at:at + DIGEST_BYTES] for at in range(0, len(ids) * DIGEST_BYTES, DIGEST_BYTES)]
        entries = self._entries   # one pass over plain lists: opening a large bank is this loop, item by item
        for j, id_, key, nbytes, r, step, premises, digest in zip(
                range(len(ids)), ids, block.keys.tolist(), block.item_bytes().tolist(), index.repo.tolist(),
                (index.flags & FLAG_STEP).astype(bool).tolist(), (index.flags & FLAG_PREMISES).astype(bool).tolist(),
                digests):
            entries[id_] = _Entry(stored, j, key, nbytes, segment, quant, names[r], step, premises, digest)
        self._digests.update(zip(digests, ids))
        rows = self._appended or self._cols.get("ids", ())   # the rows the caches know, in id order
        if self._cols and ids and (not len(rows) or ids[0] > rows[-1]):
            self._appended.extend(ids)   # rows after the last: the caches grow (`_columns`, `vectors`)
        else:
            self._invalidate()

    def _drop(self, id_: int) -> _Entry | None:
        entry = self._entries.pop(id_, None)
        if entry is not None:
            if self._digests.get(entry.digest) == id_:  # a re-added copy under a newer id stays known
                del self._digests[entry.digest]
            self._invalidate()
        return entry

    def _writable(self) -> None:
        if self.read_only:
            raise WorkspaceError(f"{self.path}: the memory bank is open read-only")

    def _current_segment(self) -> dict:
        segs = self.manifest["segments"]
        if not segs or segs[-1]["committed"] >= SEGMENT_BYTES:
            number = int(segs[-1]["file"][4:10]) + 1 if segs else 1
            segs.append({"file": f"seg-{number:06d}.bin", "committed": 0})
        return segs[-1]

    def _append(self, records: list[bytes]) -> None:
        """Append records to the current segment and commit them in the manifest (the commit point)."""
        self._writable()
        if not records:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        seg = self._current_segment()
        file = self.path / seg["file"]
        with open(file, "ab") as handle:
            if seg["file"] not in self._truncated:
                handle.truncate(seg["committed"])  # drop a torn or uncommitted tail left by a crash
                self._truncated.add(seg["file"])
            handle.seek(seg["committed"])
            for r in records:
                handle.write(r)
            handle.flush()
            os.fsync(handle.fileno())
        seg["committed"] += sum(len(r) for r in records)
        self._disk_bytes[seg["file"]] = seg["committed"]
        self._save_manifest()

    def _save_manifest(self) -> None:
        self._writable()
        atomic_write_json(self.manifest_path, self.manifest)

    # -- writing ------------------------------------------------------------------------------------
    def add(self, items: Sequence[BankItem], progress: bool = False) -> int:
        """Encode, store and commit new items (duplicates of stored ones are skipped); returns how many."""
        self._writable()
        fresh, seen = [], set()
        for it in items:
            d = it.digest_bytes
            if d not in self._digests and d not in seen:
                seen.add(d)
                fresh.append(it)
        if not fresh:
            return 0
        fresh.sort(key=lambda it: it.repo)  # blocks of one repository compress together and compact cleanly
        states = list(dict.fromkeys(it.state for it in fresh))
        codec, vec_of = self._codec(states, progress)  # a codec trained now brings its vectors of `states`
        rest = [st for st in states if st not in vec_of]
        if rest:
            vec_of.update(zip(rest, self.encoder.encode(rest, progress=progress, desc="bank", memo=False)))
        vectors = np.stack([vec_of[it.state] for it in fresh]).astype(np.float32, copy=False)
        records: list[bytes] = []
        seg_name = self._current_segment()["file"]
        first_new = self.manifest["next_id"]
        for start in range(0, len(fresh), BLOCK_ITEMS):
            chunk = fresh[start:start + BLOCK_ITEMS]
            first = self.manifest["next_id"]
            ids = np.arange(first, first + len(chunk), dtype=np.int64)
            self.manifest["next_id"] = first + len(chunk)
            keys = self._rng.random(len(chunk)).astype(np.float32)
            record, block = encode_block(ids, keys, vectors[start:start + len(chunk)], [c.to_json() for c in chunk],
                                         self.quantization, codec)
            records.append(record)
            self._index_block(block, seg_name, chunk)
        evicted = self._evict_over_budget()
        if evicted:
            records.append(encode_tombstone(evicted))
        self._append(records)
        if codec is not None and any(e.quant != QUANT_CODES[self.quantization] for e in self._entries.values()):
            self.compact()  # items stored before the codec existed (or under another setting) are re-coded now
        else:
            self._maybe_compact()
        return len(fresh) - sum(1 for i in evicted if i >= first_new)

    def _codec(self, fresh_states: Sequence[str], progress: bool = False) -> tuple[FaissCodec | None,
                                                                                    dict[str, np.ndarray]]:
        """The trained codec of `quantization` (None for int8/int4), and the vectors of those `fresh_states`
        it was trained on when it is trained now: the first time the bank holds enough distinct states, on
        those states' vectors in state-hash order (see module doc)."""
        name = self.quantization
        if name not in FAISS_FACTORY or name in self._codecs:
            return self._codecs.get(name), {}
        states = {e.item.state for e in self._entries.values()} | set(fresh_states)
        if len(states) < CODEC_MIN_TRAIN[name]:
            return None, {}
        # Content-defined sample, encoded in one fixed batching: the same text encoded in another batch
        # differs in the last float bits, which would make the codec depend on how items arrived. The new
        # states among them are stored with these vectors, so `add` encodes each of its states once.
        order = sorted(states, key=lambda st: hashlib.sha1(st.encode("utf-8")).hexdigest())[:CODEC_MAX_TRAIN]
        train = self.encoder.encode(order, progress=progress, desc="bank", memo=False)
        codec = FaissCodec.train(name, train)
        data = codec.to_bytes()
        digest = codec_digest(data)
        file = f"codec-{name}-{digest[:12]}.faiss"
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path / file, data)  # recorded by the manifest of the commit that uses it
        self.manifest["codecs"][name] = {"file": file, "sha256": digest, "factory": FAISS_FACTORY[name],
                                         "trained_on": len(order)}
        self._codecs[name] = codec
        fresh = set(fresh_states)
        return codec, {st: train[j] for j, st in enumerate(order) if st in fresh}

    def add_repository(self, repo: Repository, splits: Sequence[str] = ("train",)) -> int:
        """Store a repository's traced human proofs; a new commit replaces the old commit's traced items."""
        self._writable()
        source = self.manifest["sources"].get(repo.name)
        if source == repo.commit:
            return 0
        if source is not None:
            old = [i for i, e in self._entries.items()
                   if e.repo == repo.name and e.item.checked_by == "trace" and e.item.commit != repo.commit]
            self._tombstone(old)
        self.manifest["sources"][repo.name] = repo.commit
        added = self.add(items_of_repository(repo, splits))
        self._save_manifest()
        return added

    def forget_repo(self, repo: str, commit: str | None = None) -> int:
        """Remove every item of `repo` (of one commit, or all); returns how many."""
        self._writable()
        ids = [i for i, e in self._entries.items() if e.repo == repo and (commit is None or e.item.commit == commit)]
        if commit is None or self.manifest["sources"].get(repo) == commit:
            self.manifest["sources"].pop(repo, None)
        self._tombstone(ids)
        self._save_manifest()
        self._maybe_compact()
        return len(ids)

    def _tombstone(self, ids: list[int]) -> None:
        for i in ids:
            self._drop(i)
        if ids:
            self._append([encode_tombstone(ids)])

    def _evict_over_budget(self) -> list[int]:
        """Balanced reservoir eviction: the heaviest repository loses its item with the smallest key."""
        total = sum(e.nbytes for e in self._entries.values())
        if total <= self.budget_bytes:
            return []
        per_repo: dict[str, list[tuple[float, int]]] = {}
        repo_bytes: dict[str, float] = {}
        for i, e in self._entries.items():
            per_repo.setdefault(e.repo, []).append((e.key, i))
            repo_bytes[e.repo] = repo_bytes.get(e.repo, 0.0) + e.nbytes
        for lst in per_repo.values():
            lst.sort(reverse=True)  # smallest key last, popped first
        evicted = []
        while total > self.budget_bytes and per_repo:
            repo = max(repo_bytes, key=repo_bytes.__getitem__)
            _, i = per_repo[repo].pop()
            entry = self._drop(i)
            total -= entry.nbytes
            repo_bytes[repo] -= entry.nbytes
            if not per_repo[repo]:
                del per_repo[repo], repo_bytes[repo]
            evicted.append(i)
        return evicted

    def _maybe_compact(self) -> None:
        """Rewrite live items into fresh segments once dead records take more than half the disk."""
        live = sum(e.nbytes for e in self._entries.values())
        disk = sum(self._disk_bytes.values())
        if disk < 1 << 20 or disk <= 2 * live:
            return
        self.compact()

    def compact(self) -> None:
        """Copy live items to new segments, switch the manifest atomically, then delete the old files.

        A reader that still holds the old manifest finds an old segment gone and starts over (see `__init__`).
        """
        self._writable()
        codec = self._codecs.get(self.quantization)
        old = [s["file"] for s in self.manifest["segments"]]
        number = int(old[-1][4:10]) + 1 if old else 1
        entries = sorted(self._entries.items(), key=lambda kv: (kv[1].repo, kv[0]))
        new_segments, records, size = [], [], 0
        blocks: list[tuple[str, Block, list[BankItem]]] = []

        def flush() -> None:
            nonlocal records, size, number
            if records:
                name = f"seg-{number:06d}.bin"
                data = b"".join(records)
                with open(self.path / name, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                new_segments.append({"file": name, "committed": len(data)})
                for b, its in pending:
                    blocks.append((name, b, its))
                pending.clear()
                number += 1
            records, size = [], 0

        pending: list[tuple[Block, list[BankItem]]] = []
        for start in range(0, len(entries), BLOCK_ITEMS):
            chunk = entries[start:start + BLOCK_ITEMS]
            ids = np.asarray([i for i, _ in chunk], dtype=np.int64)
            keys = np.asarray([e.key for _, e in chunk], dtype=np.float32)
            vecs = np.stack([e.vector for _, e in chunk])
            its = [e.item for _, e in chunk]
            record, block = encode_block(ids, keys, vecs, [it.to_json() for it in its], self.quantization, codec)
            records.append(record)
            pending.append((block, its))
            size += len(record)
            if size >= SEGMENT_BYTES:
                flush()
        flush()
        self.manifest["segments"] = new_segments
        self._save_manifest()
        for name in old:
            (self.path / name).unlink(missing_ok=True)
        self._entries.clear()
        self._digests.clear()
        self._invalidate()
        self._disk_bytes = {s["file"]: s["committed"] for s in new_segments}
        self._truncated = {s["file"] for s in new_segments}
        for name, b, its in blocks:
            self._index_block(b, name, its)

    # -- reading ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def get(self, item_id: int) -> BankItem:
        entry = self._entries.get(int(item_id))
        if entry is None:
            raise InputError(f"bank item {item_id}: no such item (evicted, forgotten or never stored)")
        return entry.item

    def ids(self) -> list[int]:
        return sorted(self._entries)

    def items(self, repo: str | None = None, kind: str | None = None) -> Iterator[tuple[int, BankItem]]:
        """`(id, item)` of every live item in id order, optionally of one repository and/or kind."""
        for i in sorted(self._entries):
            entry = self._entries[i]
            if repo is not None and entry.repo != repo:
                continue   # filtered by the index: texts of other repositories stay compressed
            it = entry.item
            if kind is None or it.kind == kind:
                yield i, it

    def _columns(self) -> dict[str, np.ndarray]:
        """Per-row ids, repository codes and flags of all live items in id order (the rows of `vectors()`),
        from the item index alone: sampling and masks need no vector and no text. Items added since they
        were built are appended: a repository's new items cost what they add, not the whole bank."""
        if not self._cols or self._appended:
            new = sorted(self._entries) if not self._cols else self._appended
            entries = [self._entries[i] for i in new]
            for e in entries:
                self._repo_code.setdefault(e.repo, len(self._repo_code))
            cols = {"ids": np.asarray(new, dtype=np.int64),
                    "repo": np.asarray([self._repo_code[e.repo] for e in entries], dtype=np.int32),
                    "step": np.asarray([e.step for e in entries], dtype=bool),
                    "premises": np.asarray([e.premises for e in entries], dtype=bool)}
            if self._cols:
                cols = {name: np.concatenate([self._cols[name], cols[name]]) for name in cols}
            self._cols, self._appended, self._masks = cols, [], {}
        return self._cols

    def _part(self, step: bool) -> tuple[np.ndarray, np.ndarray]:
        """`(rows, matrix)` of the steps (`step`) or of the other items: their positions among `_columns()`'s
        rows, and their dequantized vectors. The prover's kNN asks for steps only, so it reads only their
        rows (about two thirds of a bank of traced proofs). Rows added since the matrix was built are written
        after the others, into spare capacity: it is allocated for twice the rows it holds (pages never
        written are never resident) and copied only when the part has doubled, so appending is amortised
        O(new rows); the new rows are decoded block by block, not item by item."""
        cols = self._columns()
        n = len(cols["ids"])
        if self._part_known < n:
            span, is_step = np.arange(self._part_known, n), cols["step"][self._part_known:]
            for part, fresh in ((True, span[is_step]), (False, span[~is_step])):
                known = self._part_rows.get(part)
                self._part_rows[part] = fresh if known is None else np.concatenate([known, fresh])
            self._part_known = n
        rows = self._part_rows.get(step, np.zeros(0, dtype=np.int64))
        mat, filled = self._mats.get(step), self._mat_rows.get(step, 0)
        if mat is None or len(rows) > len(mat):
            grown = np.empty((max(2 * len(rows), 1024), self.encoder.dim), dtype=np.float32)
            half = np.empty(grown.shape, dtype=np.float16)
            if mat is not None:
                grown[:filled] = mat[:filled]
                half[:filled] = self._halves[step][:filled]
            mat, self._mats[step], self._halves[step] = grown, grown, half
        if filled < len(rows):
            import torch

            self._fill(mat, filled, cols["ids"][rows[filled:]])
            new = mat[filled:len(rows)]
            # torch converts to float16 (the same rounding) ~14x faster than numpy; einsum needs no temporary
            torch.from_numpy(self._halves[step][filled:len(rows)]).copy_(torch.from_numpy(new))
            top = float(np.sqrt(np.einsum("ij,ij->i", new, new).max()))
            self._max_norm[step] = max(self._max_norm.get(step, 0.0), top)
            self._mat_rows[step] = len(rows)
        return rows, mat[:len(rows)]

    def _fill(self, mat: np.ndarray, start: int, ids: np.ndarray) -> None:
        """Write the vectors of items `ids` into `mat[start:]`, one decode per block they come from."""
        entries = [self._entries[i] for i in ids.tolist()]
        at = 0
        while at < len(entries):
            stored, end = entries[at].stored, at + 1
            while end < len(entries) and entries[end].stored is stored:
                end += 1
            rows = np.fromiter((e.row for e in entries[at:end]), dtype=np.int64, count=end - at)
            mat[start + at:start + end] = stored.vectors_of(rows)
            at = end

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """`(ids, dequantized vectors)` of all live items in id order: the rows `match` scores (held as two
        matrices, steps and the rest; this joins them into a new array)."""
        ids = self._columns()["ids"]
        out = np.empty((len(ids), self.encoder.dim), dtype=np.float32)
        for step in (True, False):
            rows, mat = self._part(step)
            out[rows] = mat
        return ids, out

    def _mask(self, repos: Collection[str] | None, kind: str | None, need_premises: bool = False) -> np.ndarray | None:
        """Boolean filter over `_columns()` rows, vectorised over per-row repository codes and cached until the
        bank changes (a query no longer walks every item in Python)."""
        if repos is None and kind is None and not need_premises:
            return None
        self._columns()
        key = (None if repos is None else frozenset(repos), kind, need_premises)
        mask = self._masks.get(key)
        if mask is None:
            cols = self._cols
            mask = np.ones(len(cols["ids"]), dtype=bool)
            if repos is not None:
                wanted = [j for r, j in self._repo_code.items() if r in key[0]]  # type: ignore[operator]
                mask &= np.isin(cols["repo"], np.asarray(wanted, dtype=np.int32))
            if kind is not None:
                mask &= cols["step"] if kind == "step" else ~cols["step"]
            if need_premises:
                mask &= cols["premises"]
            if len(self._masks) > 64:
                self._masks.clear()
            self._masks[key] = mask
        return mask

    def match(self, query: str | np.ndarray, k: int = 10, repos: Collection[str] | None = None,
              kind: str | None = "step") -> list[Match]:
        """Top-k items by cosine similarity to a proof state (self-matching: same encoder as the items), best
        first, equal scores in id order.

        Exhaustive: every stored vector (decoded from its code) of the asked kind is scored against the float
        query, which for product quantization is exactly asymmetric distance computation (ADC, Jégou et al.
        2011).
        """
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        ids = self._columns()["ids"]
        if not len(ids):
            return []
        q = self.encoder.encode([query])[0] if isinstance(query, str) else np.asarray(query, dtype=np.float32).ravel()
        mask = self._mask(repos, kind)
        parts = [True, False] if kind is None else [kind == "step"]
        found_ids, found_scores = [], []
        for step in parts:
            rows, mat = self._part(step)
            at, scores = self._scored(step, mat, q, k, None if mask is None else mask[rows])
            found_ids.append(ids[rows[at]])
            found_scores.append(scores)
        part_ids, scores = np.concatenate(found_ids), np.concatenate(found_scores)
        top = _top_k(scores, part_ids, k)
        return [Match(int(part_ids[j]), self._entries[int(part_ids[j])].item, float(scores[j])) for j in top]

    def _scored(self, step: bool, mat: np.ndarray, q: np.ndarray, k: int,
                allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """`(positions, exact scores)` of the rows of `mat` that can be among the top k (every row of a small
        part; disallowed rows score -inf). The exact score is `exact_scores`, the same for a row wherever it
        is computed; what changes is which rows it is computed for. A large part is screened first with its
        float16 copy (`torch.mv`: half the bytes of the float32 scan that bounds a match, on torch's own
        threads), and only rows whose screen score is within twice the screen's error bound of the k-th best
        are scored exactly.
        The bound, for |s16 - s| with float16 vectors and query, float32 accumulation and a float16 result:
        ||q||·max||x||·(2^-10 + 2^-11 + d·2^-24) plus subnormal terms, under the 2^-9·||q||·max||x|| +
        (||q||_1 + √d·max||x|| + 1)·2^-24 used. Any row of the exact top k (ties included) has a screen score
        of at least the k-th screen score minus twice that, so the result is the exact one by construction."""
        n = len(mat)
        q_norm, max_norm = float(np.linalg.norm(q)), self._max_norm.get(step, 0.0)
        if n >= SCREEN_MIN_ROWS and k < n // 8 and q_norm < SCREEN_MAX_NORM and max_norm < SCREEN_MAX_NORM:
            import torch

            screen = torch.mv(torch.from_numpy(self._halves[step][:n]),
                              torch.from_numpy(q.astype(np.float16))).numpy().astype(np.float32)
            if allowed is not None:
                screen[~allowed] = -np.inf
            kth = np.partition(screen, n - k)[n - k]
            if np.isfinite(kth):
                bound = (q_norm * max_norm * 2.0 ** -9
                         + (float(np.abs(q).sum()) + np.sqrt(len(q)) * max_norm + 1.0) * 2.0 ** -24)
                at = np.flatnonzero(screen >= kth - 2.0 * bound)
                return at, exact_scores(mat[at], q)
        scores = exact_scores(mat, q)
        if allowed is not None:
            scores = np.where(allowed, scores, -np.inf)
        return np.arange(n), scores

    def sample(self, n: int, rng: random.Random, exclude_repo: str | None = None,
               repos: Collection[str] | None = None, kind: str | None = None,
               need_premises: bool = False) -> list[BankItem]:
        """A repository-balanced sample for replay, drawn from the allowed repositories only.

        `repos` (None = all) minus `exclude_repo` take turns, items uniform within each; `kind` and
        `need_premises` (steps that name at least one premise: the only ones a retriever can learn from)
        filter at the source too, so the caller gets `n` usable items whenever the bank holds them.
        """
        if n <= 0:
            return []
        ids = self._columns()["ids"]
        mask = self._mask(repos, kind, need_premises)
        rows = np.arange(len(ids)) if mask is None else np.flatnonzero(mask)
        codes = self._cols["repo"][rows]
        pools: dict[str, list[int]] = {}
        for name, j in sorted(self._repo_code.items()):
            if name == exclude_repo:
                continue
            mine = ids[rows[codes == j]].tolist()
            if mine:
                pools[name] = rng.sample(mine, min(n, len(mine)))
        order = sorted(pools)
        rng.shuffle(order)
        out: list[BankItem] = []
        while len(out) < n and any(pools.values()):
            for r in order:
                if pools[r] and len(out) < n:
                    out.append(self._entries[pools[r].pop()].item)
        return out

    def stats(self) -> dict[str, dict]:
        """Per repository: items (steps, proofs), bytes on disk, raw bytes (JSON + float32) and their ratio."""
        out: dict[str, dict] = {}
        dim = self.encoder.dim
        for e in self._entries.values():
            s = out.setdefault(e.item.repo, {"items": 0, "steps": 0, "proofs": 0, "bytes": 0.0, "raw_bytes": 0})
            s["items"] += 1
            s["steps" if e.item.kind == "step" else "proofs"] += 1
            s["bytes"] += e.nbytes
            s["raw_bytes"] += len(json.dumps(e.item.to_json(), ensure_ascii=False).encode("utf-8")) + 4 * dim
        for s in out.values():
            s["bytes"] = int(round(s["bytes"]))
            s["compression_ratio"] = round(s["raw_bytes"] / s["bytes"], 2) if s["bytes"] else None
            s["encoder"] = self.manifest["encoder"]
        return out

    def disk_bytes(self) -> int:
        """Bytes of all segments on disk (live and dead records), the codecs and the manifest."""
        size = sum(self._disk_bytes.values())
        size += sum((self.path / c["file"]).stat().st_size for c in self.manifest.get("codecs", {}).values())
        return size + (self.manifest_path.stat().st_size if self.manifest_path.exists() else 0)


def exact_scores(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Each row's float32 dot product with `q`, computed row by row the same way whatever the rows around
    it (numpy's einsum loop, no BLAS): a row scores bit for bit the same in the whole matrix, in a part of
    it or among screened candidates, and equal vectors score exactly equal (their order is then by id).
    A BLAS sgemv is not so: its kernels sum a row differently depending on where the row falls, and its
    threads spin against torch's."""
    return np.einsum("ij,j->i", rows, q)


def _top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the `k` best finite scores, best first and equal scores in id order: the result does not
    depend on how the rows are laid out (a partial sort alone leaves ties in an arbitrary order)."""
    if not len(scores):
        return np.zeros(0, dtype=np.int64)
    m = min(k, len(scores))
    kth = np.partition(scores, len(scores) - m)[len(scores) - m]
    cand = np.flatnonzero(scores >= kth) if np.isfinite(kth) else np.flatnonzero(np.isfinite(scores))
    return cand[np.lexsort((ids[cand], -scores[cand]))][:k]
