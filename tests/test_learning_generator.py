"""Generator LoRA fine-tuning with a tiny decoder-only model built from a config (CPU, seconds)."""
from __future__ import annotations

import pytest
import torch

from agent.learn.generator import GeneratorLearner, generator_examples, train_generator_on_repository
from agent.learn.config import LearningConfig
from agent.learn.retriever import weights_digest
from agent.learn.strategies import build_strategies


@pytest.fixture(scope="module")
def data_repo(b4_sample):
    from curriculum.lean_data import load_dataset, to_repositories

    return {r.name: r for r in to_repositories(load_dataset(b4_sample), split_by_dir=2)}


def tiny(tmp_path, kind="llama"):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from provers.generators.tiny import build_tiny_model

    path = build_tiny_model(tmp_path / kind, kind=kind, d_model=32, layers=2, heads=2)
    cls = AutoModelForSeq2SeqLM if kind == "t5" else AutoModelForCausalLM
    return cls.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_examples_pack_premises_and_state(data_repo):
    repo = data_repo["Mathlib/Order"]
    ex = generator_examples(repo)
    tactics = [t for thm in repo.theorems_in("train") for t in thm.tactics]
    assert ex and len(ex) == len(tactics) and all(e.repo == "Mathlib/Order" for e in ex)
    for e, tac in zip(ex, tactics):
        assert e.tactic == tac.tactic
        assert e.source.endswith(tac.state_before)          # the state comes last, as the prover feeds it
        for a in tac.annotations:                           # every annotated premise is packed before it
            assert f"<a>{a.full_name}</a>" in e.source[: len(e.source) - len(tac.state_before)]
    assert any(tac.annotations for tac in tactics)


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_lora_training_lowers_loss_and_keeps_base_frozen(tmp_path, data_repo, kind):
    torch.set_num_threads(1)
    model, tok = tiny(tmp_path, kind)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = LearningConfig(strategy=["naive"], lora_lr=1e-2, generator_batch_size=8, generator_max_length=256,
                         epochs=3)
    learner = GeneratorLearner(model, tok, kind == "t5", cfg, build_strategies(cfg))
    stats = train_generator_on_repository(learner, data_repo["Mathlib/Order"], step=0, seed=1)
    assert stats["batches"] > 3 and stats["loss_last"] < stats["loss_first"]
    for n, p in learner.model.named_parameters():
        if "lora_" not in n:
            key = n.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(p, base[key]), n


def test_generator_strategies_and_checkpoint(tmp_path, data_repo):
    torch.set_num_threads(1)
    model, tok = tiny(tmp_path)
    cfg = LearningConfig(strategy=["adapters", "ewc", "distill", "replay"], lora_lr=1e-2, generator_batch_size=8,
                         generator_max_length=256, ewc_samples=4)
    learner = GeneratorLearner(model, tok, False, cfg, build_strategies(cfg))
    train_generator_on_repository(learner, data_repo["Mathlib/Order"], 0, 1)
    stats = train_generator_on_repository(learner, data_repo["Mathlib/Algebra"], 1, 1)
    assert {"distill"} <= set(stats["terms"])          # ewc: a new adapter has no Fisher yet, by design
    assert set(learner.model.peft_config) == {"r_Mathlib_Order", "r_Mathlib_Algebra", "merged"}
    path = learner.save(tmp_path / "gen" / "0001", {"step": 1})
    fresh_model, _ = tiny(tmp_path / "again")
    fresh = GeneratorLearner(fresh_model, tok, False, cfg, build_strategies(cfg))
    fresh.load(path)
    assert weights_digest(fresh.model) == weights_digest(learner.model)


# -- every strategy's claim holds for the generator too (issue 13, item 4) ---------------------------------


def gen_learner(tmp_path, strategy, replay_source=None, **kw):
    model, tok = tiny(tmp_path)
    kw = {"lora_lr": 1e-2, "generator_batch_size": 4, "generator_max_length": 192, **kw}
    cfg = LearningConfig(strategy=strategy, **kw)
    return GeneratorLearner(model, tok, False, cfg, build_strategies(cfg, replay_source=replay_source))


def few(repo, n=8):
    from agent.learn.learner import cap_examples

    return cap_examples(generator_examples(repo), n, 0)


def test_generator_frozen_leaves_weights_bit_identical(tmp_path, data_repo):
    torch.set_num_threads(1)
    learner = gen_learner(tmp_path, ["frozen"])
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    stats = learner.train_repository("Mathlib/Order", few(data_repo["Mathlib/Order"]), 0, 1)
    assert stats["batches"] == 0 and not learner.trains
    after = dict(learner.model.named_parameters())
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)


