"""Retriever training and strategies on the real MiniLM and the real LeanDojo sample (short inputs, few pairs)."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from agent.evaluation.retrieval import VectorIndex, bm25_tokens, ranking_scores, retrieval_scores
from agent.learn.config import LearningConfig
from agent.learn.learner import cap_examples
from agent.learn.retriever import Corpus, RetrieverLearner, TrainingPair, training_pairs, weights_digest
from agent.learn.strategies import REGISTRY, Strategy, build_strategies
from agent.learn.strategies.adapters import select_adapter
from agent.learn.strategies.distill import distill_kl
from agent.learn.strategies.merge import lines_scale
from agent.learn.strategies.replay import ReservoirBuffer
from memory.embedder import Encoder


@pytest.fixture(scope="module")
def short_encoder(encoder):
    """The real MiniLM with 48-token inputs, so a training step takes a fraction of a second."""
    return Encoder(encoder.model, encoder.tokenizer, encoder.name, max_length=48)


def config(**kw) -> LearningConfig:
    kw.setdefault("batch_size", 4)
    kw.setdefault("lr", 1e-4)
    return LearningConfig(**kw)


def few_pairs(repos, corpus, name="Mathlib/Data", n=8):
    return cap_examples(training_pairs(repos[name], corpus.index), n, 0)


# -- metrics ------------------------------------------------------------------------------------


def test_ranking_scores_reprover_definitions():
    ranked = [["a", "b", "c"], ["x", "y", "z"], ["q", "r", "s"]]
    positives = [{"b", "c"}, {"x"}, {"nope"}]
    s = ranking_scores(ranked, positives, k=(1, 2))
    assert s["recall@1"] == pytest.approx((0 + 1 + 0) / 3)
    assert s["recall@2"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert s["mrr"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert s["tactics"] == 3
    empty = ranking_scores([], [], k=(1, 10))
    assert math.isnan(empty["recall@10"]) and math.isnan(empty["mrr"]) and empty["tactics"] == 0


def test_vector_index_orders_by_dot_product_and_filters():
    idx = VectorIndex(["a", "b", "c"], np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32))
    hits = idx.retrieve_by_vectors(np.array([[0.0, 1.0]]), 2)[0]
    assert [h.full_name for h in hits] == ["c", "b"]
    only = idx.retrieve_by_vectors(np.array([[0.0, 1.0]]), 2, accessible=[{"a"}])[0]
    assert [h.full_name for h in only] == ["a"]


def test_bm25_tokens_split_names_and_keep_symbols():
    assert bm25_tokens("Nat.add_comm ∀ x") == ["nat", "add", "comm", "∀", "x"]


# -- data ---------------------------------------------------------------------------------------


def test_training_pairs_keep_only_corpus_premises(repos, corpus):
    repo = repos["Mathlib/Data"]
    pairs = training_pairs(repo, corpus.index)
    assert pairs and all(p.premise in corpus.index and p.premise in p.positives for p in pairs)
    assert all(p.repo == "Mathlib/Data" for p in pairs)
    assert training_pairs(repo, set()) == []
    assert cap_examples(pairs, 5, 1) == cap_examples(pairs, 5, 1) != cap_examples(pairs, 5, 2)


def test_batch_has_in_file_negatives_and_masks_other_positives(short_encoder, repos, corpus):
    learner = RetrieverLearner(short_encoder, config(hard_negatives=2), corpus)
    multi = next(p for p in training_pairs(repos["Mathlib/Data"], corpus.index) if len(p.positives) > 1)
    batch = learner.make_batch([multi], random.Random(0))
    cols = [corpus.names[i] for i in batch.candidates]
    assert cols[int(batch.target[0])] == multi.premise
    path = corpus.paths[corpus.index[multi.premise]]
    negatives = [c for c in cols if c not in multi.positives]
    same_file = [i for i in corpus.by_path[path] if corpus.names[i] not in multi.positives]
    assert len(negatives) == 2
    if len(same_file) >= 2:
        assert all(corpus.paths[corpus.index[c]] == path for c in negatives)
    masked = {cols[j] for j in torch.nonzero(batch.mask[0]).flatten().tolist()}
    assert masked == {c for c in cols if c in multi.positives and c != multi.premise}


def test_a_batch_embeds_each_distinct_query_once_and_its_rows_share_the_vector(short_encoder, repos, corpus):
    """A state gives one pair per premise; the rows of one state reach the model once, and (without dropout,
    in eval mode) every row's logits are those of embedding each row on its own."""
    learner = RetrieverLearner(short_encoder, config(mined_negatives=0), corpus)
    pairs = training_pairs(repos["Mathlib/Data"], corpus.index)
    multi = next(p for p in pairs if len(p.positives) > 2)
    others = list({p.state: p for p in pairs if p.state != multi.state}.values())[:3]
    rows = [p for p in pairs if p.state == multi.state][:3] + others
    batch = learner.make_batch(rows, random.Random(0))
    texts: list[int] = []
    handle = learner.model.register_forward_hook(lambda m, args, kw, out: texts.append(len(kw["input_ids"])),
                                                 with_kwargs=True)
    learner.model.eval()
    with torch.no_grad():
        logits = learner.batch_logits(learner.model, batch)
    handle.remove()
    assert sum(texts) == len({r.query for r in rows}) == 4
    with torch.no_grad():
        alone = torch.cat([learner.query.embed([r.query]) for r in rows])
    assert torch.allclose(logits, learner.score(alone, batch), atol=1e-4)


