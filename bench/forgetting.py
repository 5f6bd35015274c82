"""Forgetting benchmark: the retriever's strategies, naive fine-tuning and a joint-training upper bound, side by
side on one stream of repositories and the same held-out theorems.

The shared LeanDojo sample is split into pseudo-repositories (`--split-by-dir 2`, as `make run` does) and ordered
by the curriculum (LeanAgent's easy-first order, as `make run` does); `--repos N` keeps the first N. Every row
starts from the untrained MiniLM with the `[learning]` defaults of `agent/learn/config.py` (overridable per row)
and the same per-repository example cap (`cap_examples`, the loop's call):

* a strategy row (`naive`, `replay`, `replay+distill`, ...) learns the stream one repository at a time, exactly as
  the loop's learn step calls the learner, and after every repository scores Recall@10 of every repository's
  held-out tactics (its val + test split), filling the accuracy matrix A[i][j]; the untrained encoder gives the
  baseline row. ACC, BWT, FWT, forgetting (agent.evaluation.lifelong) come from A.
* `joint` trains once on the union of every repository's capped pairs (the same example budget), no strategy, with
  plain InfoNCE (in-file/random negatives only, 1 epoch): the usual upper bound of continual learning and the
  issue's reference. `joint+` is the same union trained with the default recipe (mined negatives, as many epochs
  as `--joint-epochs`), so the lifelong default is also compared with joint training of equal sophistication.

"Unseen" figures are Recall@10 and MRR of the final model on held-out tactics pooled over the stream (each
repository's own val, resp. test tactics, every tactic weighted equally, against the whole corpus), and with
`--unseen DIR` on theorems from outside the stream: every tactic of another LeanDojo export ranked against that
export's own premises, as `lifelean evaluate DIR --split all` scores them (bench/heldout.py writes such exports:
disjoint folds of the sample; `--data FOLD0 --unseen FOLD1`). Defaults are
chosen by the val columns; test is reported. Ratios are against `joint`, and a second table gives each row's
difference from `joint` tactic by tactic with its 95% paired bootstrap interval (pooled val+test and unseen),
and BWT with its interval over repositories: a ratio of 1.02 on 200 tactics is noise until its interval says
otherwise. Each row runs in its own process (peak
resident memory is that process's); seconds per repository are training only.

    python bench/forgetting.py [--repos 28] [--strategies naive,replay+distill,joint] [--json]
    python bench/forgetting.py --strategies "replay+distill/mined_negatives=0/min_steps=0,joint"

A row spec is `strategies[/key=value...]`: `+` composes strategies, and `key=value` overrides a LearningConfig
field for that row only (e.g. `replay+distill/temperature=0.2`). `query=file` trains and scores the row with
the proof state and its theorem's file as the query, without the theorem's name, and `query=state` with the
bare state (memory/embedder.py `query_of`): the default rows `merge/query=file` and `joint/query=file`
show what the name in the query brings (their FWT is against the untrained encoder with the same query form).

**`--model generator`**: the same comparison for the tactic generator, on tactic@1 / tactic@8
(agent/evaluation/tactics.py: the recorded tactic among the generator's top-k suggestions for the recorded state,
exact up to whitespace) of every stream repository's held-out (val + test) steps. No model can be downloaded here,
so the `hf` generator is a tiny byte-level LLaMA built locally (provers/generators/tiny.py, `--d-model 64`, 2
layers), first fully trained (`--pretrain-epochs`) on the train steps of the sample's repositories that are *not*
in the stream — the stand-in for a pre-trained tactic model, so that LoRA has a base to adapt; the stream's
repositories and their held-out steps are never seen by it. Every strategy row then learns the stream one
repository at a time with the real `GeneratorLearner` (`train_generator_on_repository`, exactly the loop's call:
LoRA, gold premises packed before the state, `generator_max_examples` per repository) and, after every
repository, the `hf` generator (beam search, n = 8) scores every column with the premise context the prover
builds: the top `num_premises` premises of the whole corpus retrieved by the untrained MiniLM (the same for
every row, so rows differ by the generator only). The pre-trained base gives the baseline row (FWT). `joint`
trains once on the union of the capped examples (same budget, same recipe). `knn` is the memory-bank generator
(provers/generators/knn.py): no training, its bank grows by each learned repository's train steps (baseline:
the empty bank); `knn+pre` starts its bank with the base model's pre-training steps (the same data as the
`hf` rows start from). Ratios are against `joint` on pooled val+test tactic@8 / tactic@1. Tactics longer than
`--max-new` bytes (20 of the default run's 76) cannot be matched by the `hf` rows.

Exact match is rarely reached by a model this small (it is ~0 for every `hf` row of the default run), so a
second table gives the same lifelong metrics over the teacher-forced token accuracy of the `hf` rows on the
same held-out tactics (share of tactic tokens the generator predicts right given the prompt and the tactic so
far): a finer view of what each strategy learns and forgets. With a real tactic model (`[prover] model`) the
tactic@k table is the one to read.

    python bench/forgetting.py --model generator [--repos 6] [--strategies naive,replay,joint,knn]

The default generator run (6 repositories, 76 held-out steps, 11 rows, one torch thread per row) took 18.5
minutes (1108 s) on 2 CPU cores shared with other work; seconds per repository in the table are training only.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memory.embedder import QUERY_FORMS  # noqa: E402  (numpy only; the models load in the rows)

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "leandojo_b4_sample"
STRATEGIES = ["frozen", "naive", "replay", "ewc", "distill", "adapters", "merge", "replay+distill", "joint", "joint+",
              "merge/query=file", "joint/query=file"]
EVAL_SPLITS = ("val", "test")
PAIRED = ("recall@10", "mrr")   # the per-tactic scores each row keeps, to be compared with `joint`'s pair by pair
JOINT_ROWS = ("joint", "joint+")   # one name each: "joint+" is not "joint" composed with another strategy
PLAIN = {"mined_negatives": 0, "min_steps": 0, "epochs": 1}   # the joint baseline: plain 1-epoch InfoNCE


def setup(threads: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(threads)


def load_stream(data: Path, n: int | None) -> tuple[list[Any], list[Any]]:
    """(stream in curriculum order, all repositories): the first `n` of `make run`'s stream."""
    from curriculum.lean_data import load_dataset, to_repositories
    from curriculum.ordering import order_repositories

    repos = to_repositories(load_dataset(data), split_by_dir=2)
    by_key = {r.key: r for r in repos}
    stream = [by_key[k] for k in order_repositories(repos).order]
    return (stream[:n] if n else stream), repos


