"""The compressed memory bank: CMT's encode → store → self-match → top-k aggregate, without training an LLM.

CMT (Compressed Memory Training, AAAI 2025) keeps a bank of compressed memories, matches a query against it
with the same encoder that wrote it, and aggregates the top-k into the model's input. Here the items are
proof steps `(state, tactic, next state, premises)` and whole proofs; the encoder is always the frozen base
encoder (learning never makes bank vectors stale); vectors are int8- (or int4-) quantized, texts zstd-compressed, in
append-only checksummed segments (:mod:`memory.bank_format`) with an atomically written manifest.

A byte budget is kept by per-repository balanced eviction: while over budget, the repository holding the
most bytes loses the item with the smallest random key. Keeping the largest random keys is reservoir
sampling (Efraimidis & Spirakis 2006, equal weights), so what a repository keeps is a uniform sample of all
it ever stored, and no repository crowds out the others. The bank doubles as the replay buffer (`sample`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from common.atomic import atomic_write_json, read_json
from common.errors import InputError, WorkspaceError
from curriculum.lean_data import Repository
from memory.bank_format import BLOCK, QUANT_CODES, Block, dequantize, encode_block, encode_tombstone, read_segment
from memory.embedder import Encoder

SCHEMA = 1
MANIFEST = "index.json"
SEGMENT_BYTES = 16 << 20
BLOCK_ITEMS = 256
TEMPERATURE = 0.05  # softmax temperature over cosine similarities for kNN tactic scores


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

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, obj: dict) -> "BankItem":
        return cls(**{**obj, "premises": tuple(obj.get("premises", ())), "proof": tuple(obj.get("proof", ()))})

    @property
    def digest(self) -> str:
        """Content identity: the same step or proof is stored once."""
        key = json.dumps([self.kind, self.repo, self.theorem, self.state, self.tactic, list(self.proof)])
        return hashlib.sha1(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Match:
    id: int
    item: BankItem
    score: float


@dataclass(frozen=True)
class Aggregate:
    tactics: list[tuple[str, float]]
    context: str


@dataclass
class _Entry:
    item: BankItem
    vector: np.ndarray
    key: float
    nbytes: float
    segment: str


def normalize_tactic(tactic: str) -> str:
    return re.sub(r"\s+", " ", tactic).strip()


def items_of_repository(repo: Repository, splits: Sequence[str] = ("train",)) -> list[BankItem]:
    """A repository's traced human proofs as bank items: every step, and each whole proof."""
    items: list[BankItem] = []
    for thm in repo.theorems_in(*splits):
        if not thm.tactics or thm.is_sorry:
            continue
        for t in thm.tactics:
            items.append(BankItem("step", repo.name, thm.full_name, t.state_before, t.tactic, t.state_after,
                                  premises=tuple(dict.fromkeys(a.full_name for a in t.annotations)),
                                  commit=repo.commit))
        proof = tuple(t.tactic for t in thm.tactics)
        used = tuple(dict.fromkeys(a.full_name for t in thm.tactics for a in t.annotations))
        items.append(BankItem("proof", repo.name, thm.full_name, thm.tactics[0].state_before, proof[0],
                              thm.tactics[-1].state_after, premises=used, proof=proof, commit=repo.commit))
    return items


