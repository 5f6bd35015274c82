"""Bootstrap confidence intervals on ACC, BWT and FWT of an accuracy matrix.

ACC, BWT and FWT (Lopez-Paz & Ranzato 2017; agent/evaluation/lifelong.py) are each a mean of one term per
column j: ACC of A[T-1][j], BWT of A[T-1][j] − A[j][j] (j < T-1), FWT of A[j-1][j] − b[j] (j ≥ 1). The
metrics records hold one number per cell, not per held-out item, so the resampling unit here is the column
(the repository): a percentile bootstrap (Efron & Tibshirani 1993, ch. 13) over the defined terms of each
metric. It answers "how much would the number move with another draw of repositories of this kind"; it does
not capture the noise of the few held-out items inside one cell (for that, per-item results would have to be
recorded), so it understates the uncertainty when cells rest on a handful of items.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def column_terms(A: np.ndarray, baseline: Sequence[float] | np.ndarray | None = None) -> dict[str, list[float]]:
    """The defined per-column terms whose means are ACC, BWT and FWT (NaN terms left out)."""
    A = np.asarray(A, dtype=float)
    T = len(A)
    if T == 0:
        return {"acc": [], "bwt": [], "fwt": []}
    out: dict[str, list[float]] = {"acc": [float(v) for v in A[T - 1] if not math.isnan(v)],
                                   "bwt": [], "fwt": []}
    for j in range(T - 1):
        v = A[T - 1, j] - A[j, j]
        if not math.isnan(v):
            out["bwt"].append(float(v))
    if baseline is not None:
        b = np.asarray([math.nan if x is None else x for x in baseline], dtype=float)
        for j in range(1, T):
            v = A[j - 1, j] - b[j]
            if not math.isnan(v):
                out["fwt"].append(float(v))
    return out


def bootstrap_ci(terms: Sequence[float], samples: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile interval of the mean of `terms` resampled with replacement (None with fewer than 2 terms)."""
    x = np.asarray(terms, dtype=float)
    if len(x) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(samples, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, samples: int = 2000,
                      level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Mean of a − b over paired items (two rankers scored on the same tactics) with its percentile bootstrap
    interval over the items: `{"value", "low", "high", "n"}`, low/high None with fewer than two items. Pairing
    removes what the tactics share (how hard each one is), so the interval is that of the difference itself,
    narrower than two separate intervals would suggest."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    ci = bootstrap_ci(d, samples, level, seed)
    return {"value": float(d.mean()) if len(d) else None, "n": int(len(d)),
            "low": ci[0] if ci else None, "high": ci[1] if ci else None}


def metric_intervals(A: np.ndarray, baseline: Sequence[float] | np.ndarray | None = None, samples: int = 2000,
                     level: float = 0.95, seed: int = 0) -> dict[str, dict[str, Any]]:
    """`{metric: {"value", "low", "high", "n"}}` for ACC, BWT, FWT (low/high None where undefined)."""
    out: dict[str, dict[str, Any]] = {}
    for name, terms in column_terms(A, baseline).items():
        ci = bootstrap_ci(terms, samples, level, seed)
        out[name] = {"value": (sum(terms) / len(terms)) if terms else None, "n": len(terms),
                     "low": ci[0] if ci else None, "high": ci[1] if ci else None}
    return out
