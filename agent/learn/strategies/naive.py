"""Baselines: `naive` = plain fine-tuning (no stability control); `frozen` = no training at all."""
from __future__ import annotations

from agent.learn.strategies.base import Strategy, register


@register
class Naive(Strategy):
    """Fine-tune on each repository in turn, nothing else: the forgetting baseline."""

    name = "naive"


@register
class Frozen(Strategy):
    """Never train: the zero-plasticity (and zero-forgetting) baseline."""

    name = "frozen"
    trains = False
