"""`lifelean run` and `lifelean resume`: the lifelong loop with a live progress display."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agent.commands._common import emit, format_metrics, json_option, workspace_root
from agent.workspace import Workspace
from common.errors import InputError, LifeleanError


def expand_sources(items: tuple[str, ...]) -> list[str]:
    """SOURCES as given, where a text file (not a dataset) is read as one source per line, `#` comments."""
    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_file():
            try:
                lines = p.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError:
                raise InputError(f"{p}: expected a text file with one source per line") from None
            entries = [line.split("#", 1)[0].strip() for line in lines]
            out.extend(e for e in entries if e)
        else:
            out.append(item)
    return out


def _apply_options(ws: Workspace, seed: int | None, strategy: str | None, generator: str | None,
                   curriculum: str | None) -> dict[str, Any]:
    """Save run options in lifelean.toml (the single source of truth `resume` reads)."""
    from agent.config import RunConfig
    from common.config_base import from_dict, to_dict

    config = ws.config()
    data = to_dict(config)
    if seed is not None:
        data["seed"] = seed
    if strategy is not None:
        data["learning"]["strategy"] = [s for s in strategy.replace("+", ",").split(",") if s]
    if generator is not None:
        data["prover"]["generator"] = generator
    if curriculum is not None:
        data["curriculum"]["strategy"] = curriculum
    new = from_dict(RunConfig, data)  # validates the combination before anything is written
    if new != config:
        ws.save_config(new)
    return {"seed": new.seed, "strategy": new.learning.strategy, "generator": new.prover.generator,
            "curriculum": new.curriculum.strategy}


class LiveDisplay:
    """A rich progress bar: repository, step and live counts; silent when printing JSON."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"), transient=False)
        self.task = None
        self.proved = 0
        self.attempted = 0
        self.current = ""

    def __enter__(self) -> "LiveDisplay":
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if event == "start":
            self.task = self.progress.add_task("starting", total=info["total"], completed=info["done"], info="")
        elif event == "step":
            self.current = f"{info['repo']} · {info['step']}"
            self.progress.update(self.task, description=self.current)
        elif event == "proof":
            self.attempted += 1
            self.proved += bool(info["proved"])
            self.progress.update(self.task, info=f"proved {self.proved}/{self.attempted}")
        elif event == "advance":
            extra = ""
            if info.get("recall@10") is not None:
                extra = f" R@10 {info['recall@10']:.3f}"
            self.progress.update(self.task, advance=1, info=f"proved {self.proved}/{self.attempted}{extra}")


def run_workspace(ws: Workspace, show_progress: bool) -> dict[str, Any]:
    """Run the loop under the lock with the display; Ctrl-C says what was kept and how to go on."""
    from agent.loop import run_stream
    from agent.run_summary import workspace_metrics

    console = Console(stderr=True)
    with ws.lock():
        try:
            with LiveDisplay(show_progress) as display:
                summary = run_stream(ws, display)
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted[/yellow]: every finished step is saved; the step in flight will be "
                          f"redone. Continue with: lifelean -w {ws.root} resume")
            raise SystemExit(130) from None
    summary["metrics"] = workspace_metrics(ws)
    proofs = _proof_counts(ws)
    summary.update(proofs)
    return summary


def _proof_counts(ws: Workspace) -> dict[str, Any]:
    from common.atomic import iter_jsonl_tolerant

    latest: dict[str, dict] = {}
    for r in iter_jsonl_tolerant(ws.proofs_path):
        if r.get("purpose", "prove") == "prove":
            latest[r["uid"] + "@" + r["repo"]] = r
    proved = [r for r in latest.values() if r.get("proved")]
    return {"attempted": len(latest), "proved": len(proved),
            "checked_by": sorted({r.get("checked_by") for r in proved if r.get("checked_by")})}


