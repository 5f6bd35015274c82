"""Generator LoRA fine-tuning with a tiny decoder-only model built from a config (CPU, seconds)."""
from __future__ import annotations

import pytest
import torch

from agent.generator_training import GeneratorLearner, generator_examples, train_generator_on_repository
from agent.learning_config import LearningConfig
from agent.retriever import weights_digest
from agent.strategies import build_strategies


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
    ex = generator_examples(data_repo["Mathlib/Order"])
    assert ex and all(e.repo == "Mathlib/Order" for e in ex)
    with_premise = next(e for e in ex if "<a>" in e.source)
    assert with_premise.tactic and with_premise.source.rstrip().endswith(with_premise.source.rstrip().split("\n")[-1])


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