# -- strategies ---------------------------------------------------------------------------------


class Recorder(Strategy):
    """Records the hooks it sees (a real strategy that changes nothing)."""

    name = "recorder"

    def __init__(self, cfg, log):
        super().__init__(cfg)
        self.log = log

    def before_repo(self, ctx):
        self.log.append("before_repo")

    def mix(self, examples, ctx):
        self.log.append("mix")
        return examples

    def loss_terms(self, batch):
        assert batch.logits is not None
        self.log.append("loss_terms")
        return {}

    def after_repo(self, ctx):
        self.log.append("after_repo")


def test_every_hook_fires_in_order(short_encoder, repos, corpus):
    log: list[str] = []
    cfg = config()
    learner = RetrieverLearner(short_encoder, cfg, corpus, [Recorder(cfg, log)])
    stats = learner.train_repository("Mathlib/Data", few_pairs(repos, corpus, n=8), step=0, seed=1)
    assert stats["batches"] == 2
    assert log == ["before_repo", "mix", "loss_terms", "mix", "loss_terms", "after_repo"]


def test_registry_and_composition():
    assert set(REGISTRY) >= {"naive", "frozen", "replay", "ewc", "distill", "adapters", "merge"}
    names = [s.name for s in build_strategies(LearningConfig(strategy=["merge", "adapters", "ewc"]))]
    assert names == ["adapters", "merge", "ewc"]  # adapters first: it rebuilds the model
    with pytest.raises(ValueError):
        LearningConfig(strategy=["frozen", "replay"])


def test_same_seed_same_weights_and_different_seed_differs(short_encoder, repos, corpus):
    pairs = few_pairs(repos, corpus, n=4)
    digests = []
    for seed in (7, 7, 8):
        learner = RetrieverLearner(short_encoder, config(), corpus, build_strategies(config(strategy=["naive"])))
        learner.train_repository("Mathlib/Data", pairs, 0, seed)
        digests.append(weights_digest(learner.model))
    assert digests[0] == digests[1] != digests[2]
    assert digests[0] != weights_digest(short_encoder.model)


def test_frozen_does_not_train(short_encoder, repos, corpus):
    cfg = config(strategy=["frozen"])
    learner = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    stats = learner.train_repository("Mathlib/Data", few_pairs(repos, corpus, n=4), 0, 1)
    assert stats["batches"] == 0 and weights_digest(learner.model) == weights_digest(short_encoder.model)


