"""kNN tactic generator: the tactics recorded for the nearest proof states in the memory bank (CPU, no training).

Scores follow kNN-LM (Khandelwal et al., ICLR 2020): p(t | s) ∝ Σ_{neighbours i with tactic t} exp(sim(s, s_i) / τ),
with cosine similarity of the shared encoder; the returned score is log p. Retrieval augmentation (ours): a neighbour
whose recorded premises are among the premises retrieved for the current state gets its weight multiplied by
exp(β · overlap), overlap = share of its premises retrieved — a tactic that used premises relevant *here* is preferred.
It learns online: :meth:`KnnGenerator.learn` adds steps of newly found proofs to an in-memory overlay at once, while
the caller persists them in the bank.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from curriculum.lean_data import Theorem
from provers.generators.base import dedup_best
from provers.generators.context import PremiseContext


@dataclass(frozen=True)
class Neighbour:
    tactic: str
    similarity: float
    premises: tuple[str, ...] = ()


class KnnGenerator:
    name = "knn"

    def __init__(self, bank, encoder, context: PremiseContext | None = None, k: int = 32,
                 temperature: float = 0.05, premise_weight: float = 1.0, repos: Sequence[str] | None = None):
        self.bank = bank
        self.encoder = encoder
        self.context = context or PremiseContext()
        self.k = k
        self.temperature = temperature
        self.premise_weight = premise_weight
        self.repos = list(repos) if repos is not None else None   # [] = no bank items at all
        self._overlay_vecs = np.zeros((0, 0), dtype=np.float32)
        self._overlay: list[Neighbour] = []

    def reset(self, seed: int) -> None:
        """kNN is deterministic: nothing to seed."""

    def learn(self, steps: Sequence[tuple[str, str, Sequence[str]]]) -> int:
        """Remember (state, tactic, premises) steps of a proof just found; returns how many were added."""
        steps = [s for s in steps if s[0].strip() and s[1].strip()]
        if not steps:
            return 0
        vecs = np.asarray(self.encoder.encode([s[0] for s in steps]), dtype=np.float32)
        self._overlay_vecs = vecs if not len(self._overlay) else np.vstack([self._overlay_vecs, vecs])
        self._overlay.extend(Neighbour(s[1], 0.0, tuple(s[2])) for s in steps)
        return len(steps)

    def neighbours(self, state: str) -> list[Neighbour]:
        """The k nearest recorded steps of `state`, from the bank and the online overlay."""
        vec = np.asarray(self.encoder.encode([state]), dtype=np.float32)[0]
        found = [Neighbour(m.item.tactic, float(m.score), tuple(m.item.premises))
                 for m in self.bank.match(vec, k=self.k, repos=self.repos, kind="step")] if self.bank is not None else []
        if self._overlay:
            sims = self._overlay_vecs @ vec
            for i in np.argsort(-sims)[: self.k]:
                o = self._overlay[int(i)]
                found.append(Neighbour(o.tactic, float(sims[i]), o.premises))
        found.sort(key=lambda nb: -nb.similarity)
        return found[: self.k]

    def generate(self, state: str, n: int, theorem: Theorem | None = None) -> list[tuple[str, float]]:
        neighbours = self.neighbours(state)
        if not neighbours:
            return []
        retrieved = {p.full_name for p in self.context.premises(state, theorem)}
        logits: dict[str, list[float]] = {}
        for nb in neighbours:
            logit = nb.similarity / self.temperature
            if retrieved and nb.premises:
                overlap = sum(p in retrieved for p in nb.premises) / len(nb.premises)
                logit += self.premise_weight * overlap
            logits.setdefault(nb.tactic.strip(), []).append(logit)
        top = max(max(v) for v in logits.values())
        mass = {t: sum(math.exp(x - top) for x in v) for t, v in logits.items()}
        total = sum(mass.values())
        return dedup_best(((t, math.log(m / total)) for t, m in mass.items()), n)
