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
        (lambda r: r.update(full_name=7), "record 2: field 'full_name': expected a non-empty string, got int"),
        (lambda r: r.update(start="1,1"), "record 2: field 'start'"),
        (lambda r: r.update(traced_tactics={}), "field 'traced_tactics': expected a list"),
        (lambda r: r["traced_tactics"][0].pop("state_before"), "field 'traced_tactics[0].state_before': missing"),
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


# ----------------------------------------------------------------------------------------------
# Hostile and malformed input (issue 12): one DataError line naming file, record and what was expected.


def _jsonl_dataset(root, records, corpus=None):
    return write_jsonl_dataset(root, records, corpus=corpus)


def _raises(root, *fragments):
    with pytest.raises(DataError) as err:
        load_dataset(root)
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_theorems_jsonl_with_random_bytes_says_expected_utf8(tmp_path):
    root = _jsonl_dataset(tmp_path / "d", [theorem_record()])
    with (root / "theorems.jsonl").open("ab") as f:
        f.write(b'{"full_name": "\xff\xfe\xc3("}\n')
    _raises(root, "theorems.jsonl: record 2", "expected UTF-8")


def test_theorems_jsonl_in_utf16_with_bom_says_expected_utf8(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "theorems.jsonl").write_bytes(json.dumps(theorem_record()).encode("utf-16"))
    _raises(root, "theorems.jsonl: record 1", "expected UTF-8", "UTF-16")


def test_utf16_without_bom_is_named(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "theorems.jsonl").write_bytes(json.dumps(theorem_record()).encode("utf-16-le") + b"\n\x00")
    _raises(root, "theorems.jsonl: record 1", "expected UTF-8")


def test_utf8_bom_from_a_windows_editor_is_accepted(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "theorems.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(theorem_record()).encode() + b"\n")
    assert len(load_dataset(root).theorems) == 1


def test_leandojo_split_in_utf16_and_random_bytes(tmp_path):
    (tmp_path / "random").mkdir()
    f = tmp_path / "random" / "train.json"
    f.write_bytes(json.dumps([theorem_record()]).encode("utf-16"))
    _raises(tmp_path, "train.json", "expected UTF-8", "UTF-16")
    f.write_bytes(b'[{"url": "\x80\x81"}]')
    _raises(tmp_path, "train.json", "expected UTF-8", "line 1")


def test_truncated_files(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "theorems.jsonl").write_text(json.dumps(theorem_record()) + "\n" + json.dumps(theorem_record("X"))[:50])
    _raises(root, "theorems.jsonl: record 2", "invalid JSON")
    ld = tmp_path / "ld"
    (ld / "random").mkdir(parents=True)
    (ld / "random" / "train.json").write_text(json.dumps([theorem_record()])[:-30])
    _raises(ld, "train.json", "invalid JSON")


@pytest.mark.parametrize("name", ["", "   ", "a\x00b"])
def test_empty_or_nul_full_name_is_refused(tmp_path, name):
    _raises(_jsonl_dataset(tmp_path / "d", [theorem_record(name)]), "record 1: field 'full_name'")


def test_empty_premise_name_is_refused(tmp_path):
    corpus = [{"path": "Demo/A.lean", "premises": [{"full_name": "", "start": [1, 1], "end": [1, 2]}]}]
    _raises(_jsonl_dataset(tmp_path / "d", [theorem_record()], corpus), "corpus.jsonl: record 1",
            "field 'premises[0].full_name'")


def test_empty_annotation_name_is_refused(tmp_path):
    rec = theorem_record()
    rec["traced_tactics"][0]["annotated_tactic"][1].append(
        {"full_name": "", "def_path": "Demo/B.lean", "def_pos": [1, 1], "def_end_pos": [1, 2]})
    _raises(_jsonl_dataset(tmp_path / "d", [rec]), "record 1", "full_name")


def test_duplicate_theorem_in_one_split_is_refused(tmp_path):
    root = _jsonl_dataset(tmp_path / "d", [theorem_record("Demo.a"), theorem_record("Demo.b"),
                                           theorem_record("Demo.a")])
    _raises(root, "theorems.jsonl: record 3: field 'full_name'", "duplicate theorem 'Demo.a'", "record 1")


def test_same_theorem_in_train_and_test_is_leakage(tmp_path):
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "train.json").write_text(json.dumps([theorem_record("Demo.a"), theorem_record("Demo.b")]))
    (tmp_path / "random" / "test.json").write_text(json.dumps([theorem_record("Demo.b")]))
    msg = _raises(tmp_path, "test.json: record 1: field 'full_name'", "'Demo.b'", "train")
    assert "leak" in msg


def test_duplicate_corpus_file_and_premise_are_refused(tmp_path):
    pf = {"path": "Demo/A.lean", "premises": [{"full_name": "p", "start": [1, 1], "end": [1, 2]}]}
    _raises(_jsonl_dataset(tmp_path / "d", [theorem_record()], [pf, pf]), "corpus.jsonl: record 2: field 'path'",
            "duplicate")
    twice = {"path": "Demo/A.lean", "premises": [pf["premises"][0], pf["premises"][0]]}
    _raises(_jsonl_dataset(tmp_path / "e", [theorem_record()], [twice]), "corpus.jsonl: record 1",
            "premises[1].full_name", "duplicate")


