"""Real Lean through the Lean REPL, driven by lean-interact (0.11.6): the backend for recent Lean versions.

LeanDojo's interactive Dojo is reported broken on Lean >= 4.19 (LeanDojo issue #250); the REPL follows Lean
releases. A session for one theorem is:

1. `Command(cmd=<the file up to the theorem>)` → `CommandResponse.env` (imports and earlier declarations,
   under the *start-up* time-out);
2. `Command(cmd=<the theorem's statement> := by sorry, env=...)` → its `Sorry.proof_state` and goal: the
   theorem's own goal, the initial state;
3. `ProofStep(proof_state=..., tactic=...)` → `ProofStepResponse` (`goals`, `proof_status`, `proof_state`)
   or a REPL `LeanError`, each under the *tactic* time-out. lean-interact kills the server when a request
   times out, so a time-out always ends the session (see :class:`provers.env.LeanSessionEnv`);
4. the final check: `Command(cmd=<statement> := by <the whole proof>, env=...)`, accepted only without
   errors and without `sorry`.

States are the goals joined by a blank line, as LeanDojo prints them, so they match traced states.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from common.errors import InputError
from curriculum.lean_data import Theorem
from provers.env import (EnvCrashError, EnvInitError, LeanError, LeanSessionEnv, Progress, Proved, TacticResult,
                         TacticTimeout, proof_block)

_OPEN, _CLOSE = "([{⟨⦃", ")]}⟩⦄"


def _import_lean_interact():
    try:
        import lean_interact  # noqa: F401
    except ImportError:
        raise InputError("lean_backend = 'lean-interact' needs lean-interact: pip install 'lifelean[lean]', "
                         "plus a Lean 4 toolchain (elan)") from None
    return lean_interact


def statement_end(text: str) -> int:
    """Index of the `:=` that starts the proof in a declaration's source: the first one outside brackets,
    comments and strings. -1 when there is none (pattern-matching or `where` definitions)."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j == -1 else j
            continue
        if text.startswith("/-", i):
            j = text.find("-/", i + 2)
            i = n if j == -1 else j + 2
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth = max(0, depth - 1)
        elif depth == 0 and text.startswith(":=", i):
            return i
        i += 1
    return -1


def split_source(source: str, theorem: Theorem) -> tuple[str, str]:
    """(the file before the theorem, the theorem's statement without `:=` and proof)."""
    lines = source.splitlines(keepends=True)
    if theorem.start.line > len(lines) or theorem.end.line > len(lines):
        raise EnvInitError(f"{theorem.full_name}: {theorem.file_path} has {len(lines)} lines, the theorem "
                           f"ends at line {theorem.end.line}; is the checkout at commit {theorem.commit[:12]}?")
    begin = sum(len(x) for x in lines[: theorem.start.line - 1]) + theorem.start.col - 1
    end = sum(len(x) for x in lines[: theorem.end.line - 1]) + theorem.end.col - 1
    decl = source[begin:max(end, begin)]
    cut = statement_end(decl)
    if cut == -1:
        raise EnvInitError(f"{theorem.full_name}: no `:=` in its source; pattern-matching and `where` "
                           "declarations cannot be proved in tactic mode")
    return source[:begin], decl[:cut].rstrip()


def goals_text(goals: Sequence[str]) -> str:
    """The REPL's goal list as one state text (LeanDojo's format: goals separated by a blank line)."""
    return "\n\n".join(g.strip() for g in goals)


