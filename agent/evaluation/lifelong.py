"""Lifelong-learning metrics over an accuracy matrix (pure numpy, no I/O).

Notation (0-based, T repositories in curriculum order): ``A[i][j]`` is the score on repository j after
learning repositories 0..i (so ``i < j`` is zero-shot on a future repository); ``b[j]`` is the score of
the untrained model. A score is whatever one measures: Recall@10, MRR or proof rate.

Missing entries: ``NaN`` means "not evaluated" (e.g. a repository with no test theorems). Every mean
and every max/min below skips NaN terms; a metric with no defined term returns ``None`` (``null`` in
JSON — never NaN). A difference with a NaN operand is itself an undefined term and is skipped.

Sources:
* Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for Continual Learning" (ACC, BWT, FWT).
* Chaudhry et al. 2018, "Riemannian Walk for Incremental Learning" (average forgetting).
* Rebuffi et al. 2017, "iCaRL" (average incremental accuracy).
* Díaz-Rodríguez et al. 2018, "Don't forget, there is more than forgetting" (ACC/BWT/FWT over the
  whole lower/upper triangle; LeanAgent calls this BWT "expanded BWT").
* Kumarappan et al. 2025, "LeanAgent: Lifelong Learning for Formal Theorem Proving" (ICLR 2025,
  arXiv 2410.06209), metrics code ``statistical_analysis.py`` @ 8666149 as transcribed in
  ``shared/reference/leanagent.md`` §1e: WF5, WP5, FM, IP, CFR and the composite score.

What could not be checked exactly against LeanAgent's own source (only the transcription was available):
the range of ``i`` in WP5 (we take every step, the first term being 0), the indexing of FM (we follow
the transcription's reading, stated at :func:`leanagent_fm`), and LeanAgent's ``val`` curve — LeanAgent
used a *validation* Recall@10 for IP; a run here records test scores only, so IP uses the diagonal
``A[t][t]``. The composite *was* checked: :func:`composite` reproduces the four single-repository
composites LeanAgent reports (0.1649, 0.9357, 0.4736, 0.6107) from its reported component metrics.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

WINDOW = 5  # LeanAgent's w for WF and WP

# LeanAgent's composite: (metric, weight, higher_is_better), weights from the paper's definition.
COMPOSITE_TERMS: tuple[tuple[str, float, bool], ...] = (
    ("wf5", 0.2, False),
    ("fm", 0.2, False),
    ("wp5", 0.1, True),
    ("ip", 0.1, True),
    ("expanded_bwt", 0.2, True),
    ("cfr", 0.2, True),
)


def as_matrix(rows: Sequence[Sequence[float | None]] | np.ndarray) -> np.ndarray:
    """A float matrix with ``None`` turned into NaN; must be square (T x T, T >= 1)."""
    if isinstance(rows, np.ndarray):
        A = rows.astype(float)
    else:
        lengths = {len(row) for row in rows}
        if len(lengths) > 1:
            raise ValueError(f"accuracy matrix is ragged (row lengths {sorted(lengths)})")
        A = np.array([[math.nan if v is None else float(v) for v in row] for row in rows], dtype=float)
    if A.ndim != 2 or A.shape[0] == 0 or A.shape[0] != A.shape[1]:
        raise ValueError(f"accuracy matrix must be square T x T with T >= 1, got shape {A.shape}")
    return A


def _mean(terms: Iterable[float]) -> float | None:
    """Mean of the defined (non-NaN) terms; None when there is none."""
    vals = [float(t) for t in terms if t is not None and not math.isnan(t)]
    return sum(vals) / len(vals) if vals else None


def _nanmax(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return max(vals) if vals else math.nan


def _mean_of(terms: np.ndarray) -> float | None:
    """:func:`_mean` of an array of terms, in the same order and with Python's own ``sum`` (so the result is
    bit-identical to the term-by-term loop it replaces; only the NaN filter and the arithmetic are in numpy)."""
    vals = np.asarray(terms, dtype=float).ravel()
    vals = vals[~np.isnan(vals)].tolist()
    return sum(vals) / len(vals) if vals else None


def _nanmax_axis(M: np.ndarray, axis: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Max along `axis` of the defined entries (and of `keep`'s True cells only); NaN where there is none."""
    defined = ~np.isnan(M) if keep is None else ~np.isnan(M) & keep
    out = np.where(defined, M, -np.inf).max(axis=axis, initial=-np.inf)
    return np.where(defined.any(axis=axis), out, np.nan)


# -- standard metrics ---------------------------------------------------------------------------------

def acc(A: np.ndarray) -> float | None:
    """Average accuracy after the last repository: ACC = mean_j A[T-1][j] (Lopez-Paz & Ranzato 2017)."""
    return _mean(A[-1])


def bwt(A: np.ndarray) -> float | None:
    """Backward transfer: BWT = mean_{j<T-1} (A[T-1][j] - A[j][j]) (Lopez-Paz & Ranzato 2017).

    Negative means forgetting. Undefined (None) for T = 1.
    """
    T = len(A)
    return _mean_of(A[T - 1, : T - 1] - np.diag(A)[: T - 1])


