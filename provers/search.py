"""Best-first proof search (ReProver, Yang et al. 2023; as used by LeanAgent).

The frontier is ordered by the cumulative log-probability of the path from the root (sum of the generator's
tactic scores). Expanding a node asks the generator for `num_tactics` tactics and runs them all in descending
score order, stopping at the first that proves the theorem. Result states are deduplicated on their
:func:`~provers.env.normalize`-d text (a transposition table): reaching a known state adds no node, but a shorter
path or a better score to it is kept, so the proof read back along parent links is the shortest one found.
Budgets: node expansions, wall-clock time per theorem, and the environment's per-tactic timeout. The theorem's
clock starts once the environment is entered: starting Lean on a file that imports Mathlib can take minutes and
has its own limit, so it must not eat the search budget (it is reported as `startup_seconds`).
Unlike ReProver, a proof found on the step that exhausts the budget is kept, not discarded.

A proof read back along parent links may be stitched together through the transposition table, so before a
result says `proved`, the environment checks the whole proof as one piece (`Env.check_proof`: Lean compiles it,
or replay re-runs it from the theorem's own goal); a proof it rejects is `stop_reason = "check_failed"`.
A generator failure ends its theorem only (`error`), never the run.
"""
from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from curriculum.lean_data import Theorem
from provers.config import ProverConfig
from provers.env import (Env, EnvCrashError, EnvInitError, LeanError, NotReplayable, Progress, Proved, Unverifiable,
                         normalize)


@dataclass
class ProofResult:
    """One theorem's search: the proof (tactics) if found, how it was checked, and where time went.

    `checked_by` is the environment the search ran against: "lean" (LeanDojo or the Lean REPL; for a proof, only
    after Lean accepted it whole) or "replay" (the recorded Lean trace, *not* a Lean check).
    `states` are the states before each proof tactic (for the memory bank), not printed.
    `stop_reason` "not_replayable": replay cannot attempt the theorem (its trace starts at a sub-goal, see
    `provers.env.replay_provable`); count these apart from failed searches.
    """

    theorem: str
    uid: str
    repo: str
    proved: bool
    checked_by: str | None
    proof: list[str] = field(default_factory=list)
    expansions: int = 0
    env_calls: int = 0
    generator_calls: int = 0
    seconds: float = 0.0
    env_seconds: float = 0.0
    generator_seconds: float = 0.0
    error: str | None = None
    file_path: str = ""
    stop_reason: str = ""          # "proved" | "exhausted" | "expansions" | "timeout" | "error" | "check_failed"
    #                                | "not_replayable"
    unverifiable: int = 0          # env answers "trace does not know"
    lean_errors: int = 0
    nodes: int = 0
    states: list[str] = field(default_factory=list)
    startup_seconds: float = 0.0   # entering the environment (starting Lean), outside the search budget

    def to_record(self) -> dict[str, Any]:
        """The proofs.jsonl fields of docs/contracts.md (plus a few more), without the bulky states."""
        rec = asdict(self)
        rec.pop("states")
        return rec


@dataclass
class _Node:
    state: str
    score: float
    depth: int
    parent: "_Node | None" = None
    tactic: str | None = None
    expanded: bool = False


def _path(node: _Node) -> tuple[list[str], list[str]]:
    tactics, states = [], []
    seen: set[int] = set()
    while node.parent is not None and id(node) not in seen:
        seen.add(id(node))
        tactics.append(node.tactic or "")
        states.append(node.parent.state)
        node = node.parent
    return tactics[::-1], states[::-1]


