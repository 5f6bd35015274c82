"""`lifelean run` and `lifelean resume`: the lifelong loop with a live progress display."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from agent.commands._common import count, emit, format_metrics, json_option, repositories, workspace_root
from agent.commands.progress import format_seconds
from agent.workspace import Workspace
from common.errors import InputError, LifeleanError

if TYPE_CHECKING:
    from agent.config import RunConfig


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


def configured(ws: Workspace, seed: int | None, strategy: str | None, generator: str | None,
               curriculum: str | None, env: str | None = None) -> "RunConfig":
    """The workspace's config with the command-line options applied (validated; nothing written)."""
    from agent.config import RunConfig
    from common.config_base import from_dict, to_dict

    config = ws.config() if ws.config_path.exists() else RunConfig()
    data = to_dict(config)
    if seed is not None:
        data["seed"] = seed
    if strategy is not None:
        data["learning"]["strategy"] = [s for s in strategy.replace("+", ",").split(",") if s]
    if generator is not None:
        data["prover"]["generator"] = generator
    if curriculum is not None:
        data["curriculum"]["strategy"] = curriculum
    if env is not None:
        data["prover"]["env"] = env
    return from_dict(RunConfig, data)


class LiveDisplay:
    """Turns the driver's `report(event, info)` calls into the shared progress display
    (agent/commands/progress.py): "[k/N] repository · phase" with an ETA, an inner bar per phase (training
    batches when the learner reports them, evaluated repositories, proof attempts), and one lasting summary
    line per finished repository. Silent with `--json` or `--quiet`; the log file is written either way."""

    def __init__(self, enabled: bool, ws: Workspace | None = None, progress: Any = None):
        from agent.commands.progress import Progress

        self.ws = ws
        self.progress = progress if progress is not None else Progress(enabled=enabled)
        self.enabled = self.progress.enabled
        self.repos = 0
        self.position = 0
        self.proved = 0
        self.attempted = 0
        self.current: dict[str, Any] = {}
        self.entry: dict[str, Any] = {}
        self.entry_started = time.monotonic()
        self.columns = 0

    def __enter__(self) -> "LiveDisplay":
        self.progress.__enter__()
        if self.ws is not None and self.ws.exists:
            self.progress.attach_log(self.ws.root / "logs", "run")   # the caller holds the lock
            try:
                self.columns = len(self.ws.load_state().live())
            except Exception:  # noqa: BLE001 - a display hint only
                self.columns = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def _label(self) -> str:
        c = self.current
        if c.get("repo") == "(all)":
            return "baseline row (untrained encoder, empty bank)"
        return f"[{self.position + 1}/{self.repos}] {c.get('repo', '')} · {c.get('step', '')}"

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        p = self.progress
        if event == "start":
            self.repos = int(info.get("repos") or 0)
            if info.get("total", 0) == 0:
                return
            p.outer(self.repos, "starting")
            p.line(f"run: {repositories(self.repos)} to process, "
                   f"{info['total']} steps (index, learn, prove, bank, evaluate each)")
        elif event == "step":
            if info.get("position") is not None:
                if info["position"] != self.position or not self.entry:
                    self.entry = {}
                    self.entry_started = time.monotonic()
                self.position = int(info["position"])
                self.repos = int(info.get("of") or self.repos)
            elif not self.entry:
                self.entry_started = time.monotonic()
            self.current = dict(info)
            self.phase_started = time.monotonic()
            p.outer_update(self._label())
            if info.get("step") in ("evaluate", "baseline"):
                p.inner("evaluating repositories", self.columns or None)
            elif info.get("step") == "learn":
                p.inner("training batches", None)
            else:
                p.inner_end()
        elif event == "prove-start":
            self.proved = self.attempted = 0
            p.inner("proving open theorems", int(info.get("theorems") or 0) - int(info.get("already") or 0))
        elif event == "proof":
            self.attempted += 1
            self.proved += bool(info.get("proved"))
            p.inner_advance(info=f"proved {self.proved}/{self.attempted}")
        elif event == "evaluated":
            p.inner_advance(completed=int(info.get("done") or 0), info=str(info.get("repo", "")))
        elif event in ("batch", "learn-batch"):
            # the learner's per-batch callback: {"done", "total", "loss"} (shown when the learner reports it)
            if info.get("total"):
                p.inner_total(int(info["total"]))
            loss = info.get("loss")
            p.inner_advance(completed=info.get("done"), info="" if loss is None else f"loss {loss:.4f}")
        elif event == "advance":
            p.inner_end()
            name = info.get("step")
            if name and name != "baseline":
                self.entry[name] = {k: v for k, v in info.items() if k not in ("repo", "step")}
                p.outer_advance(1 / 5)
            seconds = time.monotonic() - getattr(self, "phase_started", time.monotonic())
            p.detail(f"  {self._label()} done in {seconds:.1f} s{_phase_details(info)}")
            if name is None:
                p.line("baseline row evaluated (untrained encoder, empty bank)", style="dim")
        elif event == "entry-done":
            p.line(self.summary(info), style="green")

    def summary(self, info: dict[str, Any]) -> str:
        """One lasting line for a finished repository: its own scores, proofs, loss and time."""
        own = _own_cell(self.ws, info.get("step"))
        parts = []
        for key, label in (("recall@10", "R@10"), ("tactic@8", "tactic@8")):
            v = own.get(key) if own else (self.entry.get("evaluate") or {}).get(key)
            if isinstance(v, (int, float)):
                parts.append(f"{label} {v:.3f}")
        if own and own.get("theorems") is not None:
            parts.append(f"on {own['theorems']} held-out")
        prove = self.entry.get("prove") or {}
        if prove.get("attempted"):
            parts.append(f"proved {prove.get('proved', 0)}/{prove['attempted']} open")
        elif "attempted" in prove:
            parts.append("no open theorems")
        learn = self.entry.get("learn") or {}
        if isinstance(learn.get("loss_first"), (int, float)) and isinstance(learn.get("loss_last"), (int, float)):
            parts.append(f"loss {learn['loss_first']:.3f}→{learn['loss_last']:.3f}")
        if (self.entry.get("evaluate") or {}).get("skipped"):
            parts.append("not evaluated this step")
        parts.append(format_seconds(time.monotonic() - self.entry_started))
        return f"✓ [{self.position + 1}/{self.repos}] {info.get('repo')} (step {info.get('step')}): " + ", ".join(parts)


