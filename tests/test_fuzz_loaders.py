"""Property-based fuzzing of every input loader (issue 12).

Starting from REAL records of ../shared/data (read at test time, never copied into the repository), random
mutations -- deleted keys, wrong types, hostile paths, duplicated records, random bytes, truncation, other
encodings, unicode edge cases, huge values, deep nesting -- must either load or raise one `LifeleanError`
whose message is a single line; never any other exception. Whatever loads must also survive being stored
in a workspace and read back (the zstd repository file), so nothing accepted here can break later.

The default tier runs a bounded number of examples with a fixed seed (`derandomize=True`, no example
database); `-m slow` runs the same properties with many more examples.
"""
from __future__ import annotations

import copy
import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

hypothesis = pytest.importorskip("hypothesis")
# Hypothesis keeps caches (e.g. its unicode tables) under ./.hypothesis: keep them out of the repository.
hypothesis.configuration.set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "lifelean-hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from common.errors import LifeleanError  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402

_COMMON = dict(derandomize=True, deadline=None, database=None, print_blob=False,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
FAST = settings(max_examples=60, **_COMMON)
SLOW = settings(max_examples=1500, **_COMMON)

# ----------------------------------------------------------------------------------------------
# Real records from ../shared/data.


def _need_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present (it lies beside the repository)")
    return SHARED_DATA


@lru_cache(maxsize=None)
def real_records() -> dict[str, Any]:
    """A few small real records of each kind (small so that each example stays fast)."""
    root = _need_data()
    b4 = root / "leandojo_b4_sample"
    splits = {}
    for split in ("train", "val", "test"):
        recs = json.loads((b4 / "random" / f"{split}.json").read_text(encoding="utf-8"))
        with_tactics = sorted((r for r in recs if r["traced_tactics"]), key=lambda r: len(json.dumps(r)))
        without = [r for r in recs if not r["traced_tactics"]]
        # two with annotated tactics (the richest structure) and one term-mode record
        annotated = [r for r in with_tactics if any(t["annotated_tactic"][1] for t in r["traced_tactics"])]
        splits[split] = (annotated[:2] + without[:1]) if split == "train" else annotated[:1]
    corpus = [json.loads(line) for line in (b4 / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    corpus = sorted(corpus, key=lambda r: -len(r["premises"]))[:1] + corpus[:2]
    tiny_lines = (root / "tiny_theorems" / "theorems.jsonl").read_bytes().splitlines(keepends=True)
    tiny = [json.loads(line) for line in sorted(tiny_lines, key=len)[:3]]
    return {"splits": splits, "corpus": corpus, "tiny": tiny, "tiny_lines": sorted(tiny_lines, key=len)[:4]}


@lru_cache(maxsize=None)
def real_repository_json() -> dict[str, Any]:
    from curriculum.lean_data import load_dataset, to_repositories

    repos = to_repositories(load_dataset(_need_data() / "leandojo_b4_sample"), split_by_dir=2)
    small = sorted((r for r in repos if any(t.tactics for t in r.theorems)), key=lambda r: len(r.theorems))[0]
    return small.to_json()


# ----------------------------------------------------------------------------------------------
# Mutations.

EDGE_STRINGS = ["", " ", "\x00", "a\x00b", "\ud800", "\udfff", "\ufeff", "\u202e", "a\nb", "\r\n", "𝕜", "\U0010ffff",
                "../../outside/Evil.lean", "/etc/passwd", "C:\\Windows\\x.lean", "Demo//A.lean", "./A.lean",
                "Mathlib/Data/Nat/Basic.lean", "no goals", "train", "test", "sorry"]
EDGE_NUMBERS = [0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**30, 1.5, float("nan"), float("inf"), -0.0]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(EDGE_NUMBERS), st.floats(),
    st.text(max_size=12), st.sampled_from(EDGE_STRINGS),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["full_name", "path", "start", "end", "x", ""]) | st.text(max_size=4), inner, max_size=3),
    max_leaves=5)
