"""LeanDojoEnv against the real lean_dojo 4.20.0 classes (results, exceptions, Theorem), with a fake only where
LeanDojo would start Lean (`Dojo`, `check_proof`, `LeanGitRepo`'s GitHub/git calls); and for real where Lean exists.
"""
from __future__ import annotations

import os
import tempfile

import pytest

from common.lean_dojo_import import lean_dojo_cache_dir

os.environ.setdefault("CACHE_DIR", os.path.join(tempfile.gettempdir(), "lifelean-test-lean-dojo-cache"))
lean_dojo_cache_dir().mkdir(parents=True, exist_ok=True)  # two xdist workers importing LeanDojo race otherwise
ld = pytest.importorskip("lean_dojo")

from common.errors import InputError  # noqa: E402
from curriculum.lean_data import Pos, Theorem, TracedTactic  # noqa: E402
from provers.config import ProverConfig  # noqa: E402
from provers.env import (EnvInitError, LeanDojoEnv, LeanError, Progress, Proved, choose_lean_backend,  # noqa: E402
                         normalize, proof_block)
from provers.search import best_first_search  # noqa: E402


class FakeRepo:
    """Stands in for `LeanGitRepo` (whose constructor calls GitHub or clones): url and commit only."""

    def __init__(self, url, commit):
        self.url, self.commit = url, commit


class FakeDojo:
    """The process boundary: `Dojo(entry, timeout)` as a context manager, `run_tac` scripted on real result types.

    A scripted "timeout" raises the real `DojoTacticTimeoutError`; after it, like real Lean (which keeps running
    the timed-out tactic and does not match replies to requests), the session answers the *previous* request's
    reply to the next call — so a session that is reused after a time-out gives false results.
    """

    def __init__(self, script, calls, entry, timeout=600, additional_imports=(), build_deps=True):
        calls.append(("init", entry, timeout))
        self.script, self.calls, self.entry, self.timeout = script, calls, entry, timeout
        self.poisoned = False
        self.proc = type("Proc", (), {"timeout": timeout})()

    def __enter__(self):
        if self.entry.full_name == "broken":
            raise ld.DojoInitError("Failed to locate the theorem")
        return self, ld.TacticState("⊢ p ∧ q", 0)

    def __exit__(self, *exc):
        self.calls.append(("exit",))

    def run_tac(self, state, tactic):
        self.calls.append(("run", state.id, tactic, self.proc.timeout))
        if self.poisoned:
            return ld.ProofFinished(98)          # the reply to the timed-out request: a false proof
        out = self.script.get((state.pp, tactic))
        if out == "timeout":
            self.poisoned = True
            raise ld.DojoTacticTimeoutError()
        if out == "crash":
            raise ld.DojoCrashError("OOM")
        if out is None:
            return ld.LeanError("unknown tactic")
        if out == "no goals":
            return ld.ProofFinished(99)
        if out == "gave up":
            return ld.ProofGivenUp()
        return ld.TacticState(out, len(self.calls))


@pytest.fixture
def fake_dojo(monkeypatch):
    calls: list = []
    state = {"script": {}, "checked": [], "verdict": True}

    def make(entry, timeout=600, additional_imports=(), build_deps=True):
        return FakeDojo(state["script"], calls, entry, timeout)

    def check_proof(thm, proof):
        state["checked"].append((thm.full_name, proof))
        return state["verdict"]

    monkeypatch.setattr(ld, "Dojo", make)
    monkeypatch.setattr(ld, "LeanGitRepo", FakeRepo)
    monkeypatch.setattr(ld, "check_proof", check_proof)
    state["calls"] = calls
    return state


def _thm(name="Demo.t") -> Theorem:
    return Theorem("https://github.com/u/demo", "c" * 40, "Demo/A.lean", name, Pos(3, 1), Pos(5, 1), None,
                   (TracedTactic("constructor", "constructor", (), "⊢ p ∧ q", "case left ⊢ p"),), "test")


class Gen:
    name = "table"

    def __init__(self, table):
        self.table = table

    def reset(self, seed):
        pass

    def generate(self, state, n, theorem=None):
        return self.table.get(state, [])[:n]


SCRIPT = {("⊢ p ∧ q", "constructor"): "⊢ p\n\n⊢ q", ("⊢ p ∧ q", "slow"): "timeout",
          ("⊢ p\n\n⊢ q", "exact ⟨hp, hq⟩"): "no goals", ("⊢ p\n\n⊢ q", "sorry"): "gave up"}


