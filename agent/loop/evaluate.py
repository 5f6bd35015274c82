"""Step `evaluate` (and the baseline row): one row of the accuracy matrices.

Row r is written after step r (−1: before any learning) and has a cell for every live entry of the stream,
started or not: Recall@1/10 and MRR of the premise retriever on its held-out tactics, tactic@1/8 of the generator on the same steps (agent/evaluation/tactics.py), and the proof
rate on its held-out test theorems. The whole row is computed before any line is written; a redone row appends again and
readers keep the last record of a cell. Proofs found here are evaluation: they are never recorded in
proofs.jsonl and never banked.
"""
from __future__ import annotations

import random
from typing import Any

from agent.loop.context import LoopContext
from agent.workspace import StreamEntry
from common.atomic import append_jsonl
from curriculum.lean_data import Repository

BASELINE_ROW = -1


def _nan_to_none(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in scores.items()}


def row_columns(ctx: LoopContext, row: int) -> list[StreamEntry]:
    """The entries row `row` scores under `[evaluation] columns` (see agent/evaluation/config.py)."""
    columns = ctx.columns()
    if ctx.config.evaluation.columns == "all":
        return columns
    seen = [e for e in columns if e.step is not None and e.step <= row]
    ahead = [e for e in columns if e.step is None or e.step > row]
    return seen + ahead[:1]


def sampled(theorems: list[Any], limit: int, seed: int, row: int, key: str) -> list[Any]:
    """At most `limit` theorems, a sample seeded by (seed, row, column) and kept in their order."""
    if not limit or len(theorems) <= limit:
        return theorems
    keep = sorted(random.Random(f"eval:{seed}:{row}:{key}").sample(range(len(theorems)), limit))
    return [theorems[i] for i in keep]


def evaluate_row(ctx: LoopContext, row: int, after: StreamEntry | None) -> list[dict[str, Any]]:
    """Score every column of row `row`; nothing is written until the whole row is computed.

    Without per-repository adapters one query tower serves the whole row, so its held-out states are embedded
    in one batched pass (`encode_once`), one prover serves every column's tactic scores, and the row's proofs
    are one `prove_many` call: one process pool or one Ray actor pool per row (`[prover] workers`,
    `run --ray`), not one per column. Retrieval ranks every live premise exactly (`LoopContext.premise_index`:
    the stored vectors, one matrix product per cell), as `lifelean evaluate` and bench/forgetting.py do."""
    from agent.evaluation.retrieval import retrieval_scores
    from agent.evaluation.tactics import tactic_scores
    from agent.proving import held_out_theorems

    ctx.prepare_prover_memory()
    bank_repos = ctx.learned_names(row)
    premises = ctx.premise_index()   # exact search over the live corpus's stored vectors
    rerank = ctx.config.memory.reranker()   # as the prover's premise context re-orders them
    columns = row_columns(ctx, row)
    cells = {}
    for entry in columns:
        held_out = held_out_theorems(ctx.repository(entry.key))
        cells[entry.key] = (held_out, sampled(held_out, ctx.config.evaluation.sample, ctx.config.seed, row,
                                               entry.key))
    per_repo = "adapters" in ctx.config.learning.strategy
    row_worker = None
    proofs: dict[tuple[str, str], Any] = {}
    if not per_repo:
        every_test = [t for _, tests in cells.values() for t in tests]
        encode_once(ctx, every_test)
        row_worker = _worker(ctx, bank_repos, ctx.query_encoder()) if every_test else None
        if not ctx.config.prover.learn_online:
            proofs = _prove_row(ctx, [(ctx.repository(e.key), cells[e.key][1]) for e in columns], bank_repos,
                                row_worker)
    records = []
    for entry in columns:
        repo = ctx.repository(entry.key)
        held_out, tests = cells[entry.key]
        rec: dict[str, Any] = {"kind": "eval", "step": row, "after": after.key if after else None,
                               "repo": entry.key, "theorems": len(tests), "held_out": len(held_out)}
        if tests:
            encoder = ctx.query_encoder(repo.name)
            if per_repo:
                encode_once(ctx, tests, encoder)
            rec.update(_nan_to_none(retrieval_scores(encoder, premises, tests, rerank=rerank)))
            worker = row_worker or _worker(ctx, bank_repos, encoder)
            rec.update(_nan_to_none(tactic_scores(worker.generator, tests, ctx.config.seed)))
            if proofs:
                results = [proofs[(repo.name, t.uid)] for t in tests if (repo.name, t.uid) in proofs]
            else:   # adapters (a query tower per column) or online learning (nothing shared across columns)
                results = list(_prove_row(ctx, [(repo, tests)], bank_repos, None, encoder).values())
            rec["proof_rate"] = sum(1 for r in results if r.proved) / len(tests)
            rec["not_replayable"] = sum(1 for r in results if r.stop_reason == "not_replayable")
        else:
            rec.update({"recall@1": None, "recall@10": None, "mrr": None, "tactics": 0, "proof_rate": None,
                        "tactic@1": None, "tactic@8": None, "tactic_steps": 0})
        records.append(rec)
        ctx.report("evaluated", {"repo": repo.name, "done": len(records), "of": len(columns)})
    for rec in records:
        append_jsonl(ctx.ws.metrics_path, rec)
    return records


