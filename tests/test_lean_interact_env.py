"""LeanInteractEnv against the real lean-interact 0.11.6: its request models (`Command`, `ProofStep`) and its
`LeanServer.run`, which validates real-shaped REPL JSON into `CommandResponse` / `ProofStepResponse` /
`LeanError` with pydantic. The fake is only the process boundary: `run_dict` (JSON to and from the REPL process).
"""
from __future__ import annotations

import threading
import types

import pytest

li = pytest.importorskip("lean_interact")

from lean_interact.server import LeanServer  # noqa: E402

from curriculum.lean_data import Pos, Theorem  # noqa: E402
from provers.config import ProverConfig  # noqa: E402
from provers.env import LeanError, Progress, Proved  # noqa: E402
from provers.lean_interact_env import LeanInteractEnv, split_source, statement_end  # noqa: E402
from provers.search import best_first_search  # noqa: E402

SOURCE = """import Demo.Basic

namespace Demo

/-- commutativity, with a `:=` in a comment -/
theorem add_comm' (a b : Nat) (h : (fun x => x) a = a := rfl) : a + b = b + a := by
  omega

end Demo
"""
GOAL = "a b : Nat\nh : (fun x => x) a = a\n⊢ a + b = b + a"
POS = {"line": 6, "column": 0}


def _thm() -> Theorem:
    return Theorem("https://github.com/u/demo", "c" * 40, "Demo/A.lean", "Demo.add_comm'", Pos(6, 1), Pos(7, 8))


class Repl:
    """Scripted REPL replies (the JSON the real `repl` binary prints), keyed by request; records every request."""

    def __init__(self, steps: dict[tuple[int, str], object], check_ok: bool = True):
        self.steps, self.check_ok, self.requests, self.servers = steps, check_ok, [], 0
        self.proof_states = 1

    def server(self) -> LeanServer:
        server = object.__new__(LeanServer)   # the real class, without starting a process
        server.config = types.SimpleNamespace(enable_incremental_optimization=False, enable_parallel_elaboration=False)
        server._proc, server._lock = None, threading.Lock()
        server.run_dict = lambda request, verbose=False, timeout=None: self.reply(request, timeout)
        self.servers += 1
        return server

    def reply(self, request: dict, timeout):
        self.requests.append((request, timeout))
        if "cmd" in request and "env" not in request:
            return {"env": 0}
        if "cmd" in request and request["cmd"].endswith(":= by sorry"):
            return {"env": 1, "sorries": [{"pos": POS, "endPos": {"line": 6, "column": 90}, "goal": GOAL,
                                           "proofState": 0}],
                    "messages": [{"severity": "warning", "pos": POS, "endPos": POS,
                                  "data": "declaration uses 'sorry'"}]}
        if "cmd" in request:      # the whole-proof check
            if self.check_ok:
                return {"env": 2}
            return {"env": 2, "messages": [{"severity": "error", "pos": POS, "endPos": POS,
                                            "data": "unsolved goals"}]}
        out = self.steps.get((request["proofState"], request["tactic"]))
        if out == "timeout":
            raise TimeoutError("The Lean server did not respond in time and is now killed.")
        if out is None:
            return {"message": "Lean error:\n<input>:1:0: unknown tactic"}
        if out == "error":
            return {"proofState": 9, "goals": [], "proofStatus": "Error",
                    "messages": [{"severity": "error", "pos": POS, "endPos": POS, "data": "omega could not prove"}]}
        if out == "done":
            return {"proofState": 5, "goals": [], "proofStatus": "Completed"}
        self.proof_states += 1
        return {"proofState": self.proof_states, "goals": out, "proofStatus": "Incomplete: open goals remain"}


def _env(tmp_path, repl: Repl, **kw) -> LeanInteractEnv:
    (tmp_path / "Demo").mkdir(exist_ok=True)
    (tmp_path / "Demo" / "A.lean").write_text(SOURCE)
    return LeanInteractEnv(_thm(), project_dir=str(tmp_path), server_factory=repl.server, **kw)


def test_statement_is_cut_at_the_proofs_own_colon_equals():
    prefix, statement = split_source(SOURCE, _thm())
    assert prefix.endswith("-/\n") and "namespace Demo" in prefix
    assert statement == "theorem add_comm' (a b : Nat) (h : (fun x => x) a = a := rfl) : a + b = b + a"
    assert statement_end("def f : Nat\n  | 0 => 1") == -1


