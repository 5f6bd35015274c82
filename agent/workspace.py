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
from typing import Any, Iterator

from filelock import FileLock, Timeout

from agent.config import CONFIG_FILE, RunConfig, load_config, save_config
from common.atomic import atomic_write_json, read_json
from common.errors import WorkspaceBusy, WorkspaceError

SCHEMA_VERSION = 1
STATE_FILE = "state.json"
DEFAULT_WORKSPACE = Path("workspaces") / "default"
STEPS = ("index", "learn", "prove", "bank", "evaluate")


def default_workspace_path() -> Path:
    """`$LIFELEAN_WORKSPACE` if set, else `workspaces/default` (read at call time, never at import)."""
    return Path(os.environ.get("LIFELEAN_WORKSPACE") or DEFAULT_WORKSPACE)


def empty_state() -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "sources": [],          # [{"source", "kind", "options": {...}}] in the order added
        "repos": [],            # [{"key", "name", "url", "commit", "data_file", "theorems", "premises", "files", ...}]
        "curriculum": None,     # {"strategy", "order": [keys], "p33_steps", "p67_steps", "repos": [...]}
        "run": None,            # {"seed", "options": {...}} of the last `run`
        "steps": {},            # {repo key: {step: "done"}}
        "forgotten": [],        # [{"repo", "commit", "at"}]
    }


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
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:60]
        return self.repos_dir / f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.json.zst"

    # -- life cycle -------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return self.state_path.exists()

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None, create: bool = False) -> "Workspace":
        """Open a workspace; with `create`, make it (config with defaults, empty state) if it is new."""
        ws = cls(Path(root) if root is not None else default_workspace_path())
        if ws.root.exists() and not ws.root.is_dir():
            raise WorkspaceError(f"{ws.root}: exists and is not a directory")
        if not ws.exists:
            if not create:
                raise WorkspaceError(f"{ws.root}: no lifelean workspace here; start one with `lifelean add SOURCE`")
            ws.root.mkdir(parents=True, exist_ok=True)
            ws.lock_path.touch(exist_ok=True)
            if not ws.config_path.exists():
                save_config(RunConfig(), ws.config_path)
            atomic_write_json(ws.state_path, empty_state())
        return ws

    @contextlib.contextmanager
    def lock(self) -> Iterator["Workspace"]:
        """Hold the workspace for a mutating command; a second holder fails at once."""
        self.lock_path.touch(exist_ok=True)
        lock = FileLock(str(self.lock_path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise WorkspaceBusy(
                f"{self.root}: another lifelean process is using this workspace (lock {self.lock_path}); "
                "wait for it to finish or stop it"
            ) from None
        try:
            yield self
        finally:
            lock.release()

    # -- config and state -------------------------------------------------------------------
    def config(self) -> RunConfig:
        return load_config(self.config_path)

    def save_config(self, config: RunConfig) -> None:
        save_config(config, self.config_path)

    def load_state(self) -> dict[str, Any]:
        state = read_json(self.state_path, "workspace state")
        if not isinstance(state, dict) or "schema_version" not in state:
            raise WorkspaceError(f"{self.state_path}: not a lifelean state file (no schema_version); "
                                 "restore it from a backup or start a new workspace")
        version = state["schema_version"]
        if version != SCHEMA_VERSION:
            raise WorkspaceError(f"{self.state_path}: schema version {version} is not supported by this lifelean "
                                 f"(expects {SCHEMA_VERSION}); use a matching lifelean version")
        base = empty_state()
        base.update(state)
        return base

    def save_state(self, state: dict[str, Any]) -> None:
        state["schema_version"] = SCHEMA_VERSION
        atomic_write_json(self.state_path, state)

    # -- repositories -----------------------------------------------------------------------
    def repo_entries(self, state: dict[str, Any] | None = None, include_forgotten: bool = False) -> list[dict[str, Any]]:
        state = state if state is not None else self.load_state()
        return [r for r in state["repos"]
                if include_forgotten or not (r.get("forgotten") or r.get("superseded_by"))]

    def load_repository(self, key: str):
        """The imported :class:`~curriculum.lean_data.Repository` of `key`."""
        from curriculum.repo_io import load_repository

        return load_repository(self.repo_data_path(key))

    def load_repositories(self, state: dict[str, Any] | None = None) -> list:
        return [self.load_repository(r["key"]) for r in self.repo_entries(state)]

    def step_done(self, state: dict[str, Any], key: str, step: str) -> bool:
        return state["steps"].get(key, {}).get(step) == "done"

    def mark_step(self, state: dict[str, Any], key: str, step: str) -> None:
        """Record `step` of repository `key` as done; call only after the step's outputs are durable."""
        state["steps"].setdefault(key, {})[step] = "done"
        self.save_state(state)