def parse_spec(spec: str) -> tuple[list[str], dict[str, Any]]:
    """`replay+distill/lr=1e-4` -> (["replay", "distill"], {"lr": 1e-4}); values typed like the config field.
    `query=file|state` (not a LearningConfig field) embeds the state with its theorem's file only, or the bare
    state, as the query (memory/embedder.py `query_of`), for training and scoring alike."""
    from agent.learn.config import LearningConfig

    head, *overrides = spec.split("/")
    types = {f.name: f.type for f in fields(LearningConfig)}
    kw: dict[str, Any] = {}
    for item in overrides:
        key, _, value = item.partition("=")
        if key == "query":
            if value not in QUERY_FORMS:
                raise SystemExit(f"query: expected one of {', '.join(QUERY_FORMS)}, got '{value}' in '{spec}'")
            kw[key] = value
            continue
        if key not in types:
            raise SystemExit(f"unknown LearningConfig field '{key}' in '{spec}'")
        t = str(types[key])
        kw[key] = int(value) if t == "int" else float(value) if t == "float" else value
    return ([head] if head in JOINT_ROWS else head.split("+")), kw


class HeldOut:
    """Every stream repository's held-out tactics (state, positives) per split, with one ranked list each."""

    def __init__(self, stream: list[Any], names: set[str], query: str = "theorem", rerank: str = "bm25"):
        from agent.evaluation.retrieval import eval_tactics
        from memory.rerank import reranker

        self.rerank = reranker(rerank)   # as the product ranks ([memory] rerank)

        self.items: list[tuple[int, str, str, set[str]]] = []   # (column, split, query text, positives)
        for j, repo in enumerate(stream):
            for split in EVAL_SPLITS:
                self.items.extend((j, split, s, p) for s, p in eval_tactics(repo.theorems_in(split), names,
                                                                            query=query))
        self.T = len(stream)

    def rank(self, encoder: Any, index: Any, rows: list[int]) -> list[list[str]]:
        from agent.evaluation.retrieval import NUM_RETRIEVED
        from memory.rerank import retrieve

        if not rows:
            return []
        queries = [self.items[r][2] for r in rows]
        found = retrieve(index, encoder.encode(queries), queries, NUM_RETRIEVED, self.rerank)
        return [[h.full_name for h in hits] for hits in found]

    def scores(self, ranked: dict[int, list[str]]) -> tuple[list[float], dict[str, dict[str, Any]]]:
        """(Recall@10 per column on val+test, pooled {val, test, all} -> {recall@10, mrr, tactics}); "all" also
        keeps each tactic's scores (`items`), so that two rows can be compared tactic by tactic."""
        from agent.evaluation.retrieval import item_scores, mean_scores, ranking_scores

        per_col = []
        for j in range(self.T):
            rows = [r for r, it in enumerate(self.items) if it[0] == j]
            per_col.append(ranking_scores([ranked[r] for r in rows], [self.items[r][3] for r in rows])["recall@10"]
                           if rows else float("nan"))
        pooled: dict[str, dict[str, Any]] = {}
        for split in (*EVAL_SPLITS, "all"):
            rows = [r for r, it in enumerate(self.items) if split == "all" or it[1] == split]
            items = item_scores([ranked[r] for r in rows], [self.items[r][3] for r in rows])
            s = mean_scores(items)
            pooled[split] = {"recall@10": s["recall@10"], "mrr": s["mrr"], "tactics": s["tactics"]}
        pooled["all"]["items"] = {k: items[k].tolist() for k in PAIRED}
        return per_col, pooled


class Unseen:
    """Theorems from outside the stream (`--unseen DIR`, another LeanDojo export, e.g. a fold of
    bench/heldout.py): every split's tactics, ranked against that export's own premises, as `lifelean
    evaluate DIR --split all` scores them."""

    def __init__(self, data: str, vectors: Any, query: str, rerank: str):
        from agent.evaluation.retrieval import VectorIndex
        from agent.learn.retriever import Corpus
        from curriculum.lean_data import load_dataset, to_repositories
        from memory.rerank import reranker

        repos = to_repositories(load_dataset(Path(data)))
        corpus = Corpus.from_repositories(repos)
        self.index = VectorIndex(corpus.names, np.asarray(vectors, dtype=np.float32), corpus.texts)
        self.theorems = [t for r in repos for t in r.theorems]
        self.query = query
        self.rerank = reranker(rerank)

    def scores(self, encoder: Any) -> dict[str, Any]:
        """Recall@10 and MRR over every tactic, with each tactic's scores (`items`) for paired comparisons."""
        from agent.evaluation.retrieval import mean_scores, retrieval_items

        items = retrieval_items(encoder, self.index, self.theorems, rerank=self.rerank, query=self.query)
        return {**mean_scores(items), "items": {k: items[k].tolist() for k in PAIRED}}


def unseen_corpus(data: Path, encoder: Any) -> Any:
    """The document vectors of an `--unseen` export's premises (the frozen tower, as the store embeds them)."""
    from agent.learn.retriever import Corpus
    from curriculum.lean_data import load_dataset, to_repositories

    return encoder.encode(Corpus.from_repositories(to_repositories(load_dataset(data))).texts)


