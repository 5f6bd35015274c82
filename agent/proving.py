"""Workspace glue for proving: open the workspace's store and bank, build the prover, run the pool, record.

Each result is appended to `proofs.jsonl` (one atomic line) as soon as it finishes, so Ctrl-C or a crash keeps
every finished result; proved theorems enter the memory bank (also on Ctrl-C, for the ones already found).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from agent.config import RunConfig
from agent.workspace import Workspace
from common.atomic import append_jsonl
from curriculum.lean_data import Repository, Theorem
from provers.factory import GeneratorSpec
from provers.pool import ProverWorker, WorkerSpec, prove_many
from provers.search import ProofResult


def proof_record(result: ProofResult, step: int | None = None, purpose: str = "prove") -> dict[str, Any]:
    """The proofs.jsonl line of docs/contracts.md; `states` (before each tactic) let the bank store the steps."""
    rec = result.to_record()
    rec.update({"step": step, "purpose": purpose, "states": list(result.states)})
    return rec


def bank_items(repo: Repository, record: dict[str, Any]) -> list:
    """Bank items of a proved record: every (state, tactic, next state) step and the whole proof."""
    from memory.bank import BankItem

    proof, states = list(record.get("proof") or []), list(record.get("states") or [])
    if not record.get("proved") or not proof or len(states) != len(proof):
        return []
    checked = record.get("checked_by") or "replay"
    after = states[1:] + ["no goals"]
    items = [BankItem("step", repo.name, record["theorem"], s, t, a, checked_by=checked, commit=repo.commit)
             for s, t, a in zip(states, proof, after)]
    items.append(BankItem("proof", repo.name, record["theorem"], states[0], proof[0], "no goals",
                          proof=tuple(proof), checked_by=checked, commit=repo.commit))
    return items


def remember_proofs(ws: Workspace, config: RunConfig, repo: Repository, records: Sequence[dict[str, Any]]) -> int:
    """Add the proved records' steps to the workspace bank; returns how many items were new."""
    from agent.memory_ops import open_bank

    items = [it for rec in records for it in bank_items(repo, rec)]
    return open_bank(ws, config).add(items) if items else 0


def open_theorems(repo: Repository) -> list[Theorem]:
    """What proving a repository attempts: sorry theorems and held-out test theorems with a recorded trace."""
    return [t for t in repo.theorems if t.is_sorry or (t.split == "test" and t.tactics)]


def held_out_theorems(repo: Repository) -> list[Theorem]:
    """Held-out test theorems with a recorded trace: the columns of the proof-rate matrix."""
    return [t for t in repo.theorems if t.split == "test" and t.tactics and not t.is_sorry]


def worker_spec(ws: Workspace, config: RunConfig, repositories: dict[str, Repository], query_encoder=None,
                bank_repos: Sequence[str] | None = None) -> WorkerSpec:
    """The recipe every prover worker builds itself from: this workspace's store, bank and encoders."""
    from agent.memory_ops import base_encoder

    base = base_encoder(config)
    store_encoder = None
    if query_encoder is not None and config.learning.tune == "both":
        store_encoder = query_encoder        # premises were embedded with the tuned tower itself
    gen = GeneratorSpec(
        config=config.prover, encoder=config.memory.encoder, encoder_max_length=config.memory.max_length,
        bank_path=ws.bank_dir, bank_budget_bytes=config.memory.bank_budget_bytes,
        bank_quantization=config.memory.bank_quantization, bank_seed=config.seed,
        bank_repos=list(bank_repos) if bank_repos is not None else None,
        store_path=ws.chroma_dir, chroma_url=config.memory.chroma_url,
        store_filter=getattr(config.memory, "retrieve_filter", None),
        base_encoder=base, store_encoder=store_encoder, query_encoder=query_encoder)
    return WorkerSpec(generator=gen, repositories=repositories, seed=config.seed)


def prove_theorems(ws: Workspace, config: RunConfig, repo: Repository, theorems: Sequence[Theorem],
                   query_encoder=None, on_result: Callable[[ProofResult], None] | None = None,
                   workers: int | None = None, step: int | None = None, bank_repos: Sequence[str] | None = None,
                   add_to_bank: bool = True, record: bool = True, purpose: str = "prove",
                   ray_address: str | None = None, repositories: dict[str, Repository] | None = None,
                   worker: ProverWorker | None = None) -> list[ProofResult]:
    """Prove `theorems` of `repo`; append each result to proofs.jsonl as it finishes (unless `record` is False)
    and add proved ones to the bank (unless `add_to_bank` is False). Returns results in the order of `theorems`.

    `repositories` (name → Repository) adds other repositories for accessibility; `repo` is always included.
    `worker` reuses an already built single-process prover (its store, bank and generator) across calls.
    """
    repos = dict(repositories or {})
    repos[repo.name] = repo
    spec = worker_spec(ws, config, repos, query_encoder=query_encoder, bank_repos=bank_repos)
    n = config.prover.workers if workers is None else workers
    address = ray_address if ray_address is not None else config.prover.ray_address
    results: dict[str, ProofResult] = {}
    try:
        for result in prove_many([(repo.name, t) for t in theorems], spec, workers=n, ray_address=address,
                                 worker=worker):
            results[result.uid] = result
            if record:
                append_jsonl(ws.proofs_path, proof_record(result, step=step, purpose=purpose))
            if on_result is not None:
                on_result(result)
    finally:
        if add_to_bank:
            proved = [proof_record(r) for r in results.values() if r.proved]
            if proved:
                remember_proofs(ws, config, repo, proved)
    return [results[t.uid] for t in theorems if t.uid in results]


__all__ = ["ProverWorker", "bank_items", "held_out_theorems", "open_theorems", "proof_record", "prove_theorems",
           "remember_proofs", "worker_spec"]