def fwt(A: np.ndarray, baseline: Sequence[float] | np.ndarray) -> float | None:
    """Forward transfer: FWT = mean_{j>=1} (A[j-1][j] - b[j]) (Lopez-Paz & Ranzato 2017).

    How much learning the earlier repositories helps zero-shot on the next one, relative to the
    untrained model. Undefined for T = 1.
    """
    b = np.asarray(baseline, dtype=float)
    T = len(A)
    return _mean_of(A[np.arange(T - 1), np.arange(1, T)] - b[1:T])


def forgetting(A: np.ndarray, seen_only: bool = False) -> float | None:
    """Average forgetting F_T = mean_{j<T-1} (max_{i<T-1} A[i][j] - A[T-1][j]) (Chaudhry et al. 2018).

    By default the max runs over every row i < T-1, exactly as written in the issue and in Chaudhry et
    al.'s f_j^k = max_{l<k} a_{l,j} - a_{k,j}. With ``seen_only`` it runs over j <= i < T-1 only — rows
    after repository j was learned — so a zero-shot score before learning j cannot count as "forgotten"
    (cl-and-style §3.1). The two agree whenever learning j does not lower j's own score, i.e. whenever
    no zero-shot A[i][j], i < j, exceeds the best later score; `suite` reports both.
    """
    T = len(A)
    before = A[: T - 1, : T - 1]
    keep = np.tri(T - 1, dtype=bool) if seen_only else None  # row i >= column j
    return _mean_of(_nanmax_axis(before, 0, keep) - A[T - 1, : T - 1])


def plasticity(A: np.ndarray) -> float | None:
    """Plasticity = mean_j A[j][j]: how well each repository is learned right after training on it.

    (The diagonal term of Chaudhry et al. 2018's intransigence, without a joint-training reference.)
    """
    return _mean(np.diag(A))


def average_curve(A: np.ndarray) -> list[float]:
    """avg[t] = mean_{j<=t} A[t][j]: mean score over the repositories seen so far, after step t.

    This is LeanAgent's ``avg`` curve (leanagent.md §1e) and the A_k of average incremental accuracy.
    NaN where row t has no defined seen entry.
    """
    out = []
    defined = ~np.isnan(A) & np.tri(len(A), dtype=bool)
    for t in range(len(A)):
        vals = A[t][defined[t]].tolist()   # row t's seen entries, in column order (Python's sum: see _mean_of)
        out.append(sum(vals) / len(vals) if vals else math.nan)
    return out


def incremental_acc(A: np.ndarray) -> float | None:
    """Average incremental accuracy = mean_k A_k, A_k = mean_{j<=k} A[k][j] (Rebuffi et al. 2017, iCaRL)."""
    return _mean(average_curve(A))


def dr_acc(A: np.ndarray) -> float | None:
    """ACC over the lower triangle: mean_{i>=j} A[i][j] (Díaz-Rodríguez et al. 2018)."""
    return _mean_of(A[np.tril_indices(len(A))])  # row-major: the order of the double loop it replaces


def expanded_bwt(A: np.ndarray) -> float | None:
    """Díaz-Rodríguez BWT = mean_{i>j} (A[i][j] - A[j][j]) over all T(T-1)/2 pairs.

    Díaz-Rodríguez et al. 2018; LeanAgent (Kumarappan et al. 2025, §5) reports it as "expanded BWT".
    Undefined for T = 1.
    """
    i, j = np.tril_indices(len(A), -1)
    return _mean_of(A[i, j] - A[j, j])


def dr_fwt(A: np.ndarray) -> float | None:
    """Díaz-Rodríguez FWT = mean_{i<j} A[i][j] (Díaz-Rodríguez et al. 2018; no baseline subtracted)."""
    return _mean_of(A[np.triu_indices(len(A), 1)])


# -- LeanAgent's metrics (Kumarappan et al. 2025; leanagent.md §1e) -----------------------------------

def windowed_forgetting(avg: Sequence[float], w: int = WINDOW) -> float | None:
    """WF_w = max(0, max_{i>=w} (max(avg[i-w:i]) - avg[i])) on the average curve (LeanAgent).

    LeanAgent's variant of De Lange et al. 2023 (worst drop of the *average* curve within w steps,
    clipped at 0). Undefined (None) when the curve has no point i >= w (T <= w).
    """
    terms = []
    for i in range(w, len(avg)):
        if not math.isnan(avg[i]):
            terms.append(_nanmax(avg[i - w: i]) - avg[i])
    terms = [t for t in terms if not math.isnan(t)]
    return max(0.0, max(terms)) if terms else None


def windowed_plasticity(avg: Sequence[float], w: int = WINDOW) -> float | None:
    """WP_w = mean_i max(0, avg[i] - avg[max(0, i-w)]) over every step i (LeanAgent)."""
    gains = (avg[i] - avg[max(0, i - w)] for i in range(len(avg)))
    return _mean(g if math.isnan(g) else max(0.0, g) for g in gains)


