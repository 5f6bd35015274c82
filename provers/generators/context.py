"""Retrieval augmentation: the generator's input is the top-k accessible premises, packed in a byte budget,
followed by the proof state (ReProver, Yang et al. 2023, `format_augmented_state`).

Packing follows ReProver: premises are taken in rank order, a premise that would overflow the byte budget is
skipped (a later, shorter one may still fit), and each kept premise is *prepended*, so the most relevant
premise ends up nearest the state. Sizes are UTF-8 bytes because ReProver's ByT5 reads bytes.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Protocol, Sequence

from curriculum.lean_data import Theorem
from memory.embedder import query_text
from memory.rerank import LexicalRerank, retrieve


class _Retrieved(Protocol):
    full_name: str
    code: str
    text: str


class _Store(Protocol):
    def retrieve(self, state: str, k: int, repos: Sequence[str] | None = None,
                 accessible: set[str] | None = None) -> list: ...

    def retrieve_by_vectors(self, vectors, k: int, accessible=None) -> list[list]: ...


def serialize_premise(full_name: str, code: str) -> str:
    """A premise as the generator sees it: ReProver marks the name as `<a>full_name</a>`.

    Where the corpus has no code (the shared sample), the marked name alone is the premise's text.
    """
    code = code.strip()
    marked = f"<a>{full_name}</a>"
    if not code:
        return marked
    if full_name in code:
        return code.replace(full_name, marked, 1)
    return f"{marked} {code}"


def pack_premises(state: str, premises: Sequence[_Retrieved], budget_bytes: int) -> str:
    """`premises` (best first) packed into `budget_bytes`, then the state."""
    out = ""
    used = 0
    for p in premises:
        piece = serialize_premise(p.full_name, p.code) + "\n\n"
        size = len(piece.encode("utf-8"))
        if used + size > budget_bytes:
            continue
        used += size
        out = piece + out
    return out + state


class PremiseContext:
    """Builds generator inputs from a premise store; no store (or k = 0) means the state alone.

    `query_encoder` (a fine-tuned query tower) embeds the state and `retrieve_by_vectors` scores it against the
    stored premise vectors; otherwise the store embeds the state itself. `accessible(theorem)` gives the set of
    premise names the theorem may use, or None when unknown (then nothing is filtered). `rerank` re-orders the
    dense candidates before the top k are kept (memory/rerank.py), as evaluation scores retrieval.
    """

    def __init__(self, store: _Store | None = None, k: int = 10, budget_bytes: int = 2048,
                 query_encoder=None, accessible: Callable[[Theorem], set[str] | None] | None = None,
                 repos: Sequence[str] | None = None, cache_size: int = 4096, rerank: LexicalRerank | None = None):
        self.store = store
        self.k = k
        self.rerank = rerank
        self.budget_bytes = budget_bytes
        self.query_encoder = query_encoder
        self.accessible = accessible
        self.repos = list(repos) if repos else None
        self._cache: OrderedDict[tuple[str, str | None], list] = OrderedDict()
        self._cache_size = cache_size
        self._accessible_cache: dict[str, set[str] | None] = {}

    def premises(self, state: str, theorem: Theorem | None = None) -> list:
        """The top-k premises retrieved for `state` (accessible to `theorem` when that is known)."""
        if self.store is None or self.k <= 0:
            return []
        key = (state, theorem.uid if theorem is not None else None)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        allowed = None
        if theorem is not None and self.accessible is not None:
            if theorem.uid not in self._accessible_cache:
                self._accessible_cache[theorem.uid] = self.accessible(theorem)
            allowed = self._accessible_cache[theorem.uid]
        query = query_text(state, theorem.file_path, theorem.full_name) if theorem is not None else state
        if self.query_encoder is not None:
            vec = self.query_encoder.encode([query])
            found = retrieve(self.store, vec, [query], self.k, self.rerank, accessible=[allowed])[0]
        else:
            fetch = self.rerank.fetch(self.k) if self.rerank else self.k
            found = self.store.retrieve(query, fetch, repos=self.repos, accessible=allowed)
            if self.rerank:
                found = self.rerank.top(query, found, self.k)
        self._cache[key] = found
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return found

    def build(self, state: str, theorem: Theorem | None = None) -> str:
        """Retrieved premises within the byte budget, then the state: the text a model generator reads."""
        return pack_premises(state, self.premises(state, theorem), self.budget_bytes)
