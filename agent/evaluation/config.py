"""Evaluation settings ([evaluation] in lifelean.toml): how much of the accuracy matrix each step fills.

The full matrix (every row scores every live entry) costs T^2 cells over a stream of T repositories. Each
option bounds that cost and changes what the lifelong metrics rest on:
- `columns = "seen+next"`: row i scores the entries learned so far and the one learned next. ACC, BWT,
  `forgetting_seen` (which only use A[i][j] for j <= i and the last row) and FWT (A[i-1][i]) are unchanged;
  the zero-shot cells further ahead become NaN, so LeanAgent's expanded FWT over the upper triangle rests on
  the next column only, and `forgetting` (whose max also runs over zero-shot rows i < j) becomes
  `forgetting_seen`.
- `every = N`: only every N-th row (and the row after the last entry of the current plan) is evaluated; the
  others are NaN. ACC is unchanged (it reads the last row); BWT, FWT and forgetting are then computed over
  the rows that exist, so they rest on fewer terms.
- `sample = K`: at most K held-out theorems per cell (a seeded sample per row and column; the record keeps
  how many were scored out of how many), so every cell costs at most K theorems; each metric is then an
  estimate with sampling noise that shrinks as 1/sqrt(K).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config_base import option


@dataclass
class EvaluationConfig:
    columns: Literal["all", "seen+next"] = option(
        "all", "which entries a row scores: every live entry ('all': future ones give the full upper triangle) or "
        "the ones learned so far plus the next ('seen+next': ACC/BWT/FWT unchanged, about half the cells)")
    every: int = option(1, "evaluate every N-th step (and the last one of a run); other rows stay empty")
    sample: int = option(0, "held-out theorems per cell at most, seeded sample (0 = all of them)")

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"every must be at least 1, got {self.every}")
        if self.sample < 0:
            raise ValueError(f"sample must be 0 (all) or more, got {self.sample}")
