"""Dual-encoder premise retriever trained repository by repository (ReProver's retriever, LeanAgent's schedule).

Query tower: a trainable copy of the memory package's :class:`~memory.embedder.Encoder` (masked-mean pooling,
L2-normalised, cosine score). Document tower: with ``tune = "query"`` the *frozen base* encoder, so every premise
vector already in the premise store stays valid and nothing is re-embedded; with ``tune = "both"`` the two towers
share the trained weights and the store must re-embed its premises under the new encoder version.

Loss: InfoNCE (van den Oord et al. 2018; the in-batch form of DPR, Karpukhin et al. 2020). For each example the
candidates are every positive premise in the batch (in-batch negatives) plus ``hard_negatives`` premises from the
positive's own file (ReProver's "in-file" negatives; the export has no import graph, so every other premise of
that file counts as accessible), padded with random corpus premises. The example's other positives are masked
out, and ``-log softmax(q·d / τ)`` of its own positive is minimised. ReProver instead regresses every cosine onto
a 0/1 label with MSE. We use the softmax form because Recall@k and MRR only depend on the *ranking*: InfoNCE
optimises that ranking directly, its gradient concentrates on the negatives that outrank the positive, and it
does not drag all cosines to 0 or 1 — which would fight the pretrained geometry of a small sentence encoder
(MiniLM's unrelated texts sit near cosine 0.1–0.3) on a few dozen examples per repository.

Training is seeded per (seed, step, repository): same checkpoint + data + seed + step → identical weights.
"""
from __future__ import annotations

import copy
import json
import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from agent.learning_config import LearningConfig
from memory.embedder import Encoder, premise_text

if TYPE_CHECKING:
    import torch

    from agent.strategies.base import Strategy
    from curriculum.lean_data import Repository

CHECKPOINT_SCHEMA = 1


# ----------------------------------------------------------------------------------------------
# Data: the premise corpus and (state, positive premise) pairs.


@dataclass
class Corpus:
    """The premises candidates are drawn from: plain lists, so it can come from repositories or a premise store."""

    names: list[str]
    texts: list[str]
    paths: list[str]
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

    @classmethod
    def from_repositories(cls, repos: Iterable["Repository"]) -> "Corpus":
        names, texts, paths, seen = [], [], [], set()
        for repo in repos:
            for p in repo.premises:
                if p.full_name in seen:
                    continue
                seen.add(p.full_name)
                names.append(p.full_name)
                texts.append(premise_text(p.full_name, p.code, p.path))
                paths.append(p.path)
        return cls(names, texts, paths)

    @classmethod
    def from_store(cls, store: Any) -> "Corpus":
        """From a :class:`memory.premise_store.PremiseStore` (anything with `premises()` of RetrievedPremise)."""
        items = sorted(store.premises(), key=lambda p: p.full_name)
        seen: set[str] = set()
        keep = [p for p in items if not (p.full_name in seen or seen.add(p.full_name))]
        return cls([p.full_name for p in keep], [premise_text(p.full_name, p.code, p.path) for p in keep],
                   [p.path for p in keep])


@dataclass(frozen=True)
class TrainingPair:
    """One (proof state, positive premise) example; `positives` = all of the tactic's positives (masked as negatives)."""

    state: str
    premise: str
    positives: frozenset[str]
    repo: str


def training_pairs(repo: "Repository", store_names: set[str] | Sequence[str] | dict[str, int],
                   splits: Sequence[str] = ("train",)) -> list[TrainingPair]:
    """One pair per (traced tactic, annotated premise present in the corpus) of `repo`'s theorems in `splits`."""
    names = store_names if isinstance(store_names, (set, dict)) else set(store_names)
    out: list[TrainingPair] = []
    for thm in repo.theorems_in(*splits):
        for tac in thm.tactics:
            pos = tuple(dict.fromkeys(a.full_name for a in tac.annotations if a.full_name in names))
            out.extend(TrainingPair(tac.state_before, p, frozenset(pos), repo.name) for p in pos)
    return out


def pairs_from_items(items: Iterable[Any], names: set[str] | dict[str, int]) -> list[TrainingPair]:
    """Pairs from memory-bank items (`BankItem` of kind "step"): their state with each premise in the corpus."""
    out: list[TrainingPair] = []
    for item in items:
        if getattr(item, "kind", "step") != "step":
            continue
        pos = tuple(dict.fromkeys(p for p in item.premises if p in names))
        out.extend(TrainingPair(item.state, p, frozenset(pos), item.repo) for p in pos)
    return out


