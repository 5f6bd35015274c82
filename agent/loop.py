"""The lifelong loop (DESIGN.md §1): for each repository of the stream, in curriculum order,
index → learn → prove → bank → evaluate, each step durable before it is marked done.

Resumability rests on three rules:
1. The stream order is frozen as it is processed (`state["stream"]`): repositories already started
   keep their place; new ones are appended in curriculum order, so adding a repository to a finished
   workspace processes only that one.
2. Every step depends only on durable inputs (checkpoints, the bank, proofs.jsonl, the seed and the
   step number), never on process memory, so redoing an interrupted step gives the same result.
3. A step is marked done in `state.json` only after its outputs are on disk; a step that appends to a
   log (proofs.jsonl, metrics.jsonl) is idempotent on re-run (proofs already recorded for the step are
   reused; metric rows are read last-record-wins).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from agent.config import RunConfig
from agent.workspace import STEPS, Workspace
from common.atomic import append_jsonl, iter_jsonl_tolerant
from common.errors import LifeleanError
from curriculum.lean_data import Repository

BASELINE_STEP = -1


class StepFailed(LifeleanError):
    """A step could not write its outputs (disk full, permissions); nothing of it was recorded."""

    exit_code = 1


Reporter = Callable[[str, dict[str, Any]], None]


def _quiet(event: str, info: dict[str, Any]) -> None:
    return None


@dataclass
class LoopContext:
    """What the steps of one run share; rebuilt from disk on every (re)start."""

    ws: Workspace
    config: RunConfig
    state: dict[str, Any]
    order: list[str]
    repos: dict[str, Repository]
    report: Reporter = _quiet
    _query_encoder: Any = field(default=None, repr=False)

    def learned_before(self, index: int) -> list[str]:
        """Repository names whose knowledge the prover may use at stream position `index` (inclusive)."""
        return [self.repos[k].name for k in self.order[: index + 1]]


def stream_order(ws: Workspace, state: dict[str, Any]) -> list[str]:
    """Frozen prefix of repositories already started, then the rest in curriculum order."""
    active = [r["key"] for r in ws.repo_entries(state)]
    curriculum = (state.get("curriculum") or {}).get("order") or active
    started = [k for k in state.get("stream", []) if k in active]
    rest = [k for k in curriculum if k in active and k not in started]
    rest += [k for k in active if k not in started and k not in rest]
    return started + rest


# ------------------------------------------------------------------------------------------------
# Steps


def step_index(ctx: LoopContext, i: int, repo: Repository) -> dict[str, Any]:
    """Make sure this repository's premises are in the store under the current encoder (a no-op
    after `add`, real work after an interrupted add or when the document tower changed)."""
    from agent.memory_ops import index_repositories

    result = index_repositories(ctx.ws, ctx.state, [repo], progress=False)
    return result.get(repo.key, {})


def step_learn(ctx: LoopContext, i: int, repo: Repository) -> dict[str, Any]:
    """Progressive fine-tuning of the retriever on this repository (checkpoint `i`)."""
    from agent.learning import learn_repository

    ctx._query_encoder = None
    stats = learn_repository(ctx.ws, ctx.config, ctx.state, repo, step=i, seed=ctx.config.seed,
                             replay_repos=ctx.learned_before(i - 1) if i > 0 else [])
    if ctx.config.learning.train_generator:
        from agent.learning import learn_generator

        stats.update(learn_generator(ctx.ws, ctx.config, repo, step=i, seed=ctx.config.seed))
    return stats


def proving_config(ctx: LoopContext) -> RunConfig:
    """The config provers run with: when the generator is fine-tuned, its newest checkpoint is the model."""
    if not ctx.config.learning.train_generator:
        return ctx.config
    from agent.learning import current_generator_model

    prover = dataclasses.replace(ctx.config.prover, model=current_generator_model(ctx.ws, ctx.config))
    return dataclasses.replace(ctx.config, prover=prover)


def _query_encoder(ctx: LoopContext, repo_name: str | None = None):
    """The current query tower: the newest checkpoint's (one per process), or with `adapters` the
    adapter of `repo_name` (LoRA per repository, selected at retrieval time)."""
    from agent.learning import load_query_encoder

    if "adapters" in ctx.config.learning.strategy:
        return load_query_encoder(ctx.ws, ctx.config, repo=repo_name)
    if ctx._query_encoder is None:
        ctx._query_encoder = load_query_encoder(ctx.ws, ctx.config)
    return ctx._query_encoder


def recorded_proofs(ctx: LoopContext, step: int) -> dict[str, dict[str, Any]]:
    """Results already in proofs.jsonl for this step (by theorem uid): reused when a step is redone."""
    return {r["uid"]: r for r in iter_jsonl_tolerant(ctx.ws.proofs_path)
            if r.get("step") == step and r.get("purpose", "prove") == "prove"}


def step_prove(ctx: LoopContext, i: int, repo: Repository) -> dict[str, Any]:
    """Attempt the repository's open theorems; each result is appended to proofs.jsonl as it finishes."""
    from agent.proving import open_theorems, prove_theorems

    targets = open_theorems(repo)
    done = recorded_proofs(ctx, i)
    todo = [t for t in targets if t.uid not in done]
    ctx.report("prove-start", {"repo": repo.name, "theorems": len(targets), "already": len(targets) - len(todo)})

    def on_result(result: Any) -> None:
        ctx.report("proof", {"repo": repo.name, "theorem": result.theorem, "proved": result.proved})

    if todo:
        prove_theorems(ctx.ws, proving_config(ctx), repo, todo, query_encoder=_query_encoder(ctx, repo.name),
                       on_result=on_result, step=i, bank_repos=ctx.learned_before(i), add_to_bank=False)
    results = recorded_proofs(ctx, i)
    proved = sum(1 for t in targets if results.get(t.uid, {}).get("proved"))
    return {"attempted": len(targets), "proved": proved}