def leanagent_fm(A: np.ndarray) -> float | None:
    """LeanAgent's forgetting measure FM (non-standard; LeanAgent code, leanagent.md §1e).

    LeanAgent: FM = mean_{i=2..N} (max_{j<i} R[j][i-j-1] - R[i-1][-1]) with R[j][k] = score on repo j
    after training on repo j+k. In our matrix R[j][i-j-1] = A[i-1][j] and R[i-1][-1] = A[T-1][i-1], so
    FM = mean_{t=1..T-1} (max_{j<=t} A[t][j] - A[T-1][t]): the best score on any seen repository at
    step t minus the final score of repository t. Undefined for T = 1.
    """
    T = len(A)
    best = _nanmax_axis(A, 1, np.tri(T, dtype=bool))   # max of the defined A[t][j], j <= t
    return _mean_of(best[1:] - A[T - 1, 1:])


def incremental_plasticity(val: Sequence[float]) -> float | None:
    """IP = mean(diff(val)), val[t] = score on repository t right after learning it (LeanAgent).

    LeanAgent uses validation Recall@10 for ``val``; here it is the diagonal A[t][t]. None for T = 1.
    """
    return _mean(val[t] - val[t - 1] for t in range(1, len(val)))


def cfr(avg: Sequence[float]) -> float | None:
    """Catastrophic forgetting resilience CFR = min(avg) / max(avg) (LeanAgent). None if max(avg) <= 0."""
    vals = [v for v in avg if not math.isnan(v)]
    if not vals or max(vals) <= 0:
        return None
    return min(vals) / max(vals)


# -- all together -------------------------------------------------------------------------------------

def suite(A: np.ndarray | Sequence[Sequence[float | None]], baseline: Sequence[float | None] | None = None,
          w: int = WINDOW) -> dict[str, Any]:
    """Every metric of one run. ``fwt`` is present only when a baseline is given."""
    A = as_matrix(A)
    avg = average_curve(A)
    out: dict[str, Any] = {
        "tasks": len(A),
        "acc": acc(A),
        "bwt": bwt(A),
    }
    if baseline is not None:
        b = np.array([math.nan if v is None else float(v) for v in baseline], dtype=float)
        if len(b) != len(A):
            raise ValueError(f"baseline has {len(b)} entries, the matrix has {len(A)} columns")
        out["fwt"] = fwt(A, b)
    out.update({
        "forgetting": forgetting(A),
        "forgetting_seen": forgetting(A, seen_only=True),
        "plasticity": plasticity(A),
        "incremental_acc": incremental_acc(A),
        "dr_acc": dr_acc(A),
        "expanded_bwt": expanded_bwt(A),
        "dr_fwt": dr_fwt(A),
        f"wf{w}": windowed_forgetting(avg, w),
        f"wp{w}": windowed_plasticity(avg, w),
        "fm": leanagent_fm(A),
        "ip": incremental_plasticity(list(np.diag(A))),
        "cfr": cfr(avg),
    })
    return out


def composite(runs: Mapping[str, Mapping[str, float | None]]) -> dict[str, float | None]:
    """LeanAgent's composite score of each run, relative to the other runs compared.

    composite = 0.2(1-WF5n) + 0.2(1-FMn) + 0.1 WP5n + 0.1 IPn + 0.2 EBWTn + 0.2 CFRn, each metric
    min-max normalised across ``runs`` (Kumarappan et al. 2025, §5; leanagent.md §1e). Because of the
    normalisation it ranks runs; it is not an absolute score. Our conventions where LeanAgent's is
    undefined: a metric that is None in any run is left out and the remaining weights are rescaled to
    sum to 1 (no metric defined → None for every run); a metric equal in every run normalises to 0.5.
    """
    names = list(runs)
    used = [(m, wt, hi) for m, wt, hi in COMPOSITE_TERMS
            if all(runs[n].get(m) is not None and not math.isnan(runs[n][m]) for n in names)]
    total = sum(wt for _, wt, _ in used)
    if not names or total == 0:
        return {n: None for n in names}
    scores = {n: 0.0 for n in names}
    for m, wt, hi in used:
        vals = [float(runs[n][m]) for n in names]
        lo, up = min(vals), max(vals)
        for n, v in zip(names, vals):
            norm = 0.5 if up == lo else (v - lo) / (up - lo)
            scores[n] += wt * (norm if hi else 1.0 - norm)
    return {n: s / total for n, s in scores.items()}


def json_safe(value: Any, digits: int = 9) -> Any:
    """Floats rounded to ``digits`` decimals (never NaN/inf: those become None), recursively."""
    if isinstance(value, Mapping):
        return {k: json_safe(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, digits) for v in value]
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if math.isnan(f) or math.isinf(f):
            return None
        r = round(f, digits)
        return 0.0 if r == 0 else r
    if isinstance(value, np.integer):
        return int(value)
    return value