def encode_once(ctx: LoopContext, theorems: list[Any], query: Any = None) -> None:
    """Embed the recorded states of `theorems` in one batched pass per encoder, into the encoders' memos
    (memory/embedder.py `remember`): the cells then ask retrieval, the kNN generator, the premise context and
    the prover for these states one at a time, and each would otherwise be a forward pass of its own. The
    frozen base encoder keeps them across rows; the query tower is new after every learn step. The query tower
    reads each state with its theorem's name and file (`query_text`: retrieval and the premise context), the base
    encoder the bare state (the bank's kNN match), and the base serves as query tower before any learning.

    The query tower is given the states before each tactic, which every cell ranks premises for; a state
    only reached after the last tactic of a branch is asked for only if the prover gets there (a third of the
    row's texts, rarely reached), and then embedded on its own."""
    from agent.workspace.memory import base_encoder
    from memory.embedder import query_text

    befores = [(tac.state_before, thm.file_path, thm.full_name) for thm in theorems for tac in thm.tactics
               if tac.state_before]
    states = list(dict.fromkeys(s for thm in theorems for tac in thm.tactics
                                for s in (tac.state_before, tac.state_after) if s))
    if not states:
        return
    query, base = query or ctx.query_encoder(), base_encoder(ctx.config)
    queries = list(dict.fromkeys(query_text(s, path, name) for s, path, name in befores))
    if query is base:
        base.encode(queries + states)
    else:
        query.encode(queries)
        base.encode(states)


def _prove_row(ctx: LoopContext, work: list[tuple[Repository, list[Any]]], bank_repos: list[str],
               worker: Any, query_encoder: Any = None) -> dict[tuple[str, str], Any]:
    """{(repo name, uid): result} of proving every listed held-out theorem in one `prove_many` call. The
    in-process `worker` is reused when the config proves in this process (1 worker, no Ray)."""
    from agent.proving import worker_spec
    from provers.pool import prove_many

    tasks = [(repo.name, t) for repo, tests in work for t in tests]
    if not tasks:
        return {}
    config = ctx.proving_config()
    repos = {ctx.repository(e.key).name: ctx.repository(e.key) for e in ctx.columns()}
    spec = worker_spec(ctx.ws, config, repos, query_encoder=query_encoder or ctx.query_encoder(),
                       bank_repos=bank_repos, **ctx.prover_memory())
    local = config.prover.workers == 1 and not config.prover.ray_address
    return {(r.repo, r.uid): r for r in prove_many(tasks, spec, workers=config.prover.workers,
                                                   ray_address=config.prover.ray_address,
                                                   worker=worker if local else None)}


def _worker(ctx: LoopContext, bank_repos: list[str], query_encoder: Any) -> Any:
    from agent.proving import ProverWorker, worker_spec

    repos = {ctx.repository(e.key).name: ctx.repository(e.key) for e in ctx.columns()}
    return ProverWorker(worker_spec(ctx.ws, ctx.proving_config(), repos, query_encoder=query_encoder,
                                    bank_repos=bank_repos, **ctx.prover_memory()))


def due(ctx: LoopContext, entry: StreamEntry) -> bool:
    """Whether this step's row is evaluated under `[evaluation] every` (the last entry of a plan always is)."""
    assert entry.step is not None
    last = not any(e.step is None or (e.step > entry.step and not e.finished) for e in ctx.state.plan()
                   if e is not entry)
    return last or (entry.step + 1) % ctx.config.evaluation.every == 0


def step_evaluate(ctx: LoopContext, entry: StreamEntry, repo: Repository) -> dict[str, Any]:
    assert entry.step is not None
    if not due(ctx, entry):
        return {"skipped": f"[evaluation] every = {ctx.config.evaluation.every}"}
    records = evaluate_row(ctx, row=entry.step, after=entry)
    own = next(r for r in records if r["repo"] == entry.key)
    return {"recall@10": own.get("recall@10"), "proof_rate": own.get("proof_rate")}


def run_baseline(ctx: LoopContext) -> dict[str, Any]:
    """Row −1: the untrained encoder and an empty bank, which FWT is measured against."""
    return {"cells": len(evaluate_row(ctx, BASELINE_ROW, None))}
