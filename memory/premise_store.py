"""The premise store: premise vectors in chromadb, embedded once per encoder version and updated by diff.

LeanAgent re-embeds its whole premise corpus after every repository (Kumarappan et al., ICLR 2025). Here a
premise is embedded once: a new commit of a known repository is diffed by `code_hash` (a hash of the text
the encoder sees), only new or changed premises are embedded, removed ones are deleted, and unchanged ones
get their stored vector copied to the new id. One collection per encoder version keeps vectors of
different weights apart.

Ids are `repo@commit:full_name`; metadata `repo, commit, full_name, path, kind, start_line, start_col,
end_line, end_col, code_hash`; documents are the premise code. We always pass embeddings ourselves
(`embedding_function=None`), so chromadb never tries to download its default model.

Read-only opening (`read_only=True`, for commands that only read): chromadb rewrites its files when it
opens a persistent directory, so a reader opens a snapshot instead: a copy of `chroma/` in a temporary
directory, its SQLite database copied with SQLite's online backup API (a consistent snapshot even while a
writer commits), removed again by `close()`. Nothing under the workspace is written.

Crash safety: new vectors are written before old ones are deleted, in batches, and callers mark a
repository indexed only after `add_repo` returns; re-running an interrupted add finds what is already
there (same id, same hash) and embeds only the rest.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence
from urllib.parse import urlparse

import numpy as np

from common.errors import InputError, WorkspaceError
from curriculum.lean_data import Premise, Repository
from memory.embedder import Encoder, premise_text

CHROMA_BATCH = 5000  # chromadb rejects adds above ~5,461 items
ROW_CACHE = 20_000   # premises whose metadata and code a process keeps (about 300 bytes each)
EMBED_CHUNK = 512    # texts embedded between two writes to chroma: a crash loses at most this much work
FilterMode = Literal["overfetch", "where"]


@dataclass(frozen=True)
class IndexReport:
    """What one add/update did: premises embedded, kept with their old vectors, and deleted."""

    embedded: int
    unchanged: int
    removed: int


@dataclass(frozen=True)
class RetrievedPremise:
    id: str
    full_name: str
    path: str
    repo: str
    commit: str
    score: float
    code: str

    @property
    def text(self) -> str:
        """The premise text the encoder embedded (and the lexical rerank reads)."""
        return premise_text(self.full_name, self.code, self.path)


def code_hash(premise: Premise) -> str:
    """Hash of exactly what the encoder embeds, so a premise is re-embedded iff its vector would change."""
    return hashlib.sha1(premise_text(premise.full_name, premise.code, premise.path).encode("utf-8")).hexdigest()[:16]


def premise_id(repo: str, commit: str, full_name: str) -> str:
    return f"{repo}@{commit}:{full_name}"


def collection_name(encoder_version: str) -> str:
    """A valid chroma collection name (3-512 of [a-zA-Z0-9._-], alphanumeric ends) unique per version."""
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", encoder_version).strip("-._")[:40]
    digest = hashlib.sha1(encoder_version.encode()).hexdigest()[:8]
    return f"premises-{slug}-{digest}"


def _client(path: Path | None, chroma_url: str | None):
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if chroma_url:
        url = urlparse(chroma_url if "://" in chroma_url else f"http://{chroma_url}")
        if not url.hostname:
            raise InputError(f"[memory] chroma_url {chroma_url!r}: expected http://HOST:PORT")
        try:
            return chromadb.HttpClient(host=url.hostname, port=url.port or 8000, ssl=url.scheme == "https",
                                       settings=settings)
        except Exception as exc:  # chromadb raises plain ValueError/ConnectionError subclasses here
            raise WorkspaceError(f"chroma server {chroma_url}: cannot connect ({exc}); start one with "
                                 "`chroma run --path DIR --host 127.0.0.1 --port N` or unset [memory] chroma_url") from None
    if path is None:
        return chromadb.EphemeralClient(settings=settings)
    Path(path).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def _snapshot(path: Path) -> Path:
    """A private copy of a chroma directory: SQLite files through the backup API, the rest copied as is."""
    dest = Path(tempfile.mkdtemp(prefix="lifelean-chroma-ro-"))
    for src in sorted(path.rglob("*")):
        target = dest / src.relative_to(path)
        if src.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif src.suffix == ".sqlite3":
            source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
            try:
                copy = sqlite3.connect(target)
                source.backup(copy)
                copy.close()
            finally:
                source.close()
        elif not src.name.endswith(("-wal", "-shm", "-journal")):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def _release(client, snapshot: Path | None) -> None:
    """Stop a snapshot's chroma system and delete the snapshot (chromadb caches one system per path)."""
    if snapshot is None:
        return
    try:
        from chromadb.api.client import SharedSystemClient

        system = SharedSystemClient._identifier_to_system.pop(str(snapshot), None)
        if system is not None:
            system.stop()
    except Exception:  # noqa: BLE001 - best effort: the snapshot is deleted either way
        pass
    shutil.rmtree(snapshot, ignore_errors=True)


