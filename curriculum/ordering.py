"""Order a stream of repositories from easy to hard.

`leanagent`: by number of Easy theorems, descending (LeanAgent's `sort_repositories_by_difficulty`),
ties in the order the repositories were added. `dependency`: every repository after the ones it
depends on (networkx topological generations), easy-first inside a generation; LeanAgent ignores
dependencies, which can schedule a library after its users.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import networkx as nx

from common.errors import InputError
from curriculum.difficulty import RepoDifficulty, compute_thresholds, rate_repository
from curriculum.graph import imports_known, repository_graph
from curriculum.lean_data import Repository

Strategy = Literal["leanagent", "dependency"]


@dataclass(frozen=True)
class Curriculum:
    strategy: str
    p33_steps: float | None
    p67_steps: float | None
    repos: list[RepoDifficulty]  # in processing order
    reasons: dict[str, str]
    imports_known: bool

    @property
    def order(self) -> list[str]:
        return [r.key for r in self.repos]

    def to_json(self) -> dict:
        return {
            "strategy": self.strategy,
            "p33_steps": self.p33_steps,
            "p67_steps": self.p67_steps,
            "imports_known": self.imports_known,
            "order": self.order,
            "repos": [{**r.to_json(), "reason": self.reasons[r.key]} for r in self.repos],
        }


def _easy_first(rated: list[RepoDifficulty]) -> list[RepoDifficulty]:
    return sorted(rated, key=lambda r: -r.easy)  # sorted() is stable: ties keep the order added


def order_repositories(repos: list[Repository], strategy: Strategy = "leanagent") -> Curriculum:
    """Rate every theorem with global thresholds and order `repos` (given in the order they were added)."""
    thresholds = compute_thresholds(repos)
    rated = [rate_repository(r, thresholds) for r in repos]
    known = imports_known(repos)
    reasons: dict[str, str] = {}
    if strategy == "leanagent":
        ordered = _easy_first(rated)
        for r in ordered:
            reasons[r.key] = f"{r.easy} easy theorems"
    elif strategy == "dependency":
        graph = repository_graph(repos)
        try:
            generations = list(nx.topological_generations(graph))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(graph)
            path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
            raise InputError(f"repositories depend on each other in a cycle: {path}; "
                             "use --strategy leanagent or remove one of them") from None
        by_key = {r.key: r for r in rated}
        position = {r.key: i for i, r in enumerate(rated)}
        ordered = []
        for level, keys in enumerate(generations):
            group = _easy_first(sorted((by_key[k] for k in keys), key=lambda r: position[r.key]))
            for r in group:
                deps = sorted(graph.predecessors(r.key), key=position.__getitem__)
                after = f"after {', '.join(deps)}; " if deps else ""
                reasons[r.key] = f"generation {level}: {after}{r.easy} easy theorems"
            ordered.extend(group)
    else:
        raise InputError(f"unknown curriculum strategy '{strategy}'; expected leanagent or dependency")
    return Curriculum(strategy, thresholds.p33_steps, thresholds.p67_steps, ordered, reasons, known)
