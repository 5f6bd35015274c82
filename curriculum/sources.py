"""What `lifelean add SOURCE` accepts, and turning it into repositories.

A SOURCE is (in this order of checks) a traced-data directory (LeanDojo export or `theorems.jsonl`),
a local Lean repository (has a lakefile or `lean-toolchain`), or a git URL with an optional
`@commit`. Everything is loaded and validated before the caller writes anything.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from common.errors import DataError, InputError
from curriculum.lean_data import Repository, detect_layout, load_dataset, to_repositories

_URL = re.compile(r"^(?P<url>(?:https?|ssh|git)://[^@\s]+|git@[^:\s]+:[^@\s]+?)(?:@(?P<commit>[\w./-]+))?$")
_LEAN_MARKERS = ("lakefile.lean", "lakefile.toml", "lean-toolchain")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed SOURCE argument."""

    text: str
    kind: str  # "traced" | "lean_repo" | "git"
    location: str
    commit: str | None = None


def parse_source(text: str) -> SourceSpec:
    """Classify SOURCE; a path that is none of the accepted kinds is a one-line error.

    A URL is normalised the way LeanDojo keys its cache (no trailing `/` or `.git`); ssh:// and git:// URLs
    are refused here because LeanDojo cannot trace them (it accepts https and `git@github.com:USER/REPO`).
    """
    from curriculum.tracing import normalize_git_url

    if re.match(r"^(ssh|git)://", text.strip()):
        normalize_git_url(text)   # raises the one-line error naming the URL
    m = _URL.match(text.strip())
    if m:
        return SourceSpec(text, "git", normalize_git_url(m.group("url")), m.group("commit"))
    path = Path(text).expanduser()
    if path.is_dir() and any((path / marker).exists() for marker in _LEAN_MARKERS):
        return SourceSpec(text, "lean_repo", str(path))
    detect_layout(path)  # raises a DataError naming what was expected
    return SourceSpec(text, "traced", str(path))


def load_source(spec: SourceSpec, name: str | None = None, split_by_dir: int | None = None) -> list[Repository]:
    """Load (or trace) a source into repositories, fully validated; writes nothing."""
    if split_by_dir is not None and split_by_dir < 1:
        raise InputError(f"--split-by-dir: expected a positive number of path components, got {split_by_dir}")
    if spec.kind == "traced":
        return to_repositories(load_dataset(spec.location), name=name, split_by_dir=split_by_dir)
    from curriculum.tracing import trace_repository

    repo = trace_repository(spec.location, spec.commit, name)
    if split_by_dir:
        from curriculum.lean_data import Dataset

        ds = Dataset(Path(spec.location), repo.theorems, repo.premise_files, {})
        return to_repositories(ds, name=name, split_by_dir=split_by_dir)
    return [repo]


__all__ = ["DataError", "SourceSpec", "load_source", "parse_source"]