@pytest.mark.parametrize("pos", [[-1, 0], [1.5, 2], [True, 1], [1, 2, 3], [1], [10**30, 1], "1:1", None,
                                 [1, "2"], {"line": 1, "col": 1}])
def test_positions_must_be_line_col_of_non_negative_ints(tmp_path, pos):
    rec = theorem_record()
    rec["start"] = pos
    _raises(_jsonl_dataset(tmp_path / "d", [rec]), "record 1: field 'start'")


def test_annotation_and_premise_positions(tmp_path):
    rec = theorem_record()
    rec["traced_tactics"][0]["annotated_tactic"][1].append(
        {"full_name": "q", "def_path": "Demo/B.lean", "def_pos": [1, -5], "def_end_pos": [1, 2]})
    _raises(_jsonl_dataset(tmp_path / "d", [rec]), "record 1", "def_pos")
    corpus = [{"path": "Demo/A.lean", "premises": [{"full_name": "p", "start": [1, 1], "end": [2**63, 2]}]}]
    _raises(_jsonl_dataset(tmp_path / "e", [theorem_record()], corpus), "corpus.jsonl: record 1",
            "premises[0].end")


HOSTILE_PATHS = ["/etc/passwd", "../../outside/Evil.lean", "Demo/../../Evil.lean", "C:\\Windows\\Evil.lean",
                 "C:/Windows/Evil.lean", "Demo\\Evil.lean", "Demo/A\x00.lean", "", "Demo//A.lean", "./Demo/A.lean",
                 "\\\\server\\share\\A.lean"]


@pytest.mark.parametrize("bad", HOSTILE_PATHS)
def test_file_path_must_stay_inside_the_repository(tmp_path, bad):
    _raises(_jsonl_dataset(tmp_path / "d", [theorem_record(file=bad)]), "record 1: field 'file_path'",
            "expected a relative path inside the repository")


@pytest.mark.parametrize("bad", ["/etc/passwd", "../Evil.lean", "D:\\x.lean"])
def test_def_path_and_corpus_path_must_stay_inside(tmp_path, bad):
    rec = theorem_record()
    rec["traced_tactics"][0]["annotated_tactic"][1].append(
        {"full_name": "q", "def_path": bad, "def_pos": [1, 1], "def_end_pos": [1, 2]})
    _raises(_jsonl_dataset(tmp_path / "d", [rec]), "record 1", "def_path", "relative path inside the repository")
    corpus = [{"path": bad, "premises": []}]
    _raises(_jsonl_dataset(tmp_path / "e", [theorem_record()], corpus), "corpus.jsonl: record 1: field 'path'")


def test_symlinked_split_file_outside_the_dataset_is_refused(tmp_path):
    (tmp_path / "ds" / "random").mkdir(parents=True)
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps([theorem_record()]))
    (tmp_path / "ds" / "random" / "train.json").symlink_to("/etc/passwd")
    _raises(tmp_path / "ds", "train.json", "outside the dataset directory")
    (tmp_path / "ds" / "random" / "train.json").unlink()
    (tmp_path / "ds" / "random" / "train.json").symlink_to(outside)
    _raises(tmp_path / "ds", "train.json", "outside the dataset directory")


def test_symlinked_split_dir_and_corpus_outside_are_refused(tmp_path):
    out_dir = tmp_path / "elsewhere"
    out_dir.mkdir()
    (out_dir / "train.json").write_text(json.dumps([theorem_record()]))
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "random").symlink_to(out_dir)
    _raises(tmp_path / "ds", "train.json", "outside the dataset directory")
    root = _jsonl_dataset(tmp_path / "j", [theorem_record()])
    (root / "corpus.jsonl").symlink_to("/etc/hostname")
    _raises(root, "corpus.jsonl", "outside the dataset directory")


def test_symlinks_inside_the_dataset_and_a_symlinked_root_are_fine(tmp_path):
    real = _jsonl_dataset(tmp_path / "real", [theorem_record()])
    (real / "theorems.jsonl").rename(real / "t.jsonl")
    (real / "theorems.jsonl").symlink_to("t.jsonl")
    (tmp_path / "alias").symlink_to(real)
    assert len(load_dataset(tmp_path / "alias").theorems) == 1


def test_dangling_or_non_file_split_is_refused(tmp_path):
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "val.json").write_text(json.dumps([theorem_record()]))
    (tmp_path / "random" / "train.json").symlink_to(tmp_path / "missing.json")
    _raises(tmp_path, "train.json", "expected a regular file")
    (tmp_path / "random" / "train.json").unlink()
    (tmp_path / "random" / "train.json").mkdir()
    _raises(tmp_path, "train.json", "expected a regular file")