def test_ewc_penalty_zero_at_anchor_and_grows_with_distance(short_encoder, repos, corpus):
    cfg = config(strategy=["ewc"], ewc_samples=2)
    learner = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    ewc = learner.strategies[0]
    learner.train_repository("Mathlib/Data", few_pairs(repos, corpus, n=4), 0, 1)
    assert ewc.fisher and torch.cat([f.flatten() for f in ewc.fisher.values()]).mean() == pytest.approx(1.0)
    from agent.learn.strategies.base import RepoContext

    ewc.before_repo(RepoContext(learner, "Mathlib/Algebra", [], random.Random(0), 1))
    assert float(ewc.penalty()) == 0.0
    name, p = next((n, p) for n, p in learner.trainable() if ewc.fisher[n].sum() > 0)
    values = []
    for eps in (1e-3, 2e-3):
        with torch.no_grad():
            p.copy_(ewc.anchor[name] + eps)
        values.append(float(ewc.penalty()))
    assert 0 < values[0] < values[1] == pytest.approx(4 * values[0], rel=1e-3)


def test_ewc_fisher_decays_online(short_encoder, repos, corpus):
    cfg = config(strategy=["ewc"], ewc_samples=2, ewc_gamma=0.5)
    learner = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    ewc = learner.strategies[0]
    learner.train_repository("Mathlib/Data", few_pairs(repos, corpus, n=4), 0, 1)
    first = {n: f.clone() for n, f in ewc.fisher.items()}
    learner.train_repository("Mathlib/Algebra", few_pairs(repos, corpus, "Mathlib/Algebra", n=4), 1, 1)
    total = sum(float(f.sum()) for f in ewc.fisher.values())
    numel = sum(f.numel() for f in ewc.fisher.values())
    # γ·F_old (mean 1) + F_new (mean 1): mean 1.5
    assert total / numel == pytest.approx(1.5, rel=1e-4)
    assert any(not torch.equal(first[n], ewc.fisher[n]) for n in first)


def test_distill_kl_zero_for_same_model_positive_after_change(short_encoder, repos, corpus):
    assert float(distill_kl(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]]), 2.0)) == pytest.approx(0.0)
    cfg = config(strategy=["distill"])
    learner = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    distill = learner.strategies[0]
    from agent.learn.strategies.base import RepoContext

    pairs = few_pairs(repos, corpus, n=4)
    distill.before_repo(RepoContext(learner, "Mathlib/Data", pairs, random.Random(0), 0))
    learner.model.eval()
    batch = learner.make_batch(pairs, random.Random(0))
    learner.forward(batch)
    assert float(distill.loss_terms(batch)["distill"]) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for p in learner.model.encoder.layer[-1].parameters():
            p.mul_(1.5)
    learner.forward(batch)
    assert float(distill.loss_terms(batch)["distill"]) > 1e-4


def test_replay_buffer_is_repository_balanced():
    buf = ReservoirBuffer(per_repo=10, seed=0)
    buf.add("big", list(range(1000)))
    buf.add("small", ["s1", "s2"])
    assert len(buf.slots["big"]) == 10 and len(buf) == 12
    got = buf.sample(20, random.Random(0))
    assert sum(1 for x in got if isinstance(x, str)) == 10
    assert buf.sample(5, random.Random(0), exclude_repo="big") and \
        all(isinstance(x, str) for x in buf.sample(5, random.Random(0), exclude_repo="big"))


def test_replay_batches_contain_earlier_repositories_items(short_encoder, repos, corpus, tmp_path):
    from memory.bank import MemoryBank

    bank = MemoryBank(tmp_path / "bank", short_encoder)
    bank.add_repository(repos["Mathlib/Algebra"])
    cfg = config(strategy=["replay"], replay_ratio=0.5)
    learner = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg, replay_source=bank))
    seen: list[list[str]] = []

    class Spy(Strategy):
        name = "spy"

        def loss_terms(self, batch):
            seen.append([ex.repo for ex in batch.examples])
            return {}

    learner.strategies.append(Spy(cfg))
    learner.train_repository("Mathlib/Data", few_pairs(repos, corpus, n=8), 0, 1)
    assert seen and all(b.count("Mathlib/Data") == 4 and b.count("Mathlib/Algebra") == 4 for b in seen)


