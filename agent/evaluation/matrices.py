"""A workspace's run as numbers: accuracy matrices, lifelong metrics, proofs per step.

One reader for `metrics`, `report` and `status`, so the three always show the same numbers
(:func:`workspace_metrics` is what all of them print).

Matrix layout: processing order, by permanent step id (DESIGN.md §7). Row i = the evaluation written after
the stream entry with step id i was learned; column j = the entry with step id j; so row i and column i are
the same entry, whatever the curriculum says now (a refresh, an `add` or `curriculum --save` changes only
which *pending* entry is started next). Superseded and forgotten entries keep their rows and columns; cells
nobody evaluated are NaN. A cell's value is the last ``kind: "eval"`` record of metrics.jsonl for it (a
re-evaluation after ``resume`` replaces the earlier one). The baseline row is the records of step -1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from agent.evaluation import lifelong as M
from agent.workspace import Workspace, WorkspaceState
from common.atomic import iter_jsonl_tolerant

SCORES = ("recall@1", "recall@10", "mrr", "tactic@1", "tactic@8", "proof_rate")
HEADLINE = ("recall@10", "tactic@8", "proof_rate")  # the scores whose lifelong metrics are reported


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


def _scores(records: Iterable[dict[str, Any]], score: str) -> np.ndarray:
    """Each record's `score` as a float: a JSON number as itself, anything else (None, a bool, a string) NaN."""
    return np.array([v if type(v := r.get(score)) in (int, float) else math.nan for r in records], dtype=float)


def read_matrices(ws: Workspace, state: WorkspaceState | None = None,
                  scores: Sequence[str] = SCORES) -> RunMatrices:
    """Build the accuracy matrices of `scores` (default: every score) from metrics.jsonl (layout in the module
    docstring)."""
    state = state if state is not None else ws.load_state()
    started = state.started()
    repos = [e.key for e in started]
    col = {key: j for j, key in enumerate(repos)}
    row_of_step = {e.step: j for j, e in enumerate(started)}
    T = len(repos)
    mats = {s: np.full((T, T), math.nan) for s in scores}
    base = {s: np.full(T, math.nan) for s in scores}
    cells: dict[tuple[int, int], dict[str, Any]] = {}    # (row, column) -> its last record
    base_cells: dict[int, dict[str, Any]] = {}
    # One pass over the log (status reads ~55k records of a 1000-repository run): an eval record has an int
    # step (not a bool: `type`, not isinstance) and a string repo.
    for r in iter_jsonl_tolerant(ws.metrics_path):
        if type(r) is not dict or r.get("kind") != "eval":
            continue
        step, repo = r.get("step"), r.get("repo")
        if type(step) is not int or type(repo) is not str or (j := col.get(repo)) is None:
            continue
        if step < 0:
            base_cells[j] = r
            continue
        i = row_of_step.get(step)
        if i is None or r.get("after") not in (None, repos[i]):
            continue  # a row of an entry this state does not know (or not the one that owns the step id)
        cells[(i, j)] = r
    has_base = bool(base_cells)
    for target, found in ((mats, cells), (base, base_cells)):
        if found:   # one vectorised write per score (status reads ~50k cells of a 1000-repository run)
            keys = np.array(list(found), dtype=np.intp)
            at = tuple(keys.T) if keys.ndim == 2 else keys
            for s in scores:
                target[s][at] = _scores(found.values(), s)
    # A row exists once its entry's evaluate step is done; rows of entries still in flight stay NaN.
    for e in started:
        if not e.done("evaluate"):
            for s in scores:
                mats[s][row_of_step[e.step], :] = math.nan
    baselines = {s: (base[s] if has_base and not np.all(np.isnan(base[s])) else None) for s in scores}
    return RunMatrices(repos=repos, names={e.key: e.name for e in started}, matrices=mats, baselines=baselines)


def metrics_of(run: RunMatrices) -> dict[str, Any]:
    """The lifelong metrics of `run` over Recall@10, tactic@8 and proof rate, JSON-safe (rounded to 1e-9).
    Each block has `ci95`: 95% bootstrap intervals of ACC, BWT and FWT over repositories
    (agent/evaluation/bootstrap.py), [low, high] or None with fewer than two terms; with `[evaluation] sample`
    they show how far a bounded evaluation's figures can be trusted."""
    from agent.evaluation.bootstrap import metric_intervals

    out: dict[str, Any] = {}
    for score in HEADLINE:
        if run.steps == 0:
            out[score] = None
            continue
        b = run.baselines.get(score)
        baseline = None if b is None else list(b)
        out[score] = M.suite(run.matrices[score], baseline)
        out[score]["ci95"] = {name: (None if iv["low"] is None else [iv["low"], iv["high"]])
                              for name, iv in metric_intervals(run.matrices[score], baseline).items()}
    out["steps"] = run.steps
    out["repos"] = list(run.repos)
    return M.json_safe(out)


def workspace_metrics(ws: Workspace, state: WorkspaceState | None = None) -> dict[str, Any]:
    """``{"recall@10": {...}, "tactic@8": {...}, "proof_rate": {...}, "steps": n, "repos": [...]}`` of a run.

    The same dict is printed by ``metrics --json``, shown by ``status`` and rendered in the report.
    A score with no evaluated step is None.
    """
    return metrics_of(read_matrices(ws, state, HEADLINE))


def proof_records(ws: Workspace) -> list[dict[str, Any]]:
    """Every record of proofs.jsonl (a torn last line is skipped)."""
    return [r for r in iter_jsonl_tolerant(ws.proofs_path) if isinstance(r, dict)]


def loop_proof_records(ws: Workspace, state: WorkspaceState | None = None) -> list[dict[str, Any]]:
    """The loop's own prove-step records, last record per (entry, theorem): what run summaries count.
    Ad-hoc `lifelean prove` results (purpose "adhoc") and records of unknown steps are left out."""
    state = state if state is not None else ws.load_state()
    owner = {e.step: e.key for e in state.started()}
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in proof_records(ws):
        step = r.get("step")
        if r.get("purpose") != "prove" or not isinstance(step, int) or isinstance(step, bool):
            continue
        if owner.get(step) != r.get("key"):
            continue
        latest[(r["key"], str(r.get("uid") or r.get("theorem")))] = r
    return list(latest.values())


def proofs_per_step(records: list[dict[str, Any]]) -> dict[int, dict[str, int]]:
    """Per step, theorems attempted and proved by the loop's prove step (records from loop_proof_records)."""
    out: dict[int, dict[str, int]] = {}
    for r in records:
        counts = out.setdefault(r["step"], {"attempted": 0, "proved": 0})
        counts["attempted"] += 1
        counts["proved"] += bool(r.get("proved"))
    return dict(sorted(out.items()))
