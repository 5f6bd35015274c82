"""Proof environments: where a tactic is run on a proof state and a typed result comes back.

An :class:`Env` is a context manager opened once per theorem; inside it, :meth:`Env.run_tac` maps
`(state text, tactic)` to `Progress(state) | Proved() | LeanError(message) | Unverifiable(reason)`.
Two implementations:

* :class:`LeanDojoEnv` runs the tactic in real Lean through `lean_dojo.Dojo` (needs a traced repository
  and a Lean toolchain), and :class:`provers.lean_interact_env.LeanInteractEnv` through the Lean REPL
  (lean-interact; recent Lean versions, where LeanDojo's Dojo is broken). Both share :class:`LeanSessionEnv`:
  separate start-up and tactic time-outs, a timed-out session is discarded (never reused), and a proof is
  labelled ``checked_by = "lean"`` only after :meth:`LeanSessionEnv.check_proof` had Lean accept it whole.
* :class:`ReplayEnv` answers from a recorded LeanDojo trace, the honest stand-in where Lean cannot run:
  a (state, tactic) pair the trace recorded gives the recorded next state; anything else is
  `Unverifiable`. Its proofs carry ``checked_by = "replay"`` and are "checked by replay of the recorded
  Lean trace", never "verified by Lean". It starts only from the theorem's own goal (:func:`replay_provable`).
"""
from __future__ import annotations

import abc
import re
from dataclasses import dataclass
import time
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

from common.errors import InputError
from common.lean_dojo_import import import_lean_dojo
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


class NotReplayable(EnvInitError):
    """Replay cannot prove this theorem: its trace does not start from the theorem's own goal."""


class EnvCrashError(RuntimeError):
    """The environment died mid-search (Lean crashed or ran out of memory): the search must stop."""


class TacticTimeout(Exception):
    """Raised by a backend's `_step` when Lean did not answer a tactic in time (the session is then unusable)."""


@runtime_checkable
class Env(Protocol):
    """A proof environment for one theorem, used as ``with env as e: e.run_tac(e.initial_state, tac)``."""

    checked_by: str  # "lean" | "replay"

    @property
    def initial_state(self) -> str: ...

    def run_tac(self, state: str, tactic: str) -> TacticResult: ...

    def check_proof(self, tactics: Sequence[str]) -> str | None:
        """Re-check a whole proof as one piece: None if accepted, else why not (the search calls it last)."""
        ...

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


def replay_unprovable_reason(theorem: Theorem) -> str | None:
    """Why replay cannot prove `theorem` honestly, or None when it can.

    A replay proof must start from the theorem's own goal and close every goal. The root goal of a Lean 4
    theorem is one anonymous goal, so a first traced state with a `case` tag or with several goals is a
    sub-goal of a proof that is not one top-level tactic block (e.g. `refine ... ?_` with nested `by` blocks,
    as in `List.mem_dedup`): closing it does not prove the theorem, and its hypotheses (a `this` only that
    sub-goal has) would let the search "prove" what Lean never saw.
    """
    if not theorem.tactics:
        return "no recorded tactic trace (term-mode proof)"
    first = theorem.tactics[0].state_before
    goals = first.count("⊢")
    if goals > 1:
        return f"the first traced state has {goals} goals, not the theorem's own single goal"
    head = first.lstrip().split("\n", 1)[0]
    if head.startswith("case "):
        return (f"the trace starts at the named sub-goal `{head}`, not at the theorem's own goal "
                "(its proof is not one top-level tactic block)")
    return None


def replay_provable(theorem: Theorem) -> bool:
    """Whether :class:`ReplayEnv` may attempt `theorem` (see :func:`replay_unprovable_reason`).

    Callers count the others separately ("not provable by replay"), never as failed or proved.
    """
    return replay_unprovable_reason(theorem) is None


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
        reason = replay_unprovable_reason(self.theorem)
        if reason is not None:
            raise NotReplayable(f"{self.theorem.full_name}: not provable by replay: {reason}; "
                                "proving it needs Lean (--env lean)")
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

    def check_proof(self, tactics: Sequence[str]) -> str | None:
        """Replay the whole proof from the theorem's own goal: it must end in `no goals` at its last tactic."""
        state = self.initial_state
        for i, tactic in enumerate(tactics):
            outcome = self.run_tac(state, tactic)
            if isinstance(outcome, Proved):
                return None if i == len(tactics) - 1 else f"goals closed before tactic {i + 2}"
            if not isinstance(outcome, Progress):
                return f"tactic {i + 1} ({tactic!r}) does not replay"
            state = outcome.state
        return "the proof leaves goals open"


