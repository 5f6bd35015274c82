"""The retrieval query is the proof state with its theorem's name and file (memory/embedder.py `query_text`), the same
text wherever a query is embedded: training pairs, replayed bank steps, the loop's and `evaluate`'s scores, and
the prover's premise context."""
from __future__ import annotations

import random

import numpy as np
import pytest

from agent.evaluation.retrieval import VectorIndex, eval_tactics, ranking_scores
from agent.learn.config import LearningConfig
from agent.learn.retriever import RetrieverLearner, pairs_from_items, training_pairs
from memory.bank import BankItem, items_of_repository
from memory.embedder import Encoder, query_of, query_text
from provers.generators.context import PremiseContext


@pytest.fixture(scope="module")
def short_encoder(encoder):
    return Encoder(encoder.model, encoder.tokenizer, encoder.name, max_length=48)


def test_query_puts_the_theorem_name_and_file_before_the_state():
    state, path = "x : ℕ\n⊢ x = x", "Mathlib/Data/Nat/Basic.lean"
    assert query_text(state, path, "Nat.foo") == "Nat.foo in Mathlib/Data/Nat/Basic.lean\nx : ℕ\n⊢ x = x"
    assert query_text(state, path) == "in Mathlib/Data/Nat/Basic.lean\nx : ℕ\n⊢ x = x"
    assert query_text(state, "", "Nat.foo") == "Nat.foo\nx : ℕ\n⊢ x = x"
    assert query_text("⊢ True", "") == "⊢ True"     # a state typed by a user: nothing else known
    assert query_of("file", state, path, "Nat.foo") == query_text(state, path)
    assert query_of("state", state, path, "Nat.foo") == state
    with pytest.raises(ValueError, match="query form"):
        query_of("path", state, path, "Nat.foo")


def test_training_pairs_and_replayed_bank_steps_ask_the_same_query(repos, corpus):
    repo = repos["Mathlib/Data"]
    file_of = {t.full_name: t.file_path for t in repo.theorems}
    pairs = training_pairs(repo, corpus.index)
    assert pairs and {p.path for p in pairs} <= set(file_of.values())
    assert all(file_of[p.theorem] == p.path for p in pairs)
    assert all(p.query == f"{p.theorem} in {p.path}\n{p.state}" for p in pairs)
    items = items_of_repository(repo)
    assert all(it.path == file_of[it.theorem] for it in items)
    replayed = pairs_from_items(items, corpus.index)
    assert {(p.query, p.premise) for p in replayed} == {(p.query, p.premise) for p in pairs}
    # the path survives the bank's JSON; an item written before the bank recorded files asks name and state
    step = next(it for it in items if it.kind == "step" and it.premises)
    assert BankItem.from_json(step.to_json()) == step
    old = {k: v for k, v in step.to_json().items() if k != "path"}
    assert pairs_from_items([BankItem.from_json(old)], set(step.premises))[0].query == f"{step.theorem}\n{step.state}"
    # bench/forgetting.py's file-only and state-only rows
    assert all(p.query == f"in {p.path}\n{p.state}" for p in training_pairs(repo, corpus.index, query="file"))
    assert all(p.query == p.state for p in training_pairs(repo, corpus.index, query="state"))
    assert all(p.query == p.state for p in pairs_from_items(items, corpus.index, query="state"))


def test_the_learner_embeds_the_query_text(short_encoder, repos, corpus):
    cfg = LearningConfig(strategy=["naive"], batch_size=4, mined_negatives=0)
    learner = RetrieverLearner(short_encoder, cfg, corpus)
    learner.model.eval()
    pairs = training_pairs(repos["Mathlib/Data"], corpus.index)[:4]
    batch = learner.make_batch(pairs, random.Random(0))
    got = learner.query_vectors(learner.model, batch).detach().numpy()
    want = short_encoder.encode([query_text(p.state, p.path, p.theorem) for p in pairs])
    bare = short_encoder.encode([p.state for p in pairs])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got, bare, atol=1e-3)


def _mrr(encoder, index, theorems, names, query):
    tactics = eval_tactics(theorems, names, query=query)
    hits = index.retrieve_by_vectors(encoder.encode([q for q, _ in tactics]), 100)
    return ranking_scores([[h.full_name for h in row] for row in hits], [p for _, p in tactics])["mrr"]


def test_the_theorem_file_lifts_the_untrained_encoders_ranking(encoder, repos, corpus):
    """A lemma is most often proved with lemmas of its own file and directory, and a premise's text names its
    file: the untrained encoder already ranks better when the query says where the theorem is."""
    theorems = [t for name in ("Mathlib/Data", "Mathlib/Algebra") for t in repos[name].theorems]
    index = VectorIndex.build(corpus.names, corpus.texts, encoder)
    names = set(corpus.names)
    with_file, bare = _mrr(encoder, index, theorems, names, "file"), _mrr(encoder, index, theorems, names, "state")
    assert with_file > bare + 0.05, (with_file, bare)


def test_the_theorem_name_lifts_the_untrained_encoders_ranking_further(encoder, repos, corpus):
    """Mathlib names a lemma in the words of what it is about, and those are the words of the lemmas it uses:
    the name in the query lifts the untrained encoder's ranking over the file alone (and the default query is
    the one with the name)."""
    theorems = [t for name in ("Mathlib/Data", "Mathlib/Algebra") for t in repos[name].theorems]
    index = VectorIndex.build(corpus.names, corpus.texts, encoder)
    names = set(corpus.names)
    with_name, file_only = _mrr(encoder, index, theorems, names, "theorem"), _mrr(encoder, index, theorems, names, "file")
    assert with_name > file_only + 0.05, (with_name, file_only)
    assert eval_tactics(theorems, names) == eval_tactics(theorems, names, query="theorem")


def test_the_premise_context_asks_the_query_the_scores_use(encoder, repos, corpus):
    index = VectorIndex.build(corpus.names, corpus.texts, encoder)
    context = PremiseContext(index, k=10, query_encoder=encoder)
    theorems = [t for t in repos["Mathlib/Data"].theorems if t.tactics][:6]
    differs = 0
    for thm in theorems:
        state = thm.tactics[0].state_before
        got = [h.full_name for h in context.premises(state, thm)]
        query = query_text(state, thm.file_path, thm.full_name)
        want = [h.full_name for h in index.retrieve_by_vectors(encoder.encode([query]), 10)[0]]
        bare = [h.full_name for h in index.retrieve_by_vectors(encoder.encode([state]), 10)[0]]
        assert got == want
        differs += got != bare
    assert differs     # the file changes what the prover is offered


def test_a_found_proof_enters_the_bank_with_its_theorems_file(repos):
    from agent.proving import bank_items

    repo = repos["Mathlib/Data"]
    thm = next(t for t in repo.theorems if t.tactics)
    record = {"theorem": thm.full_name, "proved": True, "checked_by": "replay", "file_path": thm.file_path,
              "proof": [t.tactic for t in thm.tactics], "states": [t.state_before for t in thm.tactics]}
    items = bank_items(repo, record)
    assert items and {it.path for it in items} == {thm.file_path}
