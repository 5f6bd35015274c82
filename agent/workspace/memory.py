"""Workspace glue for memory: open the premise store and the bank of a workspace, index repositories, forget.

State and store never disagree after a crash: a repository's entry in `state.json` gets
`indexed` (an IndexRecord) only after chromadb and the bank hold its data, and indexing is
idempotent (the store diffs by content hash, the bank skips what it holds), so re-running an interrupted
add repairs it. The caller holds the workspace lock.
"""
from __future__ import annotations

import datetime as _dt
import functools
import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from agent.config import RunConfig
from agent.workspace.state import ForgetRecord, IndexRecord, StreamEntry, WorkspaceState
from agent.workspace.workspace import Workspace
from common.errors import InputError
from curriculum.lean_data import Premise, Repository
from memory.bank import MemoryBank
from memory.embedder import Encoder
from memory.premise_store import PremiseStore

if TYPE_CHECKING:
    from memory.premise_vectors import PremiseTable

MEMO_TEXTS = 8192   # vectors of recent texts an encoder keeps: ~12 MB for MiniLM; covers an evaluation row


@functools.lru_cache(maxsize=4)
def _load_encoder(name: str, max_length: int, batch_size: int) -> Encoder:
    return Encoder.load(name, max_length=max_length, batch_size=batch_size).remember(MEMO_TEXTS)


_ENCODER_LOADING = threading.Lock()   # lru_cache lets two threads that miss together both load


def base_encoder(config: RunConfig) -> Encoder:
    """The frozen base encoder of `[memory]`: one instance per process (its weights are never trained;
    trainable towers are deep copies), which keeps a run's resident memory to one copy of the model. Threads
    share it too: the loop opens its premise store in a background thread (`LoopContext.open_store_ahead`)."""
    m = config.memory
    with _ENCODER_LOADING:
        return _load_encoder(m.encoder, m.max_length, m.batch_size)


def open_store(ws: Workspace, config: RunConfig | None = None, encoder: Encoder | None = None,
               read_only: bool = False) -> PremiseStore:
    """The workspace's premise store: embedded under `chroma/`, or the chroma server of `[memory] chroma_url`;
    `read_only` reads a consistent snapshot and never writes under the workspace."""
    config = config or ws.config()
    return PremiseStore(ws.chroma_dir, encoder or base_encoder(config), chroma_url=config.memory.chroma_url,
                        filter_mode=config.memory.retrieve_filter, read_only=read_only)


def open_bank(ws: Workspace, config: RunConfig | None = None, encoder: Encoder | None = None,
              read_only: bool = False) -> MemoryBank:
    """The workspace's memory bank under `bank/`, always encoded by the frozen base encoder; `read_only` opens a
    snapshot that never writes (for commands that only read, which must leave the workspace byte-identical)."""
    config = config or ws.config()
    return MemoryBank(ws.bank_dir, encoder or base_encoder(config), budget_bytes=config.memory.bank_budget_bytes,
                      quantization=config.memory.bank_quantization, seed=config.seed, read_only=read_only)


def index_repositories(ws: Workspace, state: WorkspaceState, repos: Sequence[Repository],
                       progress: bool = False, config: RunConfig | None = None,
                       encoder: Encoder | None = None, store: PremiseStore | None = None,
                       bank: MemoryBank | None = None) -> dict[str, dict[str, int]]:
    """Embed each repository's premises (by diff) and put its traced train proofs in the bank (`store` and
    `bank`: the caller's open ones, else opened here).

    Returns `{repo key: {"premises_embedded", "premises_unchanged", "premises_removed", "bank_items_added"}}`.
    Each entry is marked indexed in `state` (and `state.json` saved) right after its data is durable.
    """
    config = config or ws.config()
    encoder = encoder or base_encoder(config)
    store = store if store is not None else open_store(ws, config, encoder)
    bank = bank if bank is not None else open_bank(ws, config, encoder)
    out: dict[str, dict[str, int]] = {}
    for repo in repos:
        report = store.add_repo(repo, progress=progress)
        save_premise_table(ws, store, repo)
        added = bank.add_repository(repo)
        out[repo.key] = {"premises_embedded": report.embedded, "premises_unchanged": report.unchanged,
                         "premises_removed": report.removed, "bank_items_added": added}
        for e in state.entries:  # an older commit of the same name no longer has its premises in the store
            if e.name == repo.name and e.key != repo.key:
                e.indexed = None
        entry = state.entry(repo.key)
        if entry is not None:
            entry.indexed = IndexRecord(encoder=store.version, commit=repo.commit, premises=store.count(repo.name))
        ws.save_state(state)
    return out


def _premise_table(repo: Repository, store: PremiseStore) -> PremiseTable | None:
    """`repo`'s distinct premises (a name's first occurrence, as the store and the corpus keep them) with the
    store's vectors of them; None when the store lacks any."""
    from memory.embedder import premise_text
    from memory.premise_store import premise_id
    from memory.premise_vectors import PremiseTable

    distinct: dict[str, Premise] = {}
    for p in repo.premises:
        distinct.setdefault(p.full_name, p)
    ids = [premise_id(repo.name, repo.commit, name) for name in distinct]
    vectors = store.embeddings(ids) if ids else np.zeros((0, store.encoder.dim), dtype=np.float32)
    if vectors is None:
        return None
    return PremiseTable(ids, list(distinct), [premise_text(p.full_name, p.code, p.path) for p in distinct.values()],
                        [p.path for p in distinct.values()], vectors)


