"""LoRA fine-tuning of the `hf` tactic generator, repository by repository, with the retriever's strategies.

Examples are (premises + state → tactic) pairs of a repository's traced tactics: the input is exactly what the
prover feeds the generator (`provers.generators.context.pack_premises`, inside ReProver's `[GOAL] … [PROOFSTEP]`
template for decoder-only models), built from a :class:`PremiseContext` when one is given or else from the
tactic's annotated premises. The loss is teacher-forced cross-entropy on the tactic tokens only.

The base model stays frozen: a LoRA adapter (Hu et al. 2021, peft) is trained — one shared adapter carried
across repositories, or one per repository with the `adapters` strategy. `replay` (bank items carry state,
tactic and premises), `ewc` (over the LoRA weights), `distill` (token-level KL to the previous adapter state,
LwF) and `merge` (LiNeS on `lora_B`) apply unchanged through the learner interface of
:class:`agent.learn.learner.Learner`, whose training loop and checkpoints this class shares with the retriever.
In the loop the adapter (with its optimizer and strategy state) is chained from step to step exactly like the
retriever's checkpoints; a merged copy is saved next to it for the prover.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

from agent.learn.config import LearningConfig
from agent.learn.learner import Learner, cap_examples
from agent.learn.strategies.adapters import lora_config
from agent.learn.strategies.base import Strategy


@dataclass(frozen=True)
class GeneratorExample:
    """One (input text, target tactic) pair; `repo` for replay bookkeeping."""

    source: str
    tactic: str
    repo: str


@dataclass(frozen=True)
class _Named:
    full_name: str
    code: str = ""


@dataclass
class GeneratorBatch:
    examples: list[GeneratorExample]
    inputs: dict[str, Any]
    labels: Any
    logits: Any = None
    loss: Any = None


def generator_examples(repo: Any, splits: Sequence[str] = ("train",), context: Any = None,
                       budget_bytes: int = 2048) -> list[GeneratorExample]:
    """(premises + state → tactic) pairs of `repo`'s traced tactics."""
    from provers.generators.context import pack_premises

    codes = {p.full_name: p.code for p in repo.premises}
    out = []
    for thm in repo.theorems_in(*splits):
        for tac in thm.tactics:
            if context is not None:
                source = context.build(tac.state_before, thm)
            else:
                gold = [_Named(a.full_name, codes.get(a.full_name, "")) for a in tac.annotations]
                source = pack_premises(tac.state_before, gold, budget_bytes)
            out.append(GeneratorExample(source, tac.tactic, repo.name))
    return out


class GeneratorLearner(Learner):
    """The learner template over a causal-LM or seq2seq generator with LoRA (only LoRA weights are saved)."""

    lora_targets = None   # peft picks the attention projections of known architectures

    def __init__(self, model: Any, tokenizer: Any, seq2seq: bool, config: LearningConfig,
                 strategies: Sequence[Strategy] = (), max_length: int | None = None):
        from peft import PeftModel, get_peft_model

        self.config = config
        self.strategies = list(strategies)
        self.tokenizer = tokenizer
        self.seq2seq = seq2seq
        self.max_length = max_length or config.generator_max_length
        self.lr = config.lora_lr
        self.batch_size = config.generator_batch_size
        self.optimizer = None
        self._opt_names = ()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.truncation_side = "left"
        if not isinstance(model, PeftModel) and not any(s.name == "adapters" for s in self.strategies):
            model = get_peft_model(model, lora_config(config, self.lora_targets), adapter_name="default")
        self._model = model
        self.freeze_discarded()

    @property
    def model(self) -> Any:
        return self._model

    @model.setter
    def model(self, module: Any) -> None:
        self._model = module

    @property
    def num_blocks(self) -> int:
        cfg = self._model.config
        return int(getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "num_layers")) + 1

    def partial_weights(self) -> bool:
        return True

    def weights_changed(self) -> None:
        """No version to reset: generators are not keyed by weights anywhere."""

    def versions(self) -> dict[str, Any]:
        return {"generator": str(getattr(self._model.config, "_name_or_path", ""))}

    def examples_from_items(self, items: Sequence[Any]) -> list[GeneratorExample]:
        from provers.generators.context import pack_premises

        return [GeneratorExample(pack_premises(it.state, [_Named(p) for p in it.premises], 2048), it.tactic, it.repo)
                for it in items if getattr(it, "kind", "step") == "step" and it.tactic]

    def make_batch(self, examples: Sequence[GeneratorExample], rng: random.Random,
                   min_columns: int = 0) -> GeneratorBatch:
        import torch

        from provers.generators.base import CAUSAL_TEMPLATE

        tok = self.tokenizer
        if self.seq2seq:
            enc = tok([e.source for e in examples], return_tensors="pt", padding=True, truncation=True,
                      max_length=self.max_length)
            tgt = tok([e.tactic for e in examples], return_tensors="pt", padding=True, truncation=True,
                      max_length=128)
            labels = tgt["input_ids"].masked_fill(tgt["attention_mask"] == 0, -100)
            return GeneratorBatch(list(examples), dict(enc), labels)
        ids, labs = [], []
        for e in examples:
            t = tok(e.tactic, add_special_tokens=False)["input_ids"][:128] + [tok.eos_token_id]
            p = tok(CAUSAL_TEMPLATE.format(context=e.source), truncation=True,
                    max_length=max(self.max_length - len(t), 8))["input_ids"]
            ids.append(p + t)
            labs.append([-100] * len(p) + t)
        width = max(len(x) for x in ids)
        pad = tok.pad_token_id
        inputs = {"input_ids": torch.tensor([x + [pad] * (width - len(x)) for x in ids]),
                  "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])}
        return GeneratorBatch(list(examples), inputs, torch.tensor([x + [-100] * (width - len(x)) for x in labs]))

    def usable(self, batch: GeneratorBatch) -> bool:
        return bool((batch.labels != -100).any())

    def _token_logits(self, model: Any, batch: GeneratorBatch) -> tuple[Any, Any]:
        """(logits, targets) at the positions that predict a tactic token."""
        if self.seq2seq:
            logits = model(**batch.inputs, labels=batch.labels).logits
            keep = batch.labels != -100
            return logits[keep], batch.labels[keep]
        logits = model(**batch.inputs).logits[:, :-1]
        targets = batch.labels[:, 1:]
        keep = targets != -100
        return logits[keep], targets[keep]

    def batch_logits(self, model: Any, batch: GeneratorBatch) -> Any:
        return self._token_logits(model, batch)[0]

    def forward(self, batch: GeneratorBatch) -> Any:
        import torch.nn.functional as F

        logits, targets = self._token_logits(self.model, batch)
        batch.logits = logits
        batch.loss = F.cross_entropy(logits, targets)
        return batch.loss

    def examples_loss(self, examples: Sequence[GeneratorExample], rng: random.Random) -> Any:
        return self.forward(self.make_batch(examples, rng))


def train_generator_on_repository(learner: GeneratorLearner, repo: Any, step: int, seed: int,
                                  context: Any = None, partial: Any = None,
                                  snapshot_seconds: float = 10.0) -> dict[str, Any]:
    """One repository of generator fine-tuning (examples capped at `generator_max_examples`, seeded)."""
    examples = cap_examples(generator_examples(repo, context=context), learner.config.generator_max_examples,
                            f"gen:{seed}:{step}")
    return learner.train_repository(repo.name, examples, step, seed, partial=partial,
                                    snapshot_seconds=snapshot_seconds)
