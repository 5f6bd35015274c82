"""One LoRA adapter per repository on a frozen base (Hu et al. 2021, via peft), routed by repository.

Each repository trains a fresh adapter (`add_adapter` + `set_adapter`, which freezes every other adapter; the
base weights are frozen by peft), so repositories cannot interfere: zero forgetting by construction, paid for
with no transfer between adapters. At retrieval time the repository's own adapter is active; an unknown
repository gets `merged`, the uniform linear combination of all adapters (`add_weighted_adapter`), rebuilt after
every repository.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from agent.learn.strategies.base import RepoContext, Strategy, register

MERGED = "merged"


def adapter_name(repo: str) -> str:
    """A module-safe adapter name for a repository name (peft keys cannot contain dots)."""
    return "r_" + re.sub(r"[^0-9A-Za-z_]", "_", repo)


def lora_config(config: Any, targets: list[str] | None) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                      target_modules=targets)


def select_adapter(model: torch.nn.Module, repo: str | None) -> str | None:
    """Activate `repo`'s adapter (or `merged` for an unknown repository); returns the active name."""
    names = set(getattr(model, "peft_config", {}) or {})
    if not names:
        return None
    want = adapter_name(repo) if repo is not None else MERGED
    if want not in names:
        want = MERGED if MERGED in names else sorted(names)[0]
    model.set_adapter(want)
    for p in model.parameters():
        p.requires_grad_(False)
    return want


@register
class Adapters(Strategy):
    name = "adapters"
    saves_partial_weights = True

    def __init__(self, config: Any, **resources: Any):
        super().__init__(config)
        self.repos: list[str] = []   # repository names in the order their adapters were made

    def _ensure(self, learner: Any, name: str) -> None:
        from peft import PeftModel, get_peft_model

        cfg = lora_config(self.config, learner.lora_targets)
        if not isinstance(learner.model, PeftModel):
            learner.model = get_peft_model(learner.model, cfg, adapter_name=name)
        elif name not in learner.model.peft_config:
            learner.model.add_adapter(name, cfg)

    def _rebuild_merged(self, learner: Any) -> None:
        model = learner.model
        if MERGED in model.peft_config:
            model.set_adapter(adapter_name(self.repos[-1]))
            model.delete_adapter(MERGED)
        names = [adapter_name(r) for r in self.repos]
        model.add_weighted_adapter(names, [1.0 / len(names)] * len(names), MERGED, combination_type="linear")

    def before_repo(self, ctx: RepoContext) -> None:
        name = adapter_name(ctx.repo)
        self._ensure(ctx.learner, name)
        ctx.learner.model.set_adapter(name)   # trainable; every other adapter and the base frozen
        ctx.learner.lr = self.config.lora_lr

    def after_repo(self, ctx: RepoContext) -> None:
        if ctx.repo not in self.repos:
            self.repos.append(ctx.repo)
        self._rebuild_merged(ctx.learner)
        select_adapter(ctx.learner.model, None)

    def state_dict(self) -> dict[str, Any]:
        return {"repos": list(self.repos)}

    def load_state_dict(self, state: dict[str, Any], learner: Any) -> None:
        """Recreate every adapter (and `merged`) so the checkpoint's LoRA weights have somewhere to go."""
        self.repos = list(state.get("repos", []))
        for repo in self.repos:
            self._ensure(learner, adapter_name(repo))
        if self.repos:
            self._rebuild_merged(learner)
            select_adapter(learner.model, None)