def test_lines_scale_is_linear_in_depth():
    assert lines_scale(0, 7, 0.0, 1.0) == 0.0
    assert lines_scale(6, 7, 0.0, 1.0) == 1.0
    assert lines_scale(3, 7, 0.2, 0.8) == pytest.approx(0.6)
    assert lines_scale(None, 7, 0.0, 1.0) == 1.0


def test_merge_keeps_embeddings_and_scales_deep_layers(short_encoder, repos, corpus):
    cfg = config(strategy=["merge"], lines_alpha=0.0, lines_beta=1.0)
    learner = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    learner.train_repository("Mathlib/Data", few_pairs(repos, corpus, n=4), 0, 1)
    after = dict(learner.model.named_parameters())
    emb = "embeddings.word_embeddings.weight"
    assert torch.equal(before[emb], after[emb])  # λ(0) = 0: the update to the shallowest block is dropped
    last = "encoder.layer.5.attention.self.query.weight"
    assert not torch.equal(before[last], after[last])


def test_merge_does_not_train_what_it_discards(short_encoder, repos, corpus, tmp_path):
    """λ(0) = 0: the embeddings' update would be undone at the merge, so they get no gradient and no optimizer
    state (`freeze_discarded`); a checkpoint chains its optimizer to the next learner; with the option off, or a
    LiNeS scale above 0, the embeddings train as before."""
    cfg = config(strategy=["merge"])
    learner = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    blocks = {learner.layer_index(n) for n, _ in learner.trainable()}
    assert 0 not in blocks and {1, 6} <= blocks
    learner.train_repository("Mathlib/Data", few_pairs(repos, corpus, n=4), 0, 1)
    assert learner.optimizer is not None
    optimized = {id(p) for g in learner.optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for _, p in learner.trainable()}
    learner.save(tmp_path / "ck", {"step": 0})
    again = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    again.load(tmp_path / "ck")
    assert again.optimizer is not None and again.optimizer.state_dict()["state"]   # the AdamW moments chained
    for kw in ({"freeze_discarded": False}, {"lines_alpha": 0.1}):
        other = config(strategy=["merge"], **kw)
        trained = RetrieverLearner(short_encoder, other, corpus, build_strategies(other))
        assert 0 in {trained.layer_index(n) for n, _ in trained.trainable()}, kw


def test_adapters_leave_base_weights_untouched_and_route_by_repo(short_encoder, repos, corpus):
    cfg = config(strategy=["adapters"], lora_lr=1e-2)
    learner = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    base = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    learner.train_repository("Mathlib/Data", few_pairs(repos, corpus, n=4), 0, 1)
    learner.train_repository("Mathlib/Algebra", few_pairs(repos, corpus, "Mathlib/Algebra", n=4), 1, 1)
    model = learner.model
    for n, p in model.named_parameters():
        if "lora_" not in n:
            key = n.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(p, base[key]), n
    assert set(model.peft_config) == {"r_Mathlib_Data", "r_Mathlib_Algebra", "merged"}
    states = ["⊢ a + b = b + a"]
    vecs = {}
    for repo in ("Mathlib/Data", "Mathlib/Algebra", "Unknown/Repo"):
        assert select_adapter(model, repo) == {"Mathlib/Data": "r_Mathlib_Data",
                                               "Mathlib/Algebra": "r_Mathlib_Algebra"}.get(repo, "merged")
        learner.query.reset_version()
        vecs[repo] = learner.query.encode(states)
    assert not np.allclose(vecs["Mathlib/Data"], vecs["Mathlib/Algebra"])
    assert not np.allclose(vecs["Unknown/Repo"], short_encoder.encode(states))