class LeanInteractEnv(LeanSessionEnv):
    """Tactics in real Lean via the REPL (`lean_interact.LeanServer`), same protocol as `LeanDojoEnv`.

    `project_dir` is a local checkout of the theorem's repository at its commit (built by lake, or buildable);
    without it, `theorem.url` is used when it is a local directory, else lean-interact clones it
    (`GitProject(url, rev=commit)`). `repl_configs` (project key -> `LeanREPLConfig`, owned by the caller's
    `EnvFactory`) shares the set-up — a REPL build — among all theorems of a worker process.
    `server_factory` is the process boundary (tests replace it).
    """

    def __init__(self, theorem: Theorem, project_dir: str | None = None, tactic_timeout: float = 5.0,
                 startup_timeout: float = 600.0, max_restarts: int = 2, repl_config: Any = None,
                 server_factory: Callable[[], Any] | None = None, repl_configs: dict[str, Any] | None = None):
        super().__init__(theorem, startup_timeout=startup_timeout, tactic_timeout=tactic_timeout,
                         max_restarts=max_restarts)
        self.project_dir = project_dir or (theorem.url if Path(theorem.url).is_dir() else None)
        self._repl_configs = repl_configs if repl_configs is not None else {}
        self._project_key = self.project_dir or f"{theorem.url}@{theorem.commit}"
        self._repl_config = repl_config or self._repl_configs.get(self._project_key)
        self._server_factory = server_factory
        self._server: Any = None
        self._context_env: int | None = None
        self._statement: str | None = None

    # -- set-up ------------------------------------------------------------------------------------------
    def repl_config(self) -> Any:
        """The `LeanREPLConfig` of this theorem's project (built on first use)."""
        if self._repl_config is None:
            li = _import_lean_interact()
            try:
                if self.project_dir is not None:
                    project = li.LocalProject(directory=self.project_dir)
                else:
                    project = li.GitProject(url=self.theorem.url, rev=self.theorem.commit)
                self._repl_config = li.LeanREPLConfig(project=project)
                self._repl_configs[self._project_key] = self._repl_config
            except Exception as exc:
                from curriculum.tracing import explain_lean_failure

                raise EnvInitError(f"{self.theorem.full_name}: the Lean REPL could not be set up: "
                                   f"{explain_lean_failure(exc)}") from None
        return self._repl_config

    def _source_dir(self) -> Path:
        if self.project_dir is not None:
            return Path(self.project_dir)
        return Path(self.repl_config().working_dir)

    def _new_server(self) -> Any:
        if self._server_factory is not None:
            return self._server_factory()
        li = _import_lean_interact()
        try:
            return li.LeanServer(self.repl_config())
        except EnvInitError:
            raise
        except Exception as exc:
            raise EnvInitError(f"{self.theorem.full_name}: the Lean REPL did not start ({exc})") from None

    def _request(self, request: Any, timeout: float) -> Any:
        try:
            return self._server.run(request, timeout=timeout)
        except TimeoutError:
            raise TacticTimeout() from None
        except (ConnectionAbortedError, ChildProcessError, BrokenPipeError, MemoryError) as exc:
            raise EnvCrashError(f"the Lean REPL died: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                                ) from None

    def _ensure_context(self) -> None:
        """Start a server and elaborate the file up to the theorem (the start-up part)."""
        from lean_interact.interface import CommandResponse

        li = _import_lean_interact()
        if self._statement is None:
            path = self._source_dir() / self.theorem.file_path
            try:
                source = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise EnvInitError(f"{self.theorem.full_name}: cannot read {path} ({exc.strerror})") from None
            prefix, self._statement = split_source(source, self.theorem)
            self._prefix = prefix
        self._server = self._new_server()
        try:
            resp = self._request(li.Command(cmd=self._prefix or "-- empty context"), self.startup_timeout)
        except TacticTimeout:
            raise EnvInitError(f"{self.theorem.full_name}: loading {self.theorem.file_path} took more than "
                               f"{self.startup_timeout:g} s; raise prover.startup_timeout") from None
        except EnvCrashError as exc:
            raise EnvInitError(f"{self.theorem.full_name}: {exc}") from None
        if not isinstance(resp, CommandResponse):
            raise EnvInitError(f"{self.theorem.full_name}: the REPL rejected the file context: "
                               f"{getattr(resp, 'message', resp)}")
        self._context_env = resp.env

    # -- LeanSessionEnv hooks ----------------------------------------------------------------------------
    def _open(self) -> tuple[str, Any]:
        from lean_interact.interface import CommandResponse

        li = _import_lean_interact()
        self._ensure_context()
        try:
            resp = self._request(li.Command(cmd=f"{self._statement} := by sorry", env=self._context_env),
                             self.startup_timeout)
        except (TacticTimeout, EnvCrashError) as exc:
            raise EnvInitError(f"{self.theorem.full_name}: the REPL could not state the theorem ({exc})") from None
        if not isinstance(resp, CommandResponse) or not resp.sorries or resp.sorries[0].proof_state is None:
            errors = "; ".join(m.data for m in getattr(resp, "messages", []) if m.severity == "error")
            raise EnvInitError(f"{self.theorem.full_name}: the REPL gave no proof state for its statement"
                               f"{': ' + errors[:300] if errors else ''}")
        if resp.has_errors():
            errors = "; ".join(m.data for m in resp.get_errors())
            raise EnvInitError(f"{self.theorem.full_name}: its statement does not elaborate: {errors[:300]}")
        first = resp.sorries[0]
        return first.goal, first.proof_state

    def _step(self, handle: Any, tactic: str) -> tuple[TacticResult, Any]:
        from lean_interact.interface import LeanError as ReplError
        from lean_interact.interface import ProofStepResponse

        li = _import_lean_interact()
        resp = self._request(li.ProofStep(proof_state=handle, tactic=tactic), self.tactic_timeout)
        if isinstance(resp, ReplError):
            return LeanError(resp.message), None
        assert isinstance(resp, ProofStepResponse)
        if resp.has_errors():
            return LeanError("; ".join(m.data for m in resp.get_errors())), None
        if resp.sorries or "sorry" in resp.proof_status.lower():
            return LeanError("proof contains `sorry` (ProofGivenUp)"), None
        if resp.proof_status.startswith("Completed") and not resp.goals:
            return Proved(), None
        if not resp.goals:
            return LeanError(f"no goals left but the REPL says {resp.proof_status!r}"), None
        return Progress(goals_text(resp.goals)), resp.proof_state

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:
                server.kill()
            except Exception:   # already dead; nothing of it is reused
                pass

    def _check(self, tactics: Sequence[str]) -> str | None:
        from lean_interact.interface import CommandResponse

        li = _import_lean_interact()
        if self._server is None:
            self._ensure_context()
        code = f"{self._statement} := {proof_block(tactics)}"
        try:
            resp = self._request(li.Command(cmd=code, env=self._context_env), self.startup_timeout)
        except TacticTimeout:
            self._close()
            return f"the whole-proof check timed out after {self.startup_timeout:g} s"
        except EnvCrashError as exc:
            return f"the whole-proof check failed: {exc}"
        if not isinstance(resp, CommandResponse):
            return f"the REPL rejected the whole proof: {getattr(resp, 'message', resp)}"
        if not resp.lean_code_is_valid(allow_sorry=False):
            errors = "; ".join(m.data for m in resp.get_errors()) or "uses sorry"
            return f"Lean rejected the whole proof: {errors[:300]}"
        return None