def _source_digest(ws: Workspace, key: str) -> str | None:
    from memory.premise_vectors import source_digest

    try:
        return source_digest(ws.repo_data_path(key))
    except OSError:
        return None


def save_premise_table(ws: Workspace, store: PremiseStore, repo: Repository) -> None:
    """Write `repo`'s premise table with the vectors the store now holds, for bulk reads
    (memory/premise_vectors.py); nothing when the repository was not imported into the workspace."""
    from memory.premise_vectors import write_table

    source = _source_digest(ws, repo.key)
    table = _premise_table(repo, store) if source is not None else None
    if table is not None:
        write_table(ws.premise_vectors_path(repo.key), table, store.version, source)


def load_corpus(ws: Workspace, config: RunConfig, keys: Sequence[str], repository: Callable[[str], Repository],
                store_of: Callable[[], PremiseStore] | None = None) -> Any:
    """The training corpus of entries `keys` with its stored vectors (agent/learn/retriever.py `Corpus`): each
    entry's premise table from its file where the file matches the import, else from the imported repository
    (`repository(key)`) and the premise store (`store_of()`: the caller's open one; else opened here). Without a
    stored vector for some premise, the corpus comes without vectors (they are then embedded). At 10k premises
    the files took the load from 2.4-3.0 s to 0.2 s (design note 25)."""
    from agent.learn.retriever import Corpus
    from memory.premise_vectors import read_table

    base = base_encoder(config)
    tables: list[PremiseTable] = []
    store: PremiseStore | None = None
    for key in keys:
        source = _source_digest(ws, key)
        table = read_table(ws.premise_vectors_path(key), base.version, source) if source is not None else None
        if table is None:
            store = store or (store_of() if store_of is not None else open_store(ws, config))
            table = _premise_table(repository(key), store)
        if table is None:
            return Corpus.from_repositories(repository(k) for k in keys)
        tables.append(table)
    names, texts, paths, ids, rows, seen = [], [], [], [], [], set()
    for table in tables:   # a name kept by two repositories ranks with the first one's copy (from_repositories)
        keep = [i for i, name in enumerate(table.names) if name not in seen]
        seen.update(table.names)
        names += [table.names[i] for i in keep]
        texts += [table.texts[i] for i in keep]
        paths += [table.paths[i] for i in keep]
        ids += [table.ids[i] for i in keep]
        rows.append(table.vectors[keep])
    corpus = Corpus(names, texts, paths, ids)
    corpus.set_vectors(base, np.concatenate(rows) if rows else np.zeros((0, base.dim), dtype=np.float32))
    return corpus


def unindexed(state: WorkspaceState, encoder_version: str) -> list[str]:
    """Keys of live entries not (or not with this encoder) indexed: what a repair must re-run."""
    return [e.key for e in state.live() if e.indexed is None or e.indexed.encoder != encoder_version]


def repair(ws: Workspace, state: WorkspaceState, progress: bool = False,
           config: RunConfig | None = None) -> dict[str, dict[str, int]]:
    """Finish indexing every repository an interrupted add left unmarked."""
    config = config or ws.config()
    encoder = base_encoder(config)
    keys = unindexed(state, encoder.version)
    return index_repositories(ws, state, [ws.load_repository(k) for k in keys], progress, config, encoder)


def forget(ws: Workspace, name: str, commit: str | None = None, config: RunConfig | None = None) -> ForgetRecord:
    """Remove repository `name` (one commit or all) from the store and the bank, and mark its entries.

    The intent is recorded in `state.json` before anything is deleted, so a crash half-way is finished by the
    next writer (:func:`finish_forgets`); entries are marked forgotten, never removed or renumbered.
    """
    state = ws.load_state()
    config = config or ws.config()
    entries = _matching(state, name, commit)
    if not entries:
        store = open_store(ws, config)
        if not store.count(name):
            known = sorted({e.name for e in state.live()})
            what = f"{name}@{commit}" if commit else name
            raise InputError(f"forget {what}: no such repository in this workspace "
                             f"(known: {', '.join(known) or 'none'})")
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record = ForgetRecord(repo=name, commit=commit, at=now)
    state.forgotten.append(record)
    ws.save_state(state)
    return _carry_out(ws, state, record, config)


def finish_forgets(ws: Workspace, state: WorkspaceState, config: RunConfig | None = None) -> None:
    """Complete every forget a crash interrupted (deleting is idempotent)."""
    for record in state.forgotten:
        if record.status == "intent":
            _carry_out(ws, state, record, config or ws.config())


def _matching(state: WorkspaceState, name: str, commit: str | None) -> list[StreamEntry]:
    return [e for e in state.entries if e.name == name and not e.forgotten
            and (commit is None or e.commit.startswith(commit))]


def _carry_out(ws: Workspace, state: WorkspaceState, record: ForgetRecord, config: RunConfig) -> ForgetRecord:
    entries = _matching(state, record.repo, record.commit)
    store = open_store(ws, config)
    bank = open_bank(ws, config, store.encoder)
    commits = sorted({e.commit for e in entries})
    targets: list[str | None] = commits if commits and record.commit else [record.commit]
    for c in targets:
        record.premises_removed += store.forget_repo(record.repo, c)
        record.bank_items_removed += bank.forget_repo(record.repo, c)
    for e in entries:
        e.forgotten = True
        e.indexed = None
        ws.premise_vectors_path(e.key).unlink(missing_ok=True)
    record.status = "done"
    ws.save_state(state)
    return record
