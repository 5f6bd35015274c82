"""Online elastic weight consolidation (Kirkpatrick et al. 2017; online form: Schwarz et al. 2018).

After each repository, the diagonal empirical Fisher F_new,i = mean_x (∂ℓ(x)/∂θ_i)² is estimated from
*per-example* gradients of the task loss over a seeded sample of that repository's examples (not the squared
mini-batch mean, which underestimates it by about the batch size), normalised to mean 1 so that λ has the same
scale for any model, and folded into the running Fisher F ← γ·F + F_new; the anchor θ* becomes the current
weights. While training later repositories the loss gains λ·Σ_i F_i (θ_i − θ*_i)² (Avalanche's form, no ½),
which is exactly zero at the anchor and grows quadratically with the distance from it.
"""
from __future__ import annotations

from typing import Any

import torch

from agent.learn.strategies.base import RepoContext, Strategy, register


@register
class EWC(Strategy):
    name = "ewc"

    def __init__(self, config: Any, **resources: Any):
        super().__init__(config)
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self._params: list[tuple[str, torch.nn.Parameter]] = []

    def before_repo(self, ctx: RepoContext) -> None:
        self._params = [(n, p) for n, p in ctx.learner.trainable() if n in self.fisher]

    def penalty(self) -> torch.Tensor:
        """λ·Σ F (θ − θ*)² over the parameters that have a Fisher estimate."""
        total = torch.zeros(())
        for n, p in self._params:
            total = total + (self.fisher[n] * (p - self.anchor[n]) ** 2).sum()
        return self.config.ewc_lambda * total

    def loss_terms(self, batch: Any) -> dict[str, torch.Tensor]:
        return {"ewc": self.penalty()} if self._params else {}

    def estimate_fisher(self, ctx: RepoContext) -> dict[str, torch.Tensor]:
        """Mean of squared per-example gradients over up to `ewc_samples` examples, normalised to mean 1."""
        learner = ctx.learner
        params = learner.trainable()
        sq = {n: torch.zeros_like(p) for n, p in params}
        k = min(self.config.ewc_samples, len(ctx.examples))
        sample = ctx.rng.sample(ctx.examples, k)
        was_training = learner.model.training
        learner.model.eval()  # no dropout: the Fisher of the deterministic model
        for ex in sample:
            learner.model.zero_grad(set_to_none=True)
            learner.examples_loss([ex], ctx.rng).backward()
            for n, p in params:
                if p.grad is not None:
                    sq[n] += p.grad.detach() ** 2
        learner.model.zero_grad(set_to_none=True)
        learner.model.train(was_training)
        mean = torch.cat([v.flatten() for v in sq.values()]).mean().clamp(min=1e-30)
        return {n: v / mean for n, v in sq.items()}

    def after_repo(self, ctx: RepoContext) -> None:
        if not ctx.examples or not ctx.learner.trains:
            return
        new = self.estimate_fisher(ctx)
        g = self.config.ewc_gamma
        self.fisher = {n: g * self.fisher[n] + f if n in self.fisher else f for n, f in new.items()}
        self.anchor = {n: p.detach().clone() for n, p in ctx.learner.trainable() if n in self.fisher}
        self._params = []

    def state_dict(self) -> dict[str, Any]:
        return {"fisher": self.fisher, "anchor": self.anchor}

    def load_state_dict(self, state: dict[str, Any], learner: Any) -> None:
        self.fisher = dict(state.get("fisher", {}))
        self.anchor = dict(state.get("anchor", {}))