def test_checkpoint_roundtrip_restores_weights_optimizer_and_strategy_state(short_encoder, repos, corpus, tmp_path):
    cfg = config(strategy=["ewc"], ewc_samples=2)
    learner = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    learner.train_repository("Mathlib/Data", few_pairs(repos, corpus, n=4), 0, 1)
    path = learner.save(tmp_path / "ckpt" / "0000", {"step": 0})
    assert not (tmp_path / "ckpt" / ".tmp-0000").exists()
    assert {p.name for p in path.iterdir()} == {"model.safetensors", "training.pt", "meta.json"}
    fresh = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    meta = fresh.load(path)
    assert meta["step"] == 0 and meta["strategies"] == ["ewc"] and meta["encoder_version"] == fresh.query.version
    assert weights_digest(fresh.model) == weights_digest(learner.model)
    assert fresh.optimizer is not None and fresh.optimizer.state_dict()["state"]
    assert set(fresh.strategies[0].fisher) == set(learner.strategies[0].fisher)
    # continuing from the restored checkpoint equals continuing in memory
    more = few_pairs(repos, corpus, "Mathlib/Algebra", n=4)
    learner.train_repository("Mathlib/Algebra", more, 1, 1)
    fresh.train_repository("Mathlib/Algebra", more, 1, 1)
    assert weights_digest(fresh.model) == weights_digest(learner.model)


def test_retrieval_scores_on_real_tactics(short_encoder, repos, corpus):
    small = Corpus.from_repositories([repos["Mathlib/Data"]])
    idx = VectorIndex.build(small.names, small.texts, short_encoder)
    s = retrieval_scores(short_encoder, idx, repos["Mathlib/Data"].theorems_in("test"))
    assert s["tactics"] > 0 and 0 <= s["recall@1"] <= s["recall@10"] <= 1 and 0 < s["mrr"] <= 1


# -- example budget, mined negatives, memory ----------------------------------------------------


def test_min_steps_gives_small_repositories_more_passes(short_encoder, repos, corpus):
    cfg = config(strategy=["naive"], min_steps=6, max_epochs=4)
    learner = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    assert learner.epochs_for(4) == 4          # 1 batch per pass: 6 steps wanted, capped at 4 passes
    assert learner.epochs_for(8) == 3          # 2 batches per pass: 3 passes reach 6 steps
    assert learner.epochs_for(100) == 1        # a large repository keeps `epochs`
    stats = learner.train_repository("Mathlib/Data", few_pairs(repos, corpus, n=8), 0, 1)
    assert stats["batches"] == 6 and stats["epochs"] == 3
    plain = RetrieverLearner(short_encoder, config(strategy=["naive"]), corpus)
    assert plain.epochs_for(8) == 1


def test_mined_negatives_are_the_top_scoring_non_positives(short_encoder, repos, corpus):
    cfg = config(strategy=["naive"], hard_negatives=0, mined_negatives=5)
    learner = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    pairs = few_pairs(repos, corpus, n=3)
    batch = learner.make_batch(pairs, random.Random(0))
    before = list(batch.candidates)
    learner.model.eval()
    learner.forward(batch)
    assert batch.candidates[: len(before)] == before and len(batch.candidates) > len(before)
    q = torch.from_numpy(learner.query.encode([p.query for p in pairs]))
    scores = q @ learner.doc_matrix().T
    for r, ex in enumerate(pairs):
        pos = {corpus.index[p] for p in ex.positives}
        ranked = [i for i in torch.argsort(scores[r], descending=True).tolist() if i not in pos][:5]
        assert set(ranked) <= set(batch.candidates)           # the row's 5 hardest negatives are columns
        assert corpus.names[batch.candidates[int(batch.target[r])]] == ex.premise
        for c, col in enumerate(batch.candidates):             # other positives of the row are masked, only they
            assert bool(batch.mask[r, c]) == (col in pos and col != corpus.index[ex.premise])
    assert batch.logits.shape == (len(pairs), len(batch.candidates))


