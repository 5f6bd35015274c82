"""The strategy protocol: hooks around training on one repository, and the registry that composes them.

Order per repository: every strategy's `before_repo` in order, then for each batch every `mix` (data) and, after
the forward pass, every `loss_terms` (added to the task loss), then every `after_repo` in *reverse* order (like
nested context managers: the strategy that changed the model first, `adapters`, is the last to finish). Strategies talk to the
learner only through `ctx.learner` (see :class:`agent.learn.retriever.RetrieverLearner`), so the same strategy
serves the retriever and the generator.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from agent.learn.config import LearningConfig

if TYPE_CHECKING:
    import torch


@dataclass
class RepoContext:
    """What a strategy sees of the repository being learned."""

    learner: Any
    repo: str
    examples: list[Any]
    rng: random.Random
    step: int
    info: dict[str, Any] = field(default_factory=dict)


class Strategy:
    """Base class: every hook is a no-op, so a strategy overrides only what it changes."""

    name: ClassVar[str] = ""
    trains: ClassVar[bool] = True                   # False: the learner skips gradient steps (`frozen`)
    saves_partial_weights: ClassVar[bool] = False   # True: only LoRA weights differ from the base (`adapters`)

    def __init__(self, config: LearningConfig, **resources: Any):
        self.config = config

    def before_repo(self, ctx: RepoContext) -> None:
        """Called once before the first batch of a repository."""

    def mix(self, examples: list[Any], ctx: RepoContext) -> list[Any]:
        """Change a batch's examples before the forward pass (replay adds old ones)."""
        return examples

    def loss_terms(self, batch: Any) -> dict[str, "torch.Tensor"]:
        """Extra loss terms for this batch (after the forward pass filled `batch.logits`)."""
        return {}

    def after_repo(self, ctx: RepoContext) -> None:
        """Called once after the last batch of a repository."""

    def discards(self, name: str, learner: Any) -> bool:
        """True for a parameter whose trained update this strategy throws away (`merge` at scale 0): the
        learner need not train it (`[learning] freeze_discarded`)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """What must survive a restart (tensors allowed; saved with torch.save)."""
        return {}

    def progress(self) -> Any:
        """What changes *during* a repository and must survive a mid-repository snapshot (None: nothing)."""
        return None

    def load_progress(self, progress: Any) -> None:
        """Restore :meth:`progress`'s output when training resumes from a snapshot."""

    def load_state_dict(self, state: dict[str, Any], learner: Any) -> None:
        """Restore :meth:`state_dict`'s output; may rebuild `learner.model` (adapters)."""


REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    REGISTRY[cls.name] = cls
    return cls


def build_strategies(config: LearningConfig, names: Sequence[str] | None = None, **resources: Any) -> list[Strategy]:
    """Instantiate the configured strategies in order; `resources` (e.g. `replay_source`) go to each."""
    import agent.learn.strategies  # noqa: F401  (registers every strategy module)

    chosen = list(names if names is not None else config.strategy)
    chosen.sort(key=lambda n: n != "adapters")  # stable: adapters first, since it rebuilds the model
    return [REGISTRY[n](config, **resources) for n in chosen]
