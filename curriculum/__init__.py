"""Curriculum: import or trace Lean repositories, rate theorem difficulty, order the stream."""
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
from curriculum.ordering import Curriculum, order_repositories
from curriculum.sources import SourceSpec, load_source, parse_source

__all__ = [
    "Annotation", "Curriculum", "Dataset", "Pos", "Premise", "PremiseFile", "Repository", "SourceSpec",
    "Theorem", "Thresholds", "TracedTactic", "compute_thresholds", "difficulty_steps", "load_dataset",
    "load_source", "order_repositories", "parse_source", "rate_repository", "to_repositories",
]
