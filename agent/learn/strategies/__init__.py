"""Stability-plasticity strategies for repository-by-repository training (one module each)."""
from agent.learn.strategies import adapters, distill, ewc, merge, naive, replay  # noqa: F401  (registration)
from agent.learn.strategies.base import REGISTRY, RepoContext, Strategy, build_strategies

__all__ = ["REGISTRY", "RepoContext", "Strategy", "build_strategies"]