def _phase_details(info: dict[str, Any]) -> str:
    shown = {k: v for k, v in info.items() if k in ("examples", "batches", "epochs", "loss_first", "loss_last",
                                                   "attempted", "proved", "cells", "recall@10", "proof_rate")}
    return ("; " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
            if shown else "")


def _own_cell(ws: Workspace | None, step: Any) -> dict[str, Any] | None:
    """The last `kind: "eval"` record of metrics.jsonl in which entry `step` scored itself (None if none)."""
    if ws is None or not isinstance(step, int):
        return None
    from common.atomic import iter_jsonl_tolerant

    try:
        state = ws.load_state()
        key = next((e.key for e in state.entries if e.step == step), None)
        own = None
        for r in iter_jsonl_tolerant(ws.metrics_path):
            if isinstance(r, dict) and r.get("kind") == "eval" and r.get("step") == step and r.get("repo") == key:
                own = r
        return own
    except Exception:  # noqa: BLE001 - a summary line must never stop the run
        return None


def run_locked(ws: Workspace, show_progress: bool, ray_address: str | None = None) -> dict[str, Any]:
    """Run the loop (the caller holds the lock) with the display; Ctrl-C says what was kept and how to go on."""
    from agent.evaluation.matrices import loop_proof_records, workspace_metrics
    from agent.loop import run_stream

    console = Console(stderr=True)
    try:
        with LiveDisplay(show_progress, ws) as display:
            summary = run_stream(ws, display, ray_address=ray_address)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/yellow]: every finished step is saved; the step in flight will be "
                      f"redone. Continue with: lifelean -w {ws.root} resume")
        raise SystemExit(130) from None
    summary["metrics"] = workspace_metrics(ws)
    records = loop_proof_records(ws)
    proved = [r for r in records if r.get("proved")]
    summary.update({"attempted": len(records), "proved": len(proved),
                    "checked_by": sorted({r.get("checked_by") for r in proved if r.get("checked_by")})})
    return summary


