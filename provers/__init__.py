"""Provers: environments (Lean via LeanDojo, or replay of recorded traces), tactic generators, best-first search,
and scale-out over processes or Ray. Imports nothing from `agent`."""
from provers.config import ProverConfig
from provers.env import (Env, EnvCrashError, EnvInitError, LeanDojoEnv, LeanError, LeanSessionEnv, NotReplayable,
                         Progress, Proved, ReplayEnv, ReplayTable, TacticResult, Unverifiable, check_whole_proof,
                         choose_lean_backend, normalize, open_lean_env, replay_provable, replay_unprovable_reason)
from provers.factory import EnvFactory, GeneratorSpec, build_generator
from provers.pool import ProverWorker, WorkerSpec, prove_many, theorem_seed
from provers.search import ProofResult, best_first_search

CHECKED_BY_TEXT = {
    "replay": "checked by replay of the recorded Lean trace (Lean did not run)",
    "lean": "verified by Lean (the whole proof compiled, via LeanDojo or the Lean REPL)",
}

__all__ = [
    "CHECKED_BY_TEXT", "Env", "EnvCrashError", "EnvFactory", "EnvInitError", "GeneratorSpec", "LeanDojoEnv",
    "LeanError", "LeanSessionEnv", "NotReplayable", "ProofResult", "Progress", "Proved", "ProverConfig",
    "ProverWorker", "ReplayEnv", "ReplayTable", "TacticResult", "Unverifiable", "WorkerSpec", "best_first_search",
    "build_generator", "check_whole_proof", "choose_lean_backend", "normalize", "open_lean_env", "prove_many",
    "replay_provable", "replay_unprovable_reason", "theorem_seed",
]