def test_state_too_large_to_be_real(tmp_path):
    from curriculum import lean_data

    rec = theorem_record()
    rec["traced_tactics"][0]["state_before"] = "⊢ " + "x" * (lean_data.MAX_TEXT_CHARS + 1)
    _raises(_jsonl_dataset(tmp_path / "d", [rec]), "record 1", "state_before", "too large")


def test_name_and_path_too_long(tmp_path):
    _raises(_jsonl_dataset(tmp_path / "d", [theorem_record("n" * 5000)]), "field 'full_name'", "too long")
    _raises(_jsonl_dataset(tmp_path / "e", [theorem_record(file="d/" * 3000 + "A.lean")]), "field 'file_path'")


def test_file_and_line_too_large(tmp_path, monkeypatch):
    from curriculum import lean_data

    root = _jsonl_dataset(tmp_path / "d", [theorem_record(), theorem_record("Demo.big", steps=40)])
    monkeypatch.setattr(lean_data, "MAX_RECORD_BYTES", 2000)
    _raises(root, "theorems.jsonl: record 2", "too large")
    monkeypatch.setattr(lean_data, "MAX_FILE_BYTES", 100)
    _raises(root, "theorems.jsonl", "too large")


def test_deep_nesting_huge_numbers_and_lone_surrogates(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    f = root / "theorems.jsonl"
    f.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    _raises(root, "theorems.jsonl: record 1")
    line = json.dumps(theorem_record()).replace('"start": [1, 1]', '"start": [' + "9" * 5000 + ', 1]')
    f.write_text(line + "\n")
    _raises(root, "theorems.jsonl: record 1")
    f.write_text(json.dumps(theorem_record()).replace("Demo.t", "Demo.\\ud800t") + "\n")
    _raises(root, "theorems.jsonl: record 1", "surrogate")
    (tmp_path / "ld" / "random").mkdir(parents=True)
    (tmp_path / "ld" / "random" / "train.json").write_text("[" * 100_000 + "]" * 100_000)
    _raises(tmp_path / "ld", "train.json")


def test_metadata_not_utf8_or_not_an_object(tmp_path):
    root = _jsonl_dataset(tmp_path / "d", [theorem_record()])
    (root / "metadata.json").write_bytes(b'{"lean_version": "\xff"}')
    _raises(root, "metadata.json", "expected UTF-8")
    (root / "metadata.json").write_text("[1]")
    _raises(root, "metadata.json", "expected a JSON object")


def test_empty_url_or_commit_and_bad_split(tmp_path):
    rec = theorem_record()
    rec["commit"] = ""
    _raises(_jsonl_dataset(tmp_path / "d", [rec]), "record 1: field 'commit'")
    rec = theorem_record()
    rec["split"] = ["train"]
    _raises(_jsonl_dataset(tmp_path / "e", [rec]), "record 1: field 'split'")


def test_real_sample_paths_and_names_pass_the_checks(b4_sample):
    ds = load_dataset(b4_sample)
    assert any(t.file_path.startswith(".lake/packages/") for t in ds.theorems)


# ----------------------------------------------------------------------------------------------
# Imported-repository files inside a workspace (curriculum/repo_io.py).


def _write_zst(path, obj_or_bytes):
    import zstandard

    raw = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(raw))
    return path


@pytest.mark.parametrize("content", [
    [1, 2], {"url": "u"}, {"url": "u", "commit": "c", "name": "n", "theorems": {}, "corpus": []},
    {"url": "u", "commit": "c", "name": "n", "theorems": [7], "corpus": []},
    {"url": "u", "commit": "c", "name": "n", "theorems": [], "corpus": [], "dependencies": [1]},
    {"url": 5, "commit": "c", "name": "n", "theorems": [], "corpus": []},
    b"\xff\xfe not utf8", b"[" * 100_000,
])
def test_corrupted_repository_file_is_one_workspace_error(tmp_path, content):
    from common.errors import WorkspaceError
    from curriculum.repo_io import load_repository

    path = _write_zst(tmp_path / "r.json.zst", content)
    with pytest.raises(WorkspaceError) as err:
        load_repository(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_repository_file_with_hostile_theorem_is_refused(tmp_path):
    from common.errors import WorkspaceError
    from curriculum.repo_io import load_repository, save_repository
    from tests.helpers import repo as make_repo

    good = make_repo("demo", [1, 2])
    save_repository(good, tmp_path / "ok.json.zst")
    assert load_repository(tmp_path / "ok.json.zst") == good
    obj = good.to_json()
    obj["theorems"][1]["file_path"] = "../../etc/passwd"
    path = _write_zst(tmp_path / "bad.json.zst", obj)
    with pytest.raises(WorkspaceError, match=r"record 2: field 'file_path'"):
        load_repository(path)


def test_repository_file_declaring_a_huge_size_is_refused(tmp_path, monkeypatch):
    from common.errors import WorkspaceError
    from curriculum import repo_io

    path = _write_zst(tmp_path / "r.json.zst", {"x": "y" * 5000})
    monkeypatch.setattr(repo_io, "MAX_REPOSITORY_BYTES", 1000)
    with pytest.raises(WorkspaceError, match="too large"):
        repo_io.load_repository(path)