def test_release_optimizer_after_save(short_encoder, repos, corpus, tmp_path):
    cfg = config(strategy=["naive"])
    learner = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    learner.train_repository("Mathlib/Data", few_pairs(repos, corpus, n=4), 0, 1)
    assert learner.optimizer is not None
    path = learner.save(tmp_path / "ckpt" / "0000", {"step": 0}, release=True)
    assert learner.optimizer is None
    fresh = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    fresh.load(path)
    assert fresh.optimizer is not None and fresh.optimizer.state_dict()["state"]   # it went to disk first


def test_strategy_state_only_when_the_strategy_is_on(short_encoder, repos, corpus):
    cfg = config(strategy=["distill", "ewc"], ewc_samples=2)
    learner = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    distill, ewc = learner.strategies
    learner.train_repository("Mathlib/Data", few_pairs(repos, corpus, n=4), 0, 1)
    assert distill.teacher is None and ewc.fisher               # the teacher is dropped after its repository
    plain = RetrieverLearner(short_encoder, config(strategy=["naive"]), corpus,
                             build_strategies(config(strategy=["naive"])))
    assert [s.name for s in plain.strategies] == ["naive"] and not plain.strategies[0].state_dict()


# -- mid-repository snapshots ---------------------------------------------------------------------


class _Stop(Exception):
    pass


@pytest.mark.parametrize("strategy", [["naive"], ["replay", "distill"]])
def test_training_interrupted_mid_repository_resumes_to_identical_weights(repos, corpus, short_encoder,
                                                                           tmp_path, strategy):
    """Ctrl-C between two batches loses only what came after the last snapshot, and the resumed training ends
    bit-identical to an uninterrupted one (issue "A CLI ... researchers like", item 1)."""
    pairs = few_pairs(repos, corpus, n=24)
    cfg = config(strategy=strategy, epochs=2)

    def learner():
        return RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))

    clean = learner()
    clean.train_repository("Mathlib/Data", pairs, 3, 7)
    seen = []

    def stop_after_four(done, total, loss):
        seen.append((done, total))
        if done == 4:
            raise _Stop

    interrupted = learner()
    with pytest.raises(_Stop):
        interrupted.train_repository("Mathlib/Data", pairs, 3, 7, partial=tmp_path / "partial",
                                     snapshot_seconds=0.0, on_batch=stop_after_four)
    assert (tmp_path / "partial" / "position.pt").is_file() and seen[-1] == (4, 12)
    resumed = learner()  # a new process: the same starting weights, the snapshot on disk
    progress = []
    stats = resumed.train_repository("Mathlib/Data", pairs, 3, 7, partial=tmp_path / "partial",
                                     snapshot_seconds=3600.0, on_batch=lambda d, t, l: progress.append(d))
    assert progress[0] == 4            # batch 4 was in flight when interrupted: it is redone, 1-3 are not
    assert stats["batches"] == 12
    assert weights_digest(resumed.model) == weights_digest(clean.model)


def test_a_snapshot_of_other_training_is_ignored(repos, corpus, short_encoder, tmp_path):
    pairs = few_pairs(repos, corpus, n=12)
    cfg = config(strategy=["naive"])
    first = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    with pytest.raises(_Stop):
        first.train_repository("Mathlib/Data", pairs, 3, 7, partial=tmp_path / "p", snapshot_seconds=0.0,
                               on_batch=lambda d, t, l: (_ for _ in ()).throw(_Stop()) if d == 2 else None)
    other = RetrieverLearner(short_encoder, cfg, corpus, build_strategies(cfg))
    done = []
    other.train_repository("Mathlib/Data", pairs, 4, 7, partial=tmp_path / "p",  # another step id
                           on_batch=lambda d, t, l: done.append(d))
    assert done[0] == 1