def _render(summary: dict[str, Any]) -> None:
    console = Console()
    if summary.get("nothing_to_do"):
        console.print(f"nothing to do: every step of the stream's {summary['repos']} entries is done; add a "
                      f"repository with `lifelean -w {summary['workspace']} add SOURCE` (or `run SOURCES`)")
    else:
        entries = count(summary["processed"], "stream entry", "stream entries")
        console.print(f"[bold green]done[/bold green]: {entries} in {summary['seconds']:.0f} s")
    console.print(f"open theorems attempted by the loop's prove step: {summary['attempted']}; "
                  f"proved {summary['proved']} "
                  f"(checked by {', '.join(summary['checked_by']) or '-'}; 'replay' = the recorded Lean trace, "
                  "not a new Lean check)")
    for family in ("recall@10", "tactic@8", "proof_rate"):
        console.print(f"lifelong metrics over {family}: {format_metrics((summary.get('metrics') or {}).get(family))}")
    console.print(f"report: lifelean -w {summary['workspace']} report --open")


ray_option = click.option(
    "--ray", "ray_address", default=None, metavar="auto|ADDRESS|local",
    help="Spread proof search and the evaluation rows' proofs over a Ray cluster for this invocation: one pool "
         "of `[prover] workers` actors per step (0 = one per CPU here); not saved, changes no result; needs "
         "`pip install 'lifelean[cluster]'`. 'local' starts Ray on this machine.")


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
@click.option("--env", "env_kind", type=click.Choice(["replay", "lean"]), default=None,
              help="How tactics are checked: replay of the recorded trace, or real Lean ([prover] lean_backend "
                   "picks LeanDojo or the Lean REPL) [default: from lifelean.toml].")
@click.option("--seed", type=int, default=None, help="Random seed, saved for `resume` [default: 3407]. Options "
              "that change results (--seed, --strategy, --generator) are fixed once the stream has started: use a "
              "new workspace for other ones.")
@ray_option
@json_option
@click.pass_context
def run(ctx: click.Context, sources: tuple[str, ...], split_by_dir: int | None, name: str | None,
        strategy: str | None, generator: str | None, curriculum: str | None, env_kind: str | None, seed: int | None,
        ray_address: str | None, as_json: bool) -> None:
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
    from agent.loop.options import refuse_changed_options
    from agent.workspace.stream import refresh_curriculum
    from curriculum.sources import load_source, parse_source

    ws = workspace_root(ctx)
    items = expand_sources(sources)
    if name and len(items) > 1:
        raise InputError("--name applies to one source; give one source or drop --name")
    loaded = [(spec, load_source(spec, name=name, split_by_dir=split_by_dir))
              for spec in (parse_source(s) for s in items)]  # everything validated before any write
    if not items and not ws.exists:
        raise InputError(f"{ws.root}: no workspace yet; give SOURCES to start one (see `lifelean run --help`)")
    with ws.lock(create=True):  # one lock for the whole life of the run: nothing can slip in between
        config = configured(ws, seed, strategy, generator, curriculum, env_kind)
        state = ws.load_state()
        if state.run is not None and state.stream_started:
            refuse_changed_options(state.run.options, config, str(ws.root))
        if config != ws.config():
            ws.save_config(config)
        for spec, repos in loaded:
            register_and_index(ws, spec, repos, name, split_by_dir, progress=not as_json)
        if curriculum:
            state = ws.load_state()
            refresh_curriculum(ws, state, config.curriculum.strategy)
            ws.save_state(state)
        summary = run_locked(ws, show_progress=not as_json, ray_address=ray_address)
    emit(summary, as_json, _render)


@click.command("resume")
@ray_option
@json_option
@click.pass_context
def resume(ctx: click.Context, ray_address: str | None, as_json: bool) -> None:
    """Continue the workspace's run at its first unfinished step, with its saved seed and options.

    \b
    Example:
      lifelean -w workspaces/demo resume
    """
    ws = Workspace.open(workspace_root(ctx).root)
    with ws.lock():
        if ws.load_state().run is None:
            raise LifeleanError(f"{ws.root}: no run to resume; start one with `lifelean run`")
        summary = run_locked(ws, show_progress=not as_json, ray_address=ray_address)
    emit(summary, as_json, _render)
