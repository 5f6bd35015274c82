"""Forgetting benchmark: the retriever's strategies side by side on one stream of repositories.

The shared LeanDojo sample is split into pseudo-repositories (`--split-by-dir 2`); the `--repos` largest by
training tactics form the stream. Each strategy starts from the untrained MiniLM, learns the stream one
repository at a time (1 epoch, `--max-examples` pairs each) and after every repository scores Recall@10 on
every repository's held-out tactics (val + test: the test split alone has 2–13 tactics per repository), filling
the accuracy matrix A[i][j]; the untrained encoder gives the baseline row. Printed per strategy (agent.metrics):
ACC, BWT, FWT, forgetting, plasticity, Recall@10 of the last row, training seconds per repository and the peak
resident memory of the process that ran it (each strategy runs in its own process).

    python bench/forgetting.py [--data ../shared/data/leandojo_b4_sample] [--repos 5] [--json]
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
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "leandojo_b4_sample"
STRATEGIES = ["frozen", "naive", "replay", "ewc", "distill", "adapters", "replay+distill"]
EVAL_SPLITS = ("val", "test")


def setup(threads: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(threads)


def load_stream(data: Path, n: int) -> tuple[list[Any], list[Any]]:
    """(stream, all repositories): the `n` pseudo-repositories with the most training pairs, largest first."""
    from agent.retriever import Corpus, training_pairs
    from curriculum.lean_data import load_dataset, to_repositories

    repos = to_repositories(load_dataset(data), split_by_dir=2)
    corpus = Corpus.from_repositories(repos)
    ranked = sorted(repos, key=lambda r: (-len(training_pairs(r, corpus.index)), r.name))
    stream = [r for r in ranked if any(t.tactics for t in r.theorems_in(*EVAL_SPLITS))][:n]
    return stream, repos


def run_strategy(spec: str, args: dict[str, Any]) -> dict[str, Any]:
    """Learn the stream with one strategy (`a+b` composes); returns the matrix, timings and peak memory."""
    setup(args["threads"])
    from agent.evaluate import VectorIndex, retrieval_scores
    from agent.learning_config import LearningConfig
    from agent.retriever import Corpus, RetrieverLearner, cap_examples, training_pairs
    from agent.strategies import build_strategies
    from agent.strategies.adapters import select_adapter
    from memory.bank import MemoryBank
    from memory.embedder import Encoder

    stream, repos = load_stream(Path(args["data"]), args["repos"])
    corpus = Corpus.from_repositories(repos)
    base = Encoder.load(max_length=args["max_length"])
    index = VectorIndex(corpus.names, np.asarray(args["doc_vectors"], dtype=np.float32))
    names = spec.split("+")
    config = LearningConfig(strategy=names, lr=args["lr"], batch_size=args["batch_size"],
                            ewc_samples=args["ewc_samples"], ewc_lambda=args["ewc_lambda"])
    with tempfile.TemporaryDirectory() as tmp:
        bank = MemoryBank(Path(tmp) / "bank", base, seed=args["seed"]) if "replay" in names else None
        learner = RetrieverLearner(base, config, corpus, build_strategies(config, replay_source=bank))
        learner.set_doc_vectors(index.vectors)
        T = len(stream)
        A = np.full((T, T), np.nan)
        seconds = []
        for i, repo in enumerate(stream):
            pairs = cap_examples(training_pairs(repo, corpus.index), args["max_examples"], f"{args['seed']}:{i}")
            start = time.perf_counter()
            learner.train_repository(repo.name, pairs, i, args["seed"])
            seconds.append(time.perf_counter() - start)
            if bank is not None:
                bank.add_repository(repo)
            for j, other in enumerate(stream):
                select_adapter(learner.model, other.name)
                learner.query.reset_version()
                A[i, j] = retrieval_scores(learner.query, index, other.theorems_in(*EVAL_SPLITS))["recall@10"]
            select_adapter(learner.model, None)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"strategy": spec, "matrix": A.tolist(), "train_seconds": seconds, "peak_mib": peak_mib}


def summarize(result: dict[str, Any], baseline: list[float]) -> dict[str, Any]:
    from agent import metrics

    A = np.asarray(result["matrix"], dtype=float)
    return {"strategy": result["strategy"], "acc": metrics.acc(A), "bwt": metrics.bwt(A),
            "fwt": metrics.fwt(A, np.asarray(baseline)), "forgetting": metrics.forgetting(A),
            "plasticity": metrics.plasticity(A), "recall@10_last": float(np.nanmean(A[-1])),
            "train_s_per_repo": float(np.mean(result["train_seconds"])), "peak_mib": result["peak_mib"]}


def choose_default(rows: list[dict[str, Any]]) -> str | None:
    """The strategy with the best ACC among those with BWT >= 0 that beat both `naive` and `frozen` on ACC."""
    by = {r["strategy"]: r for r in rows}
    floor = max(by[s]["acc"] for s in ("naive", "frozen") if s in by)
    ok = [r for r in rows if r["strategy"] not in ("naive", "frozen") and r["bwt"] is not None
          and r["bwt"] >= 0 and r["acc"] > floor]
    return max(ok, key=lambda r: r["acc"])["strategy"] if ok else None


def fmt(x: Any) -> str:
    return "   n/a" if x is None else f"{x:+.3f}" if isinstance(x, float) else str(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repos", type=int, default=5)
    parser.add_argument("--max-examples", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--ewc-lambda", type=float, default=100.0)
    parser.add_argument("--ewc-samples", type=int, default=24)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args(argv)
    setup(ns.threads)
    from agent.evaluate import VectorIndex, retrieval_scores
    from agent.retriever import Corpus
    from memory.embedder import Encoder

    start = time.perf_counter()
    stream, repos = load_stream(ns.data, ns.repos)
    corpus = Corpus.from_repositories(repos)
    base = Encoder.load(max_length=ns.max_length)
    vectors = base.encode(corpus.texts)
    index = VectorIndex(corpus.names, vectors)
    baseline = [retrieval_scores(base, index, r.theorems_in(*EVAL_SPLITS))["recall@10"] for r in stream]
    args = {"data": str(ns.data), "repos": ns.repos, "max_examples": ns.max_examples, "batch_size": ns.batch_size,
            "lr": ns.lr, "ewc_lambda": ns.ewc_lambda, "ewc_samples": ns.ewc_samples, "max_length": ns.max_length,
            "seed": ns.seed, "threads": ns.threads, "doc_vectors": vectors.tolist()}
    results = []
    ctx = mp.get_context("spawn")
    for spec in ns.strategies.split(","):
        t0 = time.perf_counter()
        with ctx.Pool(1) as pool:
            results.append(pool.apply(run_strategy, (spec, args)))
        print(f"{spec}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    rows = [summarize(r, baseline) for r in results]
    default = choose_default(rows)
    if ns.json:
        print(json.dumps({"stream": [r.name for r in stream], "baseline": baseline, "results": results,
                          "summary": rows, "default": default}, indent=2))
        return 0
    print(f"stream: {', '.join(r.name for r in stream)}  (Recall@10 on val+test tactics; "
          f"{ns.max_examples} pairs/repo, 1 epoch, lr {ns.lr})")
    print("baseline (untrained): " + " ".join(f"{b:.3f}" for b in baseline))
    head = f"{'strategy':<16}{'ACC':>8}{'BWT':>8}{'FWT':>8}{'forget':>8}{'plast':>8}{'R@10 last':>11}" \
           f"{'s/repo':>8}{'peak MiB':>10}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['strategy']:<16}{fmt(r['acc']):>8}{fmt(r['bwt']):>8}{fmt(r['fwt']):>8}{fmt(r['forgetting']):>8}"
              f"{fmt(r['plasticity']):>8}{r['recall@10_last']:>11.3f}{r['train_s_per_repo']:>8.1f}"
              f"{r['peak_mib']:>10.0f}")
    print(f"default (best ACC with BWT >= 0, above naive and frozen): {default}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
