"""`lifelean add SOURCE`: import a traced dataset, or trace a Lean repository, into the workspace."""
from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from agent.commands._common import emit, json_option, workspace_root
from agent.stream import refresh_curriculum, register_repositories
from agent.workspace import Workspace
from curriculum.lean_data import Repository
from curriculum.sources import SourceSpec, load_source, parse_source


def add_source(ws: Workspace, source: str, name: str | None, split_by_dir: int | None,
               progress: bool = False) -> dict[str, Any]:
    """Load SOURCE fully (nothing is written if it is bad), then register and index it under the lock."""
    spec = parse_source(source)
    repos = load_source(spec, name=name, split_by_dir=split_by_dir)
    ws = Workspace.open(ws.root, create=True)
    with ws.lock():
        return register_and_index(ws, spec, repos, name, split_by_dir, progress)


def register_and_index(ws: Workspace, spec: SourceSpec, repos: list[Repository], name: str | None,
                       split_by_dir: int | None, progress: bool) -> dict[str, Any]:
    """Record loaded repositories in the workspace and index them; the caller holds the lock."""
    state = ws.load_state()
    config = ws.config()
    record = {"source": spec.text, "kind": spec.kind, "options": {"name": name, "split_by_dir": split_by_dir}}
    new, known = register_repositories(ws, state, repos, record)
    if new:
        refresh_curriculum(ws, state, config.curriculum.strategy)
        ws.save_state(state)
    indexed = _index(ws, state, repos, progress)
    return {"repos": [_repo_json(r, r in new, indexed.get(r.key, {})) for r in repos],
            "added": len(new), "unchanged": len(known)}


def _index(ws: Workspace, state: dict[str, Any], repos: list[Repository], progress: bool) -> dict[str, dict]:
    """Embed the repositories' premises and put their traced proofs in the memory bank.

    Runs for already-known repositories too: an interrupted earlier add is repaired here, and a
    complete one costs nothing (zero premises embedded).
    """
    from agent.memory_ops import index_repositories

    return index_repositories(ws, state, repos, progress=progress)


def _repo_json(repo: Repository, added: bool, indexed: dict) -> dict[str, Any]:
    return {"name": repo.name, "url": repo.url, "commit": repo.commit, "key": repo.key,
            "theorems": len(repo.theorems), "premises": repo.num_premises, "files": len(repo.files),
            "added": added, **indexed}


def _render(result: dict[str, Any]) -> None:
    console = Console()
    table = Table(title="repositories")
    for col in ("name", "commit", "theorems", "premises", "files", "status"):
        table.add_column(col, justify="right" if col in ("theorems", "premises", "files") else "left")
    for r in result["repos"]:
        status = "added" if r["added"] else "already present, unchanged"
        if "premises_embedded" in r:
            status += f"; {r['premises_embedded']} premises embedded"
        table.add_row(r["name"], r["commit"][:12], str(r["theorems"]), str(r["premises"]), str(r["files"]), status)
    console.print(table)
    if result["added"] == 0:
        console.print("Nothing new: every repository of this source is already in the workspace.")


@click.command("add")
@click.argument("source")
@click.option("--name", default=None, help="Repository name [default: from the URL or directory].")
@click.option("--split-by-dir", type=int, default=None, metavar="N",
              help="Import one dataset as several repositories named after the first N path components "
                   "(e.g. Mathlib/Algebra): how one traced monorepo becomes a stream.")
@json_option
@click.pass_context
def add(ctx: click.Context, source: str, name: str | None, split_by_dir: int | None, as_json: bool) -> None:
    """Add SOURCE to the workspace: a traced-data directory (LeanDojo export with random/*.json and
    corpus.jsonl, or a folder with theorems.jsonl), a local Lean repository, or a git URL[@COMMIT]
    (the last two are traced with LeanDojo and need Lean: `pip install 'lifelean[lean]'`).

    \b
    Example:
      lifelean add ../shared/data/leandojo_b4_sample --split-by-dir 2
      lifelean add https://github.com/yangky11/lean4-example@7761283
    """
    result = add_source(workspace_root(ctx), source, name, split_by_dir, progress=not as_json)
    emit(result, as_json, _render)