def evaluate(learner: Any, held: HeldOut, index: Any, stream: list[Any]) -> tuple[list[float], dict[str, Any]]:
    from agent.learn.strategies.adapters import select_adapter

    ranked: dict[int, list[str]] = {}
    if "adapters" in [s.name for s in learner.strategies]:
        for j, repo in enumerate(stream):
            rows = [r for r, it in enumerate(held.items) if it[0] == j]
            if rows:
                select_adapter(learner.model, repo.name)
                learner.query.reset_version()
                ranked.update(zip(rows, held.rank(learner.query, index, rows)))
        select_adapter(learner.model, None)
        learner.query.reset_version()
    else:
        rows = list(range(len(held.items)))
        ranked.update(zip(rows, held.rank(learner.query, index, rows)))
    return held.scores(ranked)


def run_row(spec: str, args: dict[str, Any]) -> dict[str, Any]:
    """Learn the stream (or, for `joint`, its union) with one row spec; returns matrix, figures, time, memory."""
    setup(args["threads"])
    from agent.evaluation.retrieval import VectorIndex
    from agent.learn.config import LearningConfig
    from agent.learn.learner import cap_examples
    from agent.learn.retriever import Corpus, RetrieverLearner, training_pairs
    from agent.learn.strategies import build_strategies
    from memory.bank import MemoryBank
    from memory.embedder import Encoder

    stream, repos = load_stream(Path(args["data"]), args["repos"])
    corpus = Corpus.from_repositories(repos)
    base = Encoder.load(max_length=args["max_length"])
    index = VectorIndex(corpus.names, np.asarray(args["doc_vectors"], dtype=np.float32), corpus.texts)
    names, kw = parse_spec(spec)
    query = kw.pop("query", "theorem")
    held = HeldOut(stream, set(corpus.names), query, args["rerank"])
    joint = names[0] in JOINT_ROWS
    if joint:
        kw = {**(PLAIN if names[0] == "joint" else {"epochs": args["joint_epochs"], "min_steps": 0}), **kw}
        names = ["naive"]
    config = LearningConfig(**{"strategy": names, **args["overrides"], **kw})
    seed = args["seed"]
    capped = [cap_examples(training_pairs(r, corpus.index, query=query), config.max_examples, f"{seed}:{i}")
              for i, r in enumerate(stream)]
    with tempfile.TemporaryDirectory() as tmp:
        bank = MemoryBank(Path(tmp) / "bank", base, seed=seed) if "replay" in names else None
        learner = RetrieverLearner(base, config, corpus, build_strategies(config, replay_source=bank),
                                   query_form=query)
        learner.set_doc_vectors(index.vectors)
        T = len(stream)
        A = np.full((T, T), np.nan)
        seconds, steps, seen = [], 0, 0
        if joint:
            union = [p for pairs in capped for p in pairs]
            start = time.perf_counter()
            stats = learner.train_repository("joint", union, 0, seed)
            seconds.append(time.perf_counter() - start)
            steps, seen = stats["batches"], stats["batches"] * config.batch_size
            A[-1], pooled = evaluate(learner, held, index, stream)
        else:
            for i, (repo, pairs) in enumerate(zip(stream, capped)):
                start = time.perf_counter()
                stats = learner.train_repository(repo.name, pairs, i, seed)
                seconds.append(time.perf_counter() - start)
                steps += stats["batches"]
                if bank is not None:
                    bank.add_repository(repo)
                A[i], pooled = evaluate(learner, held, index, stream)
        unseen = (Unseen(args["unseen"], args["unseen_vectors"], query, args["rerank"]).scores(learner.query)
                  if args["unseen"] else None)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"strategy": spec, "joint": joint, "matrix": A.tolist(), "pooled": pooled, "train_seconds": seconds,
            "steps": steps, "peak_mib": peak_mib, "repos_trained": sum(1 for p in capped if p),
            "query": query, "unseen": unseen}


def summarize(result: dict[str, Any], baseline: list[float]) -> dict[str, Any]:
    from agent.evaluation import lifelong as metrics
    from agent.evaluation.bootstrap import metric_intervals

    A = np.asarray(result["matrix"], dtype=float)
    p = result["pooled"]
    row = {"strategy": result["strategy"], "val_r10": p["val"]["recall@10"], "val_mrr": p["val"]["mrr"],
           "test_r10": p["test"]["recall@10"], "test_mrr": p["test"]["mrr"],
           "all_r10": p["all"]["recall@10"], "all_mrr": p["all"]["mrr"],
           "acc": None, "bwt": None, "fwt": None, "forgetting": None, "steps": result["steps"],
           "s_per_repo": float(np.sum(result["train_seconds"])) / max(result["repos_trained"], 1),
           "peak_mib": result["peak_mib"], "unseen_r10": (result["unseen"] or {}).get("recall@10"),
           "unseen_mrr": (result["unseen"] or {}).get("mrr")}
    if not result["joint"]:
        row.update({"acc": metrics.acc(A), "bwt": metrics.bwt(A), "fwt": metrics.fwt(A, np.asarray(baseline)),
                    "forgetting": metrics.forgetting(A), "bwt_ci": metric_intervals(A)["bwt"]})
    else:
        row["acc"] = float(np.nanmean(A[-1]))
    return row