def test_generator_replay_mixes_items_of_learned_repositories(tmp_path, data_repo, encoder):
    from agent.learn.strategies import Strategy
    from memory.bank import MemoryBank

    torch.set_num_threads(1)
    bank = MemoryBank(tmp_path / "bank", encoder)
    bank.add_repository(data_repo["Mathlib/Algebra"])
    learner = gen_learner(tmp_path, ["replay"], replay_source=bank, replay_ratio=0.5)
    seen: list[list[tuple[str, str]]] = []

    class Spy(Strategy):
        name = "spy"

        def loss_terms(self, batch):
            seen.append([(e.repo, e.tactic) for e in batch.examples])
            return {}

    learner.strategies.append(Spy(learner.config))
    learner.train_repository("Mathlib/Order", few(data_repo["Mathlib/Order"]), 0, 1)
    assert len(seen) == 2
    repos = [[r for r, _ in b] for b in seen]
    assert all(b.count("Mathlib/Order") == 4 and b.count("Mathlib/Algebra") == 4 for b in repos), repos
    # the replayed examples are the bank's items of the learned repository, turned into (context -> tactic)
    algebra = {t.tactic for thm in data_repo["Mathlib/Algebra"].theorems_in("train") for t in thm.tactics}
    assert all(t in algebra for b in seen for r, t in b if r == "Mathlib/Algebra")


def test_generator_replay_without_a_source_keeps_its_own_buffer(tmp_path, data_repo):
    from agent.learn.strategies import Strategy

    torch.set_num_threads(1)
    learner = gen_learner(tmp_path, ["replay"], replay_ratio=0.5)
    seen: list[list[str]] = []

    class Spy(Strategy):
        name = "spy"

        def loss_terms(self, batch):
            seen.append([e.repo for e in batch.examples])
            return {}

    learner.strategies.append(Spy(learner.config))
    first = few(data_repo["Mathlib/Order"], 4)
    learner.train_repository("Mathlib/Order", first, 0, 1)
    assert seen == [["Mathlib/Order"] * 4]   # nothing learned before: nothing to replay
    seen.clear()
    learner.train_repository("Mathlib/Algebra", few(data_repo["Mathlib/Algebra"], 4), 1, 1)
    assert seen and seen[0].count("Mathlib/Order") == 4 and seen[0].count("Mathlib/Algebra") == 4


def test_generator_distill_is_a_kl_to_the_previous_generator(tmp_path, data_repo):
    import random

    from agent.learn.strategies.base import RepoContext

    torch.set_num_threads(1)
    learner = gen_learner(tmp_path, ["distill"])
    distill = learner.strategies[0]
    examples = few(data_repo["Mathlib/Order"], 4)
    distill.before_repo(RepoContext(learner, "Mathlib/Order", examples, random.Random(0), 0))
    batch = learner.make_batch(examples, random.Random(0))
    learner.forward(batch)
    assert float(distill.loss_terms(batch)["distill"]) == pytest.approx(0.0, abs=1e-7)  # student = teacher
    with torch.no_grad():
        for n, p in learner.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    learner.forward(batch)
    assert float(distill.loss_terms(batch)["distill"]) > 1e-4
    distill.after_repo(RepoContext(learner, "Mathlib/Order", examples, random.Random(0), 0))
    assert distill.teacher is None      # the teacher lives only while a repository trains
    stats = learner.train_repository("Mathlib/Algebra", few(data_repo["Mathlib/Algebra"], 8), 1, 1)
    assert stats["terms"]["distill"] > 0


def test_generator_adapters_one_adapter_per_repository(tmp_path, data_repo):
    torch.set_num_threads(1)
    learner = gen_learner(tmp_path, ["adapters"])
    base = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    for step, name in enumerate(["Mathlib/Order", "Mathlib/Algebra", "Mathlib/Data"]):
        learner.train_repository(name, few(data_repo[name], 4), step, 1)
    model = learner.model
    assert set(model.peft_config) == {"r_Mathlib_Order", "r_Mathlib_Algebra", "r_Mathlib_Data", "merged"}
    state = model.state_dict()
    b = {a: [v for k, v in sorted(state.items()) if f"lora_B.{a}." in k] for a in
         ("r_Mathlib_Order", "r_Mathlib_Algebra", "r_Mathlib_Data")}
    assert all(any(t.abs().sum() > 0 for t in ts) for ts in b.values())   # each adapter was trained
    assert not all(torch.equal(x, y) for x, y in zip(b["r_Mathlib_Order"], b["r_Mathlib_Algebra"]))
    for n, p in model.named_parameters():
        if "lora_" not in n and n in base:
            assert torch.equal(p, base[n]), n                               # the base is never trained