def test_leandojo_env_maps_real_result_types(fake_dojo):
    fake_dojo["script"].update(SCRIPT)
    with LeanDojoEnv(_thm(), tactic_timeout=7, startup_timeout=300) as e:
        assert e.initial_state == "⊢ p ∧ q"
        assert e.run_tac("⊢ p ∧ q", "constructor") == Progress("⊢ p\n\n⊢ q")
        assert e.run_tac("⊢ p\n\n⊢ q", "sorry") == LeanError("proof contains `sorry` (ProofGivenUp)")
        assert e.run_tac("⊢ p ∧ q", "bogus") == LeanError("unknown tactic")
        assert e.run_tac("⊢ p\n\n⊢ q", "exact ⟨hp, hq⟩") == Proved()
    init = fake_dojo["calls"][0]
    assert init[0] == "init" and init[1].full_name == "Demo.t" and init[1].repo.url == "https://github.com/u/demo"
    assert isinstance(init[1], ld.Theorem)                         # the real LeanDojo Theorem
    assert fake_dojo["calls"][-1] == ("exit",)


def test_startup_and_tactic_timeouts_are_separate(fake_dojo):
    """Dojo's `timeout` covers start-up: it gets the start-up limit, the running process the tactic limit."""
    fake_dojo["script"].update(SCRIPT)
    with LeanDojoEnv(_thm(), tactic_timeout=7, startup_timeout=300) as e:
        e.run_tac("⊢ p ∧ q", "constructor")
    assert fake_dojo["calls"][0][2] == 300
    assert fake_dojo["calls"][1][3] == 7


def test_a_tactic_timeout_discards_the_session_and_never_reads_its_stale_reply(fake_dojo):
    fake_dojo["script"].update(SCRIPT)
    with LeanDojoEnv(_thm(), tactic_timeout=7) as e:
        out = e.run_tac("⊢ p ∧ q", "slow")
        assert isinstance(out, LeanError) and "timed out" in out.message
        # The old session would now answer ProofFinished to anything; a fresh one answers truthfully.
        assert e.run_tac("⊢ p ∧ q", "bogus") == LeanError("unknown tactic")
        assert e.restarts == 1
    inits = [c for c in fake_dojo["calls"] if c[0] == "init"]
    exits = [c for c in fake_dojo["calls"] if c == ("exit",)]
    assert len(inits) == 2 and len(exits) == 2


def test_after_a_restart_states_are_rebuilt_by_replaying_their_path(fake_dojo):
    fake_dojo["script"].update(SCRIPT)
    with LeanDojoEnv(_thm()) as e:
        assert e.run_tac("⊢ p ∧ q", "constructor") == Progress("⊢ p\n\n⊢ q")
        e.run_tac("⊢ p ∧ q", "slow")
        assert e.run_tac("⊢ p\n\n⊢ q", "exact ⟨hp, hq⟩") == Proved()
    runs = [c[2] for c in fake_dojo["calls"] if c[0] == "run"]
    assert runs == ["constructor", "slow", "constructor", "exact ⟨hp, hq⟩"]


def test_repeated_timeouts_end_the_theorem(fake_dojo):
    fake_dojo["script"].update(SCRIPT)
    gen = Gen({"⊢ p ∧ q": [("slow", -0.1)]})
    cfg = ProverConfig(max_expansions=8)
    env = LeanDojoEnv(_thm())
    env.max_restarts = 0
    r = best_first_search(_thm(), env, gen, cfg)
    assert not r.proved and r.stop_reason == "error" and "time-outs" in r.error


def test_lean_label_only_after_the_whole_proof_is_checked(fake_dojo):
    fake_dojo["script"].update(SCRIPT)
    gen = Gen({"⊢ p ∧ q": [("bogus", -0.1), ("constructor", -0.2)], "⊢ p\n\n⊢ q": [("exact ⟨hp, hq⟩", -0.1)]})
    r = best_first_search(_thm(), LeanDojoEnv(_thm()), gen, ProverConfig())
    assert r.proved and r.checked_by == "lean" and r.proof == ["constructor", "exact ⟨hp, hq⟩"]
    assert fake_dojo["checked"] == [("Demo.t", "by\n  constructor\n  exact ⟨hp, hq⟩")]
    fake_dojo["verdict"] = False
    r = best_first_search(_thm(), LeanDojoEnv(_thm()), gen, ProverConfig())
    assert not r.proved and r.stop_reason == "check_failed" and "rejected" in r.error