def step_bank(ctx: LoopContext, i: int, repo: Repository) -> dict[str, Any]:
    """Store the proofs found at this step in the memory bank (idempotent: the bank skips duplicates)."""
    from agent.proving import remember_proofs

    proofs = [r for r in recorded_proofs(ctx, i).values() if r.get("proved")]
    added = remember_proofs(ctx.ws, ctx.config, repo, proofs)
    return {"stored": added}


def evaluate_cells(ctx: LoopContext, row: int, position: int) -> list[dict[str, Any]]:
    """One row of the accuracy matrix: every repository of the stream, after learning `position`
    repositories (−1: before any). Retrieval on held-out tactics; proof rate on held-out theorems."""
    from agent.evaluate import retrieval_scores
    from agent.learning import document_encoder
    from agent.memory_ops import open_store
    from agent.proving import held_out_theorems, prove_theorems

    bank_repos = ctx.learned_before(position) if position >= 0 else []
    stores: dict[str, Any] = {}
    shared_worker = _row_worker(ctx, bank_repos)
    records = []
    for key in ctx.order:
        repo = ctx.repos[key]
        tests = held_out_theorems(repo)
        rec: dict[str, Any] = {"kind": "eval", "step": row, "after": ctx.order[position] if position >= 0 else None,
                               "repo": key, "theorems": len(tests)}
        if tests:
            encoder = _query_encoder(ctx, repo.name)
            doc = document_encoder(ctx.config, encoder)
            if doc.version not in stores:
                stores[doc.version] = open_store(ctx.ws, ctx.config, encoder=doc)
            scores = retrieval_scores(encoder, stores[doc.version], tests)
            rec.update({k: (None if isinstance(v, float) and v != v else v) for k, v in scores.items()})
            results = prove_theorems(ctx.ws, proving_config(ctx), repo, tests, query_encoder=encoder, step=row,
                                     bank_repos=bank_repos, add_to_bank=False, record=False, worker=shared_worker)
            rec["proof_rate"] = sum(1 for r in results if r.proved) / len(tests)
        else:
            rec.update({"recall@1": None, "recall@10": None, "mrr": None, "tactics": 0, "proof_rate": None})
        records.append(rec)
    for rec in records:  # the whole row is computed before any line is written
        append_jsonl(ctx.ws.metrics_path, rec)
    return records


