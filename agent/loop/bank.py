"""Step `bank`: store the proofs the prove step found in the memory bank, as split `found`.

Only proofs of the entry's open theorems can reach the bank: a record of a held-out theorem is refused here
even if one were in proofs.jsonl (defence in depth for issue "Results you can trust", item 2). Idempotent: the
bank stores each item once, so a redone step adds nothing.
"""
from __future__ import annotations

from typing import Any

from agent.loop.context import LoopContext
from agent.loop.prove import recorded_proofs
from agent.workspace import StreamEntry
from curriculum.lean_data import Repository


def step_bank(ctx: LoopContext, entry: StreamEntry, repo: Repository) -> dict[str, Any]:
    from agent.proving import bankable_records, remember_proofs

    proofs = bankable_records(repo, list(recorded_proofs(ctx, entry).values()))
    added = remember_proofs(ctx.ws, ctx.config, repo, proofs, bank=ctx.bank() if proofs else None)
    return {"stored": added}
