"""Prover benchmarks: search overhead, process-pool speed-up, and held-out proof rate / step accuracy.

    .venv/bin/python bench/search.py [--quick]

1. Search overhead: best-first search against the replay environment (a dictionary lookup) with a constant
   generator, on a synthetic trace with branching 8: expansions per second on one core (goal ≥ 2,000/s).
2. Pool speed-up: the same kNN proving job with 1 process and with a 2-process pool (wall time, incl. start-up).
3. Held-out: the shared sample as pseudo-repositories (--split-by-dir 2), every train theorem in the memory bank;
   on the held-out test theorems, proof rate (checked by replay of the recorded Lean trace, not by Lean) and
   step accuracy (share of recorded (state, tactic) steps whose tactic the generator ranks first / in its top n)
   of `knn` and of a tiny byte-level T5 trained here on the train split. A replay proof of an unseen theorem
   needs the recorded tactics exactly, so these rates are low; they are the honest figure.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from curriculum.lean_data import Pos, Theorem, TracedTactic, load_dataset, to_repositories  # noqa: E402
from provers.config import ProverConfig  # noqa: E402
from provers.env import ReplayEnv, ReplayTable, normalize  # noqa: E402
from provers.search import best_first_search  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "leandojo_b4_sample"


class ConstantGenerator:
    """The same 8 tactics at every state: isolates the search's own cost."""

    name = "constant"

    def __init__(self, k: int = 8):
        self.out = [(f"t{i}", -0.1 * (i + 1)) for i in range(k)]

    def reset(self, seed: int) -> None:
        """Deterministic."""

    def generate(self, state, n, theorem=None):
        return self.out[:n]


def synthetic_theorem(nodes: int, branching: int = 8) -> Theorem:
    """A recorded tree: state S_i has tactics t0..t7 leading to S_{8i+1..8i+8}; nothing is ever proved."""
    steps = []
    for i in range(nodes):
        for b in range(branching):
            child = branching * i + b + 1
            steps.append(TracedTactic(f"t{b}", f"t{b}", (), f"x : ℕ\nh{i} : x > {i}\n⊢ P {i}",
                                      f"x : ℕ\nh{child} : x > {child}\n⊢ P {child}"))
    return Theorem("u", "c" * 40, "Bench.lean", "bench", Pos(1, 1), Pos(2, 1), None, tuple(steps), "test")


def bench_overhead(expansions: int) -> dict:
    thm = synthetic_theorem(expansions + 10)
    cfg = ProverConfig(max_expansions=expansions, num_tactics=8, timeout=600)
    env = ReplayEnv(thm)
    t0 = time.perf_counter()
    r = best_first_search(thm, env, ConstantGenerator(), cfg)
    dt = time.perf_counter() - t0
    return {"expansions": r.expansions, "env_calls": r.env_calls, "seconds": dt,
            "expansions_per_s": r.expansions / dt, "env_calls_per_s": r.env_calls / dt,
            "env_share": r.env_seconds / dt, "generator_share": r.generator_seconds / dt}


def bench_pool(repos, bank_dir: Path, workers: int) -> dict:
    from provers.factory import GeneratorSpec
    from provers.pool import WorkerSpec, prove_many

    tasks = [(r.name, t) for r in repos for t in r.theorems if t.tactics and not t.is_sorry]
    cfg = ProverConfig(generator="knn", max_expansions=64, num_tactics=8, num_premises=0)
    spec = WorkerSpec(GeneratorSpec(cfg, bank_path=bank_dir), {r.name: r for r in repos})
    out = {}
    keys = {}
    for n in (1, workers):
        t0 = time.perf_counter()
        results = []
        for r in prove_many(tasks, spec, workers=n):
            if not results:
                out[f"first_{n}"] = time.perf_counter() - t0
            results.append(r)
        out[f"seconds_{n}"] = time.perf_counter() - t0
        keys[n] = sorted((r.uid, r.proved, tuple(r.proof), r.expansions) for r in results)
    out["theorems"] = len(tasks)
    out["speedup"] = out["seconds_1"] / out[f"seconds_{workers}"]
    out["identical"] = keys[1] == keys[workers]
    return out


def step_accuracy(generator, theorems, n: int) -> dict:
    top1 = topn = total = 0
    for thm in theorems:
        generator.reset(0)
        for t in thm.tactics:
            cands = [normalize(c) for c, _ in generator.generate(t.state_before, n, thm)]
            total += 1
            top1 += bool(cands) and cands[0] == normalize(t.tactic)
            topn += normalize(t.tactic) in cands
    return {"steps": total, "top1": top1 / max(total, 1), f"top{n}": topn / max(total, 1)}


def proof_rate(generator, tests, tables, cfg) -> dict:
    proved = 0
    t0 = time.perf_counter()
    for repo_name, thm in tests:
        generator.reset(0)
        r = best_first_search(thm, ReplayEnv(thm, tables[repo_name]), generator, cfg, repo=repo_name)
        proved += r.proved
    return {"theorems": len(tests), "proved": proved, "proof_rate": proved / max(len(tests), 1),
            "seconds": time.perf_counter() - t0}


