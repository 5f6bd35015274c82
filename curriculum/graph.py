"""Dependency graphs (networkx): repository → repository, file → file, theorem → premise.

Edges point from the thing depended on to its dependant (`dep → user`), so a topological order is
a valid processing order. Imports that a corpus did not record stay unknown: such files simply
contribute no edges, and :func:`imports_known` says whether any were recorded at all.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from curriculum.lean_data import Repository

if TYPE_CHECKING:
    import networkx as nx


def imports_known(repos: Iterable[Repository]) -> bool:
    """True if at least one premise file of these repositories records its imports."""
    return any(pf.imports is not None for r in repos for pf in r.premise_files)


def file_graph(repos: Iterable[Repository]) -> nx.DiGraph:
    """File → file import graph from `corpus.jsonl` imports (edge `imported → importer`)."""
    import networkx as nx  # here, not at module level: importing networkx costs every CLI call ~0.3 s

    g = nx.DiGraph()
    for repo in repos:
        for pf in repo.premise_files:
            g.add_node(pf.path)
            for imp in pf.imports or ():
                g.add_edge(imp, pf.path)
    return g


def repository_graph(repos: list[Repository]) -> nx.DiGraph:
    """Repository → repository graph (edge `dependency → dependant`, nodes are repository keys).

    An edge comes from a declared dependency (matched by name or URL) or from a shared import: a file
    of repository A imports a file that repository B owns.
    """
    import networkx as nx

    g = nx.DiGraph()
    owner: dict[str, str] = {}
    by_ref: dict[str, str] = {}
    for repo in repos:
        g.add_node(repo.key)
        by_ref.setdefault(repo.name, repo.key)
        by_ref.setdefault(repo.url, repo.key)
        for pf in repo.premise_files:
            owner.setdefault(pf.path, repo.key)
    for repo in repos:
        for dep in repo.dependencies:
            target = by_ref.get(dep)
            if target is not None and target != repo.key:
                g.add_edge(target, repo.key)
        for pf in repo.premise_files:
            for imp in pf.imports or ():
                target = owner.get(imp)
                if target is not None and target != repo.key:
                    g.add_edge(target, repo.key)
    return g


def premise_usage_graph(repos: Iterable[Repository]) -> nx.DiGraph:
    """Theorem → premise graph from the premises named in annotated tactics (edge attribute `uses`)."""
    import networkx as nx

    g = nx.DiGraph()
    for repo in repos:
        for thm in repo.theorems:
            tnode = ("theorem", repo.key, thm.full_name)
            g.add_node(tnode, kind="theorem")
            for tac in thm.tactics:
                for ann in tac.annotations:
                    pnode = ("premise", ann.full_name)
                    g.add_node(pnode, kind="premise", path=ann.def_path)
                    if g.has_edge(tnode, pnode):
                        g[tnode][pnode]["uses"] += 1
                    else:
                        g.add_edge(tnode, pnode, uses=1)
    return g
