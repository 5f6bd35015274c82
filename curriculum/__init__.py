"""Curriculum: import or trace Lean repositories, rate theorem difficulty, order the stream.

The ordering (`curriculum.ordering`) is imported from its module, not re-exported here: it pulls in networkx,
about 0.3 s that every CLI call would otherwise pay, including the many that never order a stream.
"""
from curriculum.difficulty import Thresholds, compute_thresholds, difficulty_steps, rate_repository
from curriculum.lean_data import (
    Annotation,
    Dataset,
    Pos,
    Premise,
    PremiseFile,
    Repository,
    Theorem,
    TracedTactic,
    load_dataset,
    to_repositories,
)
from curriculum.sources import SourceSpec, load_source, parse_source

__all__ = [
    "Annotation", "Dataset", "Pos", "Premise", "PremiseFile", "Repository", "SourceSpec",
    "Theorem", "Thresholds", "TracedTactic", "compute_thresholds", "difficulty_steps", "load_dataset",
    "load_source", "parse_source", "rate_repository", "to_repositories",
]
