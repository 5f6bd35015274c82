"""ReProver's accessibility rule on a hand-made import graph."""
from __future__ import annotations

from curriculum.lean_data import Pos, Premise, PremiseFile
from memory.accessibility import Accessibility, accessible_premises


def _file(path: str, imports, *names_and_lines) -> PremiseFile:
    premises = tuple(Premise(n, "", path, Pos(a, 1), Pos(b, 10)) for n, a, b in names_and_lines)
    return PremiseFile(path, tuple(imports) if imports is not None else None, premises)


GRAPH = [
    _file("A.lean", [], ("a1", 1, 2), ("a2", 5, 8)),
    _file("B.lean", ["A.lean"], ("b1", 1, 3)),
    _file("C.lean", ["B.lean"], ("c1", 1, 4), ("c2", 10, 12), ("c3", 20, 25)),
    _file("D.lean", [], ("d1", 1, 2)),                       # not imported by C
    _file("E.lean", ["C.lean", "D.lean"], ("e1", 1, 1)),
    _file("U.lean", None, ("u1", 1, 2)),                      # imports unknown
    _file("V.lean", ["U.lean"], ("v1", 1, 2)),                # imports known, but reaches an unknown file
]


def test_transitive_closure_and_same_file_prefix() -> None:
    acc = Accessibility(GRAPH)
    # C imports B, which imports A; of C itself only premises ending before line 15.
    assert acc.accessible("C.lean", Pos(15, 1)) == {"a1", "a2", "b1", "c1", "c2"}
    assert acc.imported_files("C.lean") == {"A.lean", "B.lean"}
    assert acc.imported_files("E.lean") == {"A.lean", "B.lean", "C.lean", "D.lean"}
    assert "d1" not in acc.accessible("C.lean", Pos(100, 1))


def test_premise_ending_exactly_at_start_counts_but_later_ones_do_not() -> None:
    acc = Accessibility(GRAPH)
    assert "c2" in acc.accessible("C.lean", Pos(12, 10))
    assert "c2" not in acc.accessible("C.lean", Pos(12, 9))
    assert acc.accessible("A.lean", Pos(1, 1)) == set()


def test_unknown_imports_mean_no_filter() -> None:
    acc = Accessibility(GRAPH)
    assert acc.accessible("U.lean", Pos(10, 1)) is None
    assert acc.accessible("V.lean", Pos(10, 1)) is None      # the closure touches a file with unknown imports
    assert acc.accessible("Nowhere.lean", Pos(1, 1)) is None
    assert accessible_premises(GRAPH, "B.lean", Pos(1, 1)) == {"a1", "a2"}


def test_shared_sample_has_unknown_accessibility(b4_sample) -> None:
    from curriculum.lean_data import load_dataset

    ds = load_dataset(b4_sample)
    acc = Accessibility(ds.premise_files)
    thm = next(t for t in ds.theorems if t.tactics)
    assert acc.accessible(thm.file_path, thm.start) is None


class _CountedPremises(tuple):
    """A file's premises that count how often they are listed."""

    reads = 0

    def __iter__(self):
        type(self).reads += 1
        return super().__iter__()


def test_building_reads_no_premise_and_a_theorem_lists_only_the_files_it_reaches() -> None:
    """Every evaluation row builds the accessibility of all its columns' corpora (100k premises at Mathlib's
    size) for the few theorems it proves: listing every premise up front took seconds a row (bench/scale.py).
    Files are listed when a theorem first reaches them, once, with the same answers."""
    counted = [PremiseFile(pf.path, pf.imports, _CountedPremises(pf.premises)) for pf in GRAPH]
    _CountedPremises.reads = 0
    acc = Accessibility(counted)
    assert _CountedPremises.reads == 0
    assert acc.accessible("C.lean", Pos(15, 1)) == {"a1", "a2", "b1", "c1", "c2"}
    assert _CountedPremises.reads == 3                     # C and what it imports (B, A); not D, E, U, V
    assert acc.accessible("C.lean", Pos(100, 1)) == {"a1", "a2", "b1", "c1", "c2", "c3"}
    assert acc.accessible("E.lean", Pos(1, 1)) == {"a1", "a2", "b1", "c1", "c2", "c3", "d1"}
    assert _CountedPremises.reads == 5                     # then only E and D are new
    assert acc.accessible("V.lean", Pos(9, 1)) is None and _CountedPremises.reads == 5