class PremiseStore:
    """Premise vectors of all repositories, for one encoder version. `path=None` keeps them in memory;
    `read_only=True` reads a snapshot and never writes under `path` (see the module docstring)."""

    def __init__(self, path: Path | None, encoder: Encoder, chroma_url: str | None = None,
                 filter_mode: FilterMode = "overfetch", read_only: bool = False):
        self.encoder = encoder
        self.version = encoder.version
        self.filter_mode = filter_mode
        self.read_only = read_only
        self._snapshot: Path | None = None
        self._names: dict[str | None, tuple[tuple[int, int], frozenset[str]]] = {}
        self._writes = 0
        # A retrieved row's name, path, repository, commit and code, by id (see `_query`); embedded store only:
        # the workspace lock makes this process its only writer, and a write empties it. A chroma server may
        # have other writers, so there every query fetches its rows.
        self._rows: OrderedDict[str, tuple[str, str, str, str, str]] | None = \
            OrderedDict() if chroma_url is None else None
        self._rows_lock = threading.Lock()
        if read_only and chroma_url is None and path is not None:
            try:
                self._snapshot = _snapshot(Path(path)) if Path(path).is_dir() else None
            except (OSError, sqlite3.Error) as exc:
                raise WorkspaceError(f"{path}: cannot read the premise store ({exc})") from None
            path = self._snapshot
        self.client = _client(path, chroma_url)
        self._finalizer = weakref.finalize(self, _release, self.client, self._snapshot)
        self.collection = self.client.get_or_create_collection(
            collection_name(self.version), embedding_function=None,
            metadata={"hnsw:space": "cosine", "encoder": self.version},
        )

    def close(self) -> None:
        """Release a read-only snapshot (a writer's store needs no closing)."""
        self._finalizer()

    def drop_row_cache(self) -> None:
        """Forget the rows read so far (`_query`): bench/scale.py's repeated rounds each read their own."""
        if self._rows is not None:
            with self._rows_lock:
                self._rows.clear()

    def _writable(self) -> None:
        if self.read_only:
            raise WorkspaceError("the premise store is open read-only")
        self._writes += 1
        self.drop_row_cache()

    # -- reading ------------------------------------------------------------------------------------
    def _get_all(self, where: dict[str, Any] | None, include: list[str]) -> dict[str, list]:
        """`collection.get` in pages (a single get of 100k rows is slow and memory hungry)."""
        out: dict[str, list] = {"ids": [], **{k: [] for k in include}}
        offset, page = 0, 10000
        while True:
            got = self.collection.get(where=where, include=include, limit=page, offset=offset)
            out["ids"].extend(got["ids"])
            for k in include:
                values = got.get(k)
                out[k].extend(list(values) if values is not None else [])
            if len(got["ids"]) < page:
                return out
            offset += page

    def count(self, repo: str | None = None) -> int:
        """Number of stored premises, of one repository name or of all."""
        if repo is None:
            return self.collection.count()
        return len(self._get_all({"repo": repo}, [])["ids"])

    def premise_names(self, repo: str | None = None) -> frozenset[str]:
        """Full names of the stored premises (of one repository or all), fetched once and cached.

        Evaluation needs only the names, once per cell; fetching every document each time grew with the whole
        corpus. The cache is keyed by the collection's count and this store's own writes, so it follows
        this process's updates; another writer changing names without changing the count is not seen.
        """
        key = (self.collection.count(), self._writes)
        hit = self._names.get(repo)
        if hit is None or hit[0] != key:
            metas = self._get_all({"repo": repo} if repo else None, ["metadatas"])["metadatas"]
            hit = (key, frozenset(m["full_name"] for m in metas))
            self._names[repo] = hit
        return hit[1]

    def repos(self) -> dict[str, dict[str, int]]:
        """`{repo name: {commit: premises}}` of everything stored."""
        out: dict[str, dict[str, int]] = {}
        for meta in self._get_all(None, ["metadatas"])["metadatas"]:
            commits = out.setdefault(meta["repo"], {})
            commits[meta["commit"]] = commits.get(meta["commit"], 0) + 1
        return out

    def premises(self, repo: str | None = None) -> list[RetrievedPremise]:
        """All stored premises (score 0.0), of one repository name or of all."""
        got = self._get_all({"repo": repo} if repo else None, ["metadatas", "documents"])
        return [self._row(i, m, d, 0.0) for i, m, d in zip(got["ids"], got["metadatas"], got["documents"])]

    def embeddings(self, ids: Sequence[str]) -> np.ndarray | None:
        """The stored vectors of premise `ids` (see :func:`premise_id`), in that order; None when any is missing.
        Training reads its frozen document vectors here instead of embedding the whole corpus again in every
        process (at 100k premises that is minutes per step)."""
        ids = list(ids)
        by_id: dict[str, Any] = {}
        for start in range(0, len(ids), CHROMA_BATCH):
            got = self.collection.get(ids=ids[start:start + CHROMA_BATCH], include=["embeddings"])
            by_id.update(zip(got["ids"], got["embeddings"]))
        if len(by_id) < len(set(ids)):
            return None
        return np.asarray([by_id[i] for i in ids], dtype=np.float32).reshape(len(ids), -1)

    def get(self, ids: Sequence[str]) -> list[RetrievedPremise]:
        got = self.collection.get(ids=list(ids), include=["metadatas", "documents"])
        return [self._row(i, m, d, 0.0) for i, m, d in zip(got["ids"], got["metadatas"], got["documents"])]

    @staticmethod
    def _row(id_: str, meta: dict[str, Any], doc: str | None, score: float) -> RetrievedPremise:
        return RetrievedPremise(id=id_, full_name=meta["full_name"], path=meta["path"], repo=meta["repo"],
                                commit=meta["commit"], score=score, code=doc or "")

    # -- writing ------------------------------------------------------------------------------------
    def add_repo(self, repo: Repository, progress: bool = False) -> IndexReport:
        """Index `repo@commit`; a known repository name at a new commit is updated by diff."""
        self._writable()
        new = _distinct(repo.premises)
        existing = self._get_all({"repo": repo.name}, ["metadatas"])
        same_commit: dict[str, str] = {}            # full_name -> code_hash already stored at this commit
        other: dict[str, tuple[str, str]] = {}      # full_name -> (id, code_hash) stored at another commit
        stale_ids: list[str] = []
        for id_, meta in zip(existing["ids"], existing["metadatas"]):
            if meta["commit"] == repo.commit:
                same_commit[meta["full_name"]] = meta["code_hash"]
            else:
                other.setdefault(meta["full_name"], (id_, meta["code_hash"]))
                stale_ids.append(id_)
        old_names = set(same_commit) | set(other)
        to_embed: list[Premise] = []
        to_copy: list[tuple[Premise, str]] = []
        unchanged = 0
        for p in new.values():
            h = code_hash(p)
            if same_commit.get(p.full_name) == h:
                unchanged += 1
            elif p.full_name in other and other[p.full_name][1] == h:
                to_copy.append((p, other[p.full_name][0]))
                unchanged += 1
            else:
                to_embed.append(p)
        stale_same = [premise_id(repo.name, repo.commit, n) for n in same_commit if n not in new]
        embedded = self._embed_and_add(repo, to_embed, progress)
        self._copy_vectors(repo, to_copy)
        self._delete(stale_ids + stale_same)
        removed = len(old_names - set(new))
        return IndexReport(embedded=embedded, unchanged=unchanged, removed=removed)

    def forget_repo(self, name: str, commit: str | None = None) -> int:
        """Delete the premises of repository `name` (of one commit, or all); returns how many."""
        self._writable()
        where: dict[str, Any] = {"repo": name} if commit is None else {"$and": [{"repo": name}, {"commit": commit}]}
        ids = self._get_all(where, [])["ids"]
        self._delete(ids)
        return len(ids)

    def _metadata(self, repo: Repository, p: Premise) -> dict[str, Any]:
        return {"repo": repo.name, "commit": repo.commit, "full_name": p.full_name, "path": p.path, "kind": p.kind,
                "start_line": p.start.line, "start_col": p.start.col, "end_line": p.end.line,
                "end_col": p.end.col, "code_hash": code_hash(p)}

    def _embed_and_add(self, repo: Repository, premises: list[Premise], progress: bool) -> int:
        bar = None
        if progress and len(premises) > EMBED_CHUNK:
            from tqdm import tqdm

            bar = tqdm(total=len(premises), desc=f"embedding {repo.name}", unit="premise", leave=False)
        for start in range(0, len(premises), EMBED_CHUNK):
            chunk = premises[start:start + EMBED_CHUNK]
            vectors = self.encoder.encode([premise_text(p.full_name, p.code, p.path) for p in chunk], memo=False,
                                          progress=progress and bar is None)
            self._upsert(repo, chunk, vectors)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return len(premises)

    def _copy_vectors(self, repo: Repository, pairs: list[tuple[Premise, str]]) -> None:
        for start in range(0, len(pairs), CHROMA_BATCH):
            chunk = pairs[start:start + CHROMA_BATCH]
            got = self.collection.get(ids=[old for _, old in chunk], include=["embeddings"])
            by_id = dict(zip(got["ids"], got["embeddings"]))
            self._upsert(repo, [p for p, _ in chunk], np.asarray([by_id[old] for _, old in chunk], dtype=np.float32))

    def _upsert(self, repo: Repository, premises: list[Premise], vectors: np.ndarray) -> None:
        self._writable()
        for start in range(0, len(premises), CHROMA_BATCH):
            chunk = premises[start:start + CHROMA_BATCH]
            self.collection.upsert(
                ids=[premise_id(repo.name, repo.commit, p.full_name) for p in chunk],
                embeddings=vectors[start:start + CHROMA_BATCH],
                metadatas=[self._metadata(repo, p) for p in chunk],
                documents=[p.code for p in chunk],
            )

    def _delete(self, ids: list[str]) -> None:
        self._writable()
        for start in range(0, len(ids), CHROMA_BATCH):
            self.collection.delete(ids=ids[start:start + CHROMA_BATCH])

    # -- retrieval ----------------------------------------------------------------------------------
    def retrieve(self, state: str, k: int, repos: Sequence[str] | None = None,
                 accessible: set[str] | None = None) -> list[RetrievedPremise]:
        """Top-k premises for a proof state by cosine similarity (score = 1 - cosine distance)."""
        vectors = self.encoder.encode([state])
        return self.retrieve_by_vectors(vectors, k, accessible=[accessible], repos=repos)[0]

    def retrieve_by_vectors(self, vectors: np.ndarray, k: int, accessible: Sequence[set[str] | None] | None = None,
                            repos: Sequence[str] | None = None) -> list[list[RetrievedPremise]]:
        """Top-k per query vector, each restricted to its accessible set (None = no restriction).

        Results are distinct by full name (the same lemma stored for two repositories counts once).
        """
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        access = list(accessible) if accessible is not None else [None] * len(vectors)
        if len(access) != len(vectors):
            raise ValueError("accessible must have one entry per query vector")
        repo_where = {"repo": {"$in": list(repos)}} if repos else None
        out = []
        for vec, acc in zip(vectors, access):
            if acc is not None and not acc:
                out.append([])
            elif acc is not None and self.filter_mode == "where":
                out.append(self._query_where(vec, k, acc, repo_where))
            else:
                out.append(self._query_overfetch(vec, k, acc, repo_where))
        return out

    def warm(self) -> None:
        """Load the collection's search index now rather than on the first retrieval: chroma reads it from
        disk on a client's first read, in time that grows with the store (0.65 s at 100k premises). It
        searches with one stored vector (no encoder needed); an empty store has nothing to load."""
        got = self.collection.get(limit=1, include=["embeddings"])
        if got["ids"]:
            self.collection.query(query_embeddings=np.asarray(got["embeddings"][:1], dtype=np.float32),
                                  n_results=1, include=["distances"])

    def _query(self, vec: np.ndarray, n: int, where: dict[str, Any] | None) -> list[RetrievedPremise]:
        """The `n` nearest rows. chroma's search itself is cheap (~2 ms for 108 rows at 10k premises); reading
        the rows' metadata and documents back is not (~0.1 ms a row, 11 ms of a 13 ms query), and the
        states of one proof search retrieve largely the same premises. So the search asks for distances
        only and the rows come from `_rows`, fetched in one `get` for those it does not hold."""
        if self._rows is None:
            got = self.collection.query(query_embeddings=vec[None, :], n_results=n, where=where,
                                        include=["metadatas", "documents", "distances"])
            return [self._row(i, m, d, 1.0 - float(dist)) for i, m, d, dist in
                    zip(got["ids"][0], got["metadatas"][0], got["documents"][0], got["distances"][0])]
        got = self.collection.query(query_embeddings=vec[None, :], n_results=n, where=where, include=["distances"])
        ids, rows = got["ids"][0], self._rows
        with self._rows_lock:   # threads of one process may share the store
            known = {i: rows[i] for i in ids if i in rows}
        missing = [i for i in ids if i not in known]
        if missing:
            fetched = self.collection.get(ids=missing, include=["metadatas", "documents"])
            for i, m, d in zip(fetched["ids"], fetched["metadatas"], fetched["documents"]):
                known[i] = (m["full_name"], m["path"], m["repo"], m["commit"], d or "")
        with self._rows_lock:
            for i in ids:
                if i in known:   # not: deleted between the search and the fetch
                    rows[i] = known[i]
                    rows.move_to_end(i)
            while len(rows) > ROW_CACHE:
                rows.popitem(last=False)
        return [RetrievedPremise(i, *known[i][:4], score=1.0 - float(dist), code=known[i][4])
                for i, dist in zip(ids, got["distances"][0]) if i in known]

    def _query_where(self, vec, k, acc, repo_where) -> list[RetrievedPremise]:
        """chromadb filters by metadata before the vector search."""
        clause: dict[str, Any] = {"full_name": {"$in": sorted(acc)}}
        where = {"$and": [clause, repo_where]} if repo_where else clause
        return _distinct_names(self._query(vec, k + 8, where), k)

    def _query_overfetch(self, vec, k, acc, repo_where) -> list[RetrievedPremise]:
        """Fetch more than k neighbours and filter here, widening until k accessible ones are found.

        The default: `bench/memory.py` (k=10, 30% accessible, random 384-d unit vectors, 2 shared CPU cores)
        measured 6.3 vs 30.8 ms/query at 10k premises and 9.8 vs 260 ms/query at 100k against chromadb's
        `where` `$in` filter, whose cost grows with the size of the accessible set.

        chromadb returns every row when asked for more than it holds (none from an empty collection), so
        fewer rows than asked means the search is exhausted; the collection is never counted per query (a
        full scan in chroma's SQLite: 2 ms at 10k premises, the largest part of a query at 100k).
        Without an accessibility filter only a name stored by several repositories can be dropped, so k + 8
        rows are asked first: every row comes back with its document and metadata, and the rerank's 100
        candidates fetched as 400 rows made `make run`'s evaluate step twice as slow (74 s -> 151 s).
        """
        n = max(4 * k, 32) if acc is not None else k + 8
        while True:
            rows = self._query(vec, n, repo_where)
            kept = [r for r in rows if acc is None or r.full_name in acc]
            picked = _distinct_names(kept, k)
            if len(picked) >= k or len(rows) < n:
                return picked
            n *= 4


def _distinct(premises: Iterable[Premise]) -> dict[str, Premise]:
    """Premises by full name; a duplicate name within one repository keeps its first occurrence."""
    out: dict[str, Premise] = {}
    for p in premises:
        out.setdefault(p.full_name, p)
    return out


def _distinct_names(rows: list[RetrievedPremise], k: int) -> list[RetrievedPremise]:
    seen: set[str] = set()
    out = []
    for r in rows:
        if r.full_name not in seen:
            seen.add(r.full_name)
            out.append(r)
            if len(out) == k:
                break
    return out