# Rarely: a value too large to be real (the loaders' limits are far lower than this).
HUGE = st.sampled_from(["x" * (4 << 20) + "y", "n" * 5000]) | st.builds(lambda: [0] * 50_000)


def _paths(obj: Any, here: tuple = ()) -> list[tuple]:
    out = [here]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, here + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, here + (i,))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def mutate_json(data: st.DataObject, obj: Any, max_ops: int = 3) -> Any:
    """Apply 1..max_ops structural mutations to a deep copy of `obj` (a JSON value)."""
    obj = copy.deepcopy(obj)
    for _ in range(data.draw(st.integers(1, max_ops), label="ops")):
        paths = _paths(obj)
        path = data.draw(st.sampled_from(paths), label="at")
        op = data.draw(st.sampled_from(["delete", "replace", "replace", "insert", "duplicate", "wrap", "huge"]),
                       label="op")
        if not path:
            if op in ("replace", "huge"):
                obj = copy.deepcopy(data.draw(VALUES))
            elif op == "wrap":
                obj = [obj]
            continue
        parent, key = _get(obj, path[:-1]), path[-1]
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = copy.deepcopy(data.draw(VALUES, label="value"))
        elif op == "huge":
            parent[key] = data.draw(HUGE, label="huge")
        elif op == "wrap":
            parent[key] = [parent[key]]
        elif op == "insert" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=6), label="key")] = copy.deepcopy(data.draw(VALUES))
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
    return obj


def dumps(data: st.DataObject, obj: Any) -> bytes:
    """JSON bytes; escaped or raw unicode (raw lone surrogates become invalid UTF-8, as a broken writer makes)."""
    ascii_ = data.draw(st.booleans(), label="ensure_ascii")
    return json.dumps(obj, ensure_ascii=ascii_).encode("utf-8", "surrogatepass")


def mutate_bytes(data: st.DataObject, raw: bytes) -> bytes:
    """Maybe one byte-level mutation: truncation, random bytes, another encoding, absurd numbers, deep nesting."""
    op = data.draw(st.sampled_from(["none", "none", "truncate", "insert", "flip", "utf16", "bom8", "latin1",
                                    "digits", "nesting", "nul"]), label="byte op")
    at = data.draw(st.integers(0, max(0, len(raw))), label="offset")
    if op == "truncate":
        return raw[:at]
    if op == "insert":
        return raw[:at] + data.draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    if op == "flip" and raw:
        i = min(at, len(raw) - 1)
        return raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1:]
    if op == "utf16":
        return raw.decode("utf-8", "replace").encode(data.draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32"])))
    if op == "bom8":
        return b"\xef\xbb\xbf" + raw
    if op == "latin1":
        return raw.decode("utf-8", "replace").encode("latin-1", "replace") + "é".encode("latin-1")
    if op == "digits":
        import re

        return re.sub(rb"\d+", b"9" * 5000, raw, count=1)
    if op == "nesting":
        depth = data.draw(st.sampled_from([50, 5000, 200_000]))
        return raw[:at] + b"[" * depth + b"]" * depth + raw[at:]
    if op == "nul":
        return raw[:at] + b"\x00" + raw[at:]
    return raw


def outcome(fn: Callable[[], Any]) -> Any:
    """Run `fn`: its result, or None after a one-line LifeleanError. Any other exception fails the test."""
    try:
        return fn()
    except LifeleanError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message, message
        return None


def _fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="fuzz-", dir=_scratch()))


@lru_cache(maxsize=None)
def _scratch() -> str:
    return tempfile.mkdtemp(prefix="lifelean-fuzz-")


@pytest.fixture(scope="module", autouse=True)
def _remove_scratch() -> Iterator[None]:
    """Hypothesis examples cannot share a function's tmp_path, so they write under one scratch directory,
    deleted when the module's tests end."""
    yield
    if _scratch.cache_info().currsize:
        shutil.rmtree(_scratch(), ignore_errors=True)
        _scratch.cache_clear()


