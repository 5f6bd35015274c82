"""Provers: environments (Lean via LeanDojo, or replay of recorded traces), tactic generators, best-first search,
and scale-out over processes or Ray. Imports nothing from `agent`."""
from provers.config import ProverConfig
from provers.env import (Env, EnvCrashError, EnvInitError, LeanDojoEnv, LeanError, Progress, Proved, ReplayEnv,
                         ReplayTable, TacticResult, Unverifiable, normalize)
from provers.factory import EnvFactory, GeneratorSpec, build_generator
from provers.pool import ProverWorker, WorkerSpec, prove_many, theorem_seed
from provers.search import ProofResult, best_first_search

CHECKED_BY_TEXT = {
    "replay": "checked by replay of the recorded Lean trace (Lean did not run)",
    "lean": "verified by Lean (LeanDojo)",
}

__all__ = [
    "CHECKED_BY_TEXT", "Env", "EnvCrashError", "EnvFactory", "EnvInitError", "GeneratorSpec", "LeanDojoEnv",
    "LeanError", "ProofResult", "Progress", "Proved", "ProverConfig", "ProverWorker", "ReplayEnv", "ReplayTable",
    "TacticResult", "Unverifiable", "WorkerSpec", "best_first_search", "build_generator", "normalize", "prove_many",
    "theorem_seed",
]
