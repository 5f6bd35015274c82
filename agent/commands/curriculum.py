"""`lifelean curriculum`: the easy-to-hard order of the workspace's repositories."""
from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from agent.commands._common import emit, json_option, workspace_from
from agent.workspace.stream import curriculum_for


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _render(data: dict[str, Any]) -> None:
    """Fits 80 columns: short count columns, the reason folded in the last column, names never cut."""
    from agent.commands._common import wrap

    console = Console()
    console.print(wrap(f"curriculum ({data['strategy']}): difficulty e^S, S = proof steps; easy up to "
                       f"p33 = e^{_fmt(data['p33_steps'])}, medium up to p67 = e^{_fmt(data['p67_steps'])}, "
                       "hard above (and sorry); unrated theorems split in thirds (counted in E/M/H, and in "
                       "'unr' alone)"), highlight=False, markup=False)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("#", "repository", "thms", "easy", "med", "hard", "unr", "why here"):
        table.add_column(col, justify="left" if col in ("repository", "why here") else "right",
                         overflow="fold", no_wrap=col not in ("repository", "why here"))
    for i, r in enumerate(data["repos"], 1):
        reason = r["reason"]
        if data["strategy"] == "leanagent":
            reason = reason.replace(" easy theorems", " easy")
        table.add_row(str(i), r["name"], str(r["theorems"]), str(r["easy"]), str(r["medium"]), str(r["hard"]),
                      str(r["unrated"]), reason)
    console.print(table)
    if not data["imports_known"]:
        console.print(wrap("These corpora record no imports: repository dependencies are unknown, so the "
                           "'dependency' strategy has nothing to order by."), style="dim", highlight=False)


@click.command("curriculum")
@click.option("--strategy", type=click.Choice(["leanagent", "dependency"]), default=None,
              help="leanagent: most Easy theorems first; dependency: after the repositories each one depends on, "
                   "easy-first inside a generation [default: from lifelean.toml].")
@click.option("--save", is_flag=True, help="Also make --strategy the workspace's strategy (in lifelean.toml).")
@json_option
@click.pass_context
def curriculum(ctx: click.Context, strategy: str | None, save: bool, as_json: bool) -> None:
    """Show the order in which the repositories will be learned, with their difficulty counts.

    Each theorem with S traced tactics has difficulty e^S (LeanAgent); Easy/Medium/Hard are cut at the
    33rd/67th percentiles over all theorems of all repositories; unrated theorems (no tactics) are split
    in thirds. Counts of Easy/Medium/Hard include those thirds; "unrated" shows them on their own.

    \b
    Example:
      lifelean -w ~/lifelean-demo curriculum
      lifelean -w ~/lifelean-demo curriculum --json | jq '.order'
      lifelean -w ~/lifelean-demo curriculum --strategy dependency --save
    """
    ws = workspace_from(ctx)
    config = ws.config()
    chosen = strategy or config.curriculum.strategy
    state = ws.load_state()
    cur = curriculum_for(ws, state, chosen)
    if save and strategy:
        with ws.lock():
            config.curriculum.strategy = strategy  # type: ignore[assignment]
            ws.save_config(config)
            state = ws.load_state()
            state.curriculum = cur.to_json()
            ws.save_state(state)
    emit(cur.to_json(), as_json, _render)
