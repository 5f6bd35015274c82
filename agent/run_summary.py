"""A workspace's run as numbers: accuracy matrices, lifelong metrics, proofs per step.

One reader for `metrics`, `report` and `status`, so the three always show the same numbers
(:func:`workspace_metrics` is what all of them print).

Matrix layout: row i = evaluation after learning the i-th processed repository, column j = the j-th
processed repository, columns in the curriculum order of ``state["curriculum"]["order"]`` restricted
to repositories that have been learned and evaluated (the loop learns them in that order, so row i and
column i are the same repository). A cell's value is the last ``kind: "eval"`` record of metrics.jsonl
for it (a re-evaluation after ``resume`` replaces the earlier one); missing cells are NaN. The baseline
row is the records of step -1 (the model before any learning).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent import metrics as M
from agent.workspace import Workspace
from common.atomic import iter_jsonl_tolerant

SCORES = ("recall@1", "recall@10", "mrr", "proof_rate")
HEADLINE = ("recall@10", "proof_rate")  # the scores whose lifelong metrics are reported


@dataclass
class RunMatrices:
    """Accuracy matrices of one run (NaN = not evaluated) and their baseline rows (None = no step -1)."""

    repos: list[str]
    names: dict[str, str]
    matrices: dict[str, np.ndarray] = field(default_factory=dict)
    baselines: dict[str, np.ndarray | None] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.repos)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _eval_records(ws: Workspace) -> list[dict[str, Any]]:
    return [r for r in iter_jsonl_tolerant(ws.metrics_path)
            if isinstance(r, dict) and r.get("kind") == "eval" and isinstance(r.get("step"), int)
            and not isinstance(r.get("step"), bool) and isinstance(r.get("repo"), str)]


def read_matrices(ws: Workspace, state: dict[str, Any] | None = None) -> RunMatrices:
    """Build the accuracy matrices of every score from metrics.jsonl (layout in the module docstring)."""
    state = state if state is not None else ws.load_state()
    order = list((state.get("curriculum") or {}).get("order") or [])
    names = {r["key"]: r.get("name", r["key"]) for r in state.get("repos", []) if isinstance(r, dict) and "key" in r}
    records = _eval_records(ws)

    learned: dict[int, str] = {}  # step -> repository learned at that step
    for r in records:
        if r["step"] >= 0 and isinstance(r.get("after"), str):
            learned.setdefault(r["step"], r["after"])
    for r in records:  # an evaluation without `after`: the step-th repository of the curriculum
        s = r["step"]
        if s >= 0 and s not in learned and s < len(order):
            learned[s] = order[s]
    processed = set(learned.values())
    by_step = [learned[s] for s in sorted(learned)]
    repos = [k for k in order if k in processed] + [k for k in dict.fromkeys(by_step) if k not in order]
    col = {k: j for j, k in enumerate(repos)}
    T = len(repos)

    mats = {s: np.full((T, T), math.nan) for s in SCORES}
    base = {s: np.full(T, math.nan) for s in SCORES}
    has_base = False
    for r in records:
        j = col.get(r["repo"])
        if j is None:
            continue
        if r["step"] < 0:
            has_base = True
            for s in SCORES:
                base[s][j] = _number(r.get(s))
            continue
        after = r["after"] if isinstance(r.get("after"), str) else learned.get(r["step"])
        i = col.get(after) if after is not None else None
        if i is None:
            continue
        for s in SCORES:
            mats[s][i, j] = _number(r.get(s))
    baselines = {s: (base[s] if has_base and not np.all(np.isnan(base[s])) else None) for s in SCORES}
    return RunMatrices(repos=repos, names={k: names.get(k, k) for k in repos}, matrices=mats, baselines=baselines)


def metrics_of(run: RunMatrices) -> dict[str, Any]:
    """The lifelong metrics of `run` over Recall@10 and proof rate, JSON-safe (floats rounded to 1e-9)."""
    out: dict[str, Any] = {}
    for score in HEADLINE:
        if run.steps == 0:
            out[score] = None
            continue
        b = run.baselines.get(score)
        out[score] = M.suite(run.matrices[score], None if b is None else list(b))
    out["steps"] = run.steps
    out["repos"] = list(run.repos)
    return M.json_safe(out)


def workspace_metrics(ws: Workspace, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"recall@10": {...}, "proof_rate": {...}, "steps": n, "repos": [...]}`` of a workspace's run.

    The same dict is printed by ``metrics --json``, shown by ``status`` and rendered in the report.
    A score with no evaluated step is None.
    """
    return metrics_of(read_matrices(ws, state))


def proof_records(ws: Workspace) -> list[dict[str, Any]]:
    """Every record of proofs.jsonl (a torn last line is skipped)."""
    return [r for r in iter_jsonl_tolerant(ws.proofs_path) if isinstance(r, dict)]


def proofs_per_step(records: list[dict[str, Any]]) -> dict[int, dict[str, int]]:
    """Per step, theorems attempted and proved by the `prove` phase (distinct repo + uid; eval excluded)."""
    attempted: dict[int, set] = {}
    proved: dict[int, set] = {}
    for r in records:
        step = r.get("step")
        if r.get("purpose", "prove") != "prove" or not isinstance(step, int) or isinstance(step, bool):
            continue
        ident = (r.get("repo"), r.get("uid") or r.get("theorem"))
        attempted.setdefault(step, set()).add(ident)
        if r.get("proved"):
            proved.setdefault(step, set()).add(ident)
    return {s: {"attempted": len(attempted[s]), "proved": len(proved.get(s, ()))} for s in sorted(attempted)}
