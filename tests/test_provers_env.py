"""LeanDojoEnv against a fake `lean_dojo` at the Dojo boundary (its 4.20 API), and for real where Lean exists."""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest

from common.errors import InputError
from curriculum.lean_data import Pos, Theorem, TracedTactic
from provers.config import ProverConfig
from provers.env import EnvInitError, LeanDojoEnv, LeanError, Progress, Proved, normalize
from provers.search import best_first_search


def _fake_lean_dojo(script: dict[tuple[str, str], object], calls: list):
    """A module shaped like lean_dojo 4.20: Dojo(entry, timeout) context manager, run_tac → result types."""
    m = types.ModuleType("lean_dojo")

    @dataclass(frozen=True)
    class TacticState:
        pp: str
        id: int = field(compare=False)
        message: str | None = field(default=None, compare=False)

    @dataclass(frozen=True)
    class ProofFinished:
        tactic_state_id: int
        message: str | None = field(default=None, compare=False)

    @dataclass(frozen=True)
    class ProofGivenUp:
        pass

    @dataclass(frozen=True)
    class LeanErr:
        error: str

    class DojoCrashError(Exception):
        pass

    class DojoTacticTimeoutError(Exception):
        pass

    class DojoInitError(Exception):
        pass

    @dataclass(frozen=True)
    class LeanGitRepo:
        url: str
        commit: str

    @dataclass(frozen=True)
    class Thm:
        repo: LeanGitRepo
        file_path: str
        full_name: str

    class Dojo:
        def __init__(self, entry, timeout=600, additional_imports=(), build_deps=True):
            calls.append(("init", entry, timeout))
            self.entry = entry

        def __enter__(self):
            if self.entry.full_name == "broken":
                raise DojoInitError("Failed to locate the theorem")
            return self, TacticState("⊢ p ∧ q", 0)

        def __exit__(self, *exc):
            calls.append(("exit",))

        def run_tac(self, state, tactic):
            calls.append(("run", state.id, tactic))
            out = script.get((state.pp, tactic))
            if out == "timeout":
                raise DojoTacticTimeoutError()
            if out == "crash":
                raise DojoCrashError("OOM")
            if out is None:
                return LeanErr("unknown tactic")
            if out == "no goals":
                return ProofFinished(99)
            if out == "gave up":
                return ProofGivenUp()
            return TacticState(out, len(calls))

    for name, obj in dict(TacticState=TacticState, ProofFinished=ProofFinished, ProofGivenUp=ProofGivenUp,
                          LeanError=LeanErr, DojoCrashError=DojoCrashError, Dojo=Dojo, LeanGitRepo=LeanGitRepo,
                          DojoTacticTimeoutError=DojoTacticTimeoutError, DojoInitError=DojoInitError,
                          Theorem=Thm).items():
        setattr(m, name, obj)
    return m


def _thm(name="Demo.t") -> Theorem:
    return Theorem("/src/demo", "c" * 40, "Demo/A.lean", name, Pos(3, 1), Pos(5, 1), None,
                   (TracedTactic("constructor", "constructor", (), "⊢ p ∧ q", "case left ⊢ p"),), "test")


class Gen:
    name = "table"

    def __init__(self, table):
        self.table = table

    def reset(self, seed):
        pass

    def generate(self, state, n, theorem=None):
        return self.table.get(state, [])[:n]


def test_leandojo_env_maps_results_and_proves(monkeypatch):
    calls: list = []
    script = {("⊢ p ∧ q", "constructor"): "⊢ p\n⊢ q", ("⊢ p ∧ q", "slow"): "timeout",
              ("⊢ p\n⊢ q", "exact ⟨hp, hq⟩"): "no goals", ("⊢ p\n⊢ q", "sorry"): "gave up"}
    monkeypatch.setitem(sys.modules, "lean_dojo", _fake_lean_dojo(script, calls))
    env = LeanDojoEnv(_thm(), tactic_timeout=7)
    with env as e:
        assert e.initial_state == "⊢ p ∧ q"
        assert e.run_tac("⊢ p ∧ q", "constructor") == Progress("⊢ p\n⊢ q")
        assert isinstance(e.run_tac("⊢ p ∧ q", "slow"), LeanError)
        assert e.run_tac("⊢ p\n⊢ q", "sorry") == LeanError("proof contains `sorry` (ProofGivenUp)")
        assert e.run_tac("⊢ p ∧ q", "bogus") == LeanError("unknown tactic")
        assert e.run_tac("⊢ p\n⊢ q", "exact ⟨hp, hq⟩") == Proved()
    init = calls[0]
    assert init[0] == "init" and init[2] == 7 and init[1].full_name == "Demo.t" and init[1].repo.url == "/src/demo"
    assert calls[-1] == ("exit",)

    gen = Gen({"⊢ p ∧ q": [("slow", -0.1), ("constructor", -0.2)], "⊢ p\n⊢ q": [("exact ⟨hp, hq⟩", -0.1)]})
    r = best_first_search(_thm(), LeanDojoEnv(_thm()), gen, ProverConfig())
    assert r.proved and r.checked_by == "lean" and r.proof == ["constructor", "exact ⟨hp, hq⟩"] and r.lean_errors == 1


def test_leandojo_crash_ends_search_and_init_error_is_reported(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "lean_dojo", _fake_lean_dojo({("⊢ p ∧ q", "boom"): "crash"}, calls))
    r = best_first_search(_thm(), LeanDojoEnv(_thm()), Gen({"⊢ p ∧ q": [("boom", 0.0)]}), ProverConfig())
    assert not r.proved and r.stop_reason == "error" and "crashed" in r.error and calls[-1] == ("exit",)
    with pytest.raises(EnvInitError):
        with LeanDojoEnv(_thm("broken")):
            pass


def test_missing_lean_dojo_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "lean_dojo", None)
    with pytest.raises(InputError, match=r"lifelean\[lean\]"):
        with LeanDojoEnv(_thm()):
            pass


@pytest.mark.lean
def test_leandojo_env_for_real():
    """LeanDojo's own example repository (needs lean_dojo, elan, network for the first trace)."""
    pytest.importorskip("lean_dojo")
    thm = Theorem("https://github.com/yangky11/lean4-example", "7b6ecb9ad4829e4e73600a3329baeb3b5df8d23f",
                  "Lean4Example.lean", "hello_world", Pos(1, 1), Pos(1, 1))
    with LeanDojoEnv(thm, tactic_timeout=60) as env:
        assert "⊢" in env.initial_state
        assert env.run_tac(env.initial_state, "rw [add_assoc, add_comm b, ←add_assoc]") == Proved()
        assert isinstance(env.run_tac(env.initial_state, "exact nonsense_lemma"), LeanError)
    assert normalize(" a ") == "a"