def test_session_maps_real_repl_responses(tmp_path):
    repl = Repl({(0, "intro"): ["a b : Nat\n⊢ a + b = b + a", "⊢ True"], (0, "omega"): "done",
                 (0, "simp"): "error"})
    with _env(tmp_path, repl, tactic_timeout=3, startup_timeout=400) as env:
        assert env.initial_state == GOAL
        assert env.run_tac(GOAL, "intro") == Progress("a b : Nat\n⊢ a + b = b + a\n\n⊢ True")
        assert env.run_tac(GOAL, "bogus") == LeanError("Lean error:\n<input>:1:0: unknown tactic")
        assert env.run_tac(GOAL, "simp") == LeanError("omega could not prove")
        assert env.run_tac(GOAL, "sorry") == LeanError("proof contains `sorry` (ProofGivenUp)")
        assert env.run_tac(GOAL, "omega") == Proved()
    first, ctx_timeout = repl.requests[0]
    assert first["cmd"].startswith("import Demo.Basic") and ctx_timeout == 400            # start-up limit
    step, step_timeout = repl.requests[2]
    assert step == {"proofState": 0, "tactic": "intro"} and step_timeout == 3             # tactic limit


def test_timeout_discards_the_repl_and_replays_the_path(tmp_path):
    repl = Repl({(0, "intro"): ["⊢ p"], (2, "slow"): "timeout", (0, "omega"): "done", (3, "trivial"): "done"})
    with _env(tmp_path, repl) as env:
        assert env.run_tac(GOAL, "intro") == Progress("⊢ p")
        out = env.run_tac("⊢ p", "slow")
        assert isinstance(out, LeanError) and "timed out" in out.message
        assert repl.servers == 2                                   # a new REPL process, the old one never reused
        assert env.run_tac("⊢ p", "trivial") == Proved()           # rebuilt by replaying `intro` in the new REPL
    tactics = [r.get("tactic") for r, _ in repl.requests if "tactic" in r]
    assert tactics == ["intro", "slow", "intro", "trivial"]


def test_proof_is_lean_only_after_the_whole_proof_compiles(tmp_path):
    class Gen:
        name = "table"

        def reset(self, seed):
            pass

        def generate(self, state, n, theorem=None):
            return [("omega", -0.1)]

    repl = Repl({(0, "omega"): "done"})
    r = best_first_search(_thm(), _env(tmp_path, repl), Gen(), ProverConfig())
    assert r.proved and r.checked_by == "lean"
    check = [req for req, _ in repl.requests if req.get("env") == 0 and "sorry" not in req["cmd"]]
    assert check and check[-1]["cmd"].endswith(":= by\n  omega")
    repl = Repl({(0, "omega"): "done"}, check_ok=False)
    r = best_first_search(_thm(), _env(tmp_path, repl), Gen(), ProverConfig())
    assert not r.proved and r.stop_reason == "check_failed" and "unsolved goals" in r.error


def test_missing_source_is_an_init_error_result(tmp_path):
    repl = Repl({})
    env = LeanInteractEnv(_thm(), project_dir=str(tmp_path / "nowhere"), server_factory=repl.server)
    r = best_first_search(_thm(), env, None, ProverConfig())
    assert r.stop_reason == "error" and "cannot read" in r.error


@pytest.mark.lean
def test_lean_interact_env_for_real(tmp_path):
    """LeanDojo's example repository through the Lean REPL (needs elan and network)."""
    import shutil
    import subprocess

    if shutil.which("lake") is None:
        pytest.skip("no Lean toolchain")
    src = tmp_path / "lean4-example"
    subprocess.run(["git", "clone", "-q", "https://github.com/yangky11/lean4-example", str(src)], check=True)
    subprocess.run(["git", "checkout", "-q", "7b6ecb9ad4829e4e73600a3329baeb3b5df8d23f"], cwd=src, check=True)
    text = (src / "Lean4Example.lean").read_text().splitlines()
    line = next(i for i, x in enumerate(text, 1) if "hello_world" in x)
    thm = Theorem(str(src), "7b6ecb9ad4829e4e73600a3329baeb3b5df8d23f", "Lean4Example.lean", "hello_world",
                  Pos(line, 1), Pos(line + 1, len(text[line]) + 1))
    with LeanInteractEnv(thm, project_dir=str(src), tactic_timeout=60) as env:
        assert "⊢" in env.initial_state
        assert env.run_tac(env.initial_state, "rw [Nat.add_assoc, Nat.add_comm b, ← Nat.add_assoc]") == Proved()
        assert env.check_proof(["rw [Nat.add_assoc, Nat.add_comm b, ← Nat.add_assoc]"]) is None
