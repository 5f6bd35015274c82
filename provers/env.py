"""Proof environments: where a tactic is run on a proof state and a typed result comes back.

An :class:`Env` is a context manager opened once per theorem; inside it, :meth:`Env.run_tac` maps
`(state text, tactic)` to `Progress(state) | Proved() | LeanError(message) | Unverifiable(reason)`.
Two implementations:

* :class:`LeanDojoEnv` runs the tactic in real Lean through `lean_dojo.Dojo` (needs a traced repository
  and a Lean toolchain); its proofs carry ``checked_by = "lean"``.
* :class:`ReplayEnv` answers from a recorded LeanDojo trace, the honest stand-in where Lean cannot run:
  a (state, tactic) pair the trace recorded gives the recorded next state; anything else is
  `Unverifiable`. Its proofs carry ``checked_by = "replay"`` and are "checked by replay of the recorded
  Lean trace", never "verified by Lean".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence, runtime_checkable

from common.errors import InputError
from curriculum.lean_data import Theorem, TracedTactic

NO_GOALS = "no goals"
_SORRY = re.compile(r"\b(sorry|admit)\b")


@dataclass(frozen=True, slots=True)
class Progress:
    """The tactic ran and left goals: `state` is the new pretty-printed tactic state."""

    state: str


@dataclass(frozen=True, slots=True)
class Proved:
    """The tactic closed every goal."""


@dataclass(frozen=True, slots=True)
class LeanError:
    """Lean rejected the tactic (error, timeout, or `sorry`, which Lean reports as giving up)."""

    message: str


@dataclass(frozen=True, slots=True)
class Unverifiable:
    """The environment cannot tell what the tactic does (a replay trace never recorded it)."""

    reason: str


TacticResult = Progress | Proved | LeanError | Unverifiable


class EnvInitError(InputError):
    """The environment could not be opened for a theorem (no trace, Lean failed to start...)."""


class EnvCrashError(RuntimeError):
    """The environment died mid-search (Lean crashed or ran out of memory): the search must stop."""


@runtime_checkable
class Env(Protocol):
    """A proof environment for one theorem, used as ``with env as e: e.run_tac(e.initial_state, tac)``."""

    checked_by: str  # "lean" | "replay"

    @property
    def initial_state(self) -> str: ...

    def run_tac(self, state: str, tactic: str) -> TacticResult: ...

    def __enter__(self) -> "Env": ...

    def __exit__(self, *exc: object) -> None: ...


def normalize(text: str) -> str:
    """Whitespace-insensitive form of a tactic or a state: every whitespace run becomes one space, ends stripped.

    Both sides of every replay lookup (the trace's keys and the search's queries) and the search's
    transposition table go through this one function, so `rw [h]` and `rw  [h]\\n` are the same tactic.
    """
    return " ".join(text.split())


def is_sorry_tactic(tactic: str) -> bool:
    """`sorry`/`admit` close a goal only by giving up: Lean answers ProofGivenUp, never a proof."""
    return bool(_SORRY.search(tactic))


class ReplayTable:
    """(normalised state, normalised tactic) → recorded state after, from traced tactics.

    Built once per repository (or theorem) and shared by every :class:`ReplayEnv` opened on it.
    The first recording of a pair wins, so a theorem's own trace (added first) takes precedence.
    """

    def __init__(self) -> None:
        self._next: dict[tuple[str, str], str] = {}

    def add(self, tactics: Iterable[TracedTactic]) -> None:
        for t in tactics:
            if is_sorry_tactic(t.tactic):
                continue
            self._next.setdefault((normalize(t.state_before), normalize(t.tactic)), t.state_after)

    def lookup(self, state: str, tactic: str) -> str | None:
        return self._next.get((normalize(state), normalize(tactic)))

    def __len__(self) -> int:
        return len(self._next)

    @classmethod
    def from_theorems(cls, theorems: Sequence[Theorem]) -> "ReplayTable":
        table = cls()
        for thm in theorems:
            if not thm.is_sorry:
                table.add(thm.tactics)
        return table


class ReplayEnv:
    """Checks tactics by replay of the recorded Lean trace (not by Lean).

    The initial state is the `state_before` of the theorem's first recorded tactic. A tactic is looked up
    under :func:`normalize` of both state and tactic, first in the theorem's own trace, then in `shared`
    (all recorded steps of the repository, so a state reached by another recorded proof also answers).
    A recorded `no goals` after-state gives :class:`Proved`; `sorry`/`admit` give :class:`LeanError`
    (Lean would report ProofGivenUp); an unrecorded pair gives :class:`Unverifiable`.
    """

    checked_by = "replay"

    def __init__(self, theorem: Theorem, shared: ReplayTable | None = None):
        self.theorem = theorem
        self._own = ReplayTable()
        self._own.add(theorem.tactics)
        self._shared = shared
        self._initial: str | None = None

    @property
    def initial_state(self) -> str:
        if self._initial is None:
            raise RuntimeError("ReplayEnv used outside its `with` block")
        return self._initial

    def __enter__(self) -> "ReplayEnv":
        if not self.theorem.tactics:
            raise EnvInitError(f"{self.theorem.full_name}: no recorded tactic trace (term-mode proof), "
                               "so replay cannot start it; proving it needs Lean (LeanDojoEnv)")
        self._initial = self.theorem.tactics[0].state_before
        return self

    def __exit__(self, *exc: object) -> None:
        self._initial = None

    def run_tac(self, state: str, tactic: str) -> TacticResult:
        if is_sorry_tactic(tactic):
            return LeanError("proof contains `sorry` (Lean: ProofGivenUp)")
        after = self._own.lookup(state, tactic)
        if after is None and self._shared is not None:
            after = self._shared.lookup(state, tactic)
        if after is None:
            return Unverifiable("this (state, tactic) pair is not in the recorded trace")
        if normalize(after) == NO_GOALS:
            return Proved()
        return Progress(after)


def _import_lean_dojo():
    try:
        import lean_dojo  # noqa: F401  (runs `git --version` at import; only imported here)
    except ImportError:
        raise InputError("checking proofs with Lean needs LeanDojo: pip install 'lifelean[lean]', plus a Lean 4 "
                         "toolchain (elan) and a repository traced by LeanDojo") from None
    return lean_dojo


class LeanDojoEnv:
    """Runs tactics in real Lean via `lean_dojo.Dojo(Theorem(repo, file_path, full_name), timeout=...)`.

    The repository must have been traced by LeanDojo (which builds its `Lean4Repl`). `timeout` is
    LeanDojo's per-interaction limit in seconds; a tactic that exceeds it (`DojoTacticTimeoutError`) is a
    `LeanError`; a crash of the Lean process (`DojoCrashError`) ends the search with :class:`EnvCrashError`.
    `tactic_timeout` is Dojo's own per-tactic limit (pexpect timeout), an int in LeanDojo's API.
    """

    checked_by = "lean"

    def __init__(self, theorem: Theorem, repo_path: str | None = None, tactic_timeout: float = 5.0):
        self.theorem = theorem
        self.repo_path = repo_path or theorem.url
        self.tactic_timeout = tactic_timeout
        self._states: dict[str, object] = {}
        self._dojo_cm = None
        self._dojo = None
        self._initial: str | None = None

    @property
    def initial_state(self) -> str:
        if self._initial is None:
            raise RuntimeError("LeanDojoEnv used outside its `with` block")
        return self._initial

    def __enter__(self) -> "LeanDojoEnv":
        ld = _import_lean_dojo()
        repo = ld.LeanGitRepo(self.repo_path, self.theorem.commit)
        entry = ld.Theorem(repo, self.theorem.file_path, self.theorem.full_name)
        self._dojo_cm = ld.Dojo(entry, timeout=max(1, int(round(self.tactic_timeout))))
        try:
            self._dojo, init = self._dojo_cm.__enter__()
        except ld.DojoInitError as exc:
            self._dojo_cm = None
            raise EnvInitError(f"{self.theorem.full_name}: LeanDojo could not start it ({exc})") from None
        self._states = {init.pp: init}
        self._initial = init.pp
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dojo_cm is not None:
            self._dojo_cm.__exit__(None, None, None)
        self._dojo_cm = self._dojo = None
        self._states = {}
        self._initial = None

    def run_tac(self, state: str, tactic: str) -> TacticResult:
        ld = _import_lean_dojo()
        tactic_state = self._states.get(state)
        if tactic_state is None:
            raise KeyError(f"state not produced by this Dojo session: {state[:80]!r}")
        try:
            result = self._dojo.run_tac(tactic_state, tactic)
        except ld.DojoTacticTimeoutError:
            return LeanError(f"tactic timed out after {self.tactic_timeout:g} s")
        except ld.DojoCrashError as exc:
            raise EnvCrashError(f"Lean crashed while running {tactic!r}: {exc}") from None
        if isinstance(result, ld.ProofFinished):
            return Proved()
        if isinstance(result, ld.ProofGivenUp):
            return LeanError("proof contains `sorry` (ProofGivenUp)")
        if isinstance(result, ld.LeanError):
            return LeanError(result.error)
        if isinstance(result, ld.TacticState):
            self._states.setdefault(result.pp, result)
            return Progress(result.pp)
        return LeanError(f"unexpected LeanDojo result {type(result).__name__}")