def proof_block(tactics: Sequence[str], indent: int = 2) -> str:
    """A tactic proof as Lean source after `:=`: `by` and the tactics, one per line, each indented."""
    pad = " " * indent
    return "by\n" + "\n".join(pad + t.replace("\n", "\n" + pad) for t in tactics)


class LeanSessionEnv(abc.ABC):
    """The time-out and whole-proof discipline that every real-Lean backend shares.

    Why: Lean keeps running a timed-out tactic, and neither LeanDojo nor the REPL matches replies to requests,
    so a session that timed out can hand the *previous* reply to the next call (a false proof) or time out
    forever. After a time-out the session is therefore discarded and a fresh one started; a state of the old
    session is rebuilt on demand by replaying the tactic path that reached it (each step must give the same
    state again). After `max_restarts` restarts the theorem ends (:class:`EnvCrashError`).

    Start-up (`startup_timeout`: loading the file's imports, minutes for Mathlib) and tactics
    (`tactic_timeout`) have separate limits. Subclasses implement `_open`, `_step`, `_close`, `_check`.
    """

    checked_by = "lean"

    def __init__(self, theorem: Theorem, startup_timeout: float = 600.0, tactic_timeout: float = 5.0,
                 max_restarts: int = 2):
        self.theorem = theorem
        self.startup_timeout = startup_timeout
        self.tactic_timeout = tactic_timeout
        self.max_restarts = max_restarts
        self.restarts = 0
        self.startup_seconds = 0.0
        self._initial: str | None = None
        self._paths: dict[str, tuple[str, ...]] = {}   # state -> tactics from the initial state (all sessions)
        self._handles: dict[str, Any] = {}             # state -> backend handle, current session only
        self._open_now = False

    # -- backend hooks -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _open(self) -> tuple[str, Any]:
        """Start Lean on the theorem: (initial state text, its handle); EnvInitError when it cannot."""

    @abc.abstractmethod
    def _step(self, handle: Any, tactic: str) -> tuple[TacticResult, Any]:
        """Run `tactic` on `handle`: (result, handle of the new state or None); TacticTimeout on time-out."""

    @abc.abstractmethod
    def _close(self) -> None:
        """End the current Lean session (the next call opens a fresh one)."""

    @abc.abstractmethod
    def _check(self, tactics: Sequence[str]) -> str | None:
        """Lean's verdict on the whole proof as one piece of source: None = accepted, else why not."""

    # -- Env protocol ---------------------------------------------------------------------------------------
    @property
    def initial_state(self) -> str:
        if self._initial is None:
            raise RuntimeError(f"{type(self).__name__} used outside its `with` block")
        return self._initial

    def __enter__(self) -> "LeanSessionEnv":
        self._start()
        self._paths = {self._initial: ()}  # type: ignore[dict-item]
        return self

    def _start(self) -> None:
        t0 = time.monotonic()
        try:
            initial, handle = self._open()
        finally:
            self.startup_seconds += time.monotonic() - t0
        self._open_now = True
        if self._initial is not None and normalize(initial) != normalize(self._initial):
            raise EnvCrashError(f"{self.theorem.full_name}: Lean restarted in another initial state")
        self._initial = initial
        self._handles = {initial: handle}

    def _restart(self) -> None:
        """Discard the timed-out session (never reused) and start a fresh one, or end the theorem."""
        self._shutdown()
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise EnvCrashError(f"{self.theorem.full_name}: {self.restarts} tactic time-outs "
                                f"({self.tactic_timeout:g} s each); giving up on this theorem")
        try:
            self._start()
        except EnvInitError as exc:
            raise EnvCrashError(f"restart after a tactic time-out failed: {exc}") from None

    def _shutdown(self) -> None:
        if self._open_now:
            self._open_now = False
            self._handles = {}
            self._close()

    def __exit__(self, *exc: object) -> None:
        self._shutdown()
        self._initial = None
        self._paths = {}

    def _handle(self, state: str) -> Any | TacticResult:
        """The current session's handle of `state`, replaying its path after a restart."""
        if state in self._handles:
            return self._handles[state]
        path = self._paths.get(state)
        if path is None:
            raise KeyError(f"state not produced by this session: {state[:80]!r}")
        cur = self.initial_state
        for tactic in path:
            if cur not in self._handles:
                return LeanError("state lost with a discarded session")
            outcome = self._run(cur, tactic)
            if not isinstance(outcome, Progress):
                return LeanError(f"replaying the path after a restart failed at {tactic!r}")
            cur = outcome.state
        if normalize(cur) != normalize(state) or state not in self._handles:
            return LeanError("replaying the path after a restart reached another state")
        return self._handles[state]

    def _run(self, state: str, tactic: str) -> TacticResult:
        handle = self._handles[state]
        try:
            outcome, new_handle = self._step(handle, tactic)
        except TacticTimeout:
            self._restart()
            return LeanError(f"tactic timed out after {self.tactic_timeout:g} s (session discarded and restarted)")
        if isinstance(outcome, Progress):
            self._paths.setdefault(outcome.state, self._paths[state] + (tactic,))
            self._handles.setdefault(outcome.state, new_handle)
        return outcome

    def run_tac(self, state: str, tactic: str) -> TacticResult:
        if is_sorry_tactic(tactic):
            return LeanError("proof contains `sorry` (ProofGivenUp)")
        handle = self._handle(state)
        if isinstance(handle, (LeanError, Unverifiable)):
            return handle
        return self._run(state, tactic)

    def check_proof(self, tactics: Sequence[str]) -> str | None:
        """The final check: the proof found (possibly stitched through the transposition table) as one piece."""
        if not tactics or any(is_sorry_tactic(t) for t in tactics):
            return "empty proof or proof with `sorry`"
        try:
            return self._check(tactics)
        except EnvInitError as exc:
            return f"the whole-proof check could not run: {exc}"


