"""`lifelean status`: where the workspace stands."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from agent.commands._common import emit, json_option, repositories, workspace_from
from agent.workspace import PHASES, Workspace

# rich is imported by `_render` only: `status --json` (scripts, the report) never needs it.


def workspace_status(ws: Workspace) -> dict[str, Any]:
    """Everything `status` shows, as plain data (the report reads the same numbers). Reads only."""
    from agent.evaluation.matrices import loop_proof_records, workspace_metrics

    state = ws.load_state()
    # The stream's order is computed once (started, then pending) and shared with `run_activity`, which
    # would otherwise sort the whole stream again (bench/scale.py times status with 1,000 repositories).
    started, pending = state.started(), state.pending()
    plan = [e for e in started if e.live and not e.finished] + pending  # = state.plan()
    ordered = started + pending + [e for e in state.entries if e.step is None and not e.live]
    repos = []
    for e in ordered:
        done = [p for p in PHASES if e.done(p)]
        repos.append({"key": e.key, "name": e.name, "commit": e.commit, "step": e.step,
                      "superseded_by": e.superseded_by, "forgotten": e.forgotten,
                      "theorems": e.theorems, "premises": e.premises, "files": e.files, "sorry": e.sorry,
                      "test_theorems": e.test_theorems, "indexed": e.indexed is not None,
                      "phases": {p: ("done" if e.done(p) else "pending") for p in PHASES},
                      "progress": f"{len(done)}/{len(PHASES)}", "done": e.finished})
    live = [r for r in repos if not r["superseded_by"] and not r["forgotten"]]
    records = loop_proof_records(ws, state)
    out: dict[str, Any] = {
        "workspace": str(ws.root),
        "sources": [dataclasses.asdict(s) for s in state.sources],
        "counts": {"repos": len(live), "entries": len(repos), "theorems": sum(r["theorems"] for r in live),
                   "premises": sum(r["premises"] for r in live), "repos_done": sum(r["done"] for r in live),
                   "prove_attempted": len(records), "proved": sum(bool(r.get("proved")) for r in records),
                   "not_replayable": sum(r.get("stop_reason") == "not_replayable" for r in records)},
        "curriculum": {k: v for k, v in (state.curriculum or {}).items() if k != "repos"},
        "run": dataclasses.asdict(state.run) if state.run else None,
        "baseline_done": state.baseline_done,
        "repos": repos,
        "forgotten": [dataclasses.asdict(f) for f in state.forgotten],
    }
    metrics = workspace_metrics(ws, state)
    out["metrics"] = metrics if metrics.get("steps", 0) >= 2 else None
    out["activity"] = run_activity(ws, state, plan)
    return out


def _holder(ws: Workspace) -> dict[str, Any] | None:
    """The process that holds (or last held) the workspace lock, if it is still alive. Reads only: taking the
    lock to test it could make a `run` starting at that instant fail as busy."""
    import json
    import os

    try:
        info = json.loads(ws.holder_path.read_text(encoding="utf-8"))
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:  # a recycled pid is some other program: only a lifelean (python) process counts
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        if "lifelean" not in cmdline and "agent.cli" not in cmdline and "python" not in cmdline:
            return None
    except OSError:
        pass
    return {"pid": pid, "command": info.get("command", ""), "since": info.get("since", "")}


def run_activity(ws: Workspace, state: Any, plan: list[Any] | None = None) -> dict[str, Any]:
    """Whether a run is going on, was interrupted, or is finished, and the command to type next.
    `plan` is `state.plan()` when the caller has it already."""
    root = ws.root
    holder = _holder(ws)
    plan = state.plan() if plan is None else plan
    unfinished = [e for e in plan if e.step is not None]
    if holder is not None:
        cmd = holder["command"].split()
        busy = cmd[1] if len(cmd) > 1 and not cmd[1].startswith("-") else next(
            (w for w in cmd[1:] if w in ("run", "resume", "add", "prove", "memory", "curriculum")), "lifelean")
        return {"state": "running", "holder": holder,
                "text": f"running: pid {holder['pid']} `{holder['command']}` since {holder['since']}",
                "next": f"lifelean -w {root} status",
                "why": f"the {busy} holds the workspace lock; writers wait for it to finish"}
    if not state.entries:
        return {"state": "empty", "text": "no repositories yet", "next": f"lifelean -w {root} add SOURCE"}
    if state.run is None or not state.stream_started:
        return {"state": "not started", "text": f"not started: {repositories(len(plan))} to learn",
                "next": f"lifelean -w {root} run"}
    if unfinished:
        e = unfinished[0]
        phase = next(p for p in PHASES if not e.done(p))
        return {"state": "interrupted", "text": f"interrupted: step {e.step} ({e.name}) stopped before "
                f"'{phase}'; {repositories(len(plan))} left",
                "next": f"lifelean -w {root} resume"}
    if plan:
        return {"state": "pending", "text": f"{repositories(len(plan))} added "
                "since the last run, not yet learned", "next": f"lifelean -w {root} run"}
    return {"state": "done", "text": "done: every repository of the stream is learned and evaluated",
            "next": f"lifelean -w {root} report --open"}


def _render(data: dict[str, Any]) -> None:
    """At most 80 columns (or the terminal's width): repository names are never cut, only folded."""
    from rich.console import Console
    from rich.table import Table

    from agent.commands._common import wrap

    console = Console(width=None)
    c = data["counts"]
    print_ = lambda text: console.print(wrap(text), highlight=False, markup=False)  # noqa: E731
    print_(f"workspace {data['workspace']}: {repositories(c['repos'])}, {c['theorems']} theorems, "
           f"{c['premises']} premises; {c['repos_done']}/{c['repos']} fully processed")
    for s in data["sources"]:
        opts = ", ".join(f"{k}={v}" for k, v in s.get("options", {}).items() if v is not None)
        print_(f"  source: {s['source']} ({s['kind']}{'; ' + opts if opts else ''})")
    cur = data["curriculum"]
    run = data.get("run") or {}
    if run.get("options"):
        from agent.commands._common import run_settings

        shown = {k: v for k, v in run_settings(run["options"]).items()
                 if k in ("strategy", "seed", "encoder", "generator", "env")}
        print_("run: " + ", ".join(f"{k} {v}" for k, v in shown.items())
               + (f"; started {run.get('started_at')}" if run.get("started_at") else ""))
    if cur:
        print_(f"curriculum: {cur.get('strategy')} (easy first; `lifelean curriculum` shows why)")
    commits = {r["commit"] for r in data["repos"]}
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("step", justify="right", no_wrap=True)
    table.add_column("repository", overflow="fold")
    table.add_column("thms", justify="right", no_wrap=True)
    table.add_column("prem", justify="right", no_wrap=True)
    table.add_column("progress", overflow="fold")
    for r in data["repos"]:
        if r["superseded_by"]:
            progress = f"superseded by {r['superseded_by'].rsplit('@', 1)[-1][:8]}"
        elif r["forgotten"]:
            progress = "forgotten"
        elif r["done"]:
            progress = "[green]done[/green]"
        elif r["step"] is None:
            progress = "pending"
        else:
            nxt = next((p for p, v in r["phases"].items() if v != "done"), "")
            progress = f"[yellow]{r['progress']}, next {nxt}[/yellow]"
        name = r["name"] if len(commits) == 1 else f"{r['name']}@{r['commit'][:7]}"
        table.add_row("-" if r["step"] is None else str(r["step"]), name, str(r["theorems"]), str(r["premises"]),
                      progress)
    if len(commits) == 1 and data["repos"]:
        print_(f"stream (all at commit {next(iter(commits))[:12]}; step = permanent step id):")
    console.print(table)
    m = data.get("metrics")
    if m:
        from agent.commands._common import format_metrics

        for family in ("recall@10", "tactic@8", "proof_rate"):
            print_(f"lifelong metrics over {family}: {format_metrics(m.get(family))}")
    act = data.get("activity")
    if act:
        style = {"running": "cyan", "interrupted": "yellow", "done": "green"}.get(act["state"], "")
        console.print(f"[{style}]{wrap(act['text'])}[/{style}]" if style else wrap(act["text"]), highlight=False)
        from agent.commands._common import width

        nxt = f"next: {act['next']}"     # a command is never broken across lines (it is meant to be pasted)
        console.print(nxt if len(nxt) <= width() else f"next:\n  {act['next']}", highlight=False, markup=False,
                      soft_wrap=True)


@click.command("status")
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the workspace: sources, counts, curriculum order, the step status of every repository,
    and the lifelong metrics once two or more steps are done. Safe to run while `run` is working.

    Says whether a run is going on (the process holding the lock), was interrupted (continue with
    `resume`) or is finished, and suggests the next command. Reads only; writes nothing.

    \b
    Example:
      lifelean -w ~/lifelean-demo status
      lifelean -w ~/lifelean-demo status --json | jq '.counts, .activity'
    """
    emit(workspace_status(workspace_from(ctx)), as_json, _render)
