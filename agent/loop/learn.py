"""Step `learn`: progressive fine-tuning of the retriever (and, when configured, the generator) on one
repository with the configured stability-plasticity strategies (LeanAgent's progressive training).

Checkpoints chain: step i starts from the newest checkpoint of a step < i (weights, optimizer and strategy
state) and writes `checkpoints/<i>/` atomically, so a run killed anywhere and resumed retrains step i from the
same inputs and reaches identical weights. While a repository trains, its position is snapshotted every ~10 s
(`checkpoints/partial-*`), so a Ctrl-C loses at most that much training; the resumed step still ends identical. Replay draws only from repositories learned before this step.
"""
from __future__ import annotations

import random
import shutil
from typing import Any, Collection

from agent.learn.learner import cap_examples
from agent.loop.context import LoopContext
from agent.workspace import StreamEntry
from agent.workspace.checkpoints import (PROVER_MODEL_DIR, checkpoint_dir, latest_checkpoint,
                                         prune_checkpoints)
from common.atomic import append_jsonl
from common.errors import InputError
from curriculum.lean_data import Repository


class AllowedRepos:
    """A replay source that samples the bank's repository-balanced reservoir over `names` only, at the source,
    so early steps get the full configured replay ratio (issue "Results you can trust", item 6)."""

    def __init__(self, bank: Any, names: Collection[str], need_premises: bool):
        self.bank = bank
        self.names = sorted(names)
        self.need_premises = need_premises

    def sample(self, n: int, rng: random.Random, exclude_repo: str | None = None) -> list[Any]:
        names = [r for r in self.names if r != exclude_repo]
        if not names:
            return []
        return self.bank.sample(n, rng, exclude_repo=exclude_repo, repos=names, kind="step",
                                need_premises=self.need_premises)


def replay_source(ctx: LoopContext, step: int, need_premises: bool = True) -> AllowedRepos | None:
    """The bank's steps of repositories learned before `step`; the retriever needs steps that name premises."""
    if "replay" not in ctx.config.learning.strategy:
        return None
    return AllowedRepos(ctx.bank(), ctx.learned_names(step - 1), need_premises)


def partial_dir(ctx: LoopContext, step: int, kind: str = "retriever") -> Any:
    """Where a step's mid-repository training snapshot lives until its checkpoint is durable."""
    return ctx.ws.checkpoints_dir / f"partial-{kind}-{step:04d}"


def _batch_reporter(ctx: LoopContext, repo: Repository) -> Any:
    def report(done: int, total: int, loss: float) -> None:
        ctx.report("batch", {"repo": repo.name, "done": done, "total": total, "loss": loss})
    return report


def step_learn(ctx: LoopContext, entry: StreamEntry, repo: Repository) -> dict[str, Any]:
    ctx.weights_changed()   # drop the last evaluation's query tower now: training builds its own (~0.1 GB less)
    stats = learn_retriever(ctx, entry, repo)
    if ctx.config.learning.train_generator:
        stats.update(learn_generator(ctx, entry, repo))
    ctx.weights_changed()
    return stats


def learn_retriever(ctx: LoopContext, entry: StreamEntry, repo: Repository) -> dict[str, Any]:
    from agent.learn.retriever import RetrieverLearner, training_pairs
    from agent.learn.strategies import build_strategies
    from agent.workspace.memory import base_encoder

    step, seed, config = entry.step, ctx.config.seed, ctx.config
    assert step is not None
    final = checkpoint_dir(ctx.ws, step)
    partial = partial_dir(ctx, step)
    previous = latest_checkpoint(ctx.ws, before=step)
    if config.learning.processes > 1:   # torchrun + DDP; rank 0 writes `final` atomically with learner.save
        from agent.learn.distributed import train_distributed

        stats = train_distributed(ctx.ws, config, step, config.learning.processes, out=final,
                                  on_batch=_batch_reporter(ctx, repo))
    else:
        corpus = ctx.corpus()
        strategies = build_strategies(config.learning, replay_source=replay_source(ctx, step))
        learner = RetrieverLearner(base_encoder(config), config.learning, corpus, strategies)
        if previous is not None:
            learner.load(previous)
        pairs = cap_examples(training_pairs(repo, corpus.index), config.learning.max_examples, f"{seed}:{step}")
        stats = learner.train_repository(repo.name, pairs, step, seed, partial=partial,
                                         snapshot_seconds=config.learning.snapshot_seconds,
                                         on_batch=_batch_reporter(ctx, repo))
        learner.save(final, {"step": step, "repo": repo.key, "seed": seed,
                             "from": previous.name if previous is not None else None}, release=True)
        stats["encoder_version"] = learner.query.version
    shutil.rmtree(partial, ignore_errors=True)
    append_jsonl(ctx.ws.metrics_path, {
        "kind": "learn", "step": step, "repo": entry.key, "model": "retriever",
        **{k: stats.get(k) for k in ("loss_first", "loss_last", "loss_mean", "examples", "batches", "epochs",
                                     "seconds")}, "terms": stats.get("terms", {})})
    stats["checkpoint"] = str(final)
    stats["pruned"] = prune_checkpoints(ctx.ws, keep=config.learning.keep_checkpoints, upto=step)
    return stats


def learn_generator(ctx: LoopContext, entry: StreamEntry, repo: Repository) -> dict[str, Any]:
    """LoRA-fine-tune the `hf` generator on the repository's (premises + state -> tactic) pairs with the same
    strategies as the retriever: the adapter, its optimizer and the strategies' state chain from step to step;
    a merged copy is saved beside it for the prover. `frozen` writes nothing: the generator stays the base."""
    from agent.learn.generator import GeneratorLearner, train_generator_on_repository
    from agent.learn.strategies import build_strategies
    from provers.generators.hf import load_model

    config = ctx.config
    step = entry.step
    assert step is not None
    if config.prover.generator != "hf" or not config.prover.model:
        raise InputError("[learning] train_generator needs [prover] generator = 'hf' and a [prover] model to start from")
    model, tokenizer, seq2seq = load_model(config.prover.model)
    strategies = build_strategies(config.learning, replay_source=replay_source(ctx, step, need_premises=False))
    learner = GeneratorLearner(model, tokenizer, seq2seq, config.learning, strategies)
    if not learner.trains:
        return {"generator": "frozen"}
    previous = latest_checkpoint(ctx.ws, before=step, kind="generator")
    if previous is not None:
        learner.load(previous)
    partial = partial_dir(ctx, step, kind="generator")
    stats = train_generator_on_repository(learner, repo, step, config.seed, partial=partial,
                                          snapshot_seconds=config.learning.snapshot_seconds)

    def merged_copy(tmp: Any) -> None:
        """Runs after the adapter, optimizer and strategy state are written: merging in place is then safe
        (the learner is not used again) and needs no second copy of the model."""
        from agent.learn.strategies.adapters import select_adapter

        select_adapter(learner.model, None)
        learner.model.merge_and_unload().save_pretrained(tmp / PROVER_MODEL_DIR)
        tokenizer.save_pretrained(tmp / PROVER_MODEL_DIR)

    final = checkpoint_dir(ctx.ws, step, kind="generator")
    learner.save(final, {"step": step, "repo": repo.key, "seed": config.seed, "base": config.prover.model,
                         "from": previous.name if previous is not None else None}, extra=merged_copy, release=True)
    shutil.rmtree(partial, ignore_errors=True)
    prune_checkpoints(ctx.ws, keep=config.learning.keep_checkpoints, upto=step, kind="generator")
    return {"generator_checkpoint": str(final),
            **{f"generator_{k}": v for k, v in stats.items() if isinstance(v, (int, float))}}
