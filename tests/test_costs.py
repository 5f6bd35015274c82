"""Costs that must not grow with everything learned (issues 10 and 11), checked as behaviour, never as timings:
what is embedded how often, what is read from where, and that each saving leaves the numbers as they were."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests import loop_fixtures as lf


class CountingEncoder:
    """Wraps a real encoder's forward passes and counts the texts that reach the model."""

    def __init__(self, encoder, monkeypatch):
        self.texts = 0
        inner = encoder._encode

        def counted(texts, progress, desc):
            self.texts += len(texts)
            return inner(texts, progress, desc)

        monkeypatch.setattr(encoder, "_encode", counted)


def test_the_memo_embeds_each_text_once_and_forgets_with_the_weights(encoder, monkeypatch):
    states = ["⊢ a + b = b + a", "⊢ 0 < 1", "h : p\n⊢ p ∨ q"]
    plain = encoder.encode(states)
    encoder.remember(16)
    try:
        count = CountingEncoder(encoder, monkeypatch)
        first = encoder.encode(states)
        again = encoder.encode(states[::-1] + states)
        assert count.texts == 3                                  # asked for six more vectors, embedded none
        assert np.allclose(first, plain, atol=1e-6)
        assert np.array_equal(again[:3], first[::-1]) and np.array_equal(again[3:], first)
        encoder.encode(states, memo=False)                       # bulk indexing bypasses it
        assert count.texts == 6
        encoder.reset_version()                                  # weights changed: old vectors are stale
        encoder.encode(states[:1])
        assert count.texts == 7
        encoder.remember(2)
        encoder.encode(states)                                   # the memo keeps the newest `size` texts
        encoder.encode(states[1:])
        assert count.texts == 7 + 3
    finally:
        encoder.remember(0)


