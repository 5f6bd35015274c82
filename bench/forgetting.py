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
repository's own val, resp. test tactics, every tactic weighted equally, against the whole corpus). Defaults are
chosen by the val columns; test is reported. Ratios are against `joint`. Each row runs in its own process (peak
resident memory is that process's); seconds per repository are training only.

    python bench/forgetting.py [--repos 28] [--strategies naive,replay+distill,joint] [--json]
    python bench/forgetting.py --strategies "replay+distill/mined_negatives=0/min_steps=0,joint"

A row spec is `strategies[/key=value...]`: `+` composes strategies, and `key=value` overrides a LearningConfig
field for that row only (e.g. `replay+distill/temperature=0.1`).
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

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "leandojo_b4_sample"
STRATEGIES = ["frozen", "naive", "replay", "ewc", "distill", "adapters", "merge", "replay+distill", "joint", "joint+"]
EVAL_SPLITS = ("val", "test")
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
    """`replay+distill/lr=1e-4` -> (["replay", "distill"], {"lr": 1e-4}); values typed like the config field."""
    from agent.learn.config import LearningConfig

    head, *overrides = spec.split("/")
    types = {f.name: f.type for f in fields(LearningConfig)}
    kw: dict[str, Any] = {}
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in types:
            raise SystemExit(f"unknown LearningConfig field '{key}' in '{spec}'")
        t = str(types[key])
        kw[key] = int(value) if t == "int" else float(value) if t == "float" else value
    return head.split("+"), kw


class HeldOut:
    """Every stream repository's held-out tactics (state, positives) per split, with one ranked list each."""

    def __init__(self, stream: list[Any], names: set[str]):
        from agent.evaluation.retrieval import eval_tactics

        self.items: list[tuple[int, str, str, set[str]]] = []   # (column, split, state, positives)
        for j, repo in enumerate(stream):
            for split in EVAL_SPLITS:
                self.items.extend((j, split, s, p) for s, p in eval_tactics(repo.theorems_in(split), names))
        self.T = len(stream)

    def rank(self, encoder: Any, index: Any, rows: list[int]) -> list[list[str]]:
        from agent.evaluation.retrieval import NUM_RETRIEVED

        if not rows:
            return []
        vectors = encoder.encode([self.items[r][2] for r in rows])
        return [[h.full_name for h in hits] for hits in index.retrieve_by_vectors(vectors, NUM_RETRIEVED)]

    def scores(self, ranked: dict[int, list[str]]) -> tuple[list[float], dict[str, dict[str, float]]]:
        """(Recall@10 per column on val+test, pooled {val, test, all} -> {recall@10, mrr})."""
        from agent.evaluation.retrieval import ranking_scores

        per_col = []
        for j in range(self.T):
            rows = [r for r, it in enumerate(self.items) if it[0] == j]
            per_col.append(ranking_scores([ranked[r] for r in rows], [self.items[r][3] for r in rows])["recall@10"]
                           if rows else float("nan"))
        pooled = {}
        for split in (*EVAL_SPLITS, "all"):
            rows = [r for r, it in enumerate(self.items) if split == "all" or it[1] == split]
            s = ranking_scores([ranked[r] for r in rows], [self.items[r][3] for r in rows])
            pooled[split] = {"recall@10": s["recall@10"], "mrr": s["mrr"], "tactics": s["tactics"]}
        return per_col, pooled


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
    index = VectorIndex(corpus.names, np.asarray(args["doc_vectors"], dtype=np.float32))
    held = HeldOut(stream, set(corpus.names))
    names, kw = parse_spec(spec)
    joint = names[0] in ("joint", "joint+")
    if joint:
        kw = {**(PLAIN if names[0] == "joint" else {"epochs": args["joint_epochs"], "min_steps": 0}), **kw}
        names = ["naive"]
    config = LearningConfig(**{"strategy": names, **args["overrides"], **kw})
    seed = args["seed"]
    capped = [cap_examples(training_pairs(r, corpus.index), config.max_examples, f"{seed}:{i}")
              for i, r in enumerate(stream)]
    with tempfile.TemporaryDirectory() as tmp:
        bank = MemoryBank(Path(tmp) / "bank", base, seed=seed) if "replay" in names else None
        learner = RetrieverLearner(base, config, corpus, build_strategies(config, replay_source=bank))
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
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"strategy": spec, "joint": joint, "matrix": A.tolist(), "pooled": pooled, "train_seconds": seconds,
            "steps": steps, "peak_mib": peak_mib, "repos_trained": sum(1 for p in capped if p)}


