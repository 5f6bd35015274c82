"""Step `prove`: retrieval-augmented search on the repository's open (sorry) theorems.

Held-out (val/test) theorems are never attempted here: only the evaluation proves them, and its results are
recorded as evaluation, never banked (issue "Results you can trust", item 2). Each result is appended to
proofs.jsonl as it finishes, tagged with the entry's permanent step id and key, so a redone step reuses what
was already found and never mixes one repository's proofs with another's.
"""
from __future__ import annotations

from typing import Any

from agent.loop.context import LoopContext
from agent.workspace import StreamEntry
from common.atomic import iter_jsonl_tolerant
from curriculum.lean_data import Repository


def recorded_proofs(ctx: LoopContext, entry: StreamEntry) -> dict[str, dict[str, Any]]:
    """This entry's loop results already in proofs.jsonl (by theorem uid; the last record wins)."""
    return {r["uid"]: r for r in iter_jsonl_tolerant(ctx.ws.proofs_path)
            if r.get("purpose") == "prove" and r.get("step") == entry.step and r.get("key") == entry.key}


def step_prove(ctx: LoopContext, entry: StreamEntry, repo: Repository) -> dict[str, Any]:
    from agent.proving import open_theorems, prove_theorems

    assert entry.step is not None
    ctx.prepare_prover_memory()
    targets = open_theorems(repo)
    done = recorded_proofs(ctx, entry)
    todo = [t for t in targets if t.uid not in done]
    ctx.report("prove-start", {"repo": repo.name, "theorems": len(targets), "already": len(targets) - len(todo)})

    def on_result(result: Any) -> None:
        ctx.report("proof", {"repo": repo.name, "theorem": result.theorem, "proved": result.proved})

    if todo:
        prove_theorems(ctx.ws, ctx.proving_config(), repo, todo, query_encoder=ctx.query_encoder(repo.name),
                       on_result=on_result, step=entry.step, key=entry.key,
                       bank_repos=ctx.learned_names(entry.step), **ctx.prover_memory())
    results = recorded_proofs(ctx, entry)
    proved = sum(1 for t in targets if results.get(t.uid, {}).get("proved"))
    return {"attempted": len(targets), "proved": proved}