def _render(summary: dict[str, Any]) -> None:
    console = Console()
    console.print(f"[bold green]done[/bold green]: {summary['repos']} repositories in {summary['seconds']:.0f} s; "
                  f"proved {summary['proved']} of {summary['attempted']} attempted theorems "
                  f"(checked by {', '.join(summary['checked_by']) or '-'}; 'replay' = the recorded Lean trace, "
                  "not a new Lean check)")
    for family in ("recall@10", "proof_rate"):
        console.print(f"lifelong metrics over {family}: {format_metrics((summary.get('metrics') or {}).get(family))}")
    console.print(f"report: lifelean -w {summary['workspace']} report --open")


@click.command("run")
@click.argument("sources", nargs=-1)
@click.option("--split-by-dir", type=int, default=None, metavar="N", help="As for `add`: one repository per "
              "leading N path components of each dataset.")
@click.option("--name", default=None, help="As for `add`: repository name (one source only).")
@click.option("--strategy", default=None, help="Learning strategies, e.g. replay, ewc, distill, adapters, merge, "
              "naive, frozen; combine with '+' (replay+distill) [default: from lifelean.toml].")
@click.option("--generator", type=click.Choice(["knn", "hf", "vllm"]), default=None,
              help="Tactic generator [default: from lifelean.toml].")
@click.option("--curriculum", type=click.Choice(["leanagent", "dependency"]), default=None,
              help="Curriculum order [default: from lifelean.toml].")
@click.option("--seed", type=int, default=None, help="Random seed, saved for `resume` [default: 3407].")
@json_option
@click.pass_context
def run(ctx: click.Context, sources: tuple[str, ...], split_by_dir: int | None, name: str | None,
        strategy: str | None, generator: str | None, curriculum: str | None, seed: int | None, as_json: bool) -> None:
    """Run the lifelong loop: add SOURCES (what `add` accepts, or a text file listing them, one per
    line), order the stream by the curriculum, and for each repository index its premises, fine-tune
    the retriever, try to prove its open theorems, store what was learned in the memory bank, and
    evaluate on every repository so far. With no SOURCES, runs the workspace's own sources.

    Ctrl-C or a kill loses at most the step in flight: continue with `lifelean resume`. Adding a
    repository to a finished workspace and running again processes only the new one.

    \b
    Example:
      lifelean -w workspaces/demo run ../shared/data/leandojo_b4_sample --split-by-dir 2 --seed 1
      lifelean -w workspaces/demo run --strategy replay+distill
    """
    from agent.commands.add import register_and_index
    from curriculum.sources import load_source, parse_source

    ws = workspace_root(ctx)
    items = expand_sources(sources)
    if name and len(items) > 1:
        raise InputError("--name applies to one source; give one source or drop --name")
    loaded = [(spec, load_source(spec, name=name, split_by_dir=split_by_dir))
              for spec in (parse_source(s) for s in items)]  # everything validated before any write
    if not items and not ws.exists:
        raise InputError(f"{ws.root}: no workspace yet; give SOURCES to start one (see `lifelean run --help`)")
    ws = Workspace.open(ws.root, create=True)
    with ws.lock():
        options = _apply_options(ws, seed, strategy, generator, curriculum)
        for spec, repos in loaded:
            register_and_index(ws, spec, repos, name, split_by_dir, progress=not as_json)
        state = ws.load_state()
        if loaded or curriculum:
            from agent.stream import refresh_curriculum

            refresh_curriculum(ws, state, options["curriculum"])
        state["run"] = {"options": options, "started_at": state.get("run", {}) and state["run"].get("started_at")
                        or time.strftime("%Y-%m-%dT%H:%M:%S")}
        ws.save_state(state)
    emit(run_workspace(ws, show_progress=not as_json), as_json, _render)


@click.command("resume")
@json_option
@click.pass_context
def resume(ctx: click.Context, as_json: bool) -> None:
    """Continue the workspace's run at its first unfinished step, with its saved seed and options.

    \b
    Example:
      lifelean -w workspaces/demo resume
    """
    ws = Workspace.open(workspace_root(ctx).root)
    if not ws.load_state().get("run"):
        raise LifeleanError(f"{ws.root}: no run to resume; start one with `lifelean run`")
    emit(run_workspace(ws, show_progress=not as_json), as_json, _render)