def _row_worker(ctx: LoopContext, bank_repos: list[str]):
    """One prover for a whole evaluation row, instead of opening the store and bank once per repository.

    Only when that cannot change results: without per-repository adapters (each needs its own query
    tower) and without online learning (a shared worker would carry what it learns across repositories).
    """
    config = proving_config(ctx)
    if ("adapters" in config.learning.strategy or config.prover.learn_online or config.prover.workers != 1
            or config.prover.ray_address):
        return None
    from agent.proving import ProverWorker, worker_spec

    repos = {r.name: r for r in ctx.repos.values()}
    return ProverWorker(worker_spec(ctx.ws, config, repos, query_encoder=_query_encoder(ctx), bank_repos=bank_repos))


def step_evaluate(ctx: LoopContext, i: int, repo: Repository) -> dict[str, Any]:
    records = evaluate_cells(ctx, row=i, position=i)
    own = next(r for r in records if r["repo"] == repo.key)
    return {"recall@10": own.get("recall@10"), "proof_rate": own.get("proof_rate")}


STEP_FUNCTIONS = {"index": step_index, "learn": step_learn, "prove": step_prove, "bank": step_bank,
                  "evaluate": step_evaluate}


# ------------------------------------------------------------------------------------------------
# Driver


def _run_step(ctx: LoopContext, name: str, fn: Callable[[], dict[str, Any]], i: int, key: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        out = fn()
    except OSError as exc:
        raise StepFailed(
            f"step '{name}' of {key} failed writing to disk ({exc.strerror or exc}); it was not recorded and the "
            f"workspace is consistent; free space (or fix permissions) and run `lifelean -w {ctx.ws.root} resume`"
        ) from None
    append_jsonl(ctx.ws.metrics_path, {"kind": "timing", "step": i, "repo": key, "phase": name,
                                       "seconds": round(time.perf_counter() - started, 4)})
    return out


def run_stream(ws: Workspace, report: Reporter = _quiet) -> dict[str, Any]:
    """Process every unfinished step of the workspace's stream; the caller holds the lock."""
    config = ws.config()
    state = ws.load_state()
    order = stream_order(ws, state)
    if not order:
        raise LifeleanError(f"{ws.root}: no repositories to run on; add one with `lifelean add SOURCE`")
    state["stream"] = order
    ws.save_state(state)
    repos = {key: ws.load_repository(key) for key in order}
    ctx = LoopContext(ws, config, state, order, repos, report)
    total = 1 + len(order) * len(STEPS)
    done = (state.get("baseline") == "done") + sum(ws.step_done(state, k, s) for k in order for s in STEPS)
    report("start", {"total": total, "done": done, "repos": len(order)})
    started = time.perf_counter()
    if state.get("baseline") != "done":
        report("step", {"repo": "(all)", "step": "baseline", "index": -1})
        _run_step(ctx, "baseline", lambda: {"cells": len(evaluate_cells(ctx, BASELINE_STEP, -1))}, -1, "(all)")
        state["baseline"] = "done"
        ws.save_state(state)
        report("advance", {})
    for i, key in enumerate(order):
        repo = repos[key]
        for name in STEPS:
            if ws.step_done(state, key, name):
                continue
            report("step", {"repo": repo.name, "step": name, "index": i})
            out = _run_step(ctx, name, lambda: STEP_FUNCTIONS[name](ctx, i, repo), i, key)
            ws.mark_step(state, key, name)
            report("advance", {"repo": repo.name, "step": name, **out})
    return {"workspace": str(ws.root), "repos": len(order), "seconds": round(time.perf_counter() - started, 2)}
