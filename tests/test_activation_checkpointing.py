"""Activation checkpointing in retriever training (issue 10, memory): each transformer layer is recomputed in
the backward pass instead of keeping its activations, and the trained weights are exactly those of training
without it. Checked as behaviour (layer passes counted, weights compared), never as timings or RSS."""
from __future__ import annotations

import torch

from agent.learn.config import LearningConfig
from agent.learn.learner import cap_examples
from agent.learn.retriever import Corpus, RetrieverLearner, training_pairs
from agent.learn.strategies import build_strategies
from memory.embedder import Encoder


def _learner(encoder: Encoder, corpus: Corpus, checkpointing: bool, kept_tokens: int = 0) -> RetrieverLearner:
    cfg = LearningConfig(strategy=["replay", "distill"], batch_size=8, micro_batch=2, lr=1e-4, mined_negatives=4,
                         activation_checkpointing=checkpointing, kept_activation_tokens=kept_tokens)
    short = Encoder(encoder.model, encoder.tokenizer, encoder.name, max_length=48)
    return RetrieverLearner(short, cfg, corpus, build_strategies(cfg))


class LayerPasses:
    """Counts forward passes through the first transformer layer's attention (recomputations included: the
    checkpoint re-runs the layer's insides, not the hooks of the layer module itself)."""

    def __init__(self, model: torch.nn.Module):
        self.count = 0
        inside = model.encoder.layer[0].attention
        self.handle = inside.register_forward_hook(lambda *_: setattr(self, "count", self.count + 1))


def test_checkpointed_training_recomputes_each_layer_and_trains_the_same_weights(encoder, repos, corpus):
    pairs = cap_examples(training_pairs(repos["Mathlib/Data"], corpus.index), 16, 0)
    runs = []
    for checkpointing, kept in ((False, 0), (True, 0), (True, 120)):
        learner = _learner(encoder, corpus, checkpointing, kept)
        passes = LayerPasses(learner.model)
        stats = learner.train_repository("Mathlib/Data", pairs, 0, seed=5)
        passes.handle.remove()
        runs.append((stats, passes.count, {n: p.detach().clone() for n, p in learner.model.named_parameters()}))
    (plain, plain_passes, plain_w), (ckpt, ckpt_passes, ckpt_w), (mixed, mixed_passes, mixed_w) = runs
    assert plain["batches"] == ckpt["batches"] == mixed["batches"] == 2
    # Half of the plain passes are the student's, half distillation's eval-mode teacher's: every student pass
    # ran again in backward, no teacher pass did. With a token budget only the longer student passes did.
    assert plain_passes > 0 and ckpt_passes - plain_passes == plain_passes // 2
    assert plain_passes < mixed_passes < ckpt_passes
    assert plain["loss_first"] == ckpt["loss_first"] == mixed["loss_first"]
    assert plain["terms"] == ckpt["terms"] == mixed["terms"]
    base = encoder.model.state_dict()
    assert max(float((plain_w[n] - base[n]).abs().max()) for n in plain_w if n in base) > 1e-5  # it trained
    for name in plain_w:                                          # dropout replayed: the very same weights
        assert torch.equal(plain_w[name], ckpt_w[name]), name
        assert torch.equal(plain_w[name], mixed_w[name]), name
    flags = [m.gradient_checkpointing for m in learner.model.modules() if hasattr(m, "gradient_checkpointing")]
    assert flags and all(flags)                                   # the budget leaves checkpointing switched on


def test_inference_with_a_checkpointed_tower_runs_each_layer_once(encoder, corpus):
    learner = _learner(encoder, corpus, checkpointing=True)
    passes = LayerPasses(learner.model)
    learner.query.encode(["⊢ a + b = b + a", "h : p\n⊢ p ∨ q"], memo=False)
    passes.handle.remove()
    assert passes.count == 1


def test_activation_checkpointing_is_a_resource_option():
    from agent.config import RunConfig
    from agent.loop.options import stream_options

    assert "activation_checkpointing" not in stream_options(RunConfig())["learning"]


def test_training_a_checkpointed_tower_prints_no_cache_warning(encoder, repos, corpus):
    """An encoder keeps no key/value cache, so transformers' "`use_cache=True` is incompatible with gradient
    checkpointing" line, printed on the first learn step of every run, told the user nothing."""
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()        # the warning is printed once per process
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append                 # type: ignore[method-assign]
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        learner = _learner(encoder, corpus, checkpointing=True)
        pairs = cap_examples(training_pairs(repos["Mathlib/Data"], corpus.index), 8, 0)
        stats = learner.train_repository("Mathlib/Data", pairs, 0, seed=5)
    finally:
        logger.removeHandler(handler)
    assert stats["batches"] == 1
    assert not [r.getMessage() for r in records if "use_cache" in r.getMessage()]