def best_first_search(theorem: Theorem, env: Env, generator, config: ProverConfig, repo: str = "",
                      clock: Callable[[], float] = time.monotonic) -> ProofResult:
    """Search for a proof of `theorem` in `env` (not yet entered) with `generator`; never raises for a failed search."""
    result = ProofResult(theorem=theorem.full_name, uid=theorem.uid, repo=repo, proved=False,
                         checked_by=getattr(env, "checked_by", None), file_path=theorem.file_path)
    entered = clock()
    start = entered
    try:
        with env as session:
            start = clock()
            result.startup_seconds = start - entered
            _search(theorem, session, generator, config, result, start, clock)
            if result.proved:
                _final_check(session, result)
    except NotReplayable as exc:
        result.error, result.stop_reason = str(exc), "not_replayable"
    except EnvInitError as exc:
        result.error, result.stop_reason = str(exc), "error"
    except EnvCrashError as exc:
        result.error, result.stop_reason = str(exc), "error"
    if result.stop_reason == "error":
        result.proved, result.proof, result.states = False, [], []
    result.seconds = clock() - start
    return result


def _final_check(env: Env, result: ProofResult) -> None:
    """The whole proof as one piece; a rejected one is not a proof (never labelled "lean" without Lean)."""
    check = getattr(env, "check_proof", None)
    if check is None:
        if result.checked_by == "lean":   # an environment that cannot check whole proofs proves nothing in Lean
            result.proved, result.stop_reason = False, "check_failed"
            result.error = "the environment cannot check the whole proof"
        return
    reason = check(result.proof)
    if reason is not None:
        result.proved, result.stop_reason, result.error = False, "check_failed", reason


def _search(theorem: Theorem, env: Env, generator, config: ProverConfig, result: ProofResult, start: float,
            clock: Callable[[], float]) -> None:
    root = _Node(env.initial_state, 0.0, 0)
    table: dict[str, _Node] = {normalize(root.state): root}
    tie = itertools.count()
    frontier: list[tuple[float, int, _Node]] = [(-0.0, next(tie), root)]
    while frontier:
        if result.expansions >= config.max_expansions:
            result.stop_reason = "expansions"
            break
        if clock() - start >= config.timeout:
            result.stop_reason = "timeout"
            break
        neg, _, node = heapq.heappop(frontier)
        if node.expanded or -neg < node.score:   # stale entry: a better path re-queued this node
            continue
        node.expanded = True
        result.expansions += 1
        t0 = clock()
        try:
            candidates = generator.generate(node.state, config.num_tactics, theorem)
        except Exception as exc:   # a model or server failure ends this theorem, not the run
            result.generator_seconds += clock() - t0
            first = (str(exc).splitlines() or [""])[0][:300]
            result.error, result.stop_reason = f"generator failed: {type(exc).__name__}: {first}", "error"
            result.nodes = len(table)
            return
        result.generator_seconds += clock() - t0
        result.generator_calls += 1
        for tactic, logprob in candidates:
            t0 = clock()
            outcome = env.run_tac(node.state, tactic)
            result.env_seconds += clock() - t0
            result.env_calls += 1
            if isinstance(outcome, Proved):
                result.proved, result.stop_reason = True, "proved"
                tactics, states = _path(node)
                result.proof, result.states = tactics + [tactic], states + [node.state]
                result.nodes = len(table)
                return
            if isinstance(outcome, Unverifiable):
                result.unverifiable += 1
                continue
            if isinstance(outcome, LeanError):
                result.lean_errors += 1
                continue
            assert isinstance(outcome, Progress)
            score, depth = node.score + logprob, node.depth + 1
            key = normalize(outcome.state)
            known = table.get(key)
            if known is None:
                child = _Node(outcome.state, score, depth, node, tactic)
                table[key] = child
                heapq.heappush(frontier, (-score, next(tie), child))
            elif known is not root and _improves(known, node, depth, score):
                known.parent, known.tactic = node, tactic
                known.depth = min(known.depth, depth)
                if score > known.score and not known.expanded:
                    known.score = score
                    heapq.heappush(frontier, (-score, next(tie), known))
    else:
        result.stop_reason = "exhausted"
    result.nodes = len(table)


def _improves(known: _Node, via: _Node, depth: int, score: float) -> bool:
    """Re-parent a known state when the new path is shorter (or as short and likelier) and creates no cycle."""
    if (depth, -score) >= (known.depth, -known.score):
        return False
    cursor: _Node | None = via
    while cursor is not None:
        if cursor is known:
            return False
        cursor = cursor.parent
    return True
