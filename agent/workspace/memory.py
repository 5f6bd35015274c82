"""Workspace glue for memory: open the premise store and the bank of a workspace, index repositories, forget.

State and store never disagree after a crash: a repository's entry in `state.json` gets
`indexed` (an IndexRecord) only after chromadb and the bank hold its data, and indexing is
idempotent (the store diffs by content hash, the bank skips what it holds), so re-running an interrupted
add repairs it. The caller holds the workspace lock.
"""
from __future__ import annotations

import datetime as _dt
import functools
from typing import Sequence

from agent.config import RunConfig
from agent.workspace.state import ForgetRecord, IndexRecord, StreamEntry, WorkspaceState
from agent.workspace.workspace import Workspace
from common.errors import InputError
from curriculum.lean_data import Repository
from memory.bank import MemoryBank
from memory.embedder import Encoder
from memory.premise_store import PremiseStore

MEMO_TEXTS = 8192   # vectors of recent texts an encoder keeps: ~12 MB for MiniLM; covers an evaluation row


@functools.lru_cache(maxsize=4)
def _load_encoder(name: str, max_length: int, batch_size: int) -> Encoder:
    return Encoder.load(name, max_length=max_length, batch_size=batch_size).remember(MEMO_TEXTS)


def base_encoder(config: RunConfig) -> Encoder:
    """The frozen base encoder of `[memory]`: one instance per process (its weights are never trained;
    trainable towers are deep copies), which keeps a run's resident memory to one copy of the model."""
    m = config.memory
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
                       encoder: Encoder | None = None) -> dict[str, dict[str, int]]:
    """Embed each repository's premises (by diff) and put its traced train proofs in the bank.

    Returns `{repo key: {"premises_embedded", "premises_unchanged", "premises_removed", "bank_items_added"}}`.
    Each entry is marked indexed in `state` (and `state.json` saved) right after its data is durable.
    """
    config = config or ws.config()
    encoder = encoder or base_encoder(config)
    store = open_store(ws, config, encoder)
    bank = open_bank(ws, config, encoder)
    out: dict[str, dict[str, int]] = {}
    for repo in repos:
        report = store.add_repo(repo, progress=progress)
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
    record.status = "done"
    ws.save_state(state)
    return record