def _import_lean_dojo():
    try:
        lean_dojo = import_lean_dojo()  # runs `git --version` at import; only imported here
    except ImportError:
        raise InputError("checking proofs with Lean needs LeanDojo: pip install 'lifelean[lean]', plus a Lean 4 "
                         "toolchain (elan) and a repository traced by LeanDojo") from None
    return lean_dojo


def _lean_failure(theorem: Theorem, exc: BaseException) -> str:
    from curriculum.tracing import explain_lean_failure

    return f"{theorem.full_name}: {explain_lean_failure(exc)}"


class LeanDojoEnv(LeanSessionEnv):
    """Runs tactics in real Lean via `lean_dojo.Dojo(Theorem(LeanGitRepo(url, commit), file_path, full_name))`.

    The repository must have been traced by LeanDojo at `theorem.url` (the URL that was traced, not LeanDojo's
    cache path: another URL is another cache key and a whole re-trace). Dojo's own `timeout` (pexpect) covers
    start-up and every interaction alike; it is set to `startup_timeout` for `__enter__`, then to
    `tactic_timeout` on the running process. The final check is LeanDojo's `check_proof` (the file with the
    proof in place, compiled by `lake env lean`). LeanDojo's Dojo is reported broken on Lean >= 4.19
    (LeanDojo issue #250): use `lean_backend = "lean-interact"` there.
    """

    def __init__(self, theorem: Theorem, repo_path: str | None = None, tactic_timeout: float = 5.0,
                 startup_timeout: float = 600.0, max_restarts: int = 2):
        super().__init__(theorem, startup_timeout=startup_timeout, tactic_timeout=tactic_timeout,
                         max_restarts=max_restarts)
        self.repo_path = repo_path or theorem.url
        self._dojo_cm: Any = None
        self._dojo: Any = None
        self._entry: Any = None

    def _lean_entry(self, ld: Any) -> Any:
        if self._entry is None:
            try:
                repo = ld.LeanGitRepo(self.repo_path, self.theorem.commit)
                self._entry = ld.Theorem(repo, self.theorem.file_path, self.theorem.full_name)
            except Exception as exc:   # GitHub API, network, git, invalid URL: one line per theorem
                raise EnvInitError(_lean_failure(self.theorem, exc)) from None
        return self._entry

    def _open(self) -> tuple[str, Any]:
        ld = _import_lean_dojo()
        cm = ld.Dojo(self._lean_entry(ld), timeout=max(1, int(round(self.startup_timeout))))
        try:
            dojo, init = cm.__enter__()
        except ld.DojoInitError as exc:
            raise EnvInitError(f"{self.theorem.full_name}: LeanDojo could not start it ({exc})") from None
        except Exception as exc:     # lake build, trace, missing toolchain, OOM ...
            raise EnvInitError(_lean_failure(self.theorem, exc)) from None
        self._dojo_cm, self._dojo = cm, dojo
        dojo.timeout = max(1, int(round(self.tactic_timeout)))
        proc = getattr(dojo, "proc", None)
        if proc is not None:
            proc.timeout = self.tactic_timeout   # pexpect's default for every later expect()
        return init.pp, init

    def _close(self) -> None:
        cm, self._dojo_cm, self._dojo = self._dojo_cm, None, None
        if cm is not None:
            try:
                cm.__exit__(None, None, None)
            except Exception:   # the process may already be gone; nothing of it is reused
                pass

    def _step(self, handle: Any, tactic: str) -> tuple[TacticResult, Any]:
        ld = _import_lean_dojo()
        try:
            result = self._dojo.run_tac(handle, tactic)
        except ld.DojoTacticTimeoutError:
            raise TacticTimeout() from None
        except ld.DojoCrashError as exc:
            raise EnvCrashError(f"Lean crashed while running {tactic!r}: {exc}") from None
        if isinstance(result, ld.ProofFinished):
            return Proved(), None
        if isinstance(result, ld.ProofGivenUp):
            return LeanError("proof contains `sorry` (ProofGivenUp)"), None
        if isinstance(result, ld.LeanError):
            return LeanError(result.error), None
        if isinstance(result, ld.TacticState):
            return Progress(result.pp), result
        return LeanError(f"unexpected LeanDojo result {type(result).__name__}"), None

    def _check(self, tactics: Sequence[str]) -> str | None:
        ld = _import_lean_dojo()
        try:
            ok = ld.check_proof(self._lean_entry(ld), proof_block(tactics))
        except Exception as exc:
            return f"LeanDojo check_proof failed: {_lean_failure(self.theorem, exc)}"
        return None if ok else "Lean rejected the whole proof (LeanDojo check_proof)"


