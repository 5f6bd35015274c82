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
    """The headline lifelong metrics in one line (the full set is in `--json` and the report), ACC, BWT and
    FWT with their 95% bootstrap interval over repositories where there is one (`ci95`): on a short stream
    with a few held-out tactics per repository, one tactic moves BWT by a few hundredths, and the interval says
    whether a sign is a finding or noise."""
    values = values or {}
    intervals = values.get("ci95") or {}
    shown = []
    for k in HEADLINE_METRICS:
        if not isinstance(values.get(k), (int, float)):
            continue
        signed = k in ("bwt", "fwt")
        text = f"{k.upper()} {values[k]:+.4f}" if signed else f"{k} {values[k]:.4f}"
        interval = intervals.get(k)
        if interval:
            low, high = (f"{v:+.3f}" if signed else f"{v:.3f}" for v in interval)
            text += f" (95% {low}..{high})"
        shown.append(text)
    return ", ".join(shown) or "not enough data yet"


def count(n: int, one: str, many: str) -> str:
    """"1 stream entry", "2 stream entries"."""
    return f"{n} {one if n == 1 else many}"


def repositories(n: int) -> str:
    """"1 repository", "2 repositories": the count the CLI prints most."""
    return count(n, "repository", "repositories")


def width() -> int:
    """Columns to fit: the terminal's, `$COLUMNS`, or 80 when piped (at most 100, where lines stay readable)."""
    import shutil

    return max(40, min(100, shutil.get_terminal_size((80, 24)).columns))


def wrap(text: str, indent: str = "", subsequent: str | None = None) -> str:
    """`text` wrapped at word boundaries to :func:`width`; words (theorem names, paths) are never broken."""
    import textwrap

    return textwrap.fill(text, width=width(), initial_indent=indent,
                         subsequent_indent=indent + "  " if subsequent is None else subsequent,
                         break_long_words=False, break_on_hyphens=False)


def echo_wrapped(text: str, indent: str = "", subsequent: str | None = None, err: bool = False) -> None:
    click.echo(wrap(text, indent, subsequent), err=err)


def did_you_mean(word: str, choices: Any, n: int = 3) -> list[str]:
    """The nearest `choices` to a mistyped `word` (the same rule as unknown commands, agent/cli.py)."""
    from agent.cli import did_you_mean as nearest

    return nearest(word, choices, n)


def open_log(ctx: click.Context, ws: Workspace, command: str, display: Any) -> None:
    """Attach the per-command log file `WORKSPACE/logs/<command>-<time>.log`; call with the lock held."""
    display.attach_log(ws.root / "logs", command)


def run_settings(options: dict[str, Any] | None) -> dict[str, Any]:
    """The settings a researcher reads first, from a stream's recorded options (`state.run.options`)."""
    o = options or {}
    learning, prover, memory = o.get("learning") or {}, o.get("prover") or {}, o.get("memory") or {}
    strategy = learning.get("strategy")
    out = {"strategy": "+".join(strategy) if isinstance(strategy, list) else strategy, "seed": o.get("seed"),
           "encoder": memory.get("encoder"), "generator": prover.get("generator"), "model": prover.get("model"),
           "env": prover.get("env"), "curriculum": (o.get("curriculum") or {}).get("strategy"),
           "epochs": learning.get("epochs"), "batch_size": learning.get("batch_size"), "lr": learning.get("lr"),
           "train_generator": learning.get("train_generator")}
    return {k: v for k, v in out.items() if v not in (None, "", {})}
