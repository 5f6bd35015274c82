"""`lifelean status`: where the workspace stands."""
from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from agent.commands._common import emit, format_metrics, json_option, workspace_from
from agent.workspace import STEPS, Workspace


def workspace_status(ws: Workspace) -> dict[str, Any]:
    """Everything `status` shows, as plain data (the report reads the same numbers)."""
    from agent.run_summary import workspace_metrics

    state = ws.load_state()
    entries = ws.repo_entries(state)
    order = (state.get("curriculum") or {}).get("order") or [r["key"] for r in entries]
    by_key = {r["key"]: r for r in entries}
    repos = []
    for key in order:
        if key not in by_key:
            continue
        r = by_key[key]
        steps = {s: state["steps"].get(key, {}).get(s, "pending") for s in STEPS}
        repos.append({"key": key, "name": r["name"], "commit": r["commit"], "theorems": r["theorems"],
                      "premises": r["premises"], "files": r["files"], "sorry": r.get("sorry", 0),
                      "test_theorems": r.get("test_theorems", 0), "indexed": bool(r.get("indexed")),
                      "steps": steps, "done": all(v == "done" for v in steps.values())})
    done = sum(1 for r in repos if r["done"])
    out: dict[str, Any] = {
        "workspace": str(ws.root),
        "sources": state["sources"],
        "counts": {"repos": len(repos), "theorems": sum(r["theorems"] for r in repos),
                   "premises": sum(r["premises"] for r in repos), "repos_done": done},
        "curriculum": {k: v for k, v in (state.get("curriculum") or {}).items() if k != "repos"},
        "run": state.get("run"),
        "repos": repos,
        "forgotten": state.get("forgotten", []),
    }
    metrics = workspace_metrics(ws)
    out["metrics"] = metrics if metrics.get("steps", 0) >= 2 else None
    return out


def _render(data: dict[str, Any]) -> None:
    console = Console()
    c = data["counts"]
    console.print(f"[bold]workspace[/bold] {data['workspace']}: {c['repos']} repositories, {c['theorems']} theorems, "
                  f"{c['premises']} premises; {c['repos_done']}/{c['repos']} repositories fully processed")
    for s in data["sources"]:
        opts = ", ".join(f"{k}={v}" for k, v in s.get("options", {}).items() if v is not None)
        console.print(f"  source: {s['source']} ({s['kind']}{'; ' + opts if opts else ''})")
    cur = data["curriculum"]
    if cur:
        console.print(f"curriculum: {cur.get('strategy')}")
    table = Table()
    for col in ("#", "repository", "theorems", "premises", *STEPS):
        table.add_column(col)
    mark = {"done": "[green]done[/green]", "pending": "[dim]·[/dim]"}
    for i, r in enumerate(data["repos"], 1):
        table.add_row(str(i), r["name"], str(r["theorems"]), str(r["premises"]),
                      *[mark.get(r["steps"][s], r["steps"][s]) for s in STEPS])
    console.print(table)
    m = data.get("metrics")
    if m:
        for family in ("recall@10", "proof_rate"):
            console.print(f"lifelong metrics over {family}: {format_metrics(m.get(family))}")


@click.command("status")
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the workspace: sources, counts, curriculum order, the step status of every repository,
    and the lifelong metrics once two or more steps are done. Safe to run while `run` is working.

    \b
    Example:
      lifelean status --json | jq '.counts'
    """
    emit(workspace_status(workspace_from(ctx)), as_json, _render)
