"""A workspace: one lifelong run on disk, resumable at any step.

Layout (`workspaces/<name>/`): `lifelean.toml` (config), `state.json` (schema-versioned progress),
`repos/` (imported repositories, zstd JSON), `chroma/` (premise store), `bank/` (memory bank),
`checkpoints/`, `metrics.jsonl`, `proofs.jsonl`, `reports/`, and `.lock`.

Every write goes through :mod:`common.atomic`; mutating commands hold `.lock` (a `filelock.FileLock`
taken without waiting) so a second process fails at once instead of interleaving writes. The lock
file is created with the workspace and never removed, so failed commands leave the tree byte-identical.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from agent.config import CONFIG_FILE, RunConfig, load_config, save_config
from agent.workspace.state import PHASES, StreamEntry, WorkspaceState
from common.atomic import atomic_write_json, read_json
from common.errors import WorkspaceBusy, WorkspaceError

STATE_FILE = "state.json"
DEFAULT_WORKSPACE = Path("workspaces") / "default"


def default_workspace_path() -> Path:
    """`$LIFELEAN_WORKSPACE` if set, else `workspaces/default` (read at call time, never at import)."""
    return Path(os.environ.get("LIFELEAN_WORKSPACE") or DEFAULT_WORKSPACE)


@dataclass
class Workspace:
    root: Path

    # -- paths ------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    @property
    def repos_dir(self) -> Path:
        return self.root / "repos"

    @property
    def chroma_dir(self) -> Path:
        return self.root / "chroma"

    @property
    def bank_dir(self) -> Path:
        return self.root / "bank"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def proofs_path(self) -> Path:
        return self.root / "proofs.jsonl"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def repo_data_path(self, key: str) -> Path:
        return self.repos_dir / f"{self._key_slug(key)}.json.zst"

    def premise_vectors_path(self, key: str) -> Path:
        """Entry `key`'s premise table with its stored vectors, for bulk reads (memory/premise_vectors.py)."""
        return self.root / "premise_vectors" / f"{self._key_slug(key)}.npz"

    @staticmethod
    def _key_slug(key: str) -> str:
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:60]
        return f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"

    # -- life cycle -------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return self.state_path.exists()

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None, create: bool = False) -> "Workspace":
        """Open a workspace; with `create`, make it (config with defaults, empty state) if it is new.

        A writer that may create the workspace should rather take :meth:`lock` with ``create=True``, which
        makes the directory, takes the lock, and only then writes the first files.
        """
        ws = cls(Path(root) if root is not None else default_workspace_path())
        if ws.root.exists() and not ws.root.is_dir():
            raise WorkspaceError(f"{ws.root}: exists and is not a directory")
        if not ws.exists:
            if not create:
                raise WorkspaceError(f"{ws.root}: no lifelean workspace here; start one with `lifelean add SOURCE`")
            with ws.lock(create=True):
                pass
        return ws

    def _initialize(self) -> None:
        """First files of a new workspace; called with the lock held."""
        if not self.config_path.exists():
            save_config(RunConfig(), self.config_path)
        if not self.exists:
            atomic_write_json(self.state_path, WorkspaceState().to_json())

    @contextlib.contextmanager
    def lock(self, create: bool = False) -> Iterator["Workspace"]:
        """Hold the workspace for the whole life of a writer; a second holder fails at once, naming the first.

        With `create`, a new workspace is made *inside* the lock, so no other command can see it half-made.
        """
        if self.root.exists() and not self.root.is_dir():
            raise WorkspaceError(f"{self.root}: exists and is not a directory")
        if not self.exists and not create:
            raise WorkspaceError(f"{self.root}: no lifelean workspace here; start one with `lifelean add SOURCE`")
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise WorkspaceBusy(
                f"{self.root}: another lifelean process is using this workspace ({self._holder()}); "
                "wait for it to finish or stop it"
            ) from None
        try:
            self._write_holder()
            if create:
                self._initialize()
            yield self
        finally:
            lock.release()

    @property
    def holder_path(self) -> Path:
        return self.root / ".lock.holder"

    def _write_holder(self) -> None:
        import sys
        import time

        info = {"pid": os.getpid(), "command": " ".join(["lifelean", *sys.argv[1:]])[:200],
                "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_json(self.holder_path, info)

    def _holder(self) -> str:
        """Who holds the lock, as far as its holder wrote it down."""
        try:
            info = read_json(self.holder_path, "lock holder")
            return f"pid {info['pid']}, `{info['command']}`, since {info['since']}"
        except Exception:  # noqa: BLE001 - best effort: the lock itself is what protects the workspace
            return f"lock {self.lock_path}"

    # -- config and state -------------------------------------------------------------------
    def config(self) -> RunConfig:
        return load_config(self.config_path)

    def save_config(self, config: RunConfig) -> None:
        save_config(config, self.config_path)

    def load_state(self) -> WorkspaceState:
        return WorkspaceState.from_json(read_json(self.state_path, "workspace state"), self.state_path)

    def save_state(self, state: WorkspaceState) -> None:
        atomic_write_json(self.state_path, state.to_json())

    # -- repositories -----------------------------------------------------------------------
    def load_repository(self, key: str):
        """The imported :class:`~curriculum.lean_data.Repository` of `key`."""
        from curriculum.repo_io import load_repository

        return load_repository(self.repo_data_path(key))

    def load_repositories(self, entries: list[StreamEntry]) -> list:
        return [self.load_repository(e.key) for e in entries]

    def mark_phase(self, state: WorkspaceState, entry: StreamEntry, phase: str) -> None:
        """Record `phase` of `entry` as done; call only after the phase's outputs are durable."""
        assert phase in PHASES
        entry.phases[phase] = "done"
        self.save_state(state)