class MemoryBank:
    """Items in `path/seg-NNNNNN.bin`, manifest `path/index.json`; a dequantized matrix in memory for matching."""

    def __init__(self, path: Path, encoder: Encoder, budget_bytes: int = 64 << 20, quantization: str = "int8",
                 seed: int = 3407):
        if quantization not in QUANT_CODES:
            raise InputError(f"[memory] bank_quantization {quantization!r}: expected one of {', '.join(QUANT_CODES)}")
        self.path = Path(path)
        self.encoder = encoder
        self.budget_bytes = budget_bytes
        self.quantization = quantization
        self._rng = np.random.default_rng(seed)
        self._entries: dict[int, _Entry] = {}
        self._digests: dict[str, int] = {}
        self._disk_bytes: dict[str, int] = {}
        self._mat: np.ndarray | None = None
        self._mat_ids: np.ndarray | None = None
        self._truncated: set[str] = set()
        self._load()

    # -- persistence --------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def _load(self) -> None:
        if not self.manifest_path.exists():
            if any(self.path.glob("seg-*.bin")):
                raise WorkspaceError(f"{self.manifest_path}: memory bank index is missing but segments exist; "
                                     "move the bank/ folder away to start the bank afresh")
            self.manifest = {"schema": SCHEMA, "encoder": self.encoder.version, "dim": self.encoder.dim,
                             "quantization": self.quantization, "next_id": 0, "segments": [], "sources": {}}
            return
        self.manifest = read_json(self.manifest_path, "memory bank index")
        if self.manifest.get("schema") != SCHEMA:
            raise WorkspaceError(f"{self.manifest_path}: memory bank schema {self.manifest.get('schema')} is not "
                                 f"supported (expects {SCHEMA}); move the bank/ folder away to start afresh")
        if self.manifest["encoder"] != self.encoder.version:
            raise WorkspaceError(f"{self.manifest_path}: the bank was written with encoder "
                                 f"{self.manifest['encoder']}, not {self.encoder.version}; set [memory] encoder back "
                                 "or move the bank/ folder away")
        dead: set[int] = set()
        for seg in self.manifest["segments"]:
            for kind, rec in read_segment(self.path / seg["file"], seg["committed"]):
                if kind == BLOCK:
                    self._index_block(rec, seg["file"])  # type: ignore[arg-type]
                else:
                    dead.update(int(i) for i in rec)  # type: ignore[union-attr]
            self._disk_bytes[seg["file"]] = seg["committed"]
        for i in dead:
            self._drop(i)

    def _index_block(self, block: Block, segment: str) -> None:
        vectors = dequantize(block)
        for j, (id_, key, nbytes) in enumerate(zip(block.ids, block.keys, block.item_bytes())):
            item = BankItem.from_json(block.texts[j])
            self._entries[int(id_)] = _Entry(item, vectors[j], float(key), float(nbytes), segment)
            self._digests[item.digest] = int(id_)
        self._mat = None

    def _drop(self, id_: int) -> _Entry | None:
        entry = self._entries.pop(id_, None)
        if entry is not None:
            self._digests.pop(entry.item.digest, None)
            self._mat = None
        return entry

    def _current_segment(self) -> dict:
        segs = self.manifest["segments"]
        if not segs or segs[-1]["committed"] >= SEGMENT_BYTES:
            number = int(segs[-1]["file"][4:10]) + 1 if segs else 1
            segs.append({"file": f"seg-{number:06d}.bin", "committed": 0})
        return segs[-1]

    def _append(self, records: list[bytes]) -> None:
        """Append records to the current segment and commit them in the manifest (the commit point)."""
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
        atomic_write_json(self.manifest_path, self.manifest)

    # -- writing ------------------------------------------------------------------------------------
    def add(self, items: Sequence[BankItem], progress: bool = False) -> int:
        """Encode, store and commit new items (duplicates of stored ones are skipped); returns how many."""
        fresh, seen = [], set()
        for it in items:
            d = it.digest
            if d not in self._digests and d not in seen:
                seen.add(d)
                fresh.append(it)
        if not fresh:
            return 0
        fresh.sort(key=lambda it: it.repo)  # blocks of one repository compress together and compact cleanly
        vectors = self.encoder.encode([it.state for it in fresh], progress=progress, desc="bank")
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
                                         self.quantization)
            records.append(record)
            self._index_block(block, seg_name)
        evicted = self._evict_over_budget()
        if evicted:
            records.append(encode_tombstone(evicted))
        self._append(records)
        self._maybe_compact()
        return len(fresh) - sum(1 for i in evicted if i >= first_new)

    def add_repository(self, repo: Repository, splits: Sequence[str] = ("train",)) -> int:
        """Store a repository's traced human proofs; a new commit replaces the old commit's traced items."""
        source = self.manifest["sources"].get(repo.name)
        if source == repo.commit:
            return 0
        if source is not None:
            old = [i for i, e in self._entries.items()
                   if e.item.repo == repo.name and e.item.checked_by == "trace" and e.item.commit != repo.commit]
            self._tombstone(old)
        self.manifest["sources"][repo.name] = repo.commit
        added = self.add(items_of_repository(repo, splits))
        self._save_manifest()
        return added

    def forget_repo(self, repo: str, commit: str | None = None) -> int:
        """Remove every item of `repo` (of one commit, or all); returns how many."""
        ids = [i for i, e in self._entries.items() if e.item.repo == repo and (commit is None or e.item.commit == commit)]
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
            per_repo.setdefault(e.item.repo, []).append((e.key, i))
            repo_bytes[e.item.repo] = repo_bytes.get(e.item.repo, 0.0) + e.nbytes
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
        """Copy live items to new segments, switch the manifest atomically, then delete the old files."""
        old = [s["file"] for s in self.manifest["segments"]]
        number = int(old[-1][4:10]) + 1 if old else 1
        entries = sorted(self._entries.items(), key=lambda kv: (kv[1].item.repo, kv[0]))
        new_segments, records, size = [], [], 0
        blocks: list[tuple[str, Block]] = []

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
                for b in pending:
                    blocks.append((name, b))
                pending.clear()
                number += 1
            records, size = [], 0

        pending: list[Block] = []
        for start in range(0, len(entries), BLOCK_ITEMS):
            chunk = entries[start:start + BLOCK_ITEMS]
            ids = np.asarray([i for i, _ in chunk], dtype=np.int64)
            keys = np.asarray([e.key for _, e in chunk], dtype=np.float32)
            vecs = np.stack([e.vector for _, e in chunk])
            record, block = encode_block(ids, keys, vecs, [e.item.to_json() for _, e in chunk], self.quantization)
            records.append(record)
            pending.append(block)
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
        self._disk_bytes = {s["file"]: s["committed"] for s in new_segments}
        self._truncated = {s["file"] for s in new_segments}
        for name, b in blocks:
            self._index_block(b, name)

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

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """`(ids, dequantized vectors)` of all live items, the matrix `match` multiplies with."""
        if self._mat is None:
            ids = np.asarray(sorted(self._entries), dtype=np.int64)
            self._mat_ids = ids
            self._mat = (np.stack([self._entries[int(i)].vector for i in ids]) if len(ids)
                         else np.zeros((0, self.encoder.dim), dtype=np.float32))
        return self._mat_ids, self._mat  # type: ignore[return-value]

    def match(self, query: str | np.ndarray, k: int = 10, repos: Sequence[str] | None = None,
              kind: str | None = "step") -> list[Match]:
        """Top-k items by cosine similarity to a proof state (self-matching: same encoder as the items)."""
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        ids, mat = self.vectors()
        if not len(ids):
            return []
        q = self.encoder.encode([query])[0] if isinstance(query, str) else np.asarray(query, dtype=np.float32).ravel()
        scores = mat @ q
        if repos is not None or kind is not None:
            allowed = set(repos) if repos is not None else None
            mask = np.fromiter(((allowed is None or self._entries[int(i)].item.repo in allowed)
                                and (kind is None or self._entries[int(i)].item.kind == kind) for i in ids),
                               dtype=bool, count=len(ids))
            scores = np.where(mask, scores, -np.inf)
        top = np.argpartition(-scores, min(k, len(ids)) - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Match(int(ids[j]), self._entries[int(ids[j])].item, float(scores[j])) for j in top
                if np.isfinite(scores[j])]

    def aggregate(self, matches: Sequence[Match], n: int = 8) -> Aggregate:
        """kNN tactic suggestions and a short context text from matched items.

        Each match gets weight softmax(score / T) (T = 0.05); a tactic's score is the log of the summed
        weight of the matches that used it (whitespace-normalised), so scores are log-probabilities ≤ 0.
        """
        if not matches:
            return Aggregate([], "")
        scores = np.asarray([m.score for m in matches], dtype=np.float64) / TEMPERATURE
        weights = np.exp(scores - scores.max())
        weights /= weights.sum()
        mass: dict[str, float] = {}
        for m, w in zip(matches, weights):
            tactic = normalize_tactic(m.item.tactic)
            if tactic:
                mass[tactic] = mass.get(tactic, 0.0) + float(w)
        tactics = sorted(((t, math.log(min(1.0, w))) for t, w in mass.items() if w > 0), key=lambda tw: -tw[1])[:n]
        lines = []
        for m in matches[:n]:
            state = m.item.state.strip().splitlines()
            goal = state[-1] if state else ""
            lines.append(f"-- {m.item.theorem} ({m.score:.2f}): {goal[:120]}\n{normalize_tactic(m.item.tactic)}")
        return Aggregate(tactics, "\n".join(lines))

    def sample(self, n: int, rng: random.Random, exclude_repo: str | None = None) -> list[BankItem]:
        """A repository-balanced sample for replay: repositories take turns, items uniform within each."""
        by_repo: dict[str, list[int]] = {}
        for i, e in self._entries.items():
            if e.item.repo != exclude_repo:
                by_repo.setdefault(e.item.repo, []).append(i)
        pools = {r: rng.sample(sorted(ids), len(ids)) for r, ids in sorted(by_repo.items())}
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
        """Bytes of all segments on disk (live and dead records) plus the manifest."""
        size = sum(self._disk_bytes.values())
        return size + (self.manifest_path.stat().st_size if self.manifest_path.exists() else 0)
