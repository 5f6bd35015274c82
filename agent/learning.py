"""Workspace glue for learning: train the retriever on one repository, load the current query tower, score a row.

Checkpoints are chained: step i starts from the newest complete checkpoint of an earlier step (its weights,
optimizer and strategy state) and writes `checkpoints/<i:04d>/` atomically, so a run killed anywhere and resumed
retrains step i from exactly the same inputs and reaches identical weights. A directory counts as a checkpoint
only when it has `meta.json`; half-written ones are `.tmp-*` and are ignored.
"""
from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

from agent.config import RunConfig
from agent.evaluate import VectorIndex, retrieval_scores
from agent.retriever import Corpus, RetrieverLearner, cap_examples, training_pairs
from agent.strategies import build_strategies
from agent.strategies.adapters import select_adapter
from agent.workspace import Workspace
from curriculum.lean_data import Repository
from memory.embedder import Encoder

_STEP_DIR = re.compile(r"^\d{4,}$")


def checkpoints(ws: Workspace) -> list[tuple[int, Path]]:
    """Complete checkpoints (step, directory), oldest first."""
    if not ws.checkpoints_dir.is_dir():
        return []
    out = [(int(p.name), p) for p in ws.checkpoints_dir.iterdir()
           if p.is_dir() and _STEP_DIR.match(p.name) and (p / "meta.json").is_file()]
    return sorted(out)


def latest_checkpoint(ws: Workspace, before: int | None = None) -> Path | None:
    """The newest complete checkpoint, or the newest of a step < `before`."""
    found = [p for s, p in checkpoints(ws) if before is None or s < before]
    return found[-1] if found else None


class _OnlyRepos:
    """A replay source restricted to repositories learned before (the bank may already hold later ones)."""

    def __init__(self, source: Any, names: set[str]):
        self.source = source
        self.names = names

    def sample(self, n: int, rng: random.Random, exclude_repo: str | None = None) -> list[Any]:
        items = self.source.sample(4 * n, rng, exclude_repo=exclude_repo)
        return [x for x in items if x.repo in self.names][:n]


def _learner(ws: Workspace, config: RunConfig, corpus: Corpus, replay_source: Any = None) -> RetrieverLearner:
    from agent.memory_ops import base_encoder

    strategies = build_strategies(config.learning, replay_source=replay_source)
    return RetrieverLearner(base_encoder(config), config.learning, corpus, strategies)


def workspace_corpus(ws: Workspace, state: dict[str, Any] | None = None,
                     extra: Sequence[Repository] = ()) -> Corpus:
    """All premises of the workspace's repositories (and `extra`): the candidates of training and evaluation."""
    return Corpus.from_repositories([*ws.load_repositories(state), *extra])


def learn_repository(ws: Workspace, config: RunConfig, state: dict[str, Any], repo: Repository, step: int,
                     seed: int, replay_repos: Sequence[str] | None = None) -> dict[str, Any]:
    """Train the retriever on `repo` with the configured strategies and save checkpoint `step`.

    `replay_repos` (repository keys) limits replay to repositories learned before this step.
    """
    from agent.memory_ops import open_bank, open_store

    corpus = workspace_corpus(ws, state, extra=[repo])
    source = None
    if "replay" in config.learning.strategy:
        source = open_bank(ws, config)
        if replay_repos is not None:
            source = _OnlyRepos(source, {k.rsplit("@", 1)[0] for k in replay_repos})
    learner = _learner(ws, config, corpus, source)
    previous = latest_checkpoint(ws, before=step)
    if previous is not None:
        learner.load(previous)
    pairs = cap_examples(training_pairs(repo, corpus.index), config.learning.max_examples, f"{seed}:{step}")
    stats = learner.train_repository(repo.name, pairs, step, seed)
    final = ws.checkpoints_dir / f"{step:04d}"
    learner.save(final, {"step": step, "repo": repo.key, "seed": seed,
                         "from": previous.name if previous is not None else None})
    if config.learning.tune == "both" and learner.trains:
        store = open_store(ws, config, encoder=learner.query)
        for r in ws.load_repositories(state):
            store.add_repo(r)
        stats["reembedded"] = store.count()
    stats["checkpoint"] = str(final)
    stats["pruned"] = prune_checkpoints(ws, keep=config.learning.keep_checkpoints, upto=step)
    stats["encoder_version"] = learner.query.version
    return stats


def load_query_encoder(ws: Workspace, config: RunConfig, repo: str | None = None) -> Encoder:
    """The query tower of the newest checkpoint (or the base encoder before any); with `adapters`, the
    adapter of repository name `repo` (unknown or None: the merged adapter)."""
    from agent.memory_ops import base_encoder

    latest = latest_checkpoint(ws) if ws.exists else None
    if latest is None:
        return base_encoder(config)
    learner = RetrieverLearner(base_encoder(config), config.learning, Corpus([], [], []),
                               build_strategies(config.learning))
    meta = learner.load(latest)
    if not meta.get("weights", True):
        return base_encoder(config)
    select_adapter(learner.model, repo)
    learner.model.eval()
    learner.query.reset_version()
    return learner.query


