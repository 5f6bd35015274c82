"""Workspace glue for proving: build the prover from the workspace's store and bank, run the pool, record.

Each result is appended to `proofs.jsonl` (one atomic line) as soon as it finishes, so Ctrl-C or a crash keeps
every finished result. Nothing here writes to the bank on its own: the loop's `bank` step and the `prove`
command bank proofs explicitly, and only of open theorems (:func:`bankable_records`): held-out theorems, their
states and any proof found for them never reach the bank, replay or training.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from agent.config import RunConfig
from agent.workspace import Workspace
from common.atomic import append_jsonl
from curriculum.lean_data import Repository, Theorem
from provers.factory import GeneratorSpec
from provers.pool import ProverWorker, WorkerSpec, prove_many
from provers.search import ProofResult

if TYPE_CHECKING:
    from memory.bank import MemoryBank
    from memory.premise_store import PremiseStore


def proof_record(result: ProofResult, step: int | None = None, key: str | None = None,
                 purpose: str = "prove") -> dict[str, Any]:
    """The proofs.jsonl line of docs/contracts.md; `states` (before each tactic) let the bank store the steps.
    `purpose` is "prove" for the loop's own records (with the entry's step id and key), "adhoc" for `lifelean
    prove`; run summaries count the loop's records only."""
    rec = result.to_record()
    rec.update({"step": step, "key": key, "purpose": purpose, "states": list(result.states)})
    return rec


def bank_items(repo: Repository, record: dict[str, Any]) -> list:
    """Bank items of a proved record: every (state, tactic, next state) step and the whole proof."""
    from memory.bank import BankItem

    proof, states = list(record.get("proof") or []), list(record.get("states") or [])
    if not record.get("proved") or not proof or len(states) != len(proof):
        return []
    checked = record.get("checked_by") or "replay"
    after = states[1:] + ["no goals"]
    path = record.get("file_path") or ""
    items = [BankItem("step", repo.name, record["theorem"], s, t, a, checked_by=checked, commit=repo.commit,
                      split="found", path=path) for s, t, a in zip(states, proof, after)]
    items.append(BankItem("proof", repo.name, record["theorem"], states[0], proof[0], "no goals",
                          proof=tuple(proof), checked_by=checked, commit=repo.commit, split="found", path=path))
    return items


def bankable_records(repo: Repository, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Proved records of `repo`'s open theorems: the only proofs that may enter the bank. A proof of a
    held-out (val/test) theorem would leak into every later evaluation; a train theorem's proof is in the
    bank already, as its recorded trace."""
    open_uids = {t.uid for t in open_theorems(repo)}
    return [r for r in records if r.get("proved") and r.get("uid") in open_uids]


def remember_proofs(ws: Workspace, config: RunConfig, repo: Repository, records: Sequence[dict[str, Any]],
                    bank: MemoryBank | None = None) -> int:
    """Add the proved records' steps to the workspace bank (`bank` when the caller has it open); returns how many
    items were new."""
    from agent.workspace.memory import open_bank

    items = [it for rec in records for it in bank_items(repo, rec)]
    if not items:
        return 0
    return (bank if bank is not None else open_bank(ws, config)).add(items)


def open_theorems(repo: Repository) -> list[Theorem]:
    """What the loop's prove step attempts: the repository's open (sorry) theorems, never held-out ones."""
    return [t for t in repo.theorems if t.is_sorry and t.split not in HELD_OUT]


HELD_OUT = ("val", "test")


def held_out_theorems(repo: Repository) -> list[Theorem]:
    """Held-out test theorems with a recorded trace: the columns of the proof-rate matrix."""
    return [t for t in repo.theorems if t.split == "test" and t.tactics and not t.is_sorry]


def worker_spec(ws: Workspace, config: RunConfig, repositories: dict[str, Repository], query_encoder=None,
                bank_repos: Sequence[str] | None = None, bank: MemoryBank | None = None,
                store: PremiseStore | None = None) -> WorkerSpec:
    """The recipe every prover worker builds itself from: this workspace's store, bank and encoders. `bank` and
    `store`, when the caller has them open, are used by a worker in this process instead of opening them again."""
    from agent.workspace.memory import base_encoder

    base = base_encoder(config)
    gen = GeneratorSpec(
        config=config.prover, encoder=config.memory.encoder, encoder_max_length=config.memory.max_length,
        bank_path=ws.bank_dir, bank_budget_bytes=config.memory.bank_budget_bytes,
        bank_quantization=config.memory.bank_quantization, bank_seed=config.seed,
        bank_repos=list(bank_repos) if bank_repos is not None else None,
        store_path=ws.chroma_dir, chroma_url=config.memory.chroma_url,
        store_filter=getattr(config.memory, "retrieve_filter", None),
        base_encoder=base, store_encoder=None, query_encoder=query_encoder, rerank=config.memory.reranker(),
        open_bank=bank, open_store=store)
    return WorkerSpec(generator=gen, repositories=repositories, seed=config.seed)


def prove_theorems(ws: Workspace, config: RunConfig, repo: Repository, theorems: Sequence[Theorem],
                   query_encoder=None, on_result: Callable[[ProofResult], None] | None = None,
                   workers: int | None = None, step: int | None = None, key: str | None = None,
                   bank_repos: Sequence[str] | None = None, record: bool = True, purpose: str = "prove",
                   ray_address: str | None = None, repositories: dict[str, Repository] | None = None,
                   worker: ProverWorker | None = None, bank: MemoryBank | None = None,
                   store: PremiseStore | None = None) -> list[ProofResult]:
    """Prove `theorems` of `repo`; append each result to proofs.jsonl as it finishes (unless `record` is False).
    Returns results in the order of `theorems`.

    `repositories` (name -> Repository) adds other repositories for accessibility; `repo` is always included.
    `worker` reuses an already built single-process prover (its store, bank and generator) across calls;
    `bank` and `store` are the caller's open ones, for a prover built in this process.
    """
    repos = dict(repositories or {})
    repos[repo.name] = repo
    spec = worker_spec(ws, config, repos, query_encoder=query_encoder, bank_repos=bank_repos, bank=bank, store=store)
    n = config.prover.workers if workers is None else workers
    address = ray_address if ray_address is not None else config.prover.ray_address
    results: dict[str, ProofResult] = {}
    for result in prove_many([(repo.name, t) for t in theorems], spec, workers=n, ray_address=address,
                             worker=worker):
        results[result.uid] = result
        if record:
            append_jsonl(ws.proofs_path, proof_record(result, step=step, key=key, purpose=purpose))
        if on_result is not None:
            on_result(result)
    return [results[t.uid] for t in theorems if t.uid in results]


__all__ = ["HELD_OUT", "ProverWorker", "bank_items", "bankable_records", "held_out_theorems", "open_theorems",
           "proof_record", "prove_theorems", "remember_proofs", "worker_spec"]
