"""Checkpoints of a workspace: `checkpoints/<step>/` (retriever) and `checkpoints/generator/<step>/`.

`<step>` is the permanent step id of the stream entry that wrote it, so a checkpoint always belongs to the
repository that produced it. Each is written with :func:`common.atomic.atomic_directory`: it appears
complete or not at all, and replacing one never deletes the old copy before the new one is in place.
Training of step i starts from the newest checkpoint of a step < i, which is all resuming needs.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from agent.config import RunConfig
from agent.workspace.workspace import Workspace
from common.atomic import clean_stale_directories
from memory.embedder import Encoder

_STEP_DIR = re.compile(r"^\d{4,}$")


def checkpoint_dir(ws: Workspace, step: int, kind: str = "retriever") -> Path:
    root = ws.checkpoints_dir if kind == "retriever" else ws.checkpoints_dir / kind
    return root / f"{step:04d}"


def checkpoints(ws: Workspace, kind: str = "retriever") -> list[tuple[int, Path]]:
    """Complete checkpoints (step, directory), oldest first (a reader: nothing is written)."""
    root = ws.checkpoints_dir if kind == "retriever" else ws.checkpoints_dir / kind
    if not root.is_dir():
        return []
    return sorted((int(p.name), p) for p in root.iterdir()
                  if p.is_dir() and _STEP_DIR.match(p.name) and (p / "meta.json").is_file())


def latest_checkpoint(ws: Workspace, before: int | None = None, kind: str = "retriever") -> Path | None:
    """The newest complete checkpoint, or the newest of a step < `before`."""
    found = [p for s, p in checkpoints(ws, kind) if before is None or s < before]
    return found[-1] if found else None


def prune_checkpoints(ws: Workspace, keep: int, upto: int, kind: str = "retriever") -> int:
    """Delete all but the `keep` newest checkpoints of steps <= `upto` (each holds weights and optimizer
    state; resuming needs only the newest, and the config refuses `keep` < 1)."""
    old = [p for s, p in checkpoints(ws, kind) if s <= upto][:-keep]
    for p in old:
        shutil.rmtree(p)
    return len(old)


def recover_checkpoints(ws: Workspace) -> None:
    """Finish checkpoint swaps a crash interrupted (writers only, under the lock)."""
    for root in (ws.checkpoints_dir, ws.checkpoints_dir / "generator"):
        clean_stale_directories(root)


def load_query_encoder(ws: Workspace, config: RunConfig, repo: str | None = None) -> Encoder:
    """The query tower of the newest checkpoint (or the base encoder before any); with `adapters`, the
    adapter of repository name `repo` (unknown or None: the merged adapter)."""
    learner = load_query_learner(ws, config)
    return base_encoder_of(config) if learner is None else select_query_adapter(learner, repo)


def base_encoder_of(config: RunConfig) -> Encoder:
    from agent.workspace.memory import base_encoder

    return base_encoder(config)


def load_query_learner(ws: Workspace, config: RunConfig) -> Any:
    """The newest checkpoint's retriever learner, weights only (no optimizer), in eval mode; None before
    any checkpoint or when the newest holds no weights (`frozen`). With `adapters` it holds every adapter,
    so a caller selects them per repository without loading the checkpoint again."""
    from agent.learn.retriever import Corpus, RetrieverLearner
    from agent.learn.strategies import build_strategies
    from agent.workspace.memory import MEMO_TEXTS

    latest = latest_checkpoint(ws) if ws.exists else None
    if latest is None:
        return None
    learner = RetrieverLearner(base_encoder_of(config), config.learning, Corpus([], [], []),
                               build_strategies(config.learning))
    meta = learner.load(latest, with_optimizer=False)
    if not meta.get("weights", True):
        return None
    learner.model.eval()
    learner.query.remember(MEMO_TEXTS)
    return learner


def select_query_adapter(learner: Any, repo: str | None) -> Encoder:
    """`learner`'s query tower with the adapter of repository `repo` active (unknown or None: the merged one;
    a no-op without adapters). The tower's version and memo follow the selection."""
    from agent.learn.strategies.adapters import select_adapter

    select_adapter(learner.model, repo)
    learner.query.reset_version()
    return learner.query


PROVER_MODEL_DIR = "prover"


def current_generator_model(ws: Workspace, config: RunConfig) -> str | None:
    """The generator the prover should load: the newest fine-tuned one (its merged copy), else `[prover] model`."""
    latest = latest_checkpoint(ws, kind="generator")
    if latest is not None and (latest / PROVER_MODEL_DIR / "config.json").is_file():
        return str(latest / PROVER_MODEL_DIR)
    return config.prover.model