def document_encoder(config: RunConfig, query: Encoder) -> Encoder:
    """The tower premises are embedded with: the frozen base (tune = "query") or the query tower ("both")."""
    from agent.memory_ops import base_encoder

    return query if config.learning.tune == "both" else base_encoder(config)


def evaluate_row(ws: Workspace, config: RunConfig, repos: Sequence[Repository], query_encoder: Encoder | None = None,
                 splits: Sequence[str] = ("test",), store: Any = None) -> dict[str, dict[str, Any]]:
    """Retrieval scores of each repository's held-out theorems: one row of the accuracy matrix.

    Without `query_encoder`, each repository gets its own query tower (its adapter, when `adapters` is on).
    `store` defaults to the workspace premise store under the document tower's version.
    """
    from agent.memory_ops import open_store

    row: dict[str, dict[str, Any]] = {}
    for repo in repos:
        enc = query_encoder or load_query_encoder(ws, config, repo=repo.name)
        index = store if store is not None else open_store(ws, config, encoder=document_encoder(config, enc))
        row[repo.key] = retrieval_scores(enc, index, repo.theorems_in(*splits))
    return row


def in_memory_index(corpus: Corpus, encoder: Encoder) -> VectorIndex:
    """Premise vectors of `corpus` under `encoder`, held in memory (scoring without a workspace store)."""
    return VectorIndex.build(corpus.names, corpus.texts, encoder)


def prune_checkpoints(ws: Workspace, keep: int, upto: int) -> int:
    """Delete all but the `keep` newest checkpoints of steps <= `upto`: resuming needs only the newest one
    (training of step i+1 starts from checkpoint i), and each holds weights plus optimizer state."""
    old = [p for s, p in checkpoints(ws) if s <= upto][:-max(keep, 1)]
    for p in old:
        shutil.rmtree(p)
    return len(old)


def remove_checkpoints_after(ws: Workspace, step: int) -> int:
    """Delete checkpoints of steps > `step` (a rerun from `step` must not load them); returns how many."""
    gone = 0
    for s, p in checkpoints(ws):
        if s > step:
            shutil.rmtree(p)
            gone += 1
    return gone


# ------------------------------------------------------------------------------------------------
# Generator fine-tuning inside the loop


def generator_checkpoints(ws: Workspace) -> list[tuple[int, Path]]:
    """Complete generator checkpoints `checkpoints/generator/<step>/` (full HF model dirs), oldest first."""
    root = ws.checkpoints_dir / "generator"
    if not root.is_dir():
        return []
    return sorted((int(p.name), p) for p in root.iterdir()
                  if p.is_dir() and _STEP_DIR.match(p.name) and (p / "config.json").is_file())


def current_generator_model(ws: Workspace, config: RunConfig) -> str | None:
    """The generator the prover should load: the newest fine-tuned one, else `[prover] model`."""
    found = generator_checkpoints(ws)
    return str(found[-1][1]) if found else config.prover.model


def learn_generator(ws: Workspace, config: RunConfig, repo: Repository, step: int, seed: int) -> dict[str, Any]:
    """LoRA-fine-tune the `hf` generator on `repo`'s (premises + state -> tactic) pairs, then merge the
    adapter into the weights and save the whole model as checkpoint `step` (atomically). The next
    repository starts from it, as the retriever's checkpoints chain (LeanAgent's progressive training)."""
    from agent.generator_training import GeneratorLearner, train_generator_on_repository
    from common.errors import InputError
    from provers.generators.hf import load_model

    if config.prover.generator != "hf" or not config.prover.model:
        raise InputError("[learning] train_generator needs [prover] generator = 'hf' and a [prover] model to start from")
    previous = [p for s, p in generator_checkpoints(ws) if s < step]
    start = str(previous[-1]) if previous else config.prover.model
    model, tokenizer, seq2seq = load_model(start)
    learner = GeneratorLearner(model, tokenizer, seq2seq, config.learning)
    stats = train_generator_on_repository(learner, repo, step, seed)
    merged = learner.model.merge_and_unload()
    final = ws.checkpoints_dir / "generator" / f"{step:04d}"
    tmp = final.parent / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    for _, old in [c for c in generator_checkpoints(ws) if c[0] <= step][:-max(config.learning.keep_checkpoints, 1)]:
        shutil.rmtree(old)
    return {"generator_checkpoint": str(final), "generator_from": start,
            **{f"generator_{k}": v for k, v in stats.items() if isinstance(v, (int, float))}}