def test_crash_ends_search_and_init_errors_are_one_line(fake_dojo, monkeypatch):
    fake_dojo["script"][("⊢ p ∧ q", "boom")] = "crash"
    r = best_first_search(_thm(), LeanDojoEnv(_thm()), Gen({"⊢ p ∧ q": [("boom", 0.0)]}), ProverConfig())
    assert not r.proved and r.stop_reason == "error" and "crashed" in r.error and fake_dojo["calls"][-1] == ("exit",)
    with pytest.raises(EnvInitError):
        with LeanDojoEnv(_thm("broken")):
            pass

    class RateLimited(Exception):
        status = 403

    def no_repo(url, commit):
        raise RateLimited("API rate limit exceeded for 1.2.3.4")

    monkeypatch.setattr(ld, "LeanGitRepo", no_repo)
    r = best_first_search(_thm(), LeanDojoEnv(_thm()), Gen({}), ProverConfig())
    assert r.stop_reason == "error" and "GITHUB_ACCESS_TOKEN" in r.error and "\n" not in r.error


def test_search_clock_starts_after_entering(fake_dojo):
    """A slow start-up must not eat the theorem's wall-clock budget."""
    fake_dojo["script"].update(SCRIPT)
    ticks = iter([0.0, 1000.0] + [1000.0 + i * 0.001 for i in range(100)])
    gen = Gen({"⊢ p ∧ q": [("constructor", -0.2)], "⊢ p\n\n⊢ q": [("exact ⟨hp, hq⟩", -0.1)]})
    r = best_first_search(_thm(), LeanDojoEnv(_thm()), gen, ProverConfig(timeout=5), clock=lambda: next(ticks))
    assert r.proved and r.startup_seconds == 1000.0 and r.seconds < 5


def test_missing_lean_dojo_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lean_dojo", None)
    with pytest.raises(InputError, match=r"lifelean\[lean\]"):
        with LeanDojoEnv(_thm()):
            pass


_IMPORT_PROBE = """
import pathlib, sys
made = []
mkdir = pathlib.Path.mkdir
def recording_mkdir(self, mode=0o777, parents=False, exist_ok=False):
    made.append((str(self), exist_ok))
    return mkdir(self, mode, parents, exist_ok)
pathlib.Path.mkdir = recording_mkdir
if sys.argv[1] == "helper":
    from common.lean_dojo_import import import_lean_dojo
    import_lean_dojo()
else:
    import lean_dojo
print(repr(made))
"""


def test_lean_dojo_never_creates_its_cache_directory_itself(tmp_path):
    """LeanDojo's import checks for CACHE_DIR and then creates it without exist_ok, so two processes importing it
    at once on a fresh machine race and one dies with FileExistsError (this killed a CI run at collection).
    Through lifelean's import the directory exists first, so LeanDojo's own non-idempotent mkdir never runs
    (the probe's "plain" mode, a bare `import lean_dojo`, fails this check with lean-dojo 4.20.0)."""
    import ast
    import subprocess
    import sys

    cache = tmp_path / "fresh" / "lean_dojo_cache"
    env = {**os.environ, "CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, "helper"], env=env, capture_output=True, text=True,
                         timeout=120, check=True, cwd=os.path.dirname(os.path.dirname(__file__))).stdout
    made = [(path, exist_ok) for path, exist_ok in ast.literal_eval(out.strip().splitlines()[-1])
            if path == str(cache)]
    assert cache.is_dir()
    assert made and all(exist_ok for _, exist_ok in made), made


def test_backend_follows_the_lean_version():
    assert choose_lean_backend("auto", "v4.9.0") == "leandojo"
    assert choose_lean_backend("auto", "v4.19.0") == "lean-interact"
    assert choose_lean_backend("auto", None) == "lean-interact"
    assert choose_lean_backend("leandojo", "v4.20.0") == "leandojo"
    with pytest.raises(InputError):
        choose_lean_backend("coq", None)
    assert proof_block(["intro h", "exact\n h"]) == "by\n  intro h\n  exact\n   h"


@pytest.mark.lean
def test_leandojo_env_for_real():
    """LeanDojo's own example repository (needs elan, network for the first trace)."""
    thm = Theorem("https://github.com/yangky11/lean4-example", "7b6ecb9ad4829e4e73600a3329baeb3b5df8d23f",
                  "Lean4Example.lean", "hello_world", Pos(1, 1), Pos(1, 1))
    with LeanDojoEnv(thm, tactic_timeout=60) as env:
        assert "⊢" in env.initial_state
        assert env.run_tac(env.initial_state, "rw [add_assoc, add_comm b, ←add_assoc]") == Proved()
        assert isinstance(env.run_tac(env.initial_state, "exact nonsense_lemma"), LeanError)
        assert env.check_proof(["rw [add_assoc, add_comm b, ←add_assoc]"]) is None
    assert normalize(" a ") == "a"
