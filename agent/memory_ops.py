"""Workspace glue for memory: open the premise store and the bank of a workspace, index repositories, forget.

State and store never disagree after a crash: a repository's entry in `state.json` gets
`"indexed": {"encoder": version, ...}` only after chromadb and the bank hold its data, and indexing is
idempotent (the store diffs by content hash, the bank skips what it holds), so re-running an interrupted
add repairs it. The caller holds the workspace lock.
"""
from __future__ import annotations

import datetime as _dt
from typing import Any, Sequence

from agent.config import RunConfig
from agent.workspace import Workspace
from common.errors import InputError
from curriculum.lean_data import Repository
from memory.bank import MemoryBank
from memory.embedder import Encoder
from memory.premise_store import PremiseStore

_ENCODERS: dict[tuple[str, int, int], Encoder] = {}


def base_encoder(config: RunConfig) -> Encoder:
    """The frozen base encoder of `[memory]`, loaded once per process."""
    m = config.memory
    key = (m.encoder, m.max_length, m.batch_size)
    if key not in _ENCODERS:
        _ENCODERS[key] = Encoder.load(m.encoder, max_length=m.max_length, batch_size=m.batch_size)
    return _ENCODERS[key]


def open_store(ws: Workspace, config: RunConfig | None = None, encoder: Encoder | None = None) -> PremiseStore:
    """The workspace's premise store: embedded under `chroma/`, or the chroma server of `[memory] chroma_url`."""
    config = config or ws.config()
    return PremiseStore(ws.chroma_dir, encoder or base_encoder(config), chroma_url=config.memory.chroma_url,
                        filter_mode=config.memory.retrieve_filter)


def open_bank(ws: Workspace, config: RunConfig | None = None, encoder: Encoder | None = None) -> MemoryBank:
    """The workspace's memory bank under `bank/`, always encoded by the frozen base encoder."""
    config = config or ws.config()
    return MemoryBank(ws.bank_dir, encoder or base_encoder(config), budget_bytes=config.memory.bank_budget_bytes,
                      quantization=config.memory.bank_quantization, seed=config.seed)


def _entry(state: dict[str, Any], repo: Repository) -> dict[str, Any] | None:
    for r in state["repos"]:
        if r.get("key") == repo.key:
            return r
    return None


def index_repositories(ws: Workspace, state: dict[str, Any], repos: Sequence[Repository],
                       progress: bool = False, config: RunConfig | None = None,
                       encoder: Encoder | None = None) -> dict[str, dict[str, int]]:
    """Embed each repository's premises (by diff) and put its traced train proofs in the bank.

    Returns `{repo key: {"premises_embedded", "premises_unchanged", "premises_removed", "bank_items_added"}}`.
    Each repository is marked indexed in `state` (and `state.json` saved) right after its data is durable.
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
        for r in state["repos"]:  # an older commit of the same name no longer has its premises in the store
            if r.get("name") == repo.name and r.get("key") != repo.key:
                r.pop("indexed", None)
        entry = _entry(state, repo)
        if entry is not None:
            entry["indexed"] = {"encoder": store.version, "commit": repo.commit, "premises": store.count(repo.name)}
        ws.save_state(state)
    return out


def unindexed(ws: Workspace, state: dict[str, Any], encoder_version: str) -> list[str]:
    """Keys of live repositories not (or not with this encoder) indexed: what a repair must re-run."""
    return [r["key"] for r in ws.repo_entries(state)
            if (r.get("indexed") or {}).get("encoder") != encoder_version]


def repair(ws: Workspace, state: dict[str, Any], progress: bool = False,
           config: RunConfig | None = None) -> dict[str, dict[str, int]]:
    """Finish indexing every repository an interrupted add left unmarked."""
    config = config or ws.config()
    encoder = base_encoder(config)
    keys = unindexed(ws, state, encoder.version)
    return index_repositories(ws, state, [ws.load_repository(k) for k in keys], progress, config, encoder)


def forget(ws: Workspace, name: str, commit: str | None = None, config: RunConfig | None = None) -> dict[str, Any]:
    """Remove repository `name` (one commit or all) from the store and the bank, and record it in state."""
    state = ws.load_state()
    entries = [r for r in ws.repo_entries(state) if r.get("name") == name
               and (commit is None or str(r.get("commit", "")).startswith(commit))]
    config = config or ws.config()
    store = open_store(ws, config)
    commits = {r["commit"] for r in entries}
    if not entries and not store.count(name):
        known = sorted({r.get("name") for r in ws.repo_entries(state)})
        what = f"{name}@{commit}" if commit else name
        raise InputError(f"forget {what}: no such repository in this workspace (known: {', '.join(known) or 'none'})")
    bank = open_bank(ws, config, store.encoder)
    premises = 0
    items = 0
    targets: list[str | None] = sorted(commits) if commits and commit else [commit]
    for c in targets:
        premises += store.forget_repo(name, c)
        items += bank.forget_repo(name, c)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    for r in entries:
        r["forgotten"] = True
        r.pop("indexed", None)
    state.setdefault("forgotten", []).append({"repo": name, "commit": commit, "at": now,
                                              "premises_removed": premises, "bank_items_removed": items})
    ws.save_state(state)
    return {"repo": name, "commit": commit, "premises_removed": premises, "bank_items_removed": items}
