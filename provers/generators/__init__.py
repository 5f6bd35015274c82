"""Tactic generators: `knn` (memory bank), `hf` (transformers), `vllm` (engine or server), all retrieval-augmented."""
from provers.generators.base import Generator, dedup_best
from provers.generators.context import PremiseContext, pack_premises, serialize_premise

__all__ = ["Generator", "PremiseContext", "dedup_best", "pack_premises", "serialize_premise"]
