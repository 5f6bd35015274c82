"""Tracing a Lean repository with LeanDojo (users' machines: needs Lean, elan and `lean-dojo`).

`lean_dojo` is imported only here and only when tracing is asked for: its import runs `git --version`
and creates a cache directory, which must not happen for commands that never trace. The traced repo
is exported to records of LeanDojo Benchmark 4's format (the same fields LeanDojo's
`generate-benchmark-lean4` script writes) and parsed by the loaders every other source goes through.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from common.errors import InputError
from curriculum.lean_data import Repository, parse_premise_file, parse_theorem


def _require_lean_dojo():
    try:
        import lean_dojo  # noqa: F401
    except ImportError:
        raise InputError(
            "tracing a Lean repository needs LeanDojo and a Lean toolchain: `pip install 'lifelean[lean]'`, "
            "install elan (https://github.com/leanprover/elan), then add the repository again; "
            "or add an already traced dataset directory (LeanDojo export format)"
        ) from None
    import lean_dojo

    return lean_dojo


def assign_split(full_name: str, has_tactics: bool, val_pct: int = 10, test_pct: int = 10) -> str:
    """Deterministic held-out split by sha1 of the name: about `test_pct`% test, `val_pct`% val.

    Only theorems with tactic proofs are held out: a term-mode proof gives the prover nothing to replay.
    """
    if not has_tactics:
        return "train"
    bucket = int(hashlib.sha1(full_name.encode("utf-8")).hexdigest(), 16) % 100
    if bucket < test_pct:
        return "test"
    if bucket < test_pct + val_pct:
        return "val"
    return "train"


def _export_theorem(traced_repo: Any, thm: Any, packages_dir: str) -> dict[str, Any]:
    """One theorem record, as LeanDojo's benchmark export writes it."""
    if thm.repo == traced_repo.repo:
        file_path = str(thm.theorem.file_path)
    else:
        name = next((n for n, dep in traced_repo.dependencies.items() if dep == thm.repo), thm.repo.name)
        file_path = f"{packages_dir}/{name}/{thm.theorem.file_path}"
    tactics = [
        {
            "tactic": t.tactic,
            "annotated_tactic": t.get_annotated_tactic(),
            "state_before": t.state_before,
            "state_after": t.state_after,
        }
        for t in thm.get_traced_tactics()
        if t.state_before != "no goals" and "·" not in t.tactic
    ]
    return {
        "url": traced_repo.repo.url,
        "commit": traced_repo.repo.commit,
        "file_path": file_path,
        "full_name": thm.theorem.full_name,
        "start": list(thm.start),
        "end": list(thm.end),
        "traced_tactics": tactics,
    }


def trace_repository(source: str, commit: str | None, name: str | None, with_dependencies: bool = False) -> Repository:
    """Trace a git URL (at `commit`, a SHA, branch or tag) or a local Lean repository with LeanDojo.

    By default only the repository's own theorems are kept (LeanAgent keeps its dependencies' too,
    which makes a mathlib-based repository look like mathlib to the curriculum); premises of
    dependencies are always kept, since the repository's proofs use them.
    """
    lean_dojo = _require_lean_dojo()
    import networkx as nx
    from lean_dojo import LeanGitRepo, trace

    local = Path(source)
    if local.exists():
        repo = LeanGitRepo.from_path(local) if commit is None else LeanGitRepo(str(local.resolve()), commit)
    else:
        repo = LeanGitRepo(source, commit or "main")
    traced = trace(repo)
    packages_dir = ".lake/packages"
    theorems = []
    for n, thm in enumerate(traced.get_traced_theorems(), 1):
        if thm.repo.is_lean4 or (not with_dependencies and thm.repo != traced.repo):
            continue
        rec = _export_theorem(traced, thm, packages_dir)
        split = assign_split(rec["full_name"], bool(rec["traced_tactics"]))
        theorems.append(parse_theorem(rec, f"trace of {source}", n, split=split))
    graph = traced.traced_files_graph
    files = []
    for n, node in enumerate(reversed(list(nx.topological_sort(graph))), 1):
        tf = graph.nodes[node]["traced_file"]
        rec = {"path": str(tf.path), "imports": [str(s) for s in graph.successors(node)],
               "premises": tf.get_premise_definitions()}
        files.append(parse_premise_file(rec, f"trace of {source}", n))
    if not theorems:
        raise InputError(f"{source}: LeanDojo traced no theorems of this repository")
    return Repository(
        url=repo.url,
        commit=repo.commit,
        name=name or repo.name,
        lean_version=getattr(repo, "lean_version", None) and str(repo.lean_version),
        theorems=tuple(theorems),
        premise_files=tuple(files),
        dependencies=tuple(dep.url for dep in traced.dependencies.values()),
    )