def test_length_grouped_forward_passes_give_the_same_vectors_and_gradients(encoder, b4_sample):
    import copy

    from curriculum.lean_data import load_dataset, to_repositories
    from memory.embedder import Encoder

    # A trainable copy: learners freeze the shared encoder's weights (their frozen document tower).
    encoder = Encoder(copy.deepcopy(encoder.model).requires_grad_(True), encoder.tokenizer, encoder.name)

    repos = to_repositories(load_dataset(b4_sample), split_by_dir=2)
    states = [t.state_before for r in repos for th in r.theorems for t in th.tactics][:12]
    lengths = {len(encoder.tokenizer(s)["input_ids"]) for s in states}
    assert len(lengths) > 3                                      # chunks really pad to different lengths
    grads = []
    vectors = []
    for chunk in (None, 4):
        encoder.model.zero_grad()
        v = encoder.embed(states, chunk=chunk)
        (v @ v.T).sum().backward()
        vectors.append(v.detach())
        grads.append(encoder.model.embeddings.word_embeddings.weight.grad.clone())
    encoder.model.zero_grad()
    assert torch.allclose(vectors[0], vectors[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-4, rtol=1e-3)
    assert grads[0].abs().sum() > 0


@pytest.fixture(scope="module")
def added_workspace(b4_sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("costs")
    data = lf.small_stream(b4_sample, root / "data", ("Mathlib/SetTheory", "Mathlib/FieldTheory"))
    ws = root / "ws"
    lf.prepare_workspace(ws)
    lf.run(ws, "add", str(data), "--split-by-dir", "2")
    return ws


def test_training_reads_the_stored_premise_vectors_instead_of_embedding_the_corpus(added_workspace, monkeypatch):
    from agent.loop.driver import prepare_stream
    from agent.workspace import Workspace
    from agent.workspace.memory import base_encoder, open_store

    ws = Workspace(Path(added_workspace))
    with ws.lock():
        ctx = prepare_stream(ws)
        base = base_encoder(ctx.config)
        count = CountingEncoder(base, monkeypatch)
        corpus = ctx.corpus()
        vectors = corpus.vectors(base).numpy()
        assert count.texts == 0 and len(corpus) > 10
        stored = open_store(ws, ctx.config).embeddings(corpus.ids)
        assert np.array_equal(vectors, stored)
        fresh = base._encode(corpus.texts, False, "")             # the same texts embedded now agree
        assert np.allclose(vectors, fresh, atol=1e-5)
        assert open_store(ws, ctx.config).embeddings(corpus.ids + ["no-such-id"]) is None


def test_an_option_newer_than_the_stream_counts_as_recorded_at_its_default():
    from agent.config import RunConfig
    from agent.loop.options import changed_options, stream_options

    config = RunConfig()
    recorded = stream_options(config)
    del recorded["learning"]["max_epochs"]                       # a stream started before the option existed
    assert changed_options(recorded, config) == []
    config.learning.max_epochs = 3
    assert changed_options(recorded, config) == ["learning.max_epochs: 8 -> 3"]
    assert "micro_batch" not in stream_options(config)["learning"]   # how fast, not what: never recorded


def test_a_stream_started_before_the_rerank_keeps_ranking_without_it():
    """Streams recorded before `[memory] rerank` existed ranked densely: resuming one under the new default would
    put reranked and dense cells in one matrix, so it is refused unless the workspace says rerank = "none"."""
    from agent.config import RunConfig
    from agent.loop.options import changed_options, refuse_changed_options, stream_options
    from common.errors import InputError

    config = RunConfig()
    recorded = stream_options(config)
    del recorded["memory"]["rerank"]
    assert changed_options(recorded, config) == ["memory.rerank: 'none' -> 'bm25'"]
    with pytest.raises(InputError, match="memory.rerank: 'none' -> 'bm25'"):
        refuse_changed_options(recorded, config, "ws")
    config.memory.rerank = "none"
    assert changed_options(recorded, config) == []
    assert changed_options(stream_options(RunConfig()), RunConfig()) == []    # a new stream records bm25


def test_an_evaluation_row_embeds_its_states_in_one_pass_and_proves_in_one_pool(added_workspace, monkeypatch):
    import provers.pool
    from agent.loop.driver import prepare_stream
    from agent.loop.evaluate import BASELINE_ROW, evaluate_row
    from agent.workspace import Workspace
    from agent.workspace.memory import base_encoder

    ws = Workspace(Path(added_workspace))
    real_prove_many = provers.pool.prove_many
    pools: list[int] = []

    def counted_prove_many(tasks, *args, **kwargs):
        pools.append(len(tasks))
        return real_prove_many(tasks, *args, **kwargs)

    monkeypatch.setattr(provers.pool, "prove_many", counted_prove_many)
    with ws.lock():
        ctx = prepare_stream(ws)
        base = base_encoder(ctx.config)
        base.remember(4096)                        # a fresh memo: the row must fill it in one pass
        passes: list[int] = []
        inner = base._encode
        monkeypatch.setattr(base, "_encode", lambda texts, p, d: (passes.append(len(texts)), inner(texts, p, d))[1])
        records = evaluate_row(ctx, BASELINE_ROW, None)
    scored = [r for r in records if r["theorems"]]
    assert len(records) == 2 and scored
    assert pools == [sum(r["theorems"] for r in records)]      # one prover pool for the whole row
    assert len(passes) == 1 and passes[0] >= sum(r["tactic_steps"] for r in scored)
    assert all(r["recall@10"] is not None and r["tactic@8"] is not None for r in scored)


def test_an_evaluation_row_ranks_every_stored_premise_exactly_without_a_store_query_per_tactic(added_workspace,
                                                                                              monkeypatch):
    """The row's Recall@k and MRR are those of an exact ranking of every stored premise vector (an oracle built
    here from the store's own rows), and no cell asks the approximate premise store once per tactic."""
    from agent.evaluation.retrieval import eval_tactics, ranking_scores
    from agent.loop.driver import prepare_stream
    from agent.loop.evaluate import BASELINE_ROW, evaluate_row
    from agent.proving import held_out_theorems
    from agent.workspace import Workspace
    from agent.workspace.memory import base_encoder, open_store
    from memory.premise_store import PremiseStore

    ws = Workspace(Path(added_workspace))
    queries: list[int] = []
    real_query = PremiseStore._query
    monkeypatch.setattr(PremiseStore, "_query", lambda self, *a: (queries.append(1), real_query(self, *a))[1])
    with ws.lock():
        ctx = prepare_stream(ws)
        records = evaluate_row(ctx, BASELINE_ROW, None)
        rows = open_store(ws, ctx.config)._get_all(None, ["metadatas", "embeddings"])
        names = [m["full_name"] for m in rows["metadatas"]]
        docs = np.asarray(rows["embeddings"], dtype=np.float32)
        base = base_encoder(ctx.config)
        for rec in records:
            if not rec["theorems"]:
                continue
            tactics = eval_tactics(held_out_theorems(ctx.repository(rec["repo"])), set(names))
            scores = base._encode([q for q, _ in tactics], False, "") @ docs.T
            ranked = [[names[i] for i in np.argsort(-row, kind="stable")[:100]] for row in scores]
            want = ranking_scores(ranked, [p for _, p in tactics])
            assert rec["tactics"] == len(tactics) > 0
            for key in ("recall@1", "recall@10", "mrr"):
                assert rec[key] == pytest.approx(want[key], abs=1e-9), (rec["repo"], key)
    assert queries == []


def test_inference_passes_hold_a_bounded_number_of_padded_tokens(encoder, monkeypatch):
    """Long texts go in smaller batches (attention is quadratic in length); short ones still fill a batch."""
    from memory.embedder import Encoder

    bounded = Encoder(encoder.model, encoder.tokenizer, encoder.name, batch_size=64, max_batch_tokens=512)
    texts = ["x + " * 200 + str(i) for i in range(12)] + [f"⊢ {i} < {i} + 1" for i in range(40)]
    alone = np.stack([encoder.encode([t], memo=False)[0] for t in texts[::7]])
    passes: list[tuple[int, int]] = []
    inner = bounded._embed_batch

    def counted(batch):
        passes.append(tuple(batch["input_ids"].shape))
        return inner(batch)

    monkeypatch.setattr(bounded, "_embed_batch", counted)
    vectors = bounded.encode(texts, memo=False)
    assert max(rows * width for rows, width in passes) <= 512
    assert max(rows for rows, _ in passes) > 2 * min(rows for rows, _ in passes)   # short texts share a pass
    assert sum(rows for rows, _ in passes) == len(texts)
    assert np.allclose(vectors[::7], alone, atol=1e-5)                 # batching never changes a vector


def test_the_heap_freed_by_a_step_goes_back_to_the_operating_system():
    """Freed heap pages stay resident under glibc until trimmed; the loop trims after every step."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from common.heap import release_free_memory\n"
        "def rss():\n"
        "    return next(int(l.split()[1]) // 1024 for l in open('/proc/self/status') if l.startswith('VmRSS:'))\n"
        "kept, freed = [], []\n"
        "for i in range(4000):\n"
        "    freed.append(bytearray(100_000))   # below glibc's mmap threshold: from the heap\n"
        "    kept.append(bytearray(64))          # pins the heap top, so free() alone cannot shrink it\n"
        "del freed\n"
        "after_free = rss()\n"
        "print(after_free, int(release_free_memory()), rss())\n")
    if not sys.platform.startswith("linux"):
        pytest.skip("malloc_trim is glibc's")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    after_free, ran, after_trim = map(int, out.stdout.split())
    if not ran:
        pytest.skip("not glibc")
    assert after_free > 100                       # ~0.4 GB freed but still resident
    assert after_trim < after_free / 2


def test_the_step_heap_freezes_the_run_long_objects_once_and_thaws_them_on_exit():
    """After the first learn step the loop's collections skip the objects that live as long as the run; garbage
    cycles made later are still collected, and leaving the run gives the collector back as it was."""
    import gc
    import weakref

    from common.heap import StepHeap

    class Node:
        pass

    def cycle() -> "weakref.ref[Node]":
        a, b = Node(), Node()
        a.other, b.other = b, a
        return weakref.ref(a)

    assert gc.get_freeze_count() == 0
    with StepHeap() as heap:
        heap.release()                                   # an ordinary release freezes nothing
        assert gc.get_freeze_count() == 0
        survivor = Node()
        heap.release(freeze_survivors=True)
        frozen = gc.get_freeze_count()
        assert frozen > 1000 and heap.frozen
        later = cycle()
        heap.release(freeze_survivors=True)              # only the first freeze counts
        assert later() is None and gc.get_freeze_count() == frozen
    assert gc.get_freeze_count() == 0 and not heap.frozen
    assert survivor is not None

    gc.freeze()                                          # someone else's freeze is left alone
    try:
        with StepHeap() as heap:
            heap.release(freeze_survivors=True)
            assert not heap.frozen
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


@pytest.mark.slow
def test_a_long_learn_step_does_not_creep_up_in_resident_memory(b4_sample):
    """Each training batch's activations and autograd graph, once freed, go back to the OS (learner.py trims the
    heap after every batch): left as glibc heap fragments, a 50-batch learn step of `run --seed 1` crept from 1.4
    to 2.7 GB resident, 25 MB a batch, and set the run's peak. Here: 12 batches of 128-token states."""
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("resident memory is read from /proc")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from agent.learn.config import LearningConfig\n"
        "from agent.learn.retriever import Corpus, RetrieverLearner, training_pairs\n"
        "from agent.learn.strategies import build_strategies\n"
        "from curriculum.lean_data import load_dataset, to_repositories\n"
        "from memory.embedder import Encoder\n"
        "import torch\n"
        "torch.set_num_threads(2)\n"
        "repo = to_repositories(load_dataset(Path(sys.argv[1])))[0]\n"
        "corpus = Corpus.from_repositories([repo])\n"
        "config = LearningConfig()\n"
        "learner = RetrieverLearner(Encoder.load(max_length=128), config, corpus, build_strategies(config))\n"
        "pairs = training_pairs(repo, corpus.index)[:16 * 12]\n"
        "def rss():\n"
        "    return next(int(l.split()[1]) // 1024 for l in open('/proc/self/status') if l.startswith('VmRSS:'))\n"
        "after = []\n"
        "learner.train_repository(repo.name, pairs, 0, 1, on_batch=lambda done, total, loss: after.append(rss()))\n"
        "print(*after)\n")
    out = subprocess.run([sys.executable, "-c", code, str(b4_sample)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    after = [int(x) for x in out.stdout.split()]
    assert len(after) == 12
    assert max(after[3:]) - after[2] < 40, after   # MB; untrimmed, these 12 batches crept by 160


def test_a_run_opens_the_bank_and_the_premise_store_once_for_all_its_steps(added_workspace, tmp_path, monkeypatch):
    """Opening a bank reads its whole item index and a fresh chroma client loads the collection's HNSW index:
    both grow with everything stored, so a step of a fixed-size repository that opened its own grew with the
    stream (issue 11: the bank step 2.07x from 10k to 100k premises). One run, every step (index, replay,
    the prover, the bank step, the evaluation's prover) shares one of each, and the provers search with it."""
    import json
    import shutil

    from agent.loop.driver import run_stream
    from agent.workspace import Workspace
    from memory.bank import MemoryBank
    from memory.premise_store import PremiseStore

    root = tmp_path / "ws"
    shutil.copytree(added_workspace, root)
    (root / "lifelean.toml").write_text(lf.FAST_CONFIG.replace('["replay", "distill"]', '["replay"]'))
    opened: list[str] = []
    matched: list[int] = []
    real_match = MemoryBank.match
    monkeypatch.setattr(MemoryBank, "match",
                        lambda self, *a, **k: (matched.append(id(self)), real_match(self, *a, **k))[1])
    for cls in (MemoryBank, PremiseStore):
        real_init = cls.__init__

        def counted(self, *args, _real=real_init, _name=cls.__name__, **kwargs):
            opened.append(_name)
            _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counted)
    ws = Workspace(root)
    with ws.lock():
        summary = run_stream(ws)
    assert summary["repos"] == 2 and not summary["nothing_to_do"]
    assert sorted(opened) == ["MemoryBank", "PremiseStore"]
    assert len(matched) > 10 and len(set(matched)) == 1    # the knn provers' suggestions came from that one bank
    cells = [c for c in map(json.loads, ws.metrics_path.read_text().splitlines()) if c["kind"] == "eval"]
    rows = [c for c in cells if c["step"] >= 0]      # (the copied workspace may hold other tests' baseline rows)
    assert len(rows) == 4 and all(c["proof_rate"] is not None for c in rows)       # 2 rows of 2 columns