def cap_examples(pairs: list[TrainingPair], n: int, seed: int | str) -> list[TrainingPair]:
    """At most `n` pairs, sampled with the seed (order kept), so the cap is reproducible."""
    if len(pairs) <= n:
        return list(pairs)
    keep = sorted(random.Random(f"cap:{seed}").sample(range(len(pairs)), n))
    return [pairs[i] for i in keep]


# ----------------------------------------------------------------------------------------------
# Determinism.


def set_determinism(seed: int) -> None:
    """Seed torch and make CPU kernels deterministic, so a resumed run retrains to identical weights."""
    import torch

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def derive_seed(seed: int, step: int, repo: str) -> int:
    """A 31-bit seed that depends only on (run seed, step, repository)."""
    return random.Random(f"{seed}:{step}:{repo}").getrandbits(31)


# ----------------------------------------------------------------------------------------------
# Batches and the learner.


@dataclass
class Batch:
    """A training batch: its examples, candidate columns, and (after the forward pass) logits and loss."""

    examples: list[TrainingPair]
    candidates: list[int]                  # corpus indices of the columns
    target: "torch.Tensor"                 # (B,) column of each example's own positive
    mask: "torch.Tensor"                   # (B, C) True where a column is another positive of the row (excluded)
    logits: "torch.Tensor | None" = None   # (B, C) student similarities / τ, masked entries at -1e4
    loss: "torch.Tensor | None" = None


MASKED = -1e4
_DOC_VECTORS: dict[tuple[str, int, int], "torch.Tensor"] = {}   # frozen-tower corpus vectors, a few corpora


_IO_FAILURE = re.compile(r"I/O error|os error|failed writing|No space left|File too large", re.I)


