"""Helpers every subcommand uses: finding the workspace, printing text or JSON."""
from __future__ import annotations

import json
from typing import Any, Callable

import click

from agent.workspace import Workspace


def workspace_from(ctx: click.Context, create: bool = False) -> Workspace:
    """The workspace named by `-w/--workspace` (or the default), opened or created."""
    root = (ctx.find_root().obj or {}).get("workspace")
    return Workspace.open(root, create=create)


def workspace_root(ctx: click.Context) -> Workspace:
    """The workspace object without touching the disk (for commands that validate before creating)."""
    from agent.workspace import default_workspace_path
    from pathlib import Path

    root = (ctx.find_root().obj or {}).get("workspace")
    return Workspace(Path(root) if root else default_workspace_path())


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """Print `data` as JSON (for scripts) or through `render` (for people)."""
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        render(data)


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


HEADLINE_METRICS = ("acc", "bwt", "fwt", "forgetting", "plasticity")


def format_metrics(values: dict[str, Any] | None) -> str:
    """The headline lifelong metrics in one line (the full set is in `--json` and the report)."""
    values = values or {}
    shown = [f"{k.upper()} {values[k]:+.4f}" if k in ("bwt", "fwt") else f"{k} {values[k]:.4f}"
             for k in HEADLINE_METRICS if isinstance(values.get(k), (int, float))]
    return ", ".join(shown) or "not enough data yet"
