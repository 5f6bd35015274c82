"""Best-first search on hand-made replay traces: branching, dead ends, transpositions, limits, sorry, whitespace."""
from __future__ import annotations

import pytest

from curriculum.lean_data import Pos, Theorem, TracedTactic
from provers.config import ProverConfig
from provers.env import (LeanError, Progress, Proved, ReplayEnv, ReplayTable, Unverifiable, normalize)
from provers.search import best_first_search


def step(tac: str, before: str, after: str) -> TracedTactic:
    return TracedTactic(tac, tac, (), before, after)


def thm(name: str, steps: list[TracedTactic], split: str = "test") -> Theorem:
    return Theorem("u", "c" * 40, "Demo/A.lean", name, Pos(1, 1), Pos(5, 1), None, tuple(steps), split)


class TableGenerator:
    """A fixed tactic table (state → [(tactic, logprob)]): the search's input, not a stand-in for a real part."""

    name = "table"

    def __init__(self, table: dict[str, list[tuple[str, float]]]):
        self.table = {normalize(k): v for k, v in table.items()}
        self.calls: list[str] = []

    def reset(self, seed: int) -> None:
        self.calls.clear()

    def generate(self, state, n, theorem=None):
        self.calls.append(state)
        return self.table.get(normalize(state), [])[:n]


CFG = ProverConfig(max_expansions=50, num_tactics=8, timeout=30.0)


def test_replay_env_answers_recorded_steps_and_nothing_else():
    t = thm("T", [step("intro x", "⊢ ∀ x, p x", "x : α\n⊢ p x"), step("exact h x", "x : α\n⊢ p x", "no goals")])
    with ReplayEnv(t) as env:
        assert env.initial_state == "⊢ ∀ x, p x"
        assert env.run_tac("⊢ ∀ x, p x", "intro   x\n") == Progress("x : α\n⊢ p x")   # whitespace-normalised
        assert env.run_tac("x : α   ⊢ p x", "exact h x") == Proved()
        assert isinstance(env.run_tac("⊢ ∀ x, p x", "simp"), Unverifiable)
        assert isinstance(env.run_tac("⊢ ∀ x, p x", "sorry"), LeanError)


def test_sorry_in_trace_never_proves():
    t = thm("S", [step("sorry", "⊢ p", "no goals")])
    gen = TableGenerator({"⊢ p": [("sorry", -0.1)]})
    r = best_first_search(t, ReplayEnv(t), gen, CFG)
    assert not r.proved and r.lean_errors == 1 and r.checked_by == "replay"


def test_branching_dead_end_and_best_first_order():
    # A --a(-0.1)--> B (dead end: its tactic is unknown); A --b(-1.0)--> C --c--> proved.
    t = thm("B", [step("a", "A", "B"), step("b", "A", "C"), step("c", "C", "no goals"), step("x", "B", "no goals")])
    gen = TableGenerator({"A": [("a", -0.1), ("b", -1.0)], "B": [("unknown", -0.1)], "C": [("c", -0.5)]})
    r = best_first_search(t, ReplayEnv(t), gen, CFG)
    assert r.proved and r.proof == ["b", "c"] and r.checked_by == "replay"
    assert gen.calls == ["A", "B", "C"]          # B (score -0.1) is expanded before C (-1.0)
    assert r.expansions == 3 and r.generator_calls == 3 and r.unverifiable == 1
    assert r.env_calls == 4 and r.states == ["A", "C"] and r.stop_reason == "proved"


def test_transposition_keeps_one_node_and_shortest_proof():
    # Two routes to D: A-p->B-q->D (likelier) and A-r->D (shorter); D proves by d.
    t = thm("T", [step("p", "A", "B"), step("q", "B", "D"), step("r", "A", "D  "), step("d", "D", "no goals")])
    gen = TableGenerator({"A": [("p", -0.1), ("r", -3.0)], "B": [("q", -0.1)], "D": [("d", -0.1)]})
    r = best_first_search(t, ReplayEnv(t), gen, CFG)
    assert r.proved and r.proof == ["r", "d"]      # the shortest path to the transposed state
    assert r.nodes == 3                            # A, B, D: "D  " and "D" are one state
    assert gen.calls.count("D") + gen.calls.count("D  ") == 1


def test_exhausted_search_reports_failure():
    t = thm("E", [step("a", "A", "B"), step("b", "B", "A")])   # a cycle, never proved
    gen = TableGenerator({"A": [("a", 0.0)], "B": [("b", 0.0)]})
    r = best_first_search(t, ReplayEnv(t), gen, CFG)
    assert not r.proved and r.stop_reason == "exhausted" and r.expansions == 2 and r.proof == []


