"""Data model and loaders, on hand-made records and on the real shared sample."""
from __future__ import annotations

import json

import pytest

from common.errors import DataError
from curriculum.lean_data import Repository, load_dataset, to_repositories
from tests.helpers import theorem, theorem_record, write_jsonl_dataset


def test_sorry_and_unrated_flags():
    assert theorem("a", 2, sorry=True).is_sorry
    assert not theorem("a", 2).is_sorry
    assert theorem("a", None).is_unrated
    assert not theorem("a", 1).is_unrated


def test_real_sample_loads_with_splits_and_unknown_imports(b4_sample):
    ds = load_dataset(b4_sample)
    splits = {s: sum(1 for t in ds.theorems if t.split == s) for s in ("train", "val", "test")}
    assert splits == {"train": 576, "val": 26, "test": 28}  # counts stated in SOURCE.md
    assert sum(len(t.tactics) for t in ds.theorems) == 609
    assert sum(len(pf.premises) for pf in ds.premise_files) == 823
    assert len(ds.premise_files) == 388
    # The sample's corpus has no imports key: unknown, which must not become "no imports".
    assert all(pf.imports is None for pf in ds.premise_files)
    assert all(p.code == "" and p.kind == "unknown" for pf in ds.premise_files for p in pf.premises)
    first = next(t for t in ds.theorems if t.tactics and t.tactics[0].annotations)
    assert first.tactics[0].annotations[0].full_name


def test_split_by_dir_partitions_theorems_and_premises(b4_sample):
    ds = load_dataset(b4_sample)
    repos = to_repositories(ds, split_by_dir=2)
    names = [r.name for r in repos]
    assert len(names) == len(set(names))
    assert "Mathlib/Algebra" in names and ".lake/packages" in names
    assert sum(len(r.theorems) for r in repos) == 630
    assert sum(r.num_premises for r in repos) == 823
    algebra = next(r for r in repos if r.name == "Mathlib/Algebra")
    assert len(algebra.theorems) == 101
    assert all(t.file_path.startswith("Mathlib/Algebra/") for t in algebra.theorems)


def test_jsonl_format_and_round_trip(tiny_theorems):
    ds = load_dataset(tiny_theorems)
    assert len(ds.theorems) == 20
    (repo,) = to_repositories(ds, name="tiny")
    again = Repository.from_json(json.loads(json.dumps(repo.to_json())))
    assert again == repo
    assert again.premise_files[0].imports is None


def test_imports_present_are_kept(tmp_path):
    root = write_jsonl_dataset(tmp_path / "d", [theorem_record()],
                               corpus=[{"path": "Demo/A.lean", "imports": [], "premises": []},
                                       {"path": "Demo/B.lean", "imports": ["Demo/A.lean"], "premises": []}])
    ds = load_dataset(root)
    assert ds.premise_files[0].imports == ()
    assert ds.premise_files[1].imports == ("Demo/A.lean",)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r.pop("full_name"), "record 2: field 'full_name': missing"),
        (lambda r: r.pop("traced_tactics"), "record 2: field 'traced_tactics': missing"),
        (lambda r: r.update(full_name=7), "record 2: field 'full_name': expected a string, got int"),
        (lambda r: r.update(start="1,1"), "record 2: field 'start'"),
        (lambda r: r.update(traced_tactics={}), "field 'traced_tactics': expected a list"),
        (lambda r: r["traced_tactics"][0].pop("state_before"), "field 'state_before': missing"),
    ],
)
def test_bad_records_name_file_record_and_field(tmp_path, mutate, expected):
    bad = theorem_record("Demo.bad")
    mutate(bad)
    root = write_jsonl_dataset(tmp_path / "d", [theorem_record(), bad])
    with pytest.raises(DataError) as err:
        load_dataset(root)
    assert str(root / "theorems.jsonl") in str(err.value)
    assert expected in str(err.value)


def test_invalid_json_line_and_corpus_without_path(tmp_path):
    root = tmp_path / "d"
    write_jsonl_dataset(root, [theorem_record()])
    with (root / "theorems.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(DataError, match=r"record 2: invalid JSON"):
        load_dataset(root)
    root2 = write_jsonl_dataset(tmp_path / "e", [theorem_record()], corpus=[{"premises": []}])
    with pytest.raises(DataError, match=r"corpus.jsonl: record 1: field 'path': missing"):
        load_dataset(root2)


def test_missing_path_not_a_directory_and_empty(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        load_dataset(tmp_path / "nope")
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(DataError, match="expected a directory"):
        load_dataset(f)
    with pytest.raises(DataError, match="not a traced dataset"):
        load_dataset(tmp_path)
    empty = write_jsonl_dataset(tmp_path / "empty", [])
    with pytest.raises(DataError, match="empty dataset"):
        load_dataset(empty)


def test_leandojo_array_must_be_a_list(tmp_path):
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "train.json").write_text('{"a": 1}')
    with pytest.raises(DataError, match="expected a JSON array"):
        load_dataset(tmp_path)
