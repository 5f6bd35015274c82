"""The workspace's stream of repositories: registering imported ones and keeping the curriculum current."""
from __future__ import annotations

from typing import Any

from agent.workspace import Workspace
from curriculum.lean_data import Repository
from curriculum.ordering import Curriculum, order_repositories
from curriculum.repo_io import save_repository


def register_repositories(ws: Workspace, state: dict[str, Any], repos: list[Repository],
                          source: dict[str, Any]) -> tuple[list[Repository], list[Repository]]:
    """Add `repos` to `state` (not yet saved); returns (new, already present).

    Identity is `(url, commit, name)`. A known name at a new commit supersedes the old entry: the
    stream keeps one commit per repository, and the memory layer diffs the two.
    """
    present = {(r["url"], r["commit"], r["name"]) for r in ws.repo_entries(state)}
    new, known = [], []
    for repo in repos:
        if repo.identity in present:
            known.append(repo)
            continue
        save_repository(repo, ws.repo_data_path(repo.key))
        for old in ws.repo_entries(state):
            if old["name"] == repo.name:
                old["superseded_by"] = repo.key
        state["repos"].append({
            "key": repo.key,
            "name": repo.name,
            "url": repo.url,
            "commit": repo.commit,
            "source": source["source"],
            "theorems": len(repo.theorems),
            "premises": repo.num_premises,
            "files": len(repo.files),
            "sorry": sum(1 for t in repo.theorems if t.is_sorry),
            "test_theorems": len(repo.theorems_in("test")),
        })
        new.append(repo)
    if new and source not in state["sources"]:
        state["sources"].append(source)
    return new, known


def curriculum_for(ws: Workspace, state: dict[str, Any], strategy: str) -> Curriculum:
    """Order the workspace's active repositories (global difficulty thresholds over all of them)."""
    return order_repositories(ws.load_repositories(state), strategy)  # type: ignore[arg-type]


def refresh_curriculum(ws: Workspace, state: dict[str, Any], strategy: str) -> Curriculum:
    """Recompute the order and store it in `state["curriculum"]` (the caller saves the state)."""
    cur = curriculum_for(ws, state, strategy)
    state["curriculum"] = cur.to_json()
    return cur
