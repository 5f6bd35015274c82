"""What the steps of one run share, rebuilt from disk on every (re)start: nothing here is state of its own."""
from __future__ import annotations

import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from agent.config import RunConfig
from agent.workspace import StreamEntry, Workspace, WorkspaceState
from common.errors import LifeleanError
from curriculum.lean_data import Repository

Reporter = Callable[[str, dict[str, Any]], None]


def quiet(event: str, info: dict[str, Any]) -> None:
    return None


class StepFailed(LifeleanError):
    """A step could not write its outputs (disk full, permissions); nothing of it was recorded."""

    exit_code = 1


@dataclass
class LoopContext:
    ws: Workspace
    config: RunConfig
    state: WorkspaceState
    report: Reporter = quiet
    _repos: dict[str, Repository] = field(default_factory=dict, repr=False)
    _query_encoder: Any = field(default=None, repr=False)
    _corpus: tuple[tuple[str, ...], Any] | None = field(default=None, repr=False)
    _premise_index: tuple[Any, Any] | None = field(default=None, repr=False)
    _bank: Any = field(default=None, repr=False)
    _store: Any = field(default=None, repr=False)
    _store_opening: Future | None = field(default=None, repr=False)

    def repository(self, key: str) -> Repository:
        if key not in self._repos:
            self._repos[key] = self.ws.load_repository(key)
        return self._repos[key]

    def learned_names(self, upto_step: int) -> list[str]:
        """Repository names the model has learned by the end of step `upto_step` (−1: none). The prover's
        bank and replay may use exactly these: the lifelong setting never peeks at a later repository."""
        return list(dict.fromkeys(e.name for e in self.state.started()
                                  if e.step is not None and e.step <= upto_step and not e.forgotten))

    def columns(self) -> list[StreamEntry]:
        """The entries an evaluation row scores: every live entry, started or not (future ones give FWT)."""
        return [e for e in self.state.started() if e.live] + self.state.pending()

    def corpus(self) -> Any:
        """Premises of every live repository: the candidates of training (one object per set of entries). Its
        frozen document vectors are the premise store's own, so training scores against exactly the vectors
        retrieval searches and nothing is embedded again (costs that grow with the new repository only)."""
        from agent.workspace.memory import load_corpus

        keys = tuple(sorted(e.key for e in self.state.live()))
        if self._corpus is None or self._corpus[0] != keys:   # embedded once, at `add`; read from its files
            self._corpus = (keys, load_corpus(self.ws, self.config, keys, self.repository, self.store))
        return self._corpus[1]

    def premise_index(self) -> Any:
        """Exact search over :meth:`corpus` and its stored vectors, for evaluation: every held-out tactic is
        ranked against every live premise in one matrix product per row, as `lifelean evaluate` and
        bench/forgetting.py rank, instead of one approximate (HNSW) premise-store query per tactic (28 s of
        `make run`). Shares the corpus's vectors: no copy. A name stored by two live repositories ranks with
        the corpus's copy (the first repository's), as training scores it."""
        from agent.evaluation.retrieval import VectorIndex
        from agent.workspace.memory import base_encoder

        corpus = self.corpus()
        if self._premise_index is None or self._premise_index[0] is not corpus:
            vectors = corpus.vectors(base_encoder(self.config)).numpy()
            self._premise_index = (corpus, VectorIndex(corpus.names, vectors, corpus.texts))
        return self._premise_index[1]

    def bank(self) -> Any:
        """The workspace's memory bank, opened once for the whole run and shared by every step (index, replay,
        the prover, the bank step, the evaluation's prover): opening one reads its whole item index (0.3 s at
        85k items) and its first match builds the dequantized matrix, costs that grew with everything banked
        when each step opened its own. The run holds the workspace lock, so no other process writes it."""
        if self._bank is None:
            from agent.workspace.memory import open_bank

            self._bank = open_bank(self.ws, self.config)
        return self._bank

    def store(self) -> Any:
        """The workspace's premise store, opened once for the run (chroma loads a collection's HNSW index on
        the first read of each client, in time that grows with the store): the one :meth:`open_store_ahead`
        opened when it was called, else opened here."""
        if self._store is None:
            if self._store_opening is not None:
                self._store = self._store_opening.result()   # re-raises what opening it raised
            else:
                from agent.workspace.memory import open_store

                self._store = open_store(self.ws, self.config)
        return self._store

    def open_store_ahead(self) -> None:
        """Open the premise store and load its search index in a background thread. Opening costs a fresh
        process ~1 s (`import chromadb`), and chroma reads a collection's HNSW index from disk on its client's
        first read (0.65 s at 100k premises, 0.11 s at 10k) with the GIL released, so the load runs beside
        whatever the process does first (design note 29). :meth:`store` waits for it."""
        if self._store is not None or self._store_opening is not None:
            return
        from agent.workspace.memory import open_store

        def open_and_warm() -> Any:
            store = open_store(self.ws, self.config)
            store.warm()
            return store

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lifelean-store")
        self._store_opening = pool.submit(open_and_warm)
        pool.shutdown(wait=False)

    def prover_memory(self) -> dict[str, Any]:
        """`bank=` and `store=` for a prover built in this process: the run's open ones where its generator
        reads them (the bank for `knn`, the store when premises are retrieved), else None (not opened)."""
        prover = self.config.prover
        return {"bank": self.bank() if prover.generator == "knn" else None,
                "store": self.store() if prover.num_premises else None}

    def prepare_prover_memory(self) -> None:
        """Call before a prover is needed (a run with steps to do, a step that will build a prover): starts
        opening the store it will read (see :meth:`open_store_ahead`) while the process loads everything
        else; then neither a run's first prove step nor a `resume` pays for chroma's load on its own."""
        if self.config.prover.num_premises:
            self.open_store_ahead()

    def query_encoder(self, repo_name: str | None = None) -> Any:
        """The current query tower: the newest checkpoint's (loaded once per step), or with `adapters` the
        adapter of `repo_name` (LoRA per repository, selected at retrieval time)."""
        from agent.workspace.checkpoints import base_encoder_of, load_query_learner, select_query_adapter

        if self._query_encoder is None:   # (learner or None,), loaded once per step
            self._query_encoder = (load_query_learner(self.ws, self.config),)
        learner = self._query_encoder[0]
        if learner is None:
            return base_encoder_of(self.config)
        if "adapters" in self.config.learning.strategy:
            return select_query_adapter(learner, repo_name)
        return learner.query

    def weights_changed(self) -> None:
        self._query_encoder = None

    def proving_config(self) -> RunConfig:
        """The config provers run with: when the generator is fine-tuned, its newest checkpoint is the model."""
        if not self.config.learning.train_generator:
            return self.config
        from agent.workspace.checkpoints import current_generator_model

        prover = dataclasses.replace(self.config.prover, model=current_generator_model(self.ws, self.config))
        return dataclasses.replace(self.config, prover=prover)
