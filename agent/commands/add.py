"""`lifelean add SOURCE`: import a traced dataset, or trace a Lean repository, into the workspace."""
from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from agent.commands._common import emit, json_option, repositories, workspace_root
from agent.workspace.stream import refresh_curriculum, register_repositories
from agent.workspace import SourceRecord, Workspace, WorkspaceState
from curriculum.lean_data import Repository
from curriculum.sources import SourceSpec, load_source, parse_source


def add_source(ws: Workspace, source: str, name: str | None, split_by_dir: int | None,
               progress: bool = False) -> dict[str, Any]:
    """Load SOURCE fully (nothing is written if it is bad), then register and index it under the lock."""
    from agent.commands.progress import Progress

    spec = parse_source(source)
    with Progress(enabled=progress) as display:
        display.phase(f"reading {source}")
        repos = load_source(spec, name=name, split_by_dir=split_by_dir)
        with ws.lock(create=True):  # the workspace is created inside the lock, never before it
            display.attach_log(ws.root / "logs", "add")
            display.line(f"read {source}: {repositories(len(repos))}, "
                         f"{sum(len(r.theorems) for r in repos)} theorems, "
                         f"{sum(r.num_premises for r in repos)} premises")
            return register_and_index(ws, spec, repos, name, split_by_dir, display)


def register_and_index(ws: Workspace, spec: SourceSpec, repos: list[Repository], name: str | None,
                       split_by_dir: int | None, progress: Any) -> dict[str, Any]:
    """Record loaded repositories in the workspace and index them; the caller holds the lock.

    `progress` is a :class:`agent.commands.progress.Progress` or a bool (True: a display of its own)."""
    from agent.commands.progress import Progress

    if isinstance(progress, Progress):
        return _register_and_index(ws, spec, repos, name, split_by_dir, progress)
    with Progress(enabled=bool(progress)) as display:
        display.attach_log(ws.root / "logs", "add")
        return _register_and_index(ws, spec, repos, name, split_by_dir, display)


def _register_and_index(ws: Workspace, spec: SourceSpec, repos: list[Repository], name: str | None,
                        split_by_dir: int | None, display: Any) -> dict[str, Any]:
    state = ws.load_state()
    config = ws.config()
    record = SourceRecord(spec.text, spec.kind, {"name": name, "split_by_dir": split_by_dir})
    new, known = register_repositories(ws, state, repos, record)
    if new:
        refresh_curriculum(ws, state, config.curriculum.strategy)
        ws.save_state(state)
    indexed = _index(ws, state, repos, display)
    return {"repos": [_repo_json(r, r in new, indexed.get(r.key, {})) for r in repos],
            "added": len(new), "unchanged": len(known)}


def _index(ws: Workspace, state: WorkspaceState, repos: list[Repository], display: Any) -> dict[str, dict]:
    """Embed the repositories' premises and put their traced proofs in the memory bank, one repository at a
    time so the display can say which one ("repository k of N", an ETA).

    Runs for already-known repositories too: an interrupted earlier add is repaired here, and a
    complete one costs nothing (zero premises embedded).
    """
    from agent.workspace.memory import base_encoder, index_repositories

    config = ws.config()
    display.phase(f"loading the encoder {config.memory.encoder}")
    encoder = base_encoder(config)
    out: dict[str, dict] = {}
    display.outer(len(repos), "indexing")
    for k, repo in enumerate(repos, 1):
        display.outer_update(f"[{k}/{len(repos)}] indexing {repo.name}")
        display.detail(f"  {repo.name}: {repo.num_premises} premises, {len(repo.theorems)} theorems")
        out.update(index_repositories(ws, state, [repo], progress=False, config=config, encoder=encoder))
        display.outer_advance()
        r = out.get(repo.key, {})
        display.detail(f"  {repo.name}: {r.get('premises_embedded', 0)} premises embedded, "
                       f"{r.get('bank_items_added', 0)} bank items added")
    return out


def _repo_json(repo: Repository, added: bool, indexed: dict) -> dict[str, Any]:
    return {"name": repo.name, "url": repo.url, "commit": repo.commit, "key": repo.key,
            "theorems": len(repo.theorems), "premises": repo.num_premises, "files": len(repo.files),
            "added": added, **indexed}


def _render(result: dict[str, Any]) -> None:
    """One row per repository in at most 80 columns; names are never cut (folded if they must)."""
    console = Console()
    rows = result["repos"]
    commits = {r["commit"] for r in rows}
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("repository", overflow="fold", ratio=None)
    if len(commits) > 1:
        table.add_column("commit", no_wrap=True)
    for col in ("thms", "prem", "files"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("status", overflow="fold")
    for r in rows:
        status = "new" if r["added"] else "unchanged"
        if r.get("premises_embedded"):
            status += f", {r['premises_embedded']} embedded"
        cells = [r["name"]] + ([r["commit"][:8]] if len(commits) > 1 else [])
        table.add_row(*cells, str(r["theorems"]), str(r["premises"]), str(r["files"]), status)
    if len(commits) == 1:
        console.print(f"{repositories(len(rows))} at commit "
                      f"{next(iter(commits))[:12]}:")
    console.print(table)
    embedded = sum(r.get("premises_embedded", 0) for r in rows)
    banked = sum(r.get("bank_items_added", 0) for r in rows)
    console.print(f"added {result['added']}, unchanged {result['unchanged']}; {embedded} premises embedded, "
                  f"{banked} proof items put in the memory bank")
    if result["added"] == 0:
        console.print("Nothing new: every repository of this source is already in the workspace.")
    else:
        console.print("next: `lifelean curriculum` to see the order, `lifelean run` to learn them")


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
    Example (from the repository root):
      lifelean add ../shared/data/leandojo_b4_sample --split-by-dir 2
      lifelean add https://github.com/yangky11/lean4-example@7761283
    """
    result = add_source(workspace_root(ctx), source, name, split_by_dir, progress=not as_json)
    emit(result, as_json, _render)