def bench_heldout(repos, bank_dir: Path, encoder, epochs: int, n: int) -> dict:
    from memory.bank import MemoryBank
    from memory.premise_store import PremiseStore
    from provers.generators.context import PremiseContext
    from provers.generators.hf import HFGenerator
    from provers.generators.knn import KnnGenerator
    from provers.generators.tiny import build_tiny_model, fit

    tests = [(r.name, t) for r in repos for t in r.theorems_in("test") if t.tactics and not t.is_sorry]
    tables = {r.name: ReplayTable.from_theorems(r.theorems) for r in repos}
    cfg = ProverConfig(max_expansions=32, num_tactics=n, timeout=60)
    out = {}
    store = PremiseStore(None, encoder)
    t0 = time.perf_counter()
    for r in repos:
        store.add_repo(r)
    out["premise_index_seconds"] = time.perf_counter() - t0
    ctx = PremiseContext(store, k=10, budget_bytes=2048)
    knn = KnnGenerator(MemoryBank(bank_dir, encoder), encoder, ctx)
    out["knn"] = {"steps": step_accuracy(knn, [t for _, t in tests], n), "search": proof_rate(knn, tests, tables, cfg)}

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model(Path(tmp) / "t5", "t5", d_model=128, layers=2, heads=4)
        gen = HFGenerator.from_pretrained(str(path), context=PremiseContext(), max_input_tokens=384,
                                          max_new_tokens=48)
        pairs = [(t.state_before, t.tactic) for r in repos for thm in r.theorems_in("train") if not thm.is_sorry
                 for t in thm.tactics]
        t0 = time.perf_counter()
        losses = fit(gen.model, gen.tokenizer, pairs, True, epochs=epochs, lr=2e-3, batch_size=16,
                     max_input_tokens=384, max_target_tokens=48)
        out["hf_train"] = {"pairs": len(pairs), "epochs": epochs, "seconds": time.perf_counter() - t0,
                           "loss_first": losses[0], "loss_last": losses[-1], "threads": torch.get_num_threads()}
        out["hf"] = {"steps": step_accuracy(gen, [t for _, t in tests], n),
                     "search": proof_rate(gen, tests, tables, ProverConfig(max_expansions=8, num_tactics=n))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller runs")
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    expansions = 2000 if args.quick else 5000
    o = bench_overhead(expansions)
    print(f"[1] search overhead (replay + constant generator, 1 core): {o['expansions']} expansions, "
          f"{o['env_calls']} env calls in {o['seconds']:.2f} s = {o['expansions_per_s']:,.0f} expansions/s "
          f"({o['env_calls_per_s']:,.0f} env calls/s; env {o['env_share']:.0%}, generator {o['generator_share']:.0%} "
          f"of the time); goal >= 2,000/s: {'met' if o['expansions_per_s'] >= 2000 else 'NOT met'}")

    from memory.bank import MemoryBank
    from memory.embedder import Encoder

    encoder = Encoder.load()
    repos = to_repositories(load_dataset(DATA), split_by_dir=2)
    with tempfile.TemporaryDirectory() as tmp:
        bank_dir = Path(tmp) / "bank"
        bank = MemoryBank(bank_dir, encoder)
        t0 = time.perf_counter()
        items = sum(bank.add_repository(r) for r in repos)
        print(f"    bank: {items} items from the train split of {len(repos)} repositories "
              f"in {time.perf_counter() - t0:.1f} s")
        p = bench_pool(repos, bank_dir, workers=2)
        print(f"[2] pool ({p['theorems']} theorems, knn, 64 expansions): 1 process {p['seconds_1']:.1f} s, "
              f"2 processes {p['seconds_2']:.1f} s (incl. worker start-up; first result after {p['first_2']:.1f} s "
              f"vs {p['first_1']:.1f} s) = speed-up x{p['speedup']:.2f}; "
              f"identical results: {p['identical']}; CPUs visible: {os.cpu_count()}")
        h = bench_heldout(repos, bank_dir, encoder, epochs=2 if args.quick else args.epochs, n=8)
    print(f"[3] held-out test theorems ({h['knn']['search']['theorems']}), checked by replay of the recorded Lean "
          f"trace (not by Lean); premise store indexed in {h['premise_index_seconds']:.1f} s")
    for name in ("knn", "hf"):
        s, r = h[name]["steps"], h[name]["search"]
        print(f"    {name:4}: step accuracy top-1 {s['top1']:.1%}, top-8 {s['top8']:.1%} over {s['steps']} steps; "
              f"proof rate {r['proved']}/{r['theorems']} = {r['proof_rate']:.1%} ({r['seconds']:.1f} s)")
    t = h["hf_train"]
    print(f"    hf = tiny byte-level T5 (d=128, 2+2 layers) trained {t['epochs']} epochs on {t['pairs']} train steps "
          f"in {t['seconds']:.0f} s (loss {t['loss_first']:.2f} -> {t['loss_last']:.2f}); input = state only")


if __name__ == "__main__":
    main()
