"""Gradient caching in retriever training (issue 10, memory): the same gradients as one graph over the batch,
with one micro-batch's graph alive at a time. Memory is checked as the bytes autograd saves for backward that
are alive at once (counted with saved-tensor hooks), never as timings or RSS."""
from __future__ import annotations

import copy

import pytest
import torch

from agent.learn.config import LearningConfig
from agent.learn.learner import cap_examples
from agent.learn.retriever import Corpus, RetrieverLearner, training_pairs
from agent.learn.strategies import build_strategies
from memory.embedder import Encoder


class LiveSavedBytes:
    """The peak of the bytes autograd holds for backward at once (a saved tensor counts until it is freed)."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0

    def __enter__(self) -> "LiveSavedBytes":
        counter = self

        class Held:
            def __init__(self, t: torch.Tensor):
                self.t, self.n = t, t.numel() * t.element_size()
                counter.live += self.n
                counter.peak = max(counter.peak, counter.live)

            def __del__(self) -> None:
                counter.live -= self.n

        self._hooks = torch.autograd.graph.saved_tensors_hooks(Held, lambda held: held.t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


@pytest.fixture(scope="module")
def states(repos):
    return [t.state_before for th in repos["Mathlib/Data"].theorems for t in th.tactics][:12]


def _train_mode_copy(encoder: Encoder) -> Encoder:
    model = copy.deepcopy(encoder.model).train()   # dropout on: the recomputed passes must redraw the same masks
    return Encoder(model, encoder.tokenizer, encoder.name, max_length=64)


def test_recomputed_micro_batches_give_the_gradients_of_one_graph(encoder, states):
    enc = _train_mode_copy(encoder)
    target = torch.randn(len(states), enc.dim, generator=torch.Generator().manual_seed(0))
    grads, losses, after = [], [], []
    for recompute in (False, True):
        enc.model.zero_grad()
        torch.manual_seed(3)
        if recompute:
            q, finish = enc.embed_recomputed(states, chunk=4)
        else:
            q, finish = enc.embed(states, chunk=4), None
        loss = ((q - target) ** 2).sum() + (q @ q.T).logsumexp(dim=1).sum()
        loss.backward()
        if finish is not None:
            assert q.grad is not None and q.grad.abs().sum() > 0
            finish()
        losses.append(float(loss.detach()))
        after.append(torch.get_rng_state())
        grads.append({n: p.grad.clone() for n, p in enc.model.named_parameters() if p.grad is not None})
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)          # the same dropout masks: the same loss
    assert torch.equal(after[0], after[1])                           # and the random stream goes on as before
    assert set(grads[0]) == set(grads[1])
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-3), name
    assert sum(float(g.abs().sum()) for g in grads[1].values()) > 0


def test_recomputation_holds_one_micro_batch_graph_at_a_time(encoder, states):
    enc = _train_mode_copy(encoder)
    peaks = []
    for recompute in (False, True):
        with LiveSavedBytes() as saved:
            if recompute:
                q, finish = enc.embed_recomputed(states, chunk=3)
                (q ** 2).sum().backward()
                finish()
            else:
                (enc.embed(states, chunk=3) ** 2).sum().backward()
        peaks.append(saved.peak)
    assert peaks[0] > 0 and peaks[1] > 0
    assert peaks[1] < 0.5 * peaks[0]          # 4 groups of 3 texts: about a quarter of the graph at a time


def _learner(encoder: Encoder, corpus: Corpus, grad_cache: bool) -> RetrieverLearner:
    cfg = LearningConfig(strategy=["replay", "distill"], batch_size=8, micro_batch=2, lr=1e-4,
                         grad_cache=grad_cache, mined_negatives=4)
    short = Encoder(encoder.model, encoder.tokenizer, encoder.name, max_length=48)
    return RetrieverLearner(short, cfg, corpus, build_strategies(cfg))


def test_a_learn_step_with_gradient_caching_trains_the_same_weights_with_less_held(encoder, repos, corpus):
    pairs = cap_examples(training_pairs(repos["Mathlib/Data"], corpus.index), 16, 0)
    results = []
    for grad_cache in (False, True):
        learner = _learner(encoder, corpus, grad_cache)
        with LiveSavedBytes() as saved:
            stats = learner.train_repository("Mathlib/Data", pairs, 0, seed=5)
        results.append((stats, saved.peak, {n: p.detach().clone() for n, p in learner.model.named_parameters()}))
    (plain, plain_peak, plain_w), (cached, cached_peak, cached_w) = results
    assert plain["batches"] == cached["batches"] == 2
    assert plain["loss_first"] == pytest.approx(cached["loss_first"], rel=1e-5)
    assert plain["terms"]["distill"] == pytest.approx(cached["terms"]["distill"], rel=1e-3, abs=1e-6)
    moved = max(float((plain_w[n] - encoder.model.state_dict()[n]).abs().max()) for n in plain_w
                if n in encoder.model.state_dict())
    assert moved > 1e-5                                                   # training did change the weights
    for name in plain_w:   # moved up to ~2e-4; the two differ by float rounding (~1e-6)
        assert torch.allclose(plain_w[name], cached_w[name], atol=1e-5), name
    assert cached_peak < 0.5 * plain_peak


def test_grad_cache_is_a_resource_option():
    from agent.config import RunConfig
    from agent.loop.options import stream_options

    assert "grad_cache" not in stream_options(RunConfig())["learning"]
