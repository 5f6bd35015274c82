"""The lifelong loop (DESIGN.md §1): for each entry of the stream, index -> learn -> prove -> bank ->
evaluate, each step durable before it is marked done.

Resumability rests on three rules:
1. Every entry gets a permanent step id when it is first started (`WorkspaceState.start`); checkpoints, metric
   rows and recorded proofs are keyed by it, so nothing shifts when the curriculum is refreshed, a repository
   moves to a new commit (a new entry) or is forgotten (a mark).
2. Every step depends only on durable inputs (checkpoints, the bank, proofs.jsonl, the options the stream
   was started with, the step id), never on process memory, so redoing an interrupted step gives the same result.
3. A step is marked done in `state.json` only after its outputs are on disk; a step that appends to a log
   is idempotent on re-run (proofs already recorded for the step are reused; metric rows are last-record-wins).
"""
from __future__ import annotations

import time
from typing import Any, Callable

from agent.loop.bank import step_bank
from agent.loop.context import LoopContext, Reporter, StepFailed, quiet
from agent.loop.evaluate import BASELINE_ROW, run_baseline, step_evaluate
from agent.loop.index import step_index
from agent.loop.learn import step_learn
from agent.loop.options import refuse_changed_options, stream_options
from agent.loop.prove import step_prove
from agent.workspace import PHASES, RunRecord, StreamEntry, Workspace
from agent.workspace.checkpoints import recover_checkpoints
from common.atomic import append_jsonl
from common.errors import LifeleanError
from common.heap import StepHeap

STEP_FUNCTIONS = {"index": step_index, "learn": step_learn, "prove": step_prove, "bank": step_bank,
                  "evaluate": step_evaluate}


# Steps that free large blocks (weights, optimizer, teacher, graphs; a row's prover and query tower): the
# heap is trimmed after them, not after every small step. After the baseline row and after `learn` only
# run-long objects are alive (no query tower: `learn` drops the one it replaced, the next `evaluate` loads
# the new one), so the first of them freezes its survivors out of later collections (common/heap.py).
RELEASES_MEMORY = {"baseline", "learn", "evaluate"}
FREEZES_SURVIVORS = {"baseline", "learn"}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MB): the timing records carry it, so the step that raised
    the peak of a run is the first whose value jumps."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1e6 if sys.platform == "darwin" else 1e3), 1)   # bytes on macOS, KiB on Linux


def _disk_failure(ws: Workspace, name: str, key: str, exc: OSError) -> StepFailed:
    return StepFailed(
        f"step '{name}' of {key} failed writing to disk ({exc.strerror or exc}); it was not recorded and the "
        f"workspace is consistent; free space (or fix permissions) and run `lifelean -w {ws.root} resume`")


def _run_step(ctx: LoopContext, name: str, fn: Callable[[], dict[str, Any]], step: int, key: str,
              mark: Callable[[], None], heap: StepHeap) -> dict[str, Any]:
    """Run one step, then record its timing and mark it done; any disk error is a clean step failure."""
    started = time.perf_counter()
    try:
        out = fn()
        if name in RELEASES_MEMORY:
            heap.release(freeze_survivors=name in FREEZES_SURVIVORS)   # no fragmented heap for the next step
        append_jsonl(ctx.ws.metrics_path, {"kind": "timing", "step": step, "repo": key, "phase": name,
                                           "seconds": round(time.perf_counter() - started, 4),
                                           "peak_rss_mb": peak_rss_mb()})
        mark()
    except OSError as exc:
        raise _disk_failure(ctx.ws, name, key, exc) from None
    return out


def prepare_stream(ws: Workspace, ray_address: str | None = None) -> LoopContext:
    """Load the run's state, finish what a crash interrupted, and check that the options did not change
    under a started stream. The caller holds the lock. `ray_address` spreads this invocation's proof search
    and evaluation rows over a Ray cluster (a resource option: it is not saved and changes no result)."""
    import dataclasses

    from agent.workspace.memory import finish_forgets

    config = ws.config()
    if ray_address:
        config = dataclasses.replace(config, prover=dataclasses.replace(config.prover, ray_address=ray_address))
    state = ws.load_state()
    finish_forgets(ws, state, config)
    recover_checkpoints(ws)
    if not state.live() and not state.started():
        raise LifeleanError(f"{ws.root}: no repositories to run on; add one with `lifelean add SOURCE`")
    if state.run is not None and state.stream_started:
        refuse_changed_options(state.run.options, config, str(ws.root))
    else:
        state.run = RunRecord(options=stream_options(config), started_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
        ws.save_state(state)
    return LoopContext(ws, config, state)


def pending_work(ctx: LoopContext) -> int:
    """Steps still to run: the baseline row plus every unfinished phase of the plan."""
    return (not ctx.state.baseline_done) + sum(not e.done(p) for e in ctx.state.plan() for p in PHASES)


def run_stream(ws: Workspace, report: Reporter = quiet, ray_address: str | None = None) -> dict[str, Any]:
    """Process every unfinished step of the workspace's stream; the caller holds the lock."""
    ctx = prepare_stream(ws, ray_address)
    ctx.report = report
    state = ctx.state
    plan = state.plan()
    todo = pending_work(ctx)
    report("start", {"total": todo, "done": 0, "repos": len(plan)})
    if todo:
        ctx.prepare_prover_memory()   # the run will prove: its store loads while the first steps run
    started = time.perf_counter()
    with StepHeap() as heap:
        _run_steps(ctx, plan, heap)
    return {"workspace": str(ws.root), "repos": len(state.started()), "processed": len(plan),
            "nothing_to_do": todo == 0, "seconds": round(time.perf_counter() - started, 2)}


def _run_steps(ctx: LoopContext, plan: list[StreamEntry], heap: StepHeap) -> None:
    """The baseline row if it is not done yet, then every unfinished phase of every planned entry."""
    ws, state, report = ctx.ws, ctx.state, ctx.report
    if not state.baseline_done:
        report("step", {"repo": "(all)", "step": "baseline", "index": BASELINE_ROW})

        def mark_baseline() -> None:
            state.baseline_done = True
            ws.save_state(state)

        _run_step(ctx, "baseline", lambda: run_baseline(ctx), BASELINE_ROW, "(all)", mark_baseline, heap)
        report("advance", {})
    for position, entry in enumerate(plan):
        if entry.step is None:
            state.start(entry)
            ws.save_state(state)
        repo = ctx.repository(entry.key)
        for name in PHASES:
            if entry.done(name):
                continue
            report("step", {"repo": repo.name, "step": name, "index": entry.step, "position": position,
                            "of": len(plan)})
            out = _run_step(ctx, name, lambda: STEP_FUNCTIONS[name](ctx, entry, repo), entry.step, entry.key,
                            lambda: ws.mark_phase(state, entry, name), heap)
            report("advance", {"repo": repo.name, "step": name, **out})
        report("entry-done", {"repo": repo.name, "step": entry.step})
