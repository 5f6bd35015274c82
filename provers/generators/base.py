"""The tactic-generator interface every generator implements, and helpers they share."""
from __future__ import annotations

import math
from typing import Iterable, Protocol, Sequence, runtime_checkable

from curriculum.lean_data import Theorem

# ReProver's prompt for decoder-only models (its vLLM path): the state between [GOAL] and [PROOFSTEP].
CAUSAL_TEMPLATE = "[GOAL]\n{context}\n[PROOFSTEP]\n"


@runtime_checkable
class Generator(Protocol):
    """Proposes tactics for a proof state: up to `n` distinct tactics, best first, score = log-probability."""

    name: str

    def generate(self, state: str, n: int, theorem: Theorem | None = None) -> list[tuple[str, float]]: ...

    def reset(self, seed: int) -> None:
        """Re-seed before each theorem so that a theorem's search does not depend on what ran before it."""
        ...


def dedup_best(candidates: Iterable[tuple[str, float]], n: int) -> list[tuple[str, float]]:
    """Strip tactics, drop empty ones, keep each tactic's best score, sort best first, keep `n`.

    Ties are broken by the tactic text so the order never depends on sampling order.
    """
    best: dict[str, float] = {}
    for text, score in candidates:
        tactic = text.strip()
        if not tactic or (isinstance(score, float) and math.isnan(score)):
            continue
        if tactic not in best or score > best[tactic]:
            best[tactic] = float(score)
    return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def first_line(text: str, stop: Sequence[str] = ("\n[GOAL]", "[PROOFSTEP]", "<|endoftext|>")) -> str:
    """A decoder-only model's completion cut at the first marker of a new prompt."""
    cut = len(text)
    for marker in stop:
        i = text.find(marker)
        if i != -1:
            cut = min(cut, i)
    return text[:cut].strip()
