"""Lexical reranking of the dense retriever's candidates: the encoder's top `depth` premises are re-ordered by
reciprocal rank fusion (RRF; Cormack, Clarke & Büttcher, SIGIR 2009, with their k = 60) of their dense rank and
their Okapi BM25 rank (Robertson & Zaragoza 2009; `rank_bm25`), BM25 scored among the candidates themselves.

Why: a dense encoder and BM25 miss different premises. Mathlib's names share words with the goals they serve
(`List.length_append` for `(l₁ ++ l₂).length`), which BM25 matches exactly and a small encoder only roughly. On
the sample's 422 premise-naming steps, the untrained encoder's Recall@10 / MRR went from 0.568 / 0.574 to 0.605 /
0.596 with this rerank (val + test alone: 0.556 / 0.531 to 0.605 / 0.551; design note 23).

Why among the candidates: nothing is indexed beyond the premise store, so the rerank costs the same at 1k or 100k
premises (one BM25 over `depth` texts per query), and it measured as well as fusing BM25 over the whole corpus
(0.614 / 0.586) without a second index to keep in step with the store's updates and forgetting.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence, TypeVar

import numpy as np

RRF_K = 60           # Cormack et al. 2009's constant: a rank's weight is 1 / (60 + rank)
DEFAULT_DEPTH = 100  # as many candidates as ReProver retrieves for evaluation

H = TypeVar("H")
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def bm25_tokens(text: str) -> list[str]:
    """Words (dots and underscores split, lower-cased) and single symbols such as ∀ or →."""
    return _TOKEN.findall(text.replace(".", " ").replace("_", " ").lower())


@lru_cache(maxsize=1 << 16)
def _premise_tokens(text: str) -> tuple[str, ...]:
    """A candidate's tokens: the same premises come back for query after query, so they are split once."""
    return tuple(bm25_tokens(text)) or ("_",)


def fused_order(lexical_scores: Sequence[float]) -> list[int]:
    """Positions of candidates given in dense order, re-ordered by RRF of their dense and lexical ranks; ties
    keep the dense order."""
    n = len(lexical_scores)
    lexical_rank = np.empty(n, dtype=np.int64)
    lexical_rank[np.argsort(-np.asarray(lexical_scores, dtype=np.float64), kind="stable")] = np.arange(n)
    fused = 1.0 / (RRF_K + 1 + np.arange(n)) + 1.0 / (RRF_K + 1 + lexical_rank)
    return [int(i) for i in np.argsort(-fused, kind="stable")]


@dataclass(frozen=True)
class LexicalRerank:
    """Re-orders a dense top-`depth` with BM25 (module docstring). Retrieval asks the store for
    `fetch(k)` candidates and keeps the first k of `rerank`."""

    depth: int = DEFAULT_DEPTH

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"rerank depth must be at least 1, got {self.depth}")

    def fetch(self, k: int) -> int:
        """How many dense candidates to retrieve for a top-k after the rerank."""
        return max(k, self.depth)

    def rerank(self, query: str, candidates: Sequence[H], texts: Sequence[str]) -> list[H]:
        """`candidates` (dense order, best first; `texts` their premise texts) in fused order."""
        from rank_bm25 import BM25Okapi

        if len(candidates) != len(texts):
            raise ValueError("rerank needs one text per candidate")
        if len(candidates) < 2:
            return list(candidates)
        bm25 = BM25Okapi([_premise_tokens(t) for t in texts])
        # A query word in no candidate adds exactly 0 to every score: leaving it out gives the same scores.
        words = [w for w in bm25_tokens(query) if w in bm25.idf]
        return [candidates[i] for i in fused_order(bm25.get_scores(words))]

    def top(self, query: str, hits: Sequence[Any], k: int) -> list[Any]:
        """The first k of `hits` (premises with a `.text`, dense order) after the rerank."""
        return self.rerank(query, hits, [h.text for h in hits])[:k]


def retrieve(store: Any, vectors: np.ndarray, queries: Sequence[str], k: int, rerank: LexicalRerank | None = None,
             accessible: Sequence[set[str] | None] | None = None, **filters: Any) -> list[list[Any]]:
    """The top k premises per query as every retrieval of lifelean ranks them: the store's dense top
    (`retrieve_by_vectors` of a PremiseStore or a VectorIndex, `filters` passed on), re-ordered by `rerank` when
    there is one. One function, so the prover's context, the loop's cells and `evaluate` cannot drift apart."""
    found = store.retrieve_by_vectors(vectors, rerank.fetch(k) if rerank else k, accessible=accessible, **filters)
    if rerank is None:
        return found
    return [rerank.top(q, hits, k) for q, hits in zip(queries, found)]


def reranker(mode: str, depth: int = DEFAULT_DEPTH) -> LexicalRerank | None:
    """The reranker `[memory] rerank` names: 'bm25', or None for 'none' (the dense order as it is)."""
    if mode == "none":
        return None
    if mode == "bm25":
        return LexicalRerank(depth)
    raise ValueError(f"rerank must be 'bm25' or 'none', got {mode!r}")
