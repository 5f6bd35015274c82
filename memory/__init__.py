"""Memory: the encoder, the premise store (chromadb), accessibility, and the compressed memory bank.

Depends on `common` and `curriculum` only; workspace glue lives in `agent.workspace.memory`.
"""
from memory.accessibility import Accessibility, accessible_premises
from memory.bank import BankItem, Match, MemoryBank, items_of_repository
from memory.config import MemoryConfig
from memory.embedder import Encoder, premise_text, query_text
from memory.premise_store import IndexReport, PremiseStore, RetrievedPremise, code_hash

__all__ = [
    "Accessibility",
    "BankItem",
    "Encoder",
    "IndexReport",
    "Match",
    "MemoryBank",
    "MemoryConfig",
    "PremiseStore",
    "RetrievedPremise",
    "accessible_premises",
    "code_hash",
    "items_of_repository",
    "premise_text",
    "query_text",
]
