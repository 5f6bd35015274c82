"""Retrieval evaluation with ReProver's definitions (Yang et al. 2023, `retrieval/evaluate.py`).

For every traced tactic with at least one positive premise in the corpus (positives = its annotated premises):
Recall@k = |top-k ∩ positives| / |positives|, and the reciprocal rank = 1 / rank of the first positive among the
`num_retrieved` (100, as ReProver) returned premises, 0 when none is returned. Scores are means over tactics;
with no such tactic they are NaN (an empty cell of the accuracy matrix, not a zero).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from memory.embedder import Encoder, query_of
from memory.rerank import LexicalRerank, bm25_tokens, retrieve

NUM_RETRIEVED = 100


@dataclass(frozen=True)
class Hit:
    full_name: str
    score: float
    text: str = ""   # the premise text, for the lexical rerank ("" when the index holds no texts)


class VectorIndex:
    """Premise vectors held in memory with exact dot-product search: the same `retrieve_by_vectors` as the
    premise store, for corpora given as plain lists (benchmarks, temporary scoring, the loop's evaluation rows).
    Names are unique (a :class:`~agent.learn.retriever.Corpus` keeps one premise per name). Ties rank by
    position, as a stable sort of every score would. `texts` (the premise texts, optional) ride on the hits for
    the lexical rerank."""

    QUERY_CHUNK = 256   # query rows scored per matrix product: bounds the (rows x premises) score block

    def __init__(self, names: Sequence[str], vectors: np.ndarray, texts: Sequence[str] | None = None):
        self.names = list(names)
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.texts = list(texts) if texts is not None else [""] * len(self.names)

    @classmethod
    def build(cls, names: Sequence[str], texts: Sequence[str], encoder: Encoder) -> "VectorIndex":
        return cls(names, encoder.encode(list(texts)), texts)

    def premise_names(self) -> set[str]:
        return set(self.names)

    def retrieve_by_vectors(self, vectors: np.ndarray, k: int,
                            accessible: Sequence[set[str] | None] | None = None) -> list[list[Hit]]:
        queries = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        out = []
        for lo in range(0, len(queries), self.QUERY_CHUNK):
            scores = queries[lo:lo + self.QUERY_CHUNK] @ self.vectors.T
            for r, row in enumerate(scores):
                allowed = accessible[lo + r] if accessible is not None else None
                out.append(self._top(row, k, allowed))
        return out

    def _top(self, row: np.ndarray, k: int, allowed: set[str] | None) -> list[Hit]:
        """The k best of one score row. Without a filter only the scores at or above the k-th largest are
        sorted (the same order as sorting all of them: at 100k premises a full sort per query dominated)."""
        if allowed is None and 0 < k < len(row):
            kth = np.partition(row, len(row) - k)[len(row) - k]
            candidates = np.flatnonzero(row >= kth)
            order = candidates[np.argsort(-row[candidates], kind="stable")][:k]
            return [Hit(self.names[i], float(row[i]), self.texts[i]) for i in order]
        hits = []
        for i in np.argsort(-row, kind="stable"):
            if allowed is None or self.names[i] in allowed:
                hits.append(Hit(self.names[i], float(row[i]), self.texts[i]))
                if len(hits) == k:
                    break
        return hits


def store_names(store: Any) -> set[str]:
    """Premise names a store or index holds (cached by the store: no document is fetched per cell)."""
    return set(store.premise_names())


def eval_tactics(theorems: Iterable[Any], names: set[str], query: str = "theorem") -> list[tuple[str, set[str]]]:
    """(query text, positives) of every tactic with at least one positive in the corpus: the query is the
    state with its theorem's name and file (`query_text`, as the prover and the learner ask), or what the
    `query` form keeps of them (bench/forgetting.py's rows)."""
    out = []
    for thm in theorems:
        for tac in thm.tactics:
            pos = {a.full_name for a in tac.annotations if a.full_name in names}
            if pos:
                out.append((query_of(query, tac.state_before, thm.file_path, thm.full_name), pos))
    return out


def item_scores(ranked: Sequence[Sequence[str]], positives: Sequence[set[str]],
                k: Sequence[int] = (1, 10)) -> dict[str, np.ndarray]:
    """Recall@k and the reciprocal rank of each ranked list against its positive set (ReProver's definitions):
    one value per tactic, so that two rankers scored on the same tactics can be compared pair by pair."""
    out = {f"recall@{kk}": np.asarray([len(set(r[:kk]) & p) / len(p) for r, p in zip(ranked, positives)],
                                      dtype=float) for kk in k}
    out["mrr"] = np.asarray([1.0 / next((i + 1 for i, name in enumerate(r) if name in p), math.inf)
                             for r, p in zip(ranked, positives)], dtype=float)
    return out


def mean_scores(items: dict[str, np.ndarray]) -> dict[str, float]:
    """The means of `item_scores` (NaN over no tactic: an empty cell, not a zero), with the tactics counted."""
    n = len(next(iter(items.values())))
    out: dict[str, float] = {name: float(values.mean()) if n else math.nan for name, values in items.items()}
    out["tactics"] = n
    return out


def ranking_scores(ranked: Sequence[Sequence[str]], positives: Sequence[set[str]],
                   k: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Recall@k and MRR of ranked name lists against positive sets (ReProver's definitions)."""
    return mean_scores(item_scores(ranked, positives, k))


def retrieval_items(query_encoder: Encoder, store: Any, theorems: Iterable[Any], k: Sequence[int] = (1, 10),
                    num_retrieved: int = NUM_RETRIEVED, rerank: LexicalRerank | None = None,
                    query: str = "theorem") -> dict[str, np.ndarray]:
    """`item_scores` of `query_encoder` against the premise vectors of `store` (a PremiseStore or a
    :class:`VectorIndex`), with `rerank` (memory/rerank.py) re-ordering its candidates as the prover's premise
    context does; the tactics are `eval_tactics`' in their order, the same for every encoder, asked in the
    `query` form (bench/forgetting.py's rows)."""
    tactics = eval_tactics(theorems, store_names(store), query=query)
    if not tactics:
        return item_scores([], [], k)
    queries = [s for s, _ in tactics]
    hits = retrieve(store, query_encoder.encode(queries), queries, max(num_retrieved, *k), rerank)
    return item_scores([[h.full_name for h in row] for row in hits], [p for _, p in tactics], k)


def retrieval_scores(query_encoder: Encoder, store: Any, theorems: Iterable[Any], k: Sequence[int] = (1, 10),
                     num_retrieved: int = NUM_RETRIEVED, rerank: LexicalRerank | None = None) -> dict[str, float]:
    """The means of `retrieval_items`: Recall@k and MRR of `query_encoder` on `theorems`' tactics."""
    return mean_scores(retrieval_items(query_encoder, store, theorems, k, num_retrieved, rerank))


def bm25_scores(names: Sequence[str], texts: Sequence[str], theorems: Iterable[Any], k: Sequence[int] = (1, 10),
                num_retrieved: int = NUM_RETRIEVED) -> dict[str, float]:
    """The same metrics for Okapi BM25 (Robertson & Zaragoza 2009; `rank_bm25`) over the premise texts, with the
    same query text as the encoders (state and theorem file), so the rows differ by the ranker only."""
    from rank_bm25 import BM25Okapi

    tactics = eval_tactics(theorems, set(names))
    if not tactics:
        return ranking_scores([], [], k)
    bm25 = BM25Okapi([bm25_tokens(t) or ["_"] for t in texts])
    ranked = []
    for state, _ in tactics:
        scores = bm25.get_scores(bm25_tokens(state))
        ranked.append([names[i] for i in np.argsort(-scores, kind="stable")[:max(num_retrieved, *k)]])
    return ranking_scores(ranked, [p for _, p in tactics], k)