def test_expansion_limit():
    chain = [step(f"t{i}", f"S{i}", f"S{i + 1}") for i in range(10)] + [step("done", "S10", "no goals")]
    t = thm("L", chain)
    gen = TableGenerator({f"S{i}": [(f"t{i}", -0.1)] for i in range(10)} | {"S10": [("done", 0.0)]})
    r = best_first_search(t, ReplayEnv(t), gen, ProverConfig(max_expansions=5))
    assert not r.proved and r.expansions == 5 and r.stop_reason == "expansions"
    r = best_first_search(t, ReplayEnv(t), gen, ProverConfig(max_expansions=11))
    assert r.proved and len(r.proof) == 11


def test_wall_time_limit_with_a_clock():
    t = thm("W", [step(f"t{i}", f"S{i}", f"S{i + 1}") for i in range(10)])
    gen = TableGenerator({f"S{i}": [(f"t{i}", -0.1)] for i in range(10)})
    ticks = iter(range(1000))
    r = best_first_search(t, ReplayEnv(t), gen, ProverConfig(timeout=6.0), clock=lambda: float(next(ticks)))
    assert not r.proved and r.stop_reason == "timeout" and 0 < r.expansions < 10


def test_repository_table_answers_states_of_other_proofs():
    other = thm("O", [step("simp", "⊢ q", "no goals")], split="train")
    t = thm("N", [step("constructor", "⊢ p ∧ q", "⊢ q"), step("exact hq", "⊢ q", "no goals")])
    gen = TableGenerator({"⊢ p ∧ q": [("constructor", 0.0)], "⊢ q": [("simp", -0.2), ("exact hq", -0.5)]})
    r = best_first_search(t, ReplayEnv(t, ReplayTable.from_theorems([other])), gen, CFG)
    assert r.proved and r.proof == ["constructor", "simp"]
    assert best_first_search(t, ReplayEnv(t), gen, CFG).proof == ["constructor", "exact hq"]


def test_theorem_without_trace_is_a_not_replayable_result_not_a_crash():
    t = thm("X", [])
    r = best_first_search(t, ReplayEnv(t), TableGenerator({}), CFG)
    assert not r.proved and r.stop_reason == "not_replayable" and "no recorded tactic trace" in r.error


def _sample_theorem(b4_sample, name):
    from curriculum.lean_data import load_dataset

    return next(t for t in load_dataset(b4_sample).theorems if t.full_name == name)


def test_replay_never_proves_from_a_traced_sub_goal(b4_sample):
    """List.mem_dedup's trace starts at `case refine_2` (a `refine ... ?_` proof with nested `by` blocks):
    closing that sub-goal, with a `this` only it has, is not a proof of the theorem."""
    from provers.env import replay_provable, replay_unprovable_reason

    t = _sample_theorem(b4_sample, "List.mem_dedup")
    assert t.tactics[0].state_before.startswith("case refine_2")
    assert not replay_provable(t) and "case refine_2" in replay_unprovable_reason(t)
    recorded = TableGenerator({t.tactics[0].state_before: [(t.tactics[0].tactic, -0.1)]})
    r = best_first_search(t, ReplayEnv(t), recorded, CFG)
    assert not r.proved and r.stop_reason == "not_replayable" and r.expansions == 0 and r.proof == []


def test_sample_theorems_starting_at_their_own_goal_stay_replayable(b4_sample):
    from curriculum.lean_data import load_dataset
    from provers.env import replay_provable

    theorems = [t for t in load_dataset(b4_sample).theorems if t.tactics]
    ok = [t for t in theorems if replay_provable(t)]
    assert len(ok) > len(theorems) // 2
    assert all(not t.tactics[0].state_before.startswith("case ") for t in ok)


def test_replay_check_of_the_whole_proof():
    t = thm("C", [step("a", "⊢ A", "⊢ B"), step("b", "⊢ B", "no goals")])
    with ReplayEnv(t) as env:
        assert env.check_proof(["a", "b"]) is None
        assert env.check_proof(["b"]) is not None and env.check_proof(["a"]) == "the proof leaves goals open"


def test_a_generator_failure_ends_only_its_theorem():
    class Broken:
        name = "broken"

        def reset(self, seed):
            pass

        def generate(self, state, n, theorem=None):
            raise ConnectionError("server went away")

    t = thm("G", [step("a", "A", "no goals")])
    r = best_first_search(t, ReplayEnv(t), Broken(), CFG)
    assert not r.proved and r.stop_reason == "error" and "server went away" in r.error


def test_record_has_contract_fields():
    t = thm("R", [step("a", "A", "no goals")])
    rec = best_first_search(t, ReplayEnv(t), TableGenerator({"A": [("a", 0.0)]}), CFG).to_record()
    for key in ("theorem", "uid", "repo", "proved", "checked_by", "proof", "expansions", "env_calls",
                "generator_calls", "seconds", "env_seconds", "generator_seconds", "error"):
        assert key in rec
    assert "states" not in rec and rec["checked_by"] == "replay"


@pytest.mark.parametrize("text", ["a  b", " a\nb ", "a\tb"])
def test_normalize(text):
    assert normalize(text) == "a b"
