"""Which premises a theorem may use: ReProver's accessibility rule (Yang et al., LeanDojo, NeurIPS 2023, §5).

A premise is accessible from a theorem in file F starting at position s if it is defined in a file of the
transitive import closure of F, or in F itself and it ends before s. Retrieval filters candidates by this
set so the prover is never offered a lemma Lean would reject as unknown.

Where the corpus does not record a file's imports (LeanDojo exports built from annotations, such as the
shared sample) accessibility is *unknown*: :meth:`Accessibility.accessible` returns ``None`` and callers
do not filter, rather than pretend the file imports nothing.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Iterable

from curriculum.lean_data import Pos, PremiseFile

if TYPE_CHECKING:
    import networkx as nx


class Accessibility:
    """The file import graph of one or more corpora, with per-file premise lists sorted by position."""

    def __init__(self, premise_files: Iterable[PremiseFile]):
        """One pass over the files, none over their premises: a file's premises are listed when a theorem
        first reaches it (:meth:`_listed`). Every evaluation row builds one over all its columns' corpora,
        and listing 100k premises up front took seconds a row for the few theorems a row proves."""
        import networkx as nx   # here, not at import: commands such as `status` never build the graph

        self.graph: nx.DiGraph = nx.DiGraph()
        self._files: dict[str, list[PremiseFile]] = {}
        self._premises: dict[str, list[tuple[Pos, str]]] = {}
        self._unknown: set[str] = set()
        for pf in premise_files:
            self.graph.add_node(pf.path)
            if pf.imports is None:
                self._unknown.add(pf.path)
            else:
                for imp in pf.imports:
                    self.graph.add_edge(pf.path, imp)
            self._files.setdefault(pf.path, []).append(pf)
        self._closure = lru_cache(maxsize=4096)(self._closure_uncached)

    def _listed(self, path: str) -> list[tuple[Pos, str]]:
        """`(end, full name)` of the premises of `path`, sorted by position (listed once)."""
        entries = self._premises.get(path)
        if entries is None:
            entries = self._premises[path] = sorted((p.end, p.full_name) for pf in self._files.get(path, ())
                                                    for p in pf.premises)
        return entries

    def imports_known(self, path: str) -> bool:
        """True when `path` and every file it reaches recorded its imports."""
        if path not in self.graph or path in self._unknown:
            return False
        return not (self._closure(path) & self._unknown)

    def _closure_uncached(self, path: str) -> frozenset[str]:
        import networkx as nx

        return frozenset(nx.descendants(self.graph, path))

    def imported_files(self, path: str) -> frozenset[str]:
        """The transitive import closure of `path` (without `path` itself)."""
        if path not in self.graph:
            return frozenset()
        return self._closure(path)

    def accessible(self, path: str, start: Pos) -> set[str] | None:
        """Full names of premises accessible from a theorem at `path` starting at `start`; None = unknown."""
        if not self.imports_known(path):
            return None
        names = {name for end, name in self._listed(path) if end <= start}
        for f in self.imported_files(path):
            names.update(name for _, name in self._listed(f))
        return names


def accessible_premises(premise_files: Iterable[PremiseFile], path: str, start: Pos) -> set[str] | None:
    """One-shot form of :meth:`Accessibility.accessible`."""
    return Accessibility(premise_files).accessible(path, start)
