"""Dual-encoder premise retriever trained repository by repository (ReProver's retriever, LeanAgent's schedule).

Query tower: a trainable copy of the memory package's :class:`~memory.embedder.Encoder` (masked-mean pooling,
L2-normalised, cosine score). Document tower: the *frozen base* encoder, so every premise vector already in the
premise store stays valid and nothing is ever re-embedded (DESIGN.md §5: "tune only the query tower so premise
embeddings never go stale"; tuning both towers was measured and removed, see docs/design-notes.md).

Loss: InfoNCE (van den Oord et al. 2018; the in-batch form of DPR, Karpukhin et al. 2020). For each example the
candidates are every positive premise in the batch (in-batch negatives) plus ``hard_negatives`` premises from the
positive's own file (ReProver's "in-file" negatives; the export has no import graph, so every other premise of
that file counts as accessible), padded with random corpus premises, plus ``mined_negatives`` premises per example
mined from the whole corpus with the current query vectors (ANCE, Xiong et al. 2021: the top-scoring
non-positives; since the document tower is frozen, mining costs one matrix product and is never stale). The example's other positives are masked
out, and ``-log softmax(q·d / τ)`` of its own positive is minimised. ReProver instead regresses every cosine onto
a 0/1 label with MSE. We use the softmax form because Recall@k and MRR only depend on the *ranking*: InfoNCE
optimises that ranking directly, its gradient concentrates on the negatives that outrank the positive, and it
does not drag all cosines to 0 or 1 — which would fight the pretrained geometry of a small sentence encoder
(MiniLM's unrelated texts sit near cosine 0.1–0.3) on a few dozen examples per repository.

Training is seeded per (seed, step, repository): same checkpoint + data + seed + step → identical weights.
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from agent.learn.config import LearningConfig
from agent.learn.learner import Learner, _block_of
from memory.embedder import Encoder, premise_text, query_parts, query_text

if TYPE_CHECKING:
    import torch

    from curriculum.lean_data import Repository

# ----------------------------------------------------------------------------------------------
# Data: the premise corpus and (state, positive premise) pairs.


@dataclass
class Corpus:
    """The premises candidates are drawn from: plain lists, so it can come from repositories or a premise store."""

    names: list[str]
    texts: list[str]
    paths: list[str]
    ids: list[str] = field(default_factory=list)    # premise-store ids, when built from repositories
    index: dict[str, int] = field(init=False)
    by_path: dict[str, list[int]] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {}
        for i, name in enumerate(self.names):
            self.index.setdefault(name, i)
        self.by_path = {}
        for i, path in enumerate(self.paths):
            self.by_path.setdefault(path, []).append(i)

    def __len__(self) -> int:
        return len(self.names)

    def vectors(self, encoder: Encoder) -> "torch.Tensor":
        """Premise vectors under the frozen `encoder`, computed once per corpus object (every training batch
        reads its candidate rows from here; nothing hashes or re-encodes the corpus per batch)."""
        import torch

        cached = self.__dict__.get("_vectors")
        if cached is None or cached[0] != encoder.version:
            cached = (encoder.version, torch.from_numpy(encoder.encode(self.texts, memo=False)))
            self.__dict__["_vectors"] = cached
        return cached[1]

    def set_vectors(self, encoder: Encoder, vectors: np.ndarray) -> None:
        import torch

        self.__dict__["_vectors"] = (encoder.version, torch.from_numpy(np.asarray(vectors, dtype=np.float32)))

    @classmethod
    def from_repositories(cls, repos: Iterable["Repository"]) -> "Corpus":
        from memory.premise_store import premise_id

        names, texts, paths, ids, seen = [], [], [], [], set()
        for repo in repos:
            for p in repo.premises:
                if p.full_name in seen:
                    continue
                seen.add(p.full_name)
                names.append(p.full_name)
                texts.append(premise_text(p.full_name, p.code, p.path))
                paths.append(p.path)
                ids.append(premise_id(repo.name, repo.commit, p.full_name))
        return cls(names, texts, paths, ids)

@dataclass(frozen=True)
class TrainingPair:
    """One (proof state, positive premise) example; `positives` = all of the tactic's positives (masked as
    negatives); `path` and `theorem` = the file and name of the state's theorem ("" = unknown or left out),
    part of the query text."""

    state: str
    premise: str
    positives: frozenset[str]
    repo: str
    path: str = ""
    theorem: str = ""

    @property
    def query(self) -> str:
        """What the query tower embeds (memory/embedder.py `query_text`)."""
        return query_text(self.state, self.path, self.theorem)


def training_pairs(repo: "Repository", store_names: set[str] | Sequence[str] | dict[str, int],
                   splits: Sequence[str] = ("train",), query: str = "theorem") -> list[TrainingPair]:
    """One pair per (traced tactic, annotated premise present in the corpus) of `repo`'s theorems in `splits`;
    `query` = what the query keeps of the theorem (memory/embedder.py `query_parts`: bench/forgetting.py's rows)."""
    names = store_names if isinstance(store_names, (set, dict)) else set(store_names)
    out: list[TrainingPair] = []
    for thm in repo.theorems_in(*splits):
        path, theorem = query_parts(query, thm.file_path, thm.full_name)
        for tac in thm.tactics:
            pos = tuple(dict.fromkeys(a.full_name for a in tac.annotations if a.full_name in names))
            out.extend(TrainingPair(tac.state_before, p, frozenset(pos), repo.name, path, theorem) for p in pos)
    return out


def pairs_from_items(items: Iterable[Any], names: set[str] | dict[str, int],
                     query: str = "theorem") -> list[TrainingPair]:
    """Pairs from memory-bank items (`BankItem` of kind "step"): their state, theorem name and file (when the
    item records it) with each premise in the corpus."""
    out: list[TrainingPair] = []
    for item in items:
        if getattr(item, "kind", "step") != "step":
            continue
        pos = tuple(dict.fromkeys(p for p in item.premises if p in names))
        path, theorem = query_parts(query, getattr(item, "path", ""), getattr(item, "theorem", ""))
        out.extend(TrainingPair(item.state, p, frozenset(pos), item.repo, path, theorem) for p in pos)
    return out


# ----------------------------------------------------------------------------------------------
# Batches and the learner.


@dataclass
class Batch:
    """A training batch: its examples, candidate columns, and (after the forward pass) logits and loss."""

    examples: list[TrainingPair]
    candidates: list[int]                  # corpus indices of the columns
    target: "torch.Tensor"                 # (B,) column of each example's own positive
    mask: "torch.Tensor"                   # (B, C) True where a column is another positive of the row (excluded)
    positives: list[set[int]] = field(default_factory=list)  # corpus indices of each row's positives
    mined: bool = False                    # True once mined negatives were appended to `candidates`
    logits: "torch.Tensor | None" = None   # (B, C) student similarities / τ, masked entries at -1e4
    loss: "torch.Tensor | None" = None


MASKED = -1e4


class RetrieverLearner(Learner):
    """Trains the query tower of a dual encoder on one repository at a time with composable strategies.

    Strategies see this object as `ctx.learner`; the members they use are `model`, `trainable()`,
    `examples_loss()`, `batch_logits()`, `examples_from_items()`, `layer_index()` / `num_blocks` and
    `lora_targets` (the generator learner offers the same members).
    """

    lora_targets = ["query", "value"]

    def __init__(self, base: Encoder, config: LearningConfig, corpus: Corpus,
                 strategies: Sequence["Strategy"] = (), query: Encoder | None = None, query_form: str = "theorem"):
        self.base = base
        self.query_form = query_form       # what replayed bank items' queries keep of their theorem
        self.config = config
        self.corpus = corpus
        self.strategies = list(strategies)
        self.query = query or Encoder(copy.deepcopy(base.model), base.tokenizer, base.name,
                                      base.max_length, base.batch_size, pooling=base.pooling)
        self.lr = config.lr
        self.batch_size = config.batch_size
        self.optimizer: "torch.optim.Optimizer | None" = None
        self._opt_names: tuple[str, ...] = ()
        for p in self.base.model.parameters():
            p.requires_grad_(False)
        if query is None:
            for p in self.query.model.parameters():
                p.requires_grad_(True)
            self.freeze_discarded()
        if config.activation_checkpointing:
            checkpoint_activations(self.query.model)

    # -- the members strategies use -------------------------------------------------------------
    @property
    def model(self) -> "torch.nn.Module":
        return self.query.model

    @model.setter
    def model(self, module: "torch.nn.Module") -> None:
        self.query.model = module
        self.query.reset_version()

    @property
    def num_blocks(self) -> int:
        """Embeddings + transformer layers: the depth LiNeS scales over."""
        cfg = getattr(self.model, "config", None) or self.base.model.config
        return int(cfg.num_hidden_layers) + 1

    def examples_from_items(self, items: Sequence[Any]) -> list[TrainingPair]:
        return pairs_from_items(items, self.corpus.index, query=self.query_form)

    # -- forward ------------------------------------------------------------------------------
    def doc_matrix(self) -> "torch.Tensor":
        """Frozen document vectors of the whole corpus, encoded once per corpus (see :meth:`Corpus.vectors`)."""
        return self.corpus.vectors(self.base)

    def set_doc_vectors(self, vectors: np.ndarray) -> None:
        """Give precomputed base-encoder vectors of the corpus (same order), e.g. from a benchmark's index."""
        self.corpus.set_vectors(self.base, vectors)

    def make_batch(self, examples: Sequence[TrainingPair], rng: random.Random, min_columns: int = 0) -> Batch:
        """Columns: the batch's positives, then in-file hard negatives, padded with random premises."""
        import torch

        cols: list[int] = []
        seen: set[int] = set()

        def add(i: int) -> None:
            if i not in seen:
                seen.add(i)
                cols.append(i)

        for ex in examples:
            add(self.corpus.index[ex.premise])
        positives = [{self.corpus.index[p] for p in ex.positives if p in self.corpus.index} for ex in examples]
        n = len(self.corpus)
        for ex, pos in zip(examples, positives):
            same = [i for i in self.corpus.by_path.get(self.corpus.paths[self.corpus.index[ex.premise]], [])
                    if i not in pos]
            picks = rng.sample(same, min(self.config.hard_negatives, len(same)))
            while len(picks) < self.config.hard_negatives and n > len(pos) + len(picks):
                j = rng.randrange(n)
                if j not in pos and j not in picks:
                    picks.append(j)
            for j in picks:
                add(j)
        while len(cols) < min(min_columns, n):
            add(rng.randrange(n))
        col_of = {c: k for k, c in enumerate(cols)}
        target = torch.tensor([col_of[self.corpus.index[ex.premise]] for ex in examples])
        return Batch(list(examples), cols, target, self._mask(examples, cols, positives), positives)

    def _mask(self, examples: Sequence[TrainingPair], cols: list[int], positives: list[set[int]]) -> "torch.Tensor":
        """True where a column is a positive of the row other than the row's own target premise."""
        import torch

        col_of = {c: k for k, c in enumerate(cols)}
        mask = torch.zeros(len(examples), len(cols), dtype=torch.bool)
        for r, (ex, pos) in enumerate(zip(examples, positives)):
            own = self.corpus.index[ex.premise]
            for i in pos:
                if i != own and i in col_of:
                    mask[r, col_of[i]] = True
        return mask

    def mine_negatives(self, batch: Batch, q: "torch.Tensor") -> None:
        """ANCE (Xiong et al. 2021) against a frozen document tower: append, for every row, the
        `mined_negatives` highest-scoring premises of the whole corpus under the current query vectors `q`
        that are not among the row's positives. Every row then sees every column (in-batch sharing), the
        mask is rebuilt, and the targets keep their columns (new columns go at the end)."""
        import torch

        k = self.config.mined_negatives
        if k <= 0 or batch.mined:
            return
        docs = self.doc_matrix()
        with torch.no_grad():
            scores = q.detach() @ docs.T
            for r, pos in enumerate(batch.positives):
                if pos:
                    scores[r, list(pos)] = float("-inf")
            top = torch.topk(scores, min(k, max(docs.shape[0] - 1, 1)), dim=1).indices.tolist()
        seen = set(batch.candidates)
        for row in top:
            for i in row:
                if i not in seen:
                    seen.add(i)
                    batch.candidates.append(i)
        batch.mask = self._mask(batch.examples, batch.candidates, batch.positives)
        batch.mined = True

    def query_vectors(self, model: "torch.nn.Module", batch: Batch) -> "torch.Tensor":
        """One vector per row, each distinct query text embedded once per batch: a state has one pair per
        premise its tactic uses (2.4 on the sample) and a replayed bank step brings all of them into the same
        batch, so about a third of a batch's rows repeat a text. The rows of one text share its vector (and
        its dropout mask); the gradient of the shared vector sums theirs."""
        import torch

        enc = Encoder(model, self.query.tokenizer, self.query.name, self.query.max_length,
                      pooling=self.query.pooling)
        texts = [ex.query for ex in batch.examples]
        distinct = list(dict.fromkeys(texts))
        with ActivationBudget(model, self.config.kept_activation_tokens) as budget:
            vectors = enc.embed(distinct, chunk=self.config.micro_batch, before_pass=budget.before_pass)
        if len(distinct) == len(texts):
            return vectors
        row_of = {text: i for i, text in enumerate(distinct)}
        return vectors[torch.tensor([row_of[t] for t in texts], device=vectors.device)]

    def score(self, q: "torch.Tensor", batch: Batch) -> "torch.Tensor":
        docs = self.doc_matrix()[batch.candidates]
        return (q @ docs.T / self.config.temperature).masked_fill(batch.mask, MASKED)

    def batch_logits(self, model: "torch.nn.Module", batch: Batch) -> "torch.Tensor":
        """Similarities / τ of `model`'s query vectors against the batch's columns (masked entries at -1e4)."""
        return self.score(self.query_vectors(model, batch), batch)

    def kept_examples(self, examples: Sequence[TrainingPair]) -> list[TrainingPair]:
        return [ex for ex in examples if ex.premise in self.corpus.index]

    def usable(self, batch: Batch) -> bool:
        """A contrastive batch needs at least two columns."""
        return len(batch.candidates) >= 2

    def weights_changed(self) -> None:
        self.query.reset_version()

    def versions(self) -> dict[str, Any]:
        """Encoder versions recorded in a checkpoint's meta.json."""
        return {"base_encoder": self.base.version, "encoder_version": self.query.version}

    def forward(self, batch: Batch) -> "torch.Tensor":
        import torch.nn.functional as F

        q = self.query_vectors(self.model, batch)
        self.mine_negatives(batch, q)
        batch.logits = self.score(q, batch)
        batch.loss = F.cross_entropy(batch.logits, batch.target)
        return batch.loss

    def examples_loss(self, examples: Sequence[TrainingPair], rng: random.Random) -> "torch.Tensor":
        """Contrastive loss of `examples` alone (at least `batch_size` columns): EWC's per-example loss."""
        return self.forward(self.make_batch(examples, rng, min_columns=self.config.batch_size))


class ActivationBudget:
    """Which forward passes of one training batch keep their activations: the shortest passes (they come
    first), while their padded tokens fit in `tokens`; the rest are checkpointed (recomputed in backward).
    Short passes hold little and cost the recompute all the same, so this buys back most of checkpointing's
    CPU for a bounded amount of memory, whatever the lengths of a repository's states. Each pass is either
    plain or checkpointed, both give the same values and gradients (dropout's random state is replayed), so the
    weights do not depend on the budget. A no-op for a model without checkpointing or not training."""

    def __init__(self, model: "torch.nn.Module", tokens: int):
        self.left = tokens
        self.layers = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False)] \
            if model.training and tokens > 0 else []

    def before_pass(self, padded_tokens: int) -> None:
        keep = padded_tokens <= self.left
        if keep:
            self.left -= padded_tokens
        for layer in self.layers:
            layer.gradient_checkpointing = not keep

    def __enter__(self) -> "ActivationBudget":
        return self

    def __exit__(self, *exc: object) -> None:
        for layer in self.layers:
            layer.gradient_checkpointing = True


def checkpoint_activations(model: "torch.nn.Module") -> None:
    """Keep only each transformer layer's input during training and recompute the layer in the backward pass
    (Chen et al. 2016, "Training deep nets with sublinear memory cost"), through the model's own Hugging Face
    switch. The non-reentrant form replays the random state of the first pass, so dropout draws the same masks
    and training reaches the same weights; the autograd graph of a micro-batch shrinks to one layer's. Eval-mode
    passes (inference, a distillation teacher) are untouched."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        return
    if getattr(model.config, "use_cache", False):
        model.config.use_cache = False   # an encoder keeps no cache; else transformers warns on the first pass
    if hasattr(model, "activation_checkpointing_enable"):   # the newer name; the old one warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def weights_digest(model: "torch.nn.Module") -> str:
    """Hash of all parameters, for determinism checks."""
    from memory.embedder import weights_hash

    return weights_hash(model)

