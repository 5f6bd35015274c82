"""LiNeS: layer-increasing network scaling of each repository's task vector (Wang et al., ICLR 2025).

After a repository, its task vector τ = θ_after − θ_before is rescaled block by block before it is kept:
θ ← θ_before + λ(ℓ)·τ_ℓ with λ(ℓ) = α + β·ℓ/(L − 1), ℓ = 0 for the embeddings up to L − 1 for the last
transformer layer (the paper's (ℓ−1)/(L−1) with 1-based ℓ). Shallow, general-purpose features stay near
what earlier repositories relied on; deep, task-specific layers keep the update. Parameters outside the
blocks (e.g. the pooler) keep λ = 1; for LoRA only `lora_B` is scaled, which scales the product BA by λ.
Defaults α = 0, β = 1: LiNeS' single-task editing setting.
"""
from __future__ import annotations

from typing import Any

import torch

from agent.learn.strategies.base import RepoContext, Strategy, register


def lines_scale(block: int | None, num_blocks: int, alpha: float, beta: float) -> float:
    """λ(ℓ) = α + β·ℓ/(L−1); 1 outside the layer blocks."""
    if block is None:
        return 1.0
    return alpha + beta * block / max(num_blocks - 1, 1)


@register
class Merge(Strategy):
    name = "merge"

    def __init__(self, config: Any, **resources: Any):
        super().__init__(config)
        self.before: dict[str, torch.Tensor] = {}

    def discards(self, name: str, learner: Any) -> bool:
        """The merge undoes the update of a parameter whose scale is 0 (λ(0) = α = 0: the embeddings), so
        training it moves the other weights' trajectory for nothing kept; `[learning] freeze_discarded` freezes it."""
        if "lora_A" in name:
            return False
        return lines_scale(learner.layer_index(name), learner.num_blocks,
                           self.config.lines_alpha, self.config.lines_beta) == 0.0

    def before_repo(self, ctx: RepoContext) -> None:
        self.before = {n: p.detach().clone() for n, p in ctx.learner.trainable()}

    def after_repo(self, ctx: RepoContext) -> None:
        learner = ctx.learner
        if not learner.trains:
            return
        with torch.no_grad():
            for n, p in learner.trainable():
                if n not in self.before or "lora_A" in n:
                    continue
                lam = lines_scale(learner.layer_index(n), learner.num_blocks,
                                  self.config.lines_alpha, self.config.lines_beta)
                p.copy_(self.before[n] + lam * (p - self.before[n]))
        self.before = {}
