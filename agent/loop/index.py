"""Step `index`: make sure the entry's premises are in the store under the current encoder and its traced
train proofs are in the bank (a no-op after `add`, real work after an interrupted add)."""
from __future__ import annotations

from typing import Any

from agent.loop.context import LoopContext
from agent.workspace import StreamEntry
from curriculum.lean_data import Repository


def step_index(ctx: LoopContext, entry: StreamEntry, repo: Repository) -> dict[str, Any]:
    from agent.workspace.memory import index_repositories

    result = index_repositories(ctx.ws, ctx.state, [repo], progress=False, config=ctx.config, store=ctx.store(),
                                bank=ctx.bank())
    return result.get(repo.key, {})