def _accepted_dataset_is_sound(ds) -> None:
    """What loads passes every check again and survives a workspace round trip."""
    from curriculum.lean_data import Repository, path_problem, to_repositories
    from curriculum.repo_io import load_repository, save_repository

    for t in ds.theorems:
        assert path_problem(t.file_path) is None and t.full_name.strip()
        assert min(t.start.line, t.start.col, t.end.line, t.end.col) >= 0
        for tac in t.tactics:
            assert all(path_problem(a.def_path) is None and a.full_name.strip() for a in tac.annotations)
    for pf in ds.premise_files:
        assert path_problem(pf.path) is None
    for split_by_dir in (None, 2):
        repos = outcome(lambda: to_repositories(ds, split_by_dir=split_by_dir))
        for repo in repos or ():
            again = Repository.from_json(json.loads(json.dumps(repo.to_json())))
            assert again == repo
            f = _fresh_dir() / "r.json.zst"
            save_repository(repo, f)
            assert load_repository(f) == repo


# ----------------------------------------------------------------------------------------------
# Properties.


def prop_theorems_jsonl(data: st.DataObject) -> None:
    from curriculum.lean_data import load_dataset

    recs = copy.deepcopy(real_records()["tiny"])
    i = data.draw(st.integers(0, len(recs) - 1), label="record")
    if data.draw(st.booleans(), label="mutate json"):
        recs[i] = mutate_json(data, recs[i])
    lines = [dumps(data, r) for r in recs]
    if data.draw(st.booleans(), label="add split"):
        j = data.draw(st.integers(0, len(recs) - 1))
        lines.append(json.dumps({**real_records()["tiny"][j], "split": data.draw(VALUES)}).encode())
    raw = mutate_bytes(data, b"\n".join(lines) + b"\n")
    root = _fresh_dir()
    (root / "theorems.jsonl").write_bytes(raw)
    ds = outcome(lambda: load_dataset(root))
    if ds is not None:
        _accepted_dataset_is_sound(ds)


def prop_leandojo_dir(data: st.DataObject) -> None:
    from curriculum.lean_data import load_dataset

    real = real_records()
    files: dict[str, Any] = {f"random/{s}.json": copy.deepcopy(recs) for s, recs in real["splits"].items()}
    files["corpus.jsonl"] = copy.deepcopy(real["corpus"])
    target = data.draw(st.sampled_from(sorted(files)), label="file")
    kind = data.draw(st.sampled_from(["json", "json", "bytes", "symlink-out", "dir", "dangling", "leak"]),
                     label="kind")
    if kind == "json":
        files[target] = mutate_json(data, files[target])
    elif kind == "leak":  # a train theorem copied into val or test
        files[data.draw(st.sampled_from(["random/val.json", "random/test.json"]))].append(real["splits"]["train"][0])
    root = _fresh_dir()
    (root / "random").mkdir()
    outside = root.parent / f"{root.name}-outside.json"
    outside.write_text(json.dumps(real["splits"]["train"]))
    for name, content in files.items():
        f = root / name
        if name.endswith(".jsonl"):
            if not isinstance(content, list):
                content = [content]
            raw = b"".join(dumps(data, c) + b"\n" for c in content)
        else:
            raw = dumps(data, content)
        if name == target and kind == "bytes":
            raw = mutate_bytes(data, raw)
        if name == target and kind == "symlink-out":
            f.symlink_to(data.draw(st.sampled_from([str(outside), "/etc/passwd", "/dev/zero", "../../x"])))
        elif name == target and kind == "dir":
            f.mkdir()
        elif name == target and kind == "dangling":
            f.symlink_to(root / "missing")
        else:
            f.write_bytes(raw)
    ds = outcome(lambda: load_dataset(root))
    if ds is not None:
        assert kind not in ("symlink-out", "dir", "dangling", "leak"), kind
        _accepted_dataset_is_sound(ds)