class RetrieverLearner:
    """Trains the query tower of a dual encoder on one repository at a time with composable strategies.

    Strategies see this object as `ctx.learner`; the members they use are `model`, `trainable()`,
    `examples_loss()`, `batch_logits()`, `examples_from_items()`, `layer_index()` / `num_blocks` and
    `lora_targets` (the generator learner offers the same members).
    """

    lora_targets = ["query", "value"]

    def __init__(self, base: Encoder, config: LearningConfig, corpus: Corpus,
                 strategies: Sequence["Strategy"] = (), query: Encoder | None = None):
        self.base = base
        self.config = config
        self.corpus = corpus
        self.strategies = list(strategies)
        self.query = query or Encoder(copy.deepcopy(base.model), base.tokenizer, base.name,
                                      base.max_length, base.batch_size)
        self.lr = config.lr
        self.batch_size = config.batch_size
        self.optimizer: "torch.optim.Optimizer | None" = None
        self._opt_names: tuple[str, ...] = ()
        for p in self.base.model.parameters():
            p.requires_grad_(False)
        if query is None:
            for p in self.query.model.parameters():
                p.requires_grad_(True)

    # -- the members strategies use -------------------------------------------------------------
    @property
    def model(self) -> "torch.nn.Module":
        return self.query.model

    @model.setter
    def model(self, module: "torch.nn.Module") -> None:
        self.query.model = module
        self.query.reset_version()

    def trainable(self) -> list[tuple[str, "torch.nn.Parameter"]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    @property
    def num_blocks(self) -> int:
        """Embeddings + transformer layers: the depth LiNeS scales over."""
        cfg = getattr(self.model, "config", None) or self.base.model.config
        return int(cfg.num_hidden_layers) + 1

    @staticmethod
    def layer_index(name: str) -> int | None:
        """Block of a parameter: 0 = embeddings, i + 1 = transformer layer i, None = outside (pooler)."""
        return _block_of(name)

    def examples_from_items(self, items: Sequence[Any]) -> list[TrainingPair]:
        return pairs_from_items(items, self.corpus.index)

    # -- forward ------------------------------------------------------------------------------
    def doc_matrix(self) -> "torch.Tensor":
        """Frozen document vectors of the whole corpus (tune = "query"), cached per (base version, corpus)."""
        import torch

        key = (self.base.version, self.base.max_length, hash(tuple(self.corpus.texts)))
        if key not in _DOC_VECTORS:
            if len(_DOC_VECTORS) >= 4:
                _DOC_VECTORS.pop(next(iter(_DOC_VECTORS)))
            _DOC_VECTORS[key] = torch.from_numpy(self.base.encode(self.corpus.texts))
        return _DOC_VECTORS[key]

    def set_doc_vectors(self, vectors: np.ndarray) -> None:
        """Give precomputed base-encoder vectors of the corpus (same order), e.g. from a benchmark's index."""
        import torch

        key = (self.base.version, self.base.max_length, hash(tuple(self.corpus.texts)))
        _DOC_VECTORS[key] = torch.from_numpy(np.asarray(vectors, dtype=np.float32))

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
        mask = torch.zeros(len(examples), len(cols), dtype=torch.bool)
        for r, pos in enumerate(positives):
            for i in pos:
                if i in col_of and col_of[i] != int(target[r]):
                    mask[r, col_of[i]] = True
        return Batch(list(examples), cols, target, mask)

    def batch_logits(self, model: "torch.nn.Module", batch: Batch) -> "torch.Tensor":
        """Similarities / τ of `model`'s query vectors against the batch's columns (masked entries at -1e4)."""
        enc = Encoder(model, self.query.tokenizer, self.query.name, self.query.max_length)
        q = enc.embed([ex.state for ex in batch.examples])
        if self.config.tune == "query":
            docs = self.doc_matrix()[batch.candidates]
        else:
            docs = enc.embed([self.corpus.texts[i] for i in batch.candidates])
        return (q @ docs.T / self.config.temperature).masked_fill(batch.mask, MASKED)

    def partial_weights(self) -> bool:
        """True when only LoRA weights differ from the base, so only they are saved."""
        return any(s.saves_partial_weights for s in self.strategies)

    def usable(self, batch: Batch) -> bool:
        """A contrastive batch needs at least two columns."""
        return len(batch.candidates) >= 2

    def weights_changed(self) -> None:
        self.query.reset_version()

    def versions(self) -> dict[str, Any]:
        """Encoder versions recorded in a checkpoint's meta.json."""
        return {"base_encoder": self.base.version, "encoder_version": self.query.version, "tune": self.config.tune}

    def forward(self, batch: Batch) -> "torch.Tensor":
        import torch.nn.functional as F

        batch.logits = self.batch_logits(self.model, batch)
        batch.loss = F.cross_entropy(batch.logits, batch.target)
        return batch.loss

    def examples_loss(self, examples: Sequence[TrainingPair], rng: random.Random) -> "torch.Tensor":
        """Contrastive loss of `examples` alone (at least `batch_size` columns): EWC's per-example loss."""
        return self.forward(self.make_batch(examples, rng, min_columns=self.config.batch_size))

    # -- training -----------------------------------------------------------------------------
    def _ensure_optimizer(self) -> None:
        """AdamW over the trainable parameters; kept across repositories (checkpoint chaining) unless they change."""
        import torch

        names = tuple(n for n, _ in self.trainable())
        if self.optimizer is None or names != self._opt_names:
            self.optimizer = torch.optim.AdamW([p for _, p in self.trainable()], lr=self.lr,
                                               weight_decay=self.config.weight_decay)
            self._opt_names = names

    @property
    def trains(self) -> bool:
        return all(s.trains for s in self.strategies) and self.config.epochs > 0

    def train_repository(self, repo: str, examples: Sequence[TrainingPair], step: int, seed: int) -> dict[str, Any]:
        """Run every strategy's hooks around `epochs` passes over `examples`; returns training statistics."""
        import torch

        from agent.strategies.base import RepoContext

        start = time.perf_counter()
        run_seed = derive_seed(seed, step, repo)
        set_determinism(run_seed)
        rng = random.Random(run_seed)
        examples = [ex for ex in examples if ex.premise in self.corpus.index]
        ctx = RepoContext(learner=self, repo=repo, examples=list(examples), rng=rng, step=step)
        for s in self.strategies:
            s.before_repo(ctx)
        losses: list[float] = []
        terms: dict[str, float] = {}
        batches = 0
        if self.trains and examples:
            self._ensure_optimizer()
            assert self.optimizer is not None
            self.model.train()
            for _ in range(self.config.epochs):
                order = list(examples)
                rng.shuffle(order)
                for lo in range(0, len(order), self.batch_size):
                    chunk = order[lo:lo + self.batch_size]
                    for s in self.strategies:
                        chunk = s.mix(chunk, ctx)
                    batch = self.make_batch(chunk, rng)
                    if not self.usable(batch):
                        continue
                    loss = self.forward(batch)
                    total = loss
                    for s in self.strategies:
                        for name, value in s.loss_terms(batch).items():
                            total = total + value
                            terms[name] = terms.get(name, 0.0) + float(value.detach())
                    self.optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    if self.config.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_([p for _, p in self.trainable()], self.config.grad_clip)
                    self.optimizer.step()
                    losses.append(float(loss.detach()))
                    batches += 1
            self.model.eval()
        for s in reversed(self.strategies):
            s.after_repo(ctx)
        self.weights_changed()
        return {"repo": repo, "step": step, "examples": len(examples), "batches": batches,
                "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                "terms": {k: v / max(batches, 1) for k, v in terms.items()},
                "seconds": round(time.perf_counter() - start, 3)}

    # -- checkpoints --------------------------------------------------------------------------
    def save(self, directory: Path, meta: dict[str, Any]) -> Path:
        """Write weights, optimizer and strategy state to `directory` atomically (temp dir, then rename)."""
        import torch
        from safetensors.torch import save_file

        directory = Path(directory)
        tmp = directory.parent / f".tmp-{directory.name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        full = not self.partial_weights()
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()
                 if full or "lora_" in k}
        try:
            if self.trains:
                save_file(state, str(tmp / "model.safetensors"))
            torch.save({"optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
                        "optimizer_names": list(self._opt_names),
                        "strategies": {s.name: s.state_dict() for s in self.strategies}}, tmp / "training.pt")
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            # safetensors and torch report a failed write (disk full, file too large) as their own errors;
            # give the caller the OSError it handles as "the disk refused", anything else stays a bug.
            if isinstance(exc, OSError) or not _IO_FAILURE.search(str(exc)):
                raise
            raise OSError(f"cannot write checkpoint {directory.name}: {exc}") from exc
        meta = {"schema_version": CHECKPOINT_SCHEMA, **self.versions(),
                "strategies": [s.name for s in self.strategies], "weights": self.trains, **meta}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
        if directory.exists():
            shutil.rmtree(directory)
        os.rename(tmp, directory)
        return directory

    def load(self, directory: Path) -> dict[str, Any]:
        """Restore strategy state (which may rebuild the model, e.g. adapters), weights and optimizer."""
        import torch
        from safetensors.torch import load_file

        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        extra = torch.load(directory / "training.pt", map_location="cpu", weights_only=False)
        for s in self.strategies:
            if s.name in extra["strategies"]:
                s.load_state_dict(extra["strategies"][s.name], self)
        if (directory / "model.safetensors").exists():
            missing, unexpected = self.model.load_state_dict(load_file(str(directory / "model.safetensors")),
                                                             strict=False)
            if unexpected:
                raise ValueError(f"{directory}: checkpoint weights do not fit the model ({unexpected[0]}, ...)")
        self.weights_changed()
        if extra.get("optimizer") is not None:
            names = tuple(extra.get("optimizer_names", ()))
            if names == tuple(n for n, _ in self.trainable()):
                self._ensure_optimizer()
                assert self.optimizer is not None
                self.optimizer.load_state_dict(extra["optimizer"])
        return meta


def _block_of(name: str) -> int | None:
    """0 for embedding parameters, i + 1 for `...layer.<i>.` / `...layers.<i>.` / `...h.<i>.` / `...block.<i>.`."""
    parts = name.split(".")
    for k, part in enumerate(parts[:-1]):
        if part in ("layer", "layers", "h", "block") and parts[k + 1].isdigit():
            return int(parts[k + 1]) + 1
    if any(p in ("embeddings", "wte", "wpe", "embed_tokens", "shared") for p in parts):
        return 0
    return None


def weights_digest(model: "torch.nn.Module") -> str:
    """Hash of all parameters, for determinism checks."""
    from memory.embedder import weights_hash

    return weights_hash(model)


def encode_queries(encoder: Encoder, states: Sequence[str]) -> np.ndarray:
    """Query vectors of proof states (raw text, as the contract says)."""
    return encoder.encode(list(states))