LEAN_BACKENDS = ("leandojo", "lean-interact")
DOJO_LAST_GOOD = (4, 18)   # LeanDojo's Dojo is reported broken from Lean 4.19 on (LeanDojo issue #250)


def _lean_version_tuple(version: str | None) -> tuple[int, int] | None:
    m = re.search(r"(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def choose_lean_backend(configured: str, lean_version: str | None) -> str:
    """The backend to use: the configured one, or for "auto" the one that supports `lean_version`.

    LeanDojo up to Lean 4.18, lean-interact (the Lean REPL) from 4.19 on and when the version is unknown
    (the REPL follows Lean releases; LeanDojo's Dojo is not maintained for new ones).
    """
    if configured in LEAN_BACKENDS:
        return configured
    if configured != "auto":
        raise InputError(f"prover.lean_backend: expected one of auto, {', '.join(LEAN_BACKENDS)}; got {configured!r}")
    version = _lean_version_tuple(lean_version)
    return "leandojo" if version is not None and version <= DOJO_LAST_GOOD else "lean-interact"


def open_lean_env(theorem: Theorem, backend: str, lean_version: str | None = None, repo_path: str | None = None,
                  tactic_timeout: float = 5.0, startup_timeout: float = 600.0,
                  repl_configs: dict[str, Any] | None = None) -> LeanSessionEnv:
    """The real-Lean environment for `theorem` with the chosen backend (see :func:`choose_lean_backend`).

    `repl_configs` is a per-process cache of lean-interact set-ups by project (the caller owns it)."""
    chosen = choose_lean_backend(backend, lean_version)
    if chosen == "leandojo":
        return LeanDojoEnv(theorem, repo_path=repo_path, tactic_timeout=tactic_timeout,
                           startup_timeout=startup_timeout)
    from provers.lean_interact_env import LeanInteractEnv

    return LeanInteractEnv(theorem, project_dir=repo_path, tactic_timeout=tactic_timeout,
                           startup_timeout=startup_timeout, repl_configs=repl_configs)


def check_whole_proof(theorem: Theorem, tactics: Sequence[str], backend: str = "auto",
                      lean_version: str | None = None, repo_path: str | None = None,
                      timeout: float = 600.0) -> str | None:
    """Check one proof of `theorem` as one piece of Lean, outside any search: None = accepted, else why not.

    Used by `--export` to re-check what it writes (no result is labelled "lean" without Lean accepting it).
    """
    env = open_lean_env(theorem, backend, lean_version, repo_path, tactic_timeout=timeout, startup_timeout=timeout)
    return env.check_proof(tactics)
