"""Premise store on real chromadb (tmp dirs) with the real MiniLM encoder: add → update → forget, retrieval."""
from __future__ import annotations

import dataclasses

import pytest

from curriculum.lean_data import Pos, Premise, PremiseFile, Repository
from memory.premise_store import PremiseStore, collection_name


def _repo(name: str, commit: str, premises: dict[str, str], path: str = "Foo/Bar.lean") -> Repository:
    ps = tuple(Premise(n, code, path, Pos(i + 1, 1), Pos(i + 1, 40)) for i, (n, code) in enumerate(premises.items()))
    return Repository("https://example.org/r", commit, name, None, (), (PremiseFile(path, (), ps),))


BASE = {
    "Nat.add_comm": "theorem Nat.add_comm (n m : Nat) : n + m = m + n",
    "Nat.mul_comm": "theorem Nat.mul_comm (n m : Nat) : n * m = m * n",
    "List.length_append": "theorem List.length_append (as bs : List α) : (as ++ bs).length = as.length + bs.length",
    "Set.mem_union": "theorem Set.mem_union (x : α) (a b : Set α) : x ∈ a ∪ b ↔ x ∈ a ∨ x ∈ b",
}


@pytest.fixture
def store(tmp_path, encoder) -> PremiseStore:
    return PremiseStore(tmp_path / "chroma", encoder)


def test_add_update_forget(store: PremiseStore, tmp_path, encoder) -> None:
    # A duplicate full name in a second file is kept once (the first).
    r1 = _repo("lib", "c1", BASE)
    dup = PremiseFile("Foo/Dup.lean", (), (Premise("Nat.add_comm", "other", "Foo/Dup.lean", Pos(1, 1), Pos(1, 2)),))
    r1 = dataclasses.replace(r1, premise_files=r1.premise_files + (dup,))
    first = store.add_repo(r1)
    assert (first.embedded, first.unchanged, first.removed) == (4, 0, 0)
    again = store.add_repo(r1)  # adding the same commit again embeds nothing
    assert (again.embedded, again.unchanged, again.removed) == (0, 4, 0)
    assert store.get(["lib@c1:Nat.add_comm"])[0].code == BASE["Nat.add_comm"]
    assert store.count("lib") == 4
    vec_before = store.collection.get(ids=["lib@c1:Nat.mul_comm"], include=["embeddings"])["embeddings"][0]

    # New commit: one changed, one removed, one added, two unchanged.
    changed = dict(BASE)
    changed["Nat.add_comm"] = "theorem Nat.add_comm (a b : Nat) : a + b = b + a"
    del changed["Set.mem_union"]
    changed["Int.neg_neg"] = "theorem Int.neg_neg (a : Int) : - -a = a"
    report = store.add_repo(_repo("lib", "c2", changed))
    assert (report.embedded, report.unchanged, report.removed) == (2, 2, 1)
    assert store.repos() == {"lib": {"c2": 4}}
    got = store.collection.get(ids=["lib@c2:Nat.mul_comm"], include=["embeddings", "metadatas"])
    assert got["metadatas"][0]["commit"] == "c2"
    assert list(got["embeddings"][0]) == pytest.approx(list(vec_before))  # copied, not re-embedded

    # A second repository, then forget the first: nothing of it is left, the other is untouched.
    store.add_repo(_repo("other", "x1", {"Real.exp_pos": "theorem Real.exp_pos (x : ℝ) : 0 < Real.exp x"}))
    assert store.forget_repo("lib") == 4
    assert store.count("lib") == 0 and store.count() == 1
    assert store.collection.get(where={"repo": "lib"})["ids"] == []

    # Everything is on disk: a new client on the same path sees it.
    reopened = PremiseStore(tmp_path / "chroma", encoder)
    assert reopened.count() == 1 and reopened.premises()[0].full_name == "Real.exp_pos"


def test_first_add_counts(store: PremiseStore) -> None:
    report = store.add_repo(_repo("lib", "c1", BASE))
    assert (report.embedded, report.unchanged, report.removed) == (4, 0, 0)


def test_retrieve_ranks_and_respects_accessibility(store: PremiseStore) -> None:
    store.add_repo(_repo("lib", "c1", BASE))
    state = "α : Type\nas bs : List α\n⊢ (as ++ bs).length = as.length + bs.length"
    top = store.retrieve(state, 2)
    assert top[0].full_name == "List.length_append"
    assert 0.0 < top[0].score <= 1.0 and top[0].score >= top[1].score
    assert top[0].id == "lib@c1:List.length_append" and top[0].code.startswith("theorem List.length_append")
    only = store.retrieve(state, 3, accessible={"Nat.add_comm", "Nat.mul_comm"})
    assert {p.full_name for p in only} == {"Nat.add_comm", "Nat.mul_comm"}
    assert store.retrieve(state, 3, accessible=set()) == []
    assert store.retrieve(state, 3, repos=["nope"]) == []
    where = PremiseStore.__new__(PremiseStore)
    where.__dict__.update(store.__dict__, filter_mode="where")
    assert [p.id for p in where.retrieve(state, 3, accessible={"Nat.add_comm", "Nat.mul_comm"})] == [p.id for p in only]