def versus(result: dict[str, Any], ref: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`result` − `ref` (the `joint` row), tactic by tactic, with a 95% paired bootstrap interval
    (agent/evaluation/bootstrap.py `paired_difference`): on the stream's pooled val+test tactics and, with
    `--unseen`, on the other export's. A ratio of two means hides how much of it is noise; ±0.01 on 200
    tactics usually is."""
    from agent.evaluation.bootstrap import paired_difference

    out: dict[str, dict[str, Any]] = {}
    for where, mine, theirs in (("stream", result["pooled"]["all"], ref["pooled"]["all"]),
                                ("unseen", result["unseen"], ref["unseen"])):
        if mine and theirs and len(mine["items"]["mrr"]) == len(theirs["items"]["mrr"]):
            out[where] = {k: paired_difference(mine["items"][k], theirs["items"][k]) for k in PAIRED}
    return out


def interval(d: dict[str, Any] | None) -> str:
    """`+0.012 (-0.010..+0.031)`; "n/a" where undefined."""
    if not d or d.get("value") is None:
        return "n/a"
    if d.get("low") is None:
        return f"{d['value']:+.3f}"
    return f"{d['value']:+.3f} ({d['low']:+.3f}..{d['high']:+.3f})"


def fmt(x: Any, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


# -- the generator (--model generator) ------------------------------------------------------------------------
GEN_STRATEGIES = ["frozen", "naive", "replay", "ewc", "distill", "adapters", "merge", "replay+distill", "joint",
                  "knn", "knn+pre"]
GEN_REPOS = 6
# The generator recipe of every row (overridable per row like the retriever's): a few epochs at a LoRA rate a
# 64-wide model learns from, inputs cut (from the left, keeping the goal) to what the prompt is scored with.
GEN_OVERRIDES = {"epochs": 3, "lora_lr": 3e-3, "generator_batch_size": 8, "generator_max_length": 384}
KS = (1, 8)


class GenHeldOut:
    """Every stream repository's held-out theorems with traced (non-sorry) steps, per (column, split)."""

    def __init__(self, stream: list[Any]):
        from agent.learn.generator import generator_examples

        self.groups = [(j, split, [t for t in repo.theorems_in(split) if t.tactics and not t.is_sorry])
                       for j, repo in enumerate(stream) for split in EVAL_SPLITS]
        # the same steps as (gold premises + state -> tactic) examples, the training format, for token accuracy
        self.examples = {(j, split): [e for e in generator_examples(repo, splits=(split,)) if e.tactic != "sorry"]
                         for j, repo in enumerate(stream) for split in EVAL_SPLITS}
        self.T = len(stream)

    def steps(self, split: str | None = None) -> int:
        return sum(len(t.tactics) for _, s, ths in self.groups if split in (None, s) for t in ths)

    def score(self, generator_for: Any, seed: int) -> tuple[dict[str, list[float]], dict[str, dict[str, float]]]:
        """({tactic@k: per column over val+test}, pooled {val, test, all} -> {tactic@k, steps}).
        `generator_for(j)` is the generator that scores column j (per-repository adapters differ)."""
        from agent.evaluation.tactics import tactic_scores

        hits: dict[tuple[int, str], tuple[dict[int, float], int]] = {}
        for j, split, theorems in self.groups:
            if theorems:
                s = tactic_scores(generator_for(j), theorems, seed, KS)
                hits[(j, split)] = ({k: s[f"tactic@{k}"] * s["tactic_steps"] for k in KS}, s["tactic_steps"])

        def mean(keys: list[tuple[int, str]], k: int) -> float:
            n = sum(hits[key][1] for key in keys if key in hits)
            return sum(hits[key][0][k] for key in keys if key in hits) / n if n else float("nan")

        per_col = {f"tactic@{k}": [mean([(j, s) for s in EVAL_SPLITS], k) for j in range(self.T)] for k in KS}
        pooled = {}
        for split in (*EVAL_SPLITS, "all"):
            keys = [(j, s) for j in range(self.T) for s in EVAL_SPLITS if split in ("all", s)]
            pooled[split] = {**{f"tactic@{k}": mean(keys, k) for k in KS}, "steps": self.steps(
                None if split == "all" else split)}
        return per_col, pooled

    def token_scores(self, learner: Any, select: Any) -> tuple[list[float], dict[str, float]]:
        """Teacher-forced next-token accuracy on the held-out tactics (tokens of the tactic predicted right by
        argmax, given the prompt and the tactic so far), per column over val+test and pooled: a finer view of
        what the generator learns and forgets than exact match, which a tiny model rarely reaches. `select(j)`
        prepares the model for column j (per-repository adapters)."""
        import random

        import torch

        counts: dict[tuple[int, str], tuple[int, int]] = {}
        for (j, split), examples in self.examples.items():
            if not examples:
                continue
            select(j)
            right = total = 0
            for lo in range(0, len(examples), learner.batch_size):
                batch = learner.make_batch(examples[lo:lo + learner.batch_size], random.Random(0))
                with torch.no_grad():
                    logits = learner.batch_logits(learner.model, batch)
                labels = batch.labels if learner.seq2seq else batch.labels[:, 1:]
                targets = labels[labels != -100]
                right += int((logits.argmax(-1) == targets).sum())
                total += int(targets.numel())
            counts[(j, split)] = (right, total)

        def mean(keys: list[tuple[int, str]]) -> float:
            n = sum(counts[k][1] for k in keys if k in counts)
            return sum(counts[k][0] for k in keys if k in counts) / n if n else float("nan")

        per_col = [mean([(j, s) for s in EVAL_SPLITS]) for j in range(self.T)]
        pooled = {split: mean([(j, s) for j in range(self.T) for s in EVAL_SPLITS if split in ("all", s)])
                  for split in (*EVAL_SPLITS, "all")}
        return per_col, pooled


class CachedEncoder:
    """The frozen MiniLM with the vectors of every state a row will ask for computed once, in the parent: each
    row scores the same held-out states after every repository (premise retrieval, kNN matching) and banks the
    same train states, so nothing is encoded per row, per evaluation or one state at a time. Other texts are
    encoded (and kept) as usual; everything else is the wrapped encoder's."""

    def __init__(self, encoder: Any, texts: list[str], vectors: Any):
        self._encoder = encoder
        self._cache = dict(zip(texts, np.asarray(vectors, dtype=np.float32)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode(self, texts: Any, **kwargs: Any) -> np.ndarray:
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            self._cache.update(zip(missing, self._encoder.encode(missing, **kwargs)))
        if not texts:
            return np.zeros((0, self._encoder.dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


class StepReplay:
    """The bank as the generator's replay source, steps only: what the loop's `AllowedRepos(...,
    need_premises=False)` gives the generator (the bank here holds the learned repositories only)."""

    def __init__(self, bank: Any):
        self.bank = bank

    def sample(self, n: int, rng: Any, exclude_repo: str | None = None) -> list[Any]:
        return self.bank.sample(n, rng, exclude_repo=exclude_repo, kind="step")


def gen_states(stream: list[Any], repos: list[Any]) -> list[str]:
    """Every state a generator row encodes: held-out steps of the stream, train steps of all repositories."""
    states = [tac.state_before for r in stream for t in r.theorems_in(*EVAL_SPLITS) for tac in t.tactics]
    states += [tac.state_before for r in repos for t in r.theorems_in("train") for tac in t.tactics]
    return list(dict.fromkeys(states))


def gen_context(args: dict[str, Any], corpus: Any, repos: list[Any], encoder: Any) -> Any:
    """The prover's premise context: the corpus's top `num_premises` premises for the state, by the untrained
    MiniLM (document vectors computed once in the parent), packed into `premise_bytes`."""
    from agent.commands.evaluate import SourcePremises
    from agent.evaluation.retrieval import VectorIndex
    from provers.config import ProverConfig
    from provers.generators.context import PremiseContext

    cfg = ProverConfig()
    index = VectorIndex(corpus.names, np.asarray(args["doc_vectors"], dtype=np.float32))
    return PremiseContext(SourcePremises(index, repos), k=cfg.num_premises, budget_bytes=cfg.premise_bytes,
                          query_encoder=encoder)


def hf_generator(model: Any, tokenizer: Any, context: Any, args: dict[str, Any]) -> Any:
    from provers.generators.hf import HFGenerator

    return HFGenerator(model, tokenizer, False, context=context, decoding="beam",
                       max_input_tokens=args["gen_input"], max_new_tokens=args["max_new"])


def pretrain_examples(stream: list[Any], repos: list[Any]) -> list[Any]:
    """Train steps of the sample's repositories outside the stream: what the tiny base model is pre-trained on."""
    from agent.learn.generator import generator_examples

    keys = {r.key for r in stream}
    return [e for r in repos if r.key not in keys for e in generator_examples(r)]


def build_base_model(out: Path, stream: list[Any], repos: list[Any], ns: argparse.Namespace) -> dict[str, Any]:
    """The tiny LLaMA, fully trained on the out-of-stream steps, saved to `out`; returns what it took."""
    from provers.generators.hf import load_model
    from provers.generators.tiny import build_tiny_model, fit

    start = time.perf_counter()
    examples = pretrain_examples(stream, repos)
    build_tiny_model(out, kind="llama", d_model=ns.d_model, layers=2, heads=4, seed=ns.seed)
    model, tokenizer, _ = load_model(str(out))
    losses = fit(model, tokenizer, [(e.source, e.tactic) for e in examples], seq2seq=False,
                 epochs=ns.pretrain_epochs, lr=3e-3, batch_size=16, max_input_tokens=ns.gen_input, seed=ns.seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"examples": len(examples), "epochs": ns.pretrain_epochs, "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None, "seconds": time.perf_counter() - start}


def run_gen_row(spec: str, args: dict[str, Any]) -> dict[str, Any]:
    """Learn the stream with one generator row spec (or the knn bank); returns matrices, figures, time, memory."""
    setup(args["threads"])
    from agent.learn.config import LearningConfig
    from agent.learn.generator import GeneratorLearner, generator_examples, train_generator_on_repository
    from agent.learn.learner import cap_examples
    from agent.learn.retriever import Corpus
    from agent.learn.strategies import build_strategies
    from agent.learn.strategies.adapters import select_adapter
    from memory.bank import MemoryBank
    from memory.embedder import Encoder
    from provers.generators.hf import load_model

    stream, repos = load_stream(Path(args["data"]), args["repos"])
    corpus = Corpus.from_repositories(repos)
    base = CachedEncoder(Encoder.load(max_length=args["max_length"]), *args["state_vectors"])
    context = gen_context(args, corpus, repos, base)
    held = GenHeldOut(stream)
    seed, T = args["seed"], len(stream)
    A = {key: np.full((T, T), np.nan) for key in (*[f"tactic@{k}" for k in KS], "token_acc")}
    seconds: list[float] = []
    steps = 0
    extra: dict[str, Any] = {}

    def fill(i: int, generator_for: Any, learner: Any = None, select: Any = None) -> dict[str, Any]:
        per_col, pooled = held.score(generator_for, seed)
        for key, row in per_col.items():
            A[key][i] = row
        if learner is not None:
            A["token_acc"][i], tokens = held.token_scores(learner, select)
            for split, value in tokens.items():
                pooled[split]["token_acc"] = value
        return pooled

    with tempfile.TemporaryDirectory() as tmp:
        if spec in ("knn", "knn+pre"):
            from provers.config import ProverConfig
            from provers.generators.knn import KnnGenerator

            cfg = ProverConfig()
            bank = MemoryBank(Path(tmp) / "bank", base, seed=seed)
            if spec == "knn+pre":
                keys = {r.key for r in stream}
                for r in repos:
                    if r.key not in keys:
                        bank.add_repository(r)
            generator = KnnGenerator(bank, base, context, k=cfg.knn_neighbours, temperature=cfg.knn_temperature)
            extra["baseline"] = held.score(lambda j: generator, seed)[0]["tactic@8"] if spec == "knn+pre" else \
                [0.0 if any(g[0] == j and g[2] for g in held.groups) else float("nan") for j in range(T)]
            for i, repo in enumerate(stream):
                start = time.perf_counter()
                bank.add_repository(repo)
                seconds.append(time.perf_counter() - start)
                pooled = fill(i, lambda j: generator)
            joint = False
        else:
            names, kw = parse_spec(spec)
            joint = names[0] == "joint"
            if joint:
                names = ["naive"]
            config = LearningConfig(**{"strategy": names, **GEN_OVERRIDES, **args["overrides"], **kw})
            model, tokenizer, seq2seq = load_model(args["base_model"])
            bank = MemoryBank(Path(tmp) / "bank", base, seed=seed) if "replay" in names else None
            replay = StepReplay(bank) if bank is not None else None
            strategies = build_strategies(config, replay_source=replay)
            learner = GeneratorLearner(model, tokenizer, seq2seq, config, strategies)
            adapters = "adapters" in names

            def select(j: int) -> None:
                if adapters:
                    select_adapter(learner.model, stream[j].name)

            def generator_for(j: int) -> Any:
                select(j)
                return hf_generator(learner.model, tokenizer, context, args)

            if joint:
                union = [e for i, r in enumerate(stream)
                         for e in cap_examples(generator_examples(r), config.generator_max_examples,
                                               f"gen:{seed}:{i}")]
                start = time.perf_counter()
                stats = learner.train_repository("joint", union, 0, seed)
                seconds.append(time.perf_counter() - start)
                steps = stats["batches"]
                pooled = fill(T - 1, generator_for, learner, select)
            elif not learner.trains:            # frozen: the base generator, the same in every row
                pooled = fill(0, generator_for, learner, select)
                for key in A:
                    A[key][1:] = A[key][0]
            else:
                for i, repo in enumerate(stream):
                    start = time.perf_counter()
                    stats = train_generator_on_repository(learner, repo, i, seed)
                    seconds.append(time.perf_counter() - start)
                    steps += stats["batches"]
                    if bank is not None:
                        bank.add_repository(repo)
                    pooled = fill(i, generator_for, learner, select)
                    if adapters:
                        select_adapter(learner.model, None)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"strategy": spec, "joint": joint, "matrix": {k: v.tolist() for k, v in A.items()}, "pooled": pooled,
            "train_seconds": seconds, "steps": steps, "peak_mib": peak_mib, "repos_trained": T, **extra}


def summarize_gen(result: dict[str, Any], baseline: dict[str, list[float]]) -> dict[str, Any]:
    """The lifelong metrics of the tactic@8 matrix (and ACC of tactic@1), as :func:`summarize` does for R@10, and
    the same metrics of the token-accuracy matrix (prefixed `tok_`; n/a for knn, which has no token model)."""
    from agent.evaluation import lifelong as metrics

    p = result["pooled"]
    row = {"strategy": result["strategy"], **{f"{s}_t{k}": p[s][f"tactic@{k}"] for s in (*EVAL_SPLITS, "all")
                                              for k in KS},
           **{f"{s}_tok": p[s].get("token_acc") for s in (*EVAL_SPLITS, "all")},
           "steps": result["steps"], "peak_mib": result["peak_mib"],
           "s_per_repo": float(np.sum(result["train_seconds"])) / max(result["repos_trained"], 1)}
    A1 = np.asarray(result["matrix"]["tactic@1"], dtype=float)
    for prefix, key in (("", "tactic@8"), ("tok_", "token_acc")):
        A = np.asarray(result["matrix"][key], dtype=float)
        row.update({f"{prefix}{m}": None for m in ("acc", "bwt", "fwt", "forgetting")})
        if np.isnan(A).all():
            continue
        if result["joint"]:
            row[f"{prefix}acc"] = float(np.nanmean(A[-1]))
        else:
            b = np.asarray(result.get("baseline", baseline[key]) if key == "tactic@8" else baseline[key], dtype=float)
            row.update({f"{prefix}acc": metrics.acc(A), f"{prefix}bwt": metrics.bwt(A),
                        f"{prefix}fwt": metrics.fwt(A, b), f"{prefix}forgetting": metrics.forgetting(A)})
    row["acc1"] = float(np.nanmean(A1[-1])) if result["joint"] else metrics.acc(A1)
    return row


def main_generator(ns: argparse.Namespace) -> int:
    from agent.learn.config import LearningConfig
    from agent.learn.retriever import Corpus
    from memory.embedder import Encoder

    start = time.perf_counter()
    stream, repos = load_stream(ns.data, ns.repos)
    corpus = Corpus.from_repositories(repos)
    base = Encoder.load(max_length=ns.max_length)
    vectors = base.encode(corpus.texts)
    states = gen_states(stream, repos)
    state_vectors = base.encode(states)
    held = GenHeldOut(stream)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "base"
        pretrain = build_base_model(model_dir, stream, repos, ns)
        print(f"base model: {pretrain['examples']} out-of-stream steps x {pretrain['epochs']} epochs, loss "
              f"{pretrain['loss_first']:.3f} -> {pretrain['loss_last']:.3f}, {pretrain['seconds']:.0f} s",
              file=sys.stderr, flush=True)
        args = {"data": str(ns.data), "repos": ns.repos, "max_length": ns.max_length, "seed": ns.seed,
                "threads": ns.threads, "doc_vectors": vectors.tolist(), "overrides": {},
                "state_vectors": (states, state_vectors.tolist()), "base_model": str(model_dir),
                "gen_input": ns.gen_input, "max_new": ns.max_new}
        ctx = mp.get_context("spawn")
        with ctx.Pool(1) as pool:
            baseline_run = pool.apply(run_gen_row, ("frozen", args))
        baseline = {k: v[0] for k, v in baseline_run["matrix"].items()}   # the pre-trained base, before any repository
        base_pooled = baseline_run["pooled"]
        results = []
        for spec in [s for s in ns.strategies.split(",") if s]:
            t0 = time.perf_counter()
            if spec == "frozen":
                results.append(baseline_run)
            else:
                with ctx.Pool(1) as pool:
                    results.append(pool.apply(run_gen_row, (spec, args)))
            print(f"{spec}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    rows = [summarize_gen(r, baseline) for r in results]
    ref = next((r for r in rows if r["strategy"] == "joint"), None)
    if ns.json:
        print(json.dumps({"model": "generator", "stream": [r.name for r in stream], "pretrain": pretrain,
                          "baseline": baseline, "baseline_pooled": base_pooled, "results": results,
                          "summary": rows}, indent=2))
        return 0
    d = LearningConfig(**GEN_OVERRIDES)
    print(f"stream: {len(stream)} repositories in curriculum order; held-out tactic steps: {held.steps('val')} val, "
          f"{held.steps('test')} test; generator: tiny LLaMA d_model {ns.d_model}, pre-trained on "
          f"{pretrain['examples']} out-of-stream steps ({pretrain['epochs']} epochs); LoRA rank {d.lora_rank}, "
          f"lr {d.lora_lr}, epochs {d.epochs}, batch {d.generator_batch_size}, max_length {d.generator_max_length}, "
          f"generator_max_examples {d.generator_max_examples}; beam 8, input {ns.gen_input} / new {ns.max_new} bytes")
    print(f"pre-trained base: val t@1 {fmt(base_pooled['val']['tactic@1'])} t@8 {fmt(base_pooled['val']['tactic@8'])};"
          f" test t@1 {fmt(base_pooled['test']['tactic@1'])} t@8 {fmt(base_pooled['test']['tactic@8'])}")
    head = (f"{'row':<22}{'val t@1':>8}{'val t@8':>8}{'test t@1':>9}{'test t@8':>9}{'ACC@8':>7}{'BWT@8':>8}"
            f"{'FWT@8':>8}{'forget':>7}{'ACC@1':>7}{'steps':>6}{'s/repo':>7}{'MiB':>6}{'t@8/j':>6}{'t@1/j':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = (lambda k: f"{r[k] / ref[k]:.2f}" if ref and ref[k] else "n/a")
        print(f"{r['strategy'][:21]:<22}{fmt(r['val_t1']):>8}{fmt(r['val_t8']):>8}{fmt(r['test_t1']):>9}"
              f"{fmt(r['test_t8']):>9}{fmt(r['acc']):>7}{fmt(r['bwt'], True):>8}{fmt(r['fwt'], True):>8}"
              f"{fmt(r['forgetting']):>7}{fmt(r['acc1']):>7}{r['steps']:>6}{r['s_per_repo']:>7.1f}"
              f"{r['peak_mib']:>6.0f}{ratio('all_t8'):>6}{ratio('all_t1'):>6}")
    print("ACC/BWT/FWT/forget over the tactic@8 matrix (FWT against the pre-trained base; knn: the empty bank, "
          "knn+pre: its starting bank); t@8/j, t@1/j: pooled val+test figure over the `joint` row's")
    print(f"\nteacher-forced token accuracy on the same held-out tactics (pre-trained base: "
          f"{fmt(base_pooled['all'].get('token_acc'))}); knn rows have no token model")
    head = (f"{'row':<22}{'val tok':>8}{'test tok':>9}{'ACC':>7}{'BWT':>8}{'FWT':>8}{'forget':>7}{'tok/j':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["all_tok"] is None:
            continue
        ratio = f"{r['all_tok'] / ref['all_tok']:.2f}" if ref and ref["all_tok"] else "n/a"
        print(f"{r['strategy'][:21]:<22}{fmt(r['val_tok']):>8}{fmt(r['test_tok']):>9}{fmt(r['tok_acc']):>7}"
              f"{fmt(r['tok_bwt'], True):>8}{fmt(r['tok_fwt'], True):>8}{fmt(r['tok_forgetting']):>7}{ratio:>6}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    from agent.learn.config import LearningConfig

    defaults = LearningConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", choices=("retriever", "generator"), default="retriever",
                        help="which model's strategies to compare (generator: tactic@1/8 of a tiny local model)")
    parser.add_argument("--repos", type=int, default=None,
                        help=f"the first N repositories of the stream (0: all; default: all, {GEN_REPOS} for the "
                        "generator)")
    parser.add_argument("--max-length", type=int, default=256, help="encoder input tokens ([memory] max_length)")
    parser.add_argument("--joint-epochs", type=int, default=3, help="epochs of the `joint+` row")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per row (default: 2; 1 for the "
                        "generator, whose tiny model runs slower on two threads of a shared machine)")
    parser.add_argument("--strategies", default=None, help="comma-separated row specs (default: every row of "
                        "the model)")
    parser.add_argument("--d-model", type=int, default=64, help="generator: width of the tiny model")
    parser.add_argument("--pretrain-epochs", type=int, default=20, help="generator: epochs of the base model's "
                        "pre-training on the out-of-stream steps")
    parser.add_argument("--gen-input", type=int, default=384, help="generator: prompt bytes scored (left-truncated)")
    parser.add_argument("--max-new", type=int, default=64, help="generator: longest tactic generated, in bytes")
    parser.add_argument("--rerank", choices=("bm25", "none"), default="bm25",
                        help="retriever: rank as `[memory] rerank` does (default: the product's BM25 rerank)")
    parser.add_argument("--unseen", type=Path, default=None,
                        help="retriever: also score every row's final model on this LeanDojo export's theorems "
                        "(all splits, against its own premises): theorems from outside the stream")
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args(argv)
    ns.threads = ns.threads or (1 if ns.model == "generator" else 2)
    setup(ns.threads)
    if ns.model == "generator":
        ns.repos = GEN_REPOS if ns.repos is None else (ns.repos or None)
        ns.strategies = ns.strategies or ",".join(GEN_STRATEGIES)
        return main_generator(ns)
    ns.repos = ns.repos or 0
    ns.strategies = ns.strategies or ",".join(STRATEGIES)
    from agent.evaluation.retrieval import VectorIndex
    from agent.learn.retriever import Corpus
    from memory.embedder import Encoder

    start = time.perf_counter()
    stream, repos = load_stream(ns.data, ns.repos or None)
    corpus = Corpus.from_repositories(repos)
    base = Encoder.load(max_length=ns.max_length)
    vectors = base.encode(corpus.texts)
    index = VectorIndex(corpus.names, vectors, corpus.texts)
    specs = [s for s in ns.strategies.split(",") if s]
    untrained = {}   # query form -> (baseline row, pooled figures) of the untrained encoder
    for form in QUERY_FORMS:
        if form == "theorem" or any(parse_spec(s)[1].get("query") == form for s in specs):
            held = HeldOut(stream, set(corpus.names), query=form, rerank=ns.rerank)
            untrained[form] = held.scores(dict(enumerate(held.rank(base, index, list(range(len(held.items)))))))
    baseline, base_pooled = untrained["theorem"]
    unseen_vectors = unseen_corpus(ns.unseen, base) if ns.unseen else None
    unseen_untrained = ({form: Unseen(str(ns.unseen), unseen_vectors, form, ns.rerank).scores(base)
                         for form in untrained} if ns.unseen else {})
    args = {"data": str(ns.data), "repos": ns.repos or None, "max_length": ns.max_length, "seed": ns.seed,
            "threads": ns.threads, "joint_epochs": ns.joint_epochs, "doc_vectors": vectors.tolist(), "overrides": {},
            "rerank": ns.rerank, "unseen": str(ns.unseen) if ns.unseen else None,
            "unseen_vectors": unseen_vectors.tolist() if ns.unseen else None}
    results = []
    ctx = mp.get_context("spawn")
    for spec in specs:
        t0 = time.perf_counter()
        with ctx.Pool(1) as pool:
            results.append(pool.apply(run_row, (spec, args)))
        print(f"{spec}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    rows = [summarize(r, untrained[r["query"]][0]) for r in results]
    ref = next((r for r in rows if r["strategy"] == "joint"), None)
    joint_result = next((r for r in results if r["strategy"] == "joint"), None)
    for row, result in zip(rows, results):
        row["vs_joint"] = versus(result, joint_result) if joint_result and result is not joint_result else {}
    if ns.json:
        print(json.dumps({"stream": [r.name for r in stream], "rerank": ns.rerank, "baseline": baseline, "baseline_pooled": base_pooled,
                          "untrained_by_query": {f: u[1] for f, u in untrained.items()},
                          "unseen_untrained_by_query": unseen_untrained, "results": results,
                          "summary": rows},
                         indent=2))
        return 0
    n_val, n_test = base_pooled["val"]["tactics"], base_pooled["test"]["tactics"]
    print(f"stream: {len(stream)} repositories in curriculum order; held-out tactics: {n_val} val, {n_test} test; "
          f"defaults: strategy {'+'.join(defaults.strategy)}, epochs {defaults.epochs}, min_steps "
          f"{defaults.min_steps}, mined_negatives {defaults.mined_negatives}, lr {defaults.lr}, "
          f"τ {defaults.temperature}, max_examples {defaults.max_examples}; every row ranks "
          + ("its top 100 reranked with BM25 ([memory] rerank)" if ns.rerank == "bm25" else "densely (--rerank none)"))
    for form, (_, pooled) in untrained.items():
        label = {"theorem": "theorem name + file + state", "file": "theorem file + state (query=file rows)",
                 "state": "state only (query=state rows)"}[form]
        print(f"untrained MiniLM, query {label}: val R@10 {pooled['val']['recall@10']:.3f} MRR "
              f"{pooled['val']['mrr']:.3f}; test R@10 {pooled['test']['recall@10']:.3f} MRR "
              f"{pooled['test']['mrr']:.3f}"
              + (f"; unseen ({ns.unseen.name}) R@10 {unseen_untrained[form]['recall@10']:.3f} MRR "
                 f"{unseen_untrained[form]['mrr']:.3f}" if ns.unseen else ""))
    head = (f"{'row':<34}{'val R@10':>9}{'val MRR':>8}{'test R@10':>10}{'test MRR':>9}{'ACC':>7}{'BWT':>8}"
            f"{'FWT':>8}{'forget':>8}{'steps':>6}{'s/repo':>7}{'MiB':>6}{'R@10/j':>7}{'MRR/j':>6}"
            + (f"{'unseen R@10':>12}{'MRR':>6}" if ns.unseen else ""))
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = (lambda k: f"{r[k] / ref[k]:.2f}" if ref and ref[k] else "n/a")
        print(f"{r['strategy'][:33]:<34}{fmt(r['val_r10']):>9}{fmt(r['val_mrr']):>8}{fmt(r['test_r10']):>10}"
              f"{fmt(r['test_mrr']):>9}{fmt(r['acc']):>7}{fmt(r['bwt'], True):>8}{fmt(r['fwt'], True):>8}"
              f"{fmt(r['forgetting']):>8}{r['steps']:>6}{r['s_per_repo']:>7.1f}{r['peak_mib']:>6.0f}"
              f"{ratio('all_r10'):>7}{ratio('all_mrr'):>6}"
              + (f"{fmt(r['unseen_r10']):>12}{fmt(r['unseen_mrr']):>6}" if ns.unseen else ""))
    print("R@10/j, MRR/j: pooled val+test figure over the `joint` row's (plain InfoNCE, 1 epoch, same pairs)")
    if ref:
        places = ("stream", "unseen") if ns.unseen else ("stream",)
        print("\nrow − joint, tactic by tactic (95% paired bootstrap interval); BWT with its interval over "
              "repositories")
        head = f"{'row':<34}" + "".join(f"{f'{w} R@10 Δ':>26}{f'{w} MRR Δ':>26}" for w in places) + f"{'BWT':>26}"
        print(head)
        print("-" * len(head))
        for r in rows:
            if r is ref:
                continue
            cells = "".join(f"{interval(r['vs_joint'].get(w, {}).get(k)):>26}" for w in places for k in PAIRED)
            print(f"{r['strategy'][:33]:<34}{cells}{interval(r.get('bwt_ci')):>26}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
