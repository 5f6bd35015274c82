"""LeanAgent's difficulty rating (Kumarappan et al., ICLR 2025, `leanagent.py::calculate_difficulty`).

A theorem with S traced tactics has difficulty e^S; a sorry theorem is infinitely hard; a theorem
without tactics (a term-mode proof) is unrated. We keep S itself: e^S is monotone, so every
comparison is done in log space and S ≥ 710 (where `math.exp` overflows) is no special case.

Thresholds are numpy's 33rd/67th percentiles (linear interpolation) of the *finite* e^S values of all
theorems of all repositories. LeanAgent lets sorry (inf) values into the percentile, which turns a
threshold into inf or NaN once about a third of the theorems are sorry; we keep them out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np

from curriculum.lean_data import Repository, Theorem

Category = Literal["easy", "medium", "hard"]


def difficulty_steps(theorem: Theorem) -> float | None:
    """log(difficulty) = S, the number of traced tactics; `inf` for sorry; `None` for unrated."""
    if theorem.is_sorry:
        return math.inf
    if theorem.is_unrated:
        return None
    return float(len(theorem.tactics))


def log_percentile(log_values: Sequence[float], q: float) -> float:
    """log of `np.percentile(exp(log_values), q)` (method 'linear'), without ever computing exp.

    numpy's linear method takes the virtual index h = (n-1)·q/100 over the sorted values and returns
    v[lo] + (h-lo)·(v[lo+1]-v[lo]) = (1-f)·e^a + f·e^b, whose log is logaddexp(log(1-f)+a, log(f)+b).
    """
    xs = sorted(log_values)
    if not xs:
        raise ValueError("percentile of no values")
    h = (len(xs) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    f = h - lo
    if f == 0.0 or lo == hi:
        return xs[lo]
    return float(np.logaddexp(math.log1p(-f) + xs[lo], math.log(f) + xs[hi]))


@dataclass(frozen=True)
class Thresholds:
    """p33 and p67 of e^S, kept as their logs (`*_steps`); `None` when no theorem has a finite rating."""

    p33_steps: float | None
    p67_steps: float | None


def compute_thresholds(repos: Iterable[Repository]) -> Thresholds:
    """Global thresholds over the finite ratings of every theorem of every repository."""
    finite = [s for r in repos for t in r.theorems if (s := difficulty_steps(t)) is not None and math.isfinite(s)]
    if not finite:
        return Thresholds(None, None)
    return Thresholds(log_percentile(finite, 33), log_percentile(finite, 67))


@dataclass(frozen=True)
class RepoDifficulty:
    """Per-repository counts; `easy/medium/hard` include the unrated thirds, `unrated` counts them alone."""

    key: str
    name: str
    theorems: int
    easy: int
    medium: int
    hard: int
    unrated: int
    sorry: int

    def to_json(self) -> dict[str, int | str]:
        return {"key": self.key, "name": self.name, "theorems": self.theorems, "easy": self.easy,
                "medium": self.medium, "hard": self.hard, "unrated": self.unrated, "sorry": self.sorry}


def categorize_repository(repo: Repository, thresholds: Thresholds) -> dict[str, list[Theorem]]:
    """Theorems by category. Unrated ones are split in consecutive chunks ⌊n/3⌋, ⌊n/3⌋ and the
    remainder, added to Easy, Medium and Hard (LeanAgent's `To_Distribute` rule)."""
    out: dict[str, list[Theorem]] = {"easy": [], "medium": [], "hard": []}
    unrated: list[Theorem] = []
    for t in repo.theorems:
        steps = difficulty_steps(t)
        if steps is None:
            unrated.append(t)
        elif math.isinf(steps):
            out["hard"].append(t)
        else:
            out[_category_finite(steps, thresholds)].append(t)
    third = len(unrated) // 3
    out["easy"].extend(unrated[:third])
    out["medium"].extend(unrated[third:2 * third])
    out["hard"].extend(unrated[2 * third:])
    return out


def _category_finite(steps: float, th: Thresholds) -> Category:
    assert th.p33_steps is not None and th.p67_steps is not None  # finite ratings exist, so thresholds do
    if steps <= th.p33_steps:
        return "easy"
    if steps <= th.p67_steps:
        return "medium"
    return "hard"


def rate_repository(repo: Repository, thresholds: Thresholds) -> RepoDifficulty:
    cats = categorize_repository(repo, thresholds)
    return RepoDifficulty(
        key=repo.key,
        name=repo.name,
        theorems=len(repo.theorems),
        easy=len(cats["easy"]),
        medium=len(cats["medium"]),
        hard=len(cats["hard"]),
        unrated=sum(1 for t in repo.theorems if t.is_unrated),
        sorry=sum(1 for t in repo.theorems if t.is_sorry),
    )