class _CallLog:
    """The real chroma collection, with the name of every method called on it logged."""

    def __init__(self, real, calls: list[str]):
        self._real, self._calls = real, calls

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if not callable(attr):
            return attr

        def logged(*args, **kwargs):
            self._calls.append(name)
            return attr(*args, **kwargs)
        return logged


def test_a_query_is_one_chroma_search_and_the_collection_is_never_counted(store: PremiseStore, tmp_path,
                                                                           encoder) -> None:
    """Counting a chroma collection scans its SQLite table (the largest part of a query at 100k premises,
    bench/scale.py), and the search needs no count: fewer rows than asked means it is exhausted."""
    store.add_repo(_repo("lib", "c1", BASE))
    state = "α : Type\nas bs : List α\n⊢ (as ++ bs).length = as.length + bs.length"
    calls: list[str] = []
    store.collection = _CallLog(store.collection, calls)
    got = store.retrieve(state, 3, accessible={"Nat.add_comm", "List.length_append"})
    assert [p.full_name for p in got] == ["List.length_append", "Nat.add_comm"]   # the only two accessible
    assert calls == ["query", "get"]                    # the search, then the rows this process lacked
    empty = PremiseStore(tmp_path / "empty", encoder)
    empty.collection = _CallLog(empty.collection, calls := [])
    assert empty.retrieve(state, 3) == [] and calls == ["query"]


class _RowLog(_CallLog):
    """The real collection, with the number of premise rows (documents) each call read back logged."""

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if name not in ("query", "get"):
            return attr

        def logged(*args, **kwargs):
            got = attr(*args, **kwargs)
            docs = got.get("documents") or []
            self._calls.append(sum(len(d) for d in docs) if name == "query" else len(docs))
            return got
        return logged


def test_a_process_reads_each_premise_row_once_until_it_writes(store: PremiseStore) -> None:
    """Reading a retrieved row's metadata and code back is most of a chroma query (11 of 13 ms for 108 rows at
    10k premises, bench/scale.py), and the states of one proof search retrieve largely the same premises:
    a row is read once per process, and any write of the process forgets what it read."""
    store.add_repo(_repo("lib", "c1", BASE))
    state = "n m : Nat\n⊢ n + m = m + n"
    rows: list[int] = []
    store.collection = _RowLog(store.collection, rows)
    first = store.retrieve(state, 4)
    assert {p.full_name: p.code for p in first} == BASE and sum(rows) == 4
    assert store.retrieve(state, 4) == first and sum(rows) == 4           # was 8: every row read again
    assert [p.full_name for p in store.retrieve(state, 2)] == [p.full_name for p in first[:2]] and sum(rows) == 4
    changed = dict(BASE, **{"Nat.add_comm": "theorem Nat.add_comm (a b : Nat) : a + b = b + a"})
    store.add_repo(_repo("lib", "c1", changed))                           # same ids, new code
    again = store.retrieve(state, 4)
    assert {p.full_name: p.code for p in again} == changed and sum(rows) == 8


def test_same_name_in_two_repos_is_returned_once(store: PremiseStore) -> None:
    store.add_repo(_repo("a", "c1", BASE))
    store.add_repo(_repo("b", "c1", BASE))
    assert store.count() == 8
    names = [p.full_name for p in store.retrieve("n + m = m + n", 4)]
    assert len(names) == len(set(names)) == 4


def test_one_collection_per_encoder_version() -> None:
    a, b = collection_name("all-MiniLM-L6-v2@7aabbfe8c597"), collection_name("all-MiniLM-L6-v2@000000000000")
    assert a != b and a.startswith("premises-all-MiniLM-L6-v2")
    weird = collection_name("/some/path/with spaces@x")
    assert weird[0].isalnum() and weird[-1].isalnum() and " " not in weird


def _hashes(root) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_read_only_store_leaves_every_file_byte_identical(tmp_path, encoder) -> None:
    """Issue 12 item 3: opening, querying and closing the store for reading changes no file under chroma/."""
    writer = PremiseStore(tmp_path / "chroma", encoder)
    writer.add_repo(_repo("lib", "c1", BASE))
    writer.close()
    before = _hashes(tmp_path / "chroma")
    ro = PremiseStore(tmp_path / "chroma", encoder, read_only=True)
    assert ro.count() == 4 and ro.premise_names() == frozenset(BASE)
    assert ro.retrieve("⊢ n + m = m + n", 1)[0].full_name in BASE
    with pytest.raises(Exception, match="read-only"):
        ro.forget_repo("lib")
    ro.close()
    assert _hashes(tmp_path / "chroma") == before
    missing = PremiseStore(tmp_path / "nothing", encoder, read_only=True)
    assert missing.count() == 0 and not (tmp_path / "nothing").exists()


def test_premise_names_are_cached_and_follow_writes(store: PremiseStore) -> None:
    store.add_repo(_repo("lib", "c1", BASE))
    names = store.premise_names()
    assert names == frozenset(BASE) and store.premise_names() is names   # second call: no fetch
    store.add_repo(_repo("lib", "c2", {"Int.neg_neg": "theorem Int.neg_neg (a : Int) : - -a = a"}))
    assert store.premise_names() == {"Int.neg_neg"}
    assert store.premise_names("lib") == {"Int.neg_neg"} and store.premise_names("nope") == frozenset()
