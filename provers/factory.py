"""Picklable recipes for a prover worker: which generator and environment to build, from paths.

A recipe crosses process (or Ray) boundaries once per worker; the worker then opens its own encoder, premise
store, memory bank and model — one copy per worker — so nothing unpicklable is ever shipped.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from common.errors import InputError
from curriculum.lean_data import Repository, Theorem
from provers.config import ProverConfig
from provers.env import Env, ReplayEnv, ReplayTable, choose_lean_backend, open_lean_env
from provers.generators.context import PremiseContext


@dataclass
class GeneratorSpec:
    """Everything needed to build a generator in a fresh process.

    Encoders may be given as objects (pickled once per worker: a fine-tuned query tower has no path of its own)
    or left None to be loaded by `encoder` name in the worker.
    """

    config: ProverConfig
    encoder: str = "all-MiniLM-L6-v2"
    encoder_max_length: int = 256
    bank_path: Path | None = None
    bank_budget_bytes: int = 64 << 20
    bank_quantization: str = "sq6"
    bank_seed: int = 3407
    bank_repos: list[str] | None = None       # repositories whose bank items the kNN may use (None = all)
    store_path: Path | None = None
    chroma_url: str | None = None
    store_filter: str | None = None           # PremiseStore filter_mode; None = its default
    base_encoder: Any = None                  # Encoder object for the bank and the store (else loaded by name)
    store_encoder: Any = None                 # the tower premises were embedded with, when not the base encoder
    query_encoder: Any = None                 # fine-tuned query tower for premise retrieval
    rerank: Any = None                        # memory.rerank.LexicalRerank of the retrieved premises, or None
    # Already open, for a worker in this process: the loop's own bank and store, so a step does not reopen
    # what the run has open (opening a bank reads its whole item index: 0.3 s at 85k items). Never pickled:
    # `portable()` drops them before a spec crosses to a process or Ray worker, which opens its own from the paths.
    open_bank: Any = None
    open_store: Any = None

    def portable(self) -> "GeneratorSpec":
        """This recipe without the open bank and store, to ship to another process."""
        return dataclasses.replace(self, open_bank=None, open_store=None)


def build_generator(spec: GeneratorSpec, repositories: dict[str, Repository] | None = None):
    """The generator named by `spec.config.generator`, with its retrieval context."""
    cfg = spec.config
    has_store = spec.store_path is not None or bool(spec.chroma_url)
    encoder = spec.base_encoder
    if encoder is None and (cfg.generator == "knn" or (has_store and cfg.num_premises)):
        from memory.embedder import Encoder

        encoder = Encoder.load(spec.encoder, max_length=spec.encoder_max_length)
    store = None
    if cfg.num_premises and spec.open_store is not None:
        store = spec.open_store
    elif cfg.num_premises and has_store:
        from memory.premise_store import PremiseStore

        kwargs = {"filter_mode": spec.store_filter} if spec.store_filter else {}
        store = PremiseStore(spec.store_path, spec.store_encoder or encoder, chroma_url=spec.chroma_url, **kwargs)
    query_encoder = spec.query_encoder if store is not None else None
    if query_encoder is not None and store is not None and query_encoder is store.encoder:
        query_encoder = None   # the store embeds queries with the same tower itself
    context = PremiseContext(store, k=cfg.num_premises, budget_bytes=cfg.premise_bytes, query_encoder=query_encoder,
                             accessible=_accessibility(repositories or {}), rerank=spec.rerank)
    if cfg.generator == "knn":
        from memory.bank import MemoryBank
        from provers.generators.knn import KnnGenerator

        bank = spec.open_bank
        if bank is None and spec.bank_path is not None:
            bank = MemoryBank(spec.bank_path, encoder, budget_bytes=spec.bank_budget_bytes,
                              quantization=spec.bank_quantization, seed=spec.bank_seed)
        return KnnGenerator(bank, encoder, context, k=cfg.knn_neighbours, temperature=cfg.knn_temperature,
                            repos=spec.bank_repos)
    if cfg.generator == "hf":
        from provers.generators.hf import HFGenerator

        if not cfg.model:
            raise InputError("--generator hf needs prover.model: a Hugging Face id or a local model directory "
                             "(e.g. kaiyuy/leandojo-lean4-tacgen-byt5-small)")
        return HFGenerator.from_pretrained(cfg.model, context=context, decoding=cfg.decoding,
                                           max_input_tokens=cfg.max_input_tokens, max_new_tokens=cfg.max_new_tokens,
                                           temperature=cfg.temperature, prompt=cfg.prompt,
                                           byte_lengths=(cfg.max_input_bytes, cfg.max_new_bytes))
    from provers.generators.hf import prompt_shape_for
    from provers.generators.vllm import from_config

    if prompt_shape_for(cfg.model or "", cfg.prompt) == "state":
        context = PremiseContext()   # a state-only checkpoint: no premises before the goal
    return from_config(cfg, context)


def _accessibility(repositories: dict[str, Repository]) -> Callable[[Theorem], set[str] | None] | None:
    """ReProver's accessible premises per theorem, from the premise files of its repository (None = unknown)."""
    if not repositories:
        return None
    from memory.accessibility import Accessibility

    by_url: dict[tuple[str, str], Accessibility] = {}
    for repo in repositories.values():
        by_url.setdefault((repo.url, repo.commit), Accessibility(
            [pf for r in repositories.values() if r.url == repo.url and r.commit == repo.commit
             for pf in r.premise_files]))

    def accessible(theorem: Theorem) -> set[str] | None:
        acc = by_url.get((theorem.url, theorem.commit))
        return None if acc is None else acc.accessible(theorem.file_path, theorem.start)

    return accessible


class EnvFactory:
    """Opens the configured environment for one theorem (replay tables are built once per repository; the Lean
    REPL's set-up — a REPL build per project — once per worker process, in `_repl_configs`)."""

    def __init__(self, config: ProverConfig, repositories: dict[str, Repository]):
        self.config = config
        self.repositories = repositories
        self._tables: dict[str, ReplayTable] = {}
        self._repl_configs: dict[str, Any] = {}

    def backend(self, repo: str) -> str:
        """The Lean backend used for `repo` ([prover] lean_backend, "auto" = by its Lean version)."""
        known = self.repositories.get(repo)
        return choose_lean_backend(self.config.lean_backend, known.lean_version if known else None)

    def open(self, repo: str, theorem: Theorem) -> Env:
        if self.config.env == "lean":
            backend = self.backend(repo)
            return open_lean_env(theorem, backend, repo_path=self.config.lean_project_dir,
                                 tactic_timeout=self.config.tactic_timeout,
                                 startup_timeout=self.config.startup_timeout, repl_configs=self._repl_configs)
        shared = None
        if self.config.replay_scope == "repository" and repo in self.repositories:
            if repo not in self._tables:
                self._tables[repo] = ReplayTable.from_theorems(self.repositories[repo].theorems)
            shared = self._tables[repo]
        return ReplayEnv(theorem, shared)
