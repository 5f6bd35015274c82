"""Experience replay (Chaudhry et al. 2019; Avalanche's ReplayPlugin): old repositories' examples in every batch.

The source is the memory bank's repository-balanced reservoir (`MemoryBank.sample(n, rng, exclude_repo)`), or any
object with that method. Without one, the strategy keeps its own :class:`ReservoirBuffer` of past training
examples (saved with the checkpoint). Each batch of b new examples gets round(b·r / (1 − r)) old ones, so old
examples make up the share r = `replay_ratio` of every batch (r = 0.5: Avalanche's memory batch = train batch).
"""
from __future__ import annotations

import random
from typing import Any

from agent.learn.config import LearningConfig
from agent.learn.strategies.base import RepoContext, Strategy, register


class ReservoirBuffer:
    """Repository-balanced reservoir: one Algorithm-R reservoir per repository (Vitter 1985), sampled round-robin.

    Balancing by repository keeps a large repository from crowding small ones out (cl-and-style.md §2.2).
    """

    def __init__(self, per_repo: int = 512, seed: int = 0):
        self.per_repo = per_repo
        self.slots: dict[str, list[Any]] = {}
        self.seen: dict[str, int] = {}
        self._rng = random.Random(seed)

    def add(self, repo: str, items: list[Any]) -> None:
        slot = self.slots.setdefault(repo, [])
        for item in items:
            n = self.seen.get(repo, 0) + 1
            self.seen[repo] = n
            if len(slot) < self.per_repo:
                slot.append(item)
            else:
                j = self._rng.randrange(n)
                if j < self.per_repo:
                    slot[j] = item

    def sample(self, n: int, rng: random.Random, exclude_repo: str | None = None) -> list[Any]:
        """`n` items, drawn repository by repository in turn (each repository equally often)."""
        repos = sorted(r for r, s in self.slots.items() if s and r != exclude_repo)
        if not repos or n <= 0:
            return []
        out = []
        for k in range(n):
            if k % len(repos) == 0:
                rng.shuffle(repos)
            out.append(rng.choice(self.slots[repos[k % len(repos)]]))
        return out

    def __len__(self) -> int:
        return sum(len(s) for s in self.slots.values())


@register
class Replay(Strategy):
    """Mix examples of earlier repositories into each batch."""

    name = "replay"

    def __init__(self, config: LearningConfig, replay_source: Any = None, **resources: Any):
        super().__init__(config)
        self.source = replay_source
        self.buffer = ReservoirBuffer() if replay_source is None else None
        self.mixed = 0

    def mix(self, examples: list[Any], ctx: RepoContext) -> list[Any]:
        r = self.config.replay_ratio
        k = round(len(examples) * r / (1.0 - r))
        if k <= 0:
            return examples
        source = self.source if self.source is not None else self.buffer
        want = 2 * k
        while True:  # bank items without a premise in the corpus give no pair: ask for more until k or exhausted
            items = source.sample(want, ctx.rng, exclude_repo=ctx.repo)
            old = [x for x in items if not hasattr(x, "kind")] + \
                ctx.learner.examples_from_items([x for x in items if hasattr(x, "kind")])
            if len(old) >= k or len(items) < want or want >= 64 * k:
                break
            want *= 4
        old = old[:k]
        self.mixed += len(old)
        return list(examples) + old

    def after_repo(self, ctx: RepoContext) -> None:
        if self.buffer is not None:
            self.buffer.add(ctx.repo, list(ctx.examples))
        ctx.info["replayed"] = self.mixed
        self.mixed = 0

    def progress(self) -> int:
        return self.mixed

    def load_progress(self, progress: Any) -> None:
        self.mixed = int(progress or 0)

    def state_dict(self) -> dict[str, Any]:
        if self.buffer is None:
            return {}
        return {"slots": self.buffer.slots, "seen": self.buffer.seen, "rng": self.buffer._rng.getstate()}

    def load_state_dict(self, state: dict[str, Any], learner: Any) -> None:
        if self.buffer is not None and state:
            self.buffer.slots = state["slots"]
            self.buffer.seen = state["seen"]
            self.buffer._rng.setstate(state["rng"])
