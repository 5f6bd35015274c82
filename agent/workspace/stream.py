"""The workspace's stream of repositories: registering imported ones and keeping the curriculum current."""
from __future__ import annotations

from agent.workspace.state import SourceRecord, StreamEntry, WorkspaceState
from agent.workspace.workspace import Workspace
from curriculum.lean_data import Repository
from curriculum.ordering import Curriculum, order_repositories
from curriculum.repo_io import save_repository


def register_repositories(ws: Workspace, state: WorkspaceState, repos: list[Repository],
                          source: SourceRecord) -> tuple[list[Repository], list[Repository]]:
    """Add `repos` to `state` (not yet saved); returns (new, already present).

    Identity is `(url, commit, name)`. A known name at a new commit is a *new* stream entry; the live
    entries of the older commits are marked superseded (they keep their step ids, checkpoints and matrix
    rows), and the memory layer diffs the two commits' premises.
    """
    present = {(e.url, e.commit, e.name) for e in state.entries if not e.forgotten}
    new, known = [], []
    for repo in repos:
        if repo.identity in present:
            known.append(repo)
            continue
        save_repository(repo, ws.repo_data_path(repo.key))
        for old in state.live():
            if old.name == repo.name:
                old.superseded_by = repo.key
        stale = state.entry(repo.key)
        if stale is not None:  # the same commit, forgotten before
            if stale.step is None:
                state.entries.remove(stale)
            else:              # started before: it keeps its step id and rows; only its memory is rebuilt
                stale.forgotten, stale.indexed = False, None
                stale.phases.pop("index", None)
                new.append(repo)
                continue
        state.entries.append(StreamEntry(
            key=repo.key, name=repo.name, url=repo.url, commit=repo.commit, source=source.source,
            theorems=len(repo.theorems), premises=repo.num_premises, files=len(repo.files),
            sorry=sum(1 for t in repo.theorems if t.is_sorry), test_theorems=len(repo.theorems_in("test"))))
        new.append(repo)
    if new and source not in state.sources:
        state.sources.append(source)
    return new, known


def curriculum_for(ws: Workspace, state: WorkspaceState, strategy: str) -> Curriculum:
    """Order the workspace's live repositories (global difficulty thresholds over all of them)."""
    return order_repositories(ws.load_repositories(state.live()), strategy)  # type: ignore[arg-type]


def refresh_curriculum(ws: Workspace, state: WorkspaceState, strategy: str) -> Curriculum:
    """Recompute the order and store it in `state.curriculum` (the caller saves the state).

    The order only decides which *pending* entry is started next; started entries keep their step ids.
    """
    cur = curriculum_for(ws, state, strategy)
    state.curriculum = cur.to_json()
    return cur