def prop_repository_file(data: st.DataObject) -> None:
    import zstandard

    from curriculum.repo_io import load_repository

    obj = real_repository_json()
    if data.draw(st.booleans(), label="mutate json"):
        obj = mutate_json(data, obj)
    raw = mutate_bytes(data, dumps(data, obj))
    packed = zstandard.ZstdCompressor(level=1, write_content_size=data.draw(st.booleans())).compress(raw)
    if data.draw(st.integers(0, 4), label="damage compressed") == 0:
        packed = mutate_bytes(data, packed)
    f = _fresh_dir() / "r.json.zst"
    f.write_bytes(packed)
    repo = outcome(lambda: load_repository(f))
    if repo is not None:
        from curriculum.repo_io import save_repository

        save_repository(repo, f)
        assert load_repository(f) == repo


def _run_config():
    try:
        from agent.config import RunConfig
    except ImportError as exc:  # agent/ is being restructured: tell the lead where RunConfig went
        pytest.fail(f"agent.config.RunConfig cannot be imported ({exc}); update tests/test_fuzz_loaders.py")
    return RunConfig


def prop_config(data: st.DataObject) -> None:
    import datetime

    from common.config_base import from_dict, load_config_file, to_dict, to_toml

    run_config = _run_config()
    base = to_dict(run_config())
    values = VALUES | st.sampled_from([datetime.date(2024, 1, 1), datetime.time(1, 2)]) | st.builds(
        lambda: {"a": {"b": [1, "x"]}})
    if data.draw(st.booleans(), label="dict level"):
        mutated = mutate_json(data, base) if data.draw(st.integers(0, 5)) else data.draw(values)
        if isinstance(mutated, dict) and data.draw(st.booleans()):
            mutated[data.draw(st.sampled_from(sorted(base)))] = copy.deepcopy(data.draw(values))
        cfg = outcome(lambda: from_dict(run_config, mutated))
    else:
        raw = mutate_bytes(data, to_toml(run_config()).encode("utf-8"))
        f = _fresh_dir() / "lifelean.toml"
        f.write_bytes(raw)
        cfg = outcome(lambda: load_config_file(run_config, f))
    if cfg is not None:  # whatever is accepted is written back and read again unchanged
        f = _fresh_dir() / "lifelean.toml"
        f.write_text(to_toml(cfg), encoding="utf-8")
        assert load_config_file(run_config, f) == cfg


def prop_iter_jsonl_tolerant(data: st.DataObject) -> None:
    from common.atomic import iter_jsonl_tolerant

    lines = list(real_records()["tiny_lines"])
    raw = mutate_bytes(data, b"".join(lines))
    if data.draw(st.booleans(), label="torn tail"):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    f = _fresh_dir() / "log.jsonl"
    f.write_bytes(raw)
    outcome(lambda: iter_jsonl_tolerant(f))


PROPERTIES = {
    "theorems_jsonl": prop_theorems_jsonl,
    "leandojo_dir": prop_leandojo_dir,
    "repository_file": prop_repository_file,
    "config": prop_config,
    "iter_jsonl_tolerant": prop_iter_jsonl_tolerant,
}


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_fuzz(name):
    _need_data()
    FAST(given(st.data())(PROPERTIES[name]))()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_fuzz_slow(name):
    _need_data()
    SLOW(given(st.data())(PROPERTIES[name]))()


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(raw=st.one_of(st.binary(max_size=300),
                     st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                                  lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                                      st.sampled_from(["matrix", "baseline", "x"]), kids, max_size=3),
                                  max_leaves=30).map(lambda v: json.dumps(v).encode())))
def test_fuzz_matrix_file(tmp_path_factory, raw):
    """`lifelean metrics MATRIX.json`: anything either loads or is one LifeleanError line."""
    from agent.commands.metrics import read_matrix_file

    path = tmp_path_factory.mktemp("m") / "matrix.json"
    path.write_bytes(raw)
    try:
        read_matrix_file(path)
    except LifeleanError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