def summarize(result: dict[str, Any], baseline: list[float]) -> dict[str, Any]:
    from agent.evaluation import lifelong as metrics

    A = np.asarray(result["matrix"], dtype=float)
    p = result["pooled"]
    row = {"strategy": result["strategy"], "val_r10": p["val"]["recall@10"], "val_mrr": p["val"]["mrr"],
           "test_r10": p["test"]["recall@10"], "test_mrr": p["test"]["mrr"],
           "all_r10": p["all"]["recall@10"], "all_mrr": p["all"]["mrr"],
           "acc": None, "bwt": None, "fwt": None, "forgetting": None, "steps": result["steps"],
           "s_per_repo": float(np.sum(result["train_seconds"])) / max(result["repos_trained"], 1),
           "peak_mib": result["peak_mib"]}
    if not result["joint"]:
        row.update({"acc": metrics.acc(A), "bwt": metrics.bwt(A), "fwt": metrics.fwt(A, np.asarray(baseline)),
                    "forgetting": metrics.forgetting(A)})
    else:
        row["acc"] = float(np.nanmean(A[-1]))
    return row


def fmt(x: Any, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    from agent.learn.config import LearningConfig

    defaults = LearningConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repos", type=int, default=0, help="the first N repositories of the stream (0: all)")
    parser.add_argument("--max-length", type=int, default=256, help="encoder input tokens ([memory] max_length)")
    parser.add_argument("--joint-epochs", type=int, default=3, help="epochs of the `joint+` row")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated row specs")
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args(argv)
    setup(ns.threads)
    from agent.evaluation.retrieval import VectorIndex
    from agent.learn.retriever import Corpus
    from memory.embedder import Encoder

    start = time.perf_counter()
    stream, repos = load_stream(ns.data, ns.repos or None)
    corpus = Corpus.from_repositories(repos)
    base = Encoder.load(max_length=ns.max_length)
    vectors = base.encode(corpus.texts)
    index = VectorIndex(corpus.names, vectors)
    held = HeldOut(stream, set(corpus.names))
    ranked = dict(enumerate(held.rank(base, index, list(range(len(held.items))))))
    baseline, base_pooled = held.scores(ranked)
    args = {"data": str(ns.data), "repos": ns.repos or None, "max_length": ns.max_length, "seed": ns.seed,
            "threads": ns.threads, "joint_epochs": ns.joint_epochs, "doc_vectors": vectors.tolist(), "overrides": {}}
    results = []
    ctx = mp.get_context("spawn")
    for spec in [s for s in ns.strategies.split(",") if s]:
        t0 = time.perf_counter()
        with ctx.Pool(1) as pool:
            results.append(pool.apply(run_row, (spec, args)))
        print(f"{spec}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    rows = [summarize(r, baseline) for r in results]
    ref = next((r for r in rows if r["strategy"] == "joint"), None)
    if ns.json:
        print(json.dumps({"stream": [r.name for r in stream], "baseline": baseline, "baseline_pooled": base_pooled,
                          "results": results, "summary": rows}, indent=2))
        return 0
    n_val, n_test = base_pooled["val"]["tactics"], base_pooled["test"]["tactics"]
    print(f"stream: {len(stream)} repositories in curriculum order; held-out tactics: {n_val} val, {n_test} test; "
          f"defaults: strategy {'+'.join(defaults.strategy)}, epochs {defaults.epochs}, min_steps "
          f"{defaults.min_steps}, mined_negatives {defaults.mined_negatives}, lr {defaults.lr}, "
          f"τ {defaults.temperature}, max_examples {defaults.max_examples}")
    print(f"untrained MiniLM: val R@10 {base_pooled['val']['recall@10']:.3f} MRR {base_pooled['val']['mrr']:.3f}; "
          f"test R@10 {base_pooled['test']['recall@10']:.3f} MRR {base_pooled['test']['mrr']:.3f}")
    head = (f"{'row':<34}{'val R@10':>9}{'val MRR':>8}{'test R@10':>10}{'test MRR':>9}{'ACC':>7}{'BWT':>8}"
            f"{'FWT':>8}{'forget':>8}{'steps':>6}{'s/repo':>7}{'MiB':>6}{'R@10/j':>7}{'MRR/j':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = (lambda k: f"{r[k] / ref[k]:.2f}" if ref and ref[k] else "n/a")
        print(f"{r['strategy'][:33]:<34}{fmt(r['val_r10']):>9}{fmt(r['val_mrr']):>8}{fmt(r['test_r10']):>10}"
              f"{fmt(r['test_mrr']):>9}{fmt(r['acc']):>7}{fmt(r['bwt'], True):>8}{fmt(r['fwt'], True):>8}"
              f"{fmt(r['forgetting']):>8}{r['steps']:>6}{r['s_per_repo']:>7.1f}{r['peak_mib']:>6.0f}"
              f"{ratio('all_r10'):>7}{ratio('all_mrr'):>6}")
    print("R@10/j, MRR/j: pooled val+test figure over the `joint` row's (plain InfoNCE, 1 epoch, same pairs)")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
