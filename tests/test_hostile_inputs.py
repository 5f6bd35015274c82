"""Hostile and malformed sources through the real CLI (issue 12), and the config-file reader.

Each case runs `lifelean -w WS add SOURCE` as a subprocess, as a user would, and expects: a non-zero exit,
at most one line on stderr and no traceback, and the workspace byte-identical afterwards (a new workspace
is not created at all; an existing one is unchanged, every file hashed). The source directory is hashed
too: loading never writes into it.

Sources are built in a temporary directory from REAL records of ../shared/data (read at test time, never
copied into the repository). Default tier: 12 subprocesses (about 1-3 s each); `-m slow` adds more sources
and runs them against a fully populated workspace (one real `add` first).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from common.errors import InputError
from tests.conftest import REPO_ROOT, SHARED_DATA

LIFELEAN = Path(sys.executable).with_name("lifelean")


# ----------------------------------------------------------------------------------------------
# Building sources from real records.


def _real() -> dict:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present (it lies beside the repository)")
    b4 = SHARED_DATA / "leandojo_b4_sample"
    splits = {s: json.loads((b4 / "random" / f"{s}.json").read_text(encoding="utf-8"))[:6] for s in ("train", "val", "test")}
    corpus = (b4 / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:5]
    tiny = (SHARED_DATA / "tiny_theorems" / "theorems.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    return {"splits": splits, "corpus": corpus, "tiny": tiny}


def leandojo(root: Path, edit: Callable[[dict], None] | None = None) -> Path:
    """A small LeanDojo export of real records; `edit` changes the {split: records, 'corpus': lines} first."""
    real = _real()
    parts = {**{s: json.loads(json.dumps(r)) for s, r in real["splits"].items()}, "corpus": list(real["corpus"])}
    if edit:
        edit(parts)
    (root / "random").mkdir(parents=True)
    for s in ("train", "val", "test"):
        (root / "random" / f"{s}.json").write_text(json.dumps(parts[s], ensure_ascii=False), encoding="utf-8")
    (root / "corpus.jsonl").write_text("\n".join(parts["corpus"]) + "\n", encoding="utf-8")
    return root


def jsonl(root: Path, data: bytes | None = None, edit: Callable[[list], None] | None = None) -> Path:
    root.mkdir(parents=True)
    if data is None:
        recs = [json.loads(line) for line in _real()["tiny"]]
        if edit:
            edit(recs)
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs).encode("utf-8")
    (root / "theorems.jsonl").write_bytes(data)
    return root


def _first_tactic_record(recs: list) -> dict:
    return next(r for r in recs if r["traced_tactics"])


def _set_def_path(parts: dict, value: str) -> None:
    rec = next(r for r in parts["train"] if any(t["annotated_tactic"][1] for t in r["traced_tactics"]))
    tac = next(t for t in rec["traced_tactics"] if t["annotated_tactic"][1])
    tac["annotated_tactic"][1][0]["def_path"] = value


def _symlink_train(root: Path, target: str) -> Path:
    leandojo(root)
    (root / "random" / "train.json").unlink()
    (root / "random" / "train.json").symlink_to(target)
    return root


def _sibling(root: Path) -> Path:
    """A valid split file beside the dataset directory (outside it)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    f = root.parent / f"{root.name}-elsewhere.json"
    f.write_text(json.dumps(_real()["splits"]["train"]), encoding="utf-8")
    return f


def _leak(parts: dict) -> None:
    parts["test"].append(_first_tactic_record(parts["train"]))


def _big_state(recs: list) -> None:
    _first_tactic_record(recs)["traced_tactics"][0]["state_before"] = "⊢ " + "x" * (5 << 20)


def _edit(field: str, value) -> Callable[[list], None]:
    def edit(recs: list) -> None:
        recs[1][field] = value
    return edit


# name -> (builder(root) -> source path, expected fragment of the error line)
CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "jsonl-random-bytes": (lambda r: jsonl(r, os.urandom(64) + b"\xff\n"), "expected UTF-8"),
    "jsonl-utf16-bom": (lambda r: jsonl(r, "\n".join(_real()["tiny"]).encode("utf-16")), "UTF-16"),
    "train-truncated": (lambda r: (leandojo(r), (r / "random/train.json").write_bytes(
        (r / "random/train.json").read_bytes()[:-200]))[0], "invalid JSON"),
    "file-path-absolute": (lambda r: jsonl(r, edit=_edit("file_path", "/etc/passwd")), "field 'file_path'"),
    "file-path-dotdot": (lambda r: jsonl(r, edit=_edit("file_path", "../../outside/Evil.lean")), "'..'"),
    "empty-full-name": (lambda r: jsonl(r, edit=_edit("full_name", "")), "field 'full_name'"),
    "train-test-leakage": (lambda r: leandojo(r, _leak), "leakage"),
    "train-symlink-etc": (lambda r: _symlink_train(r, "/etc/passwd"), "outside the dataset directory"),
    "negative-position": (lambda r: jsonl(r, edit=_edit("start", [-3, 1])), "field 'start'"),
    "state-too-large": (lambda r: jsonl(r, edit=_big_state), "too large"),
    "def-path-windows": (lambda r: leandojo(r, lambda p: _set_def_path(p, "C:\\Mathlib\\X.lean")), "def_path"),
    "deep-nesting": (lambda r: jsonl(r, b"[" * 100_000 + b"]" * 100_000 + b"\n"), "record 1"),
}
SLOW_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "def-path-nul": (lambda r: leandojo(r, lambda p: _set_def_path(p, "Mathlib/A\x00.lean")), "NUL"),
    "corpus-path-dotdot": (lambda r: leandojo(r, lambda p: p["corpus"].append(json.dumps(
        {"path": "../x.lean", "premises": []}))), "corpus.jsonl"),
    "corpus-symlink-out": (lambda r: (leandojo(r), (r / "corpus.jsonl").unlink(),
                                      (r / "corpus.jsonl").symlink_to("/etc/hostname"))[0], "outside"),
    "metadata-utf16": (lambda r: (jsonl(r), (r / "metadata.json").write_bytes('{"a": 1}'.encode("utf-16")))[0],
                       "metadata.json"),
    "duplicate-in-split": (lambda r: leandojo(r, lambda p: p["train"].append(p["train"][0])), "duplicate theorem"),
    "lone-surrogate": (lambda r: jsonl(r, ("\n".join(_real()["tiny"]).replace('"full_name": "', '"full_name": "\\ud800', 1)
                                           + "\n").encode()), "surrogate"),
    "huge-integer": (lambda r: jsonl(r, ("\n".join(_real()["tiny"]).replace('"start": [', '"start": [' + "9" * 5000, 1)
                                         + "\n").encode()), "record 1"),
    "train-is-directory": (lambda r: (leandojo(r), (r / "random/train.json").unlink(),
                                      (r / "random/train.json").mkdir())[0], "regular file"),
    "empty-dataset": (lambda r: jsonl(r, b"\n\n"), "empty dataset"),
    "source-missing": (lambda r: r / "nope", "no such file"),
    "wrong-type": (lambda r: jsonl(r, edit=_edit("traced_tactics", {"a": 1})), "traced_tactics"),
    "train-symlink-sibling": (lambda r: _symlink_train(r, str(_sibling(r))), "outside the dataset directory"),
}


# ----------------------------------------------------------------------------------------------
# Running the CLI and comparing trees.


def tree_hash(root: Path) -> dict[str, str] | None:
    """sha256 of every file (and the target of every symlink) under `root`; None when it does not exist."""
    if not root.exists() and not root.is_symlink():
        return None
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[rel] = "dir"
    return out


def run_add(workspace: Path, source: Path) -> subprocess.CompletedProcess:
    if not LIFELEAN.exists():
        pytest.skip(f"{LIFELEAN} is not installed (run `make test` to build .venv)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
           "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("LIFELEAN_WORKSPACE", None)
    return subprocess.run([str(LIFELEAN), "-w", str(workspace), "add", str(source)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def check_refused(tmp_path: Path, workspace: Path, name: str, build: Callable[[Path], Path], expected: str) -> None:
    source = build(tmp_path / "src" / name)
    before_ws, before_src = tree_hash(workspace), tree_hash(source)
    proc = run_add(workspace, source)
    stderr_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, f"{name}: exit 0\n{proc.stdout[-2000:]}"
    assert "Traceback" not in proc.stderr, f"{name}:\n{proc.stderr[-3000:]}"
    assert len(stderr_lines) <= 1, f"{name}: {len(stderr_lines)} stderr lines:\n{proc.stderr[-3000:]}"
    assert stderr_lines and expected in stderr_lines[0], f"{name}: expected {expected!r} in {proc.stderr!r}"
    assert tree_hash(workspace) == before_ws, f"{name}: the workspace changed"
    assert tree_hash(source) == before_src, f"{name}: the source changed"


def _existing_workspace(root: Path) -> Path:
    """A workspace a user has prepared: their own lifelean.toml and notes, not yet any data."""
    root.mkdir(parents=True)
    (root / "lifelean.toml").write_text("# my settings\nseed = 7\n\n[curriculum]\nstrategy = \"dependency\"\n")
    (root / "notes.txt").write_text("do not touch\n")
    return root


_EXISTING = {"jsonl-utf16-bom", "file-path-absolute", "train-test-leakage", "def-path-windows"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_add_refuses_hostile_source(tmp_path, name):
    build, expected = CASES[name]
    workspace = _existing_workspace(tmp_path / "ws") if name in _EXISTING else tmp_path / "ws"
    check_refused(tmp_path, workspace, name, build, expected)
    if name not in _EXISTING:
        assert not workspace.exists(), f"{name}: a workspace was created for a refused source"


@pytest.fixture(scope="module")
def populated_workspace(tmp_path_factory) -> Path:
    """A real workspace after one successful `add` of real records (embeds premises: ~10-25 s)."""
    root = tmp_path_factory.mktemp("populated") / "ws"
    proc = run_add(root, SHARED_DATA / "tiny_theorems")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted({**CASES, **SLOW_CASES}))
def test_add_refuses_hostile_source_into_populated_workspace(tmp_path, populated_workspace, name):
    build, expected = {**CASES, **SLOW_CASES}[name]
    workspace = tmp_path / "ws"
    shutil.copytree(populated_workspace, workspace, symlinks=True)
    check_refused(tmp_path, workspace, name, build, expected)


# ----------------------------------------------------------------------------------------------
# lifelean.toml (common/config_base.py): one InputError line naming the file, before anything is written.


def _load(path: Path):
    from common.config_base import load_config_file

    return load_config_file(_run_config(), path)


def _run_config():
    try:
        from agent.config import RunConfig
    except ImportError as exc:  # agent/ is being restructured: tell the lead where RunConfig went
        pytest.fail(f"agent.config.RunConfig cannot be imported ({exc}); update tests/test_hostile_inputs.py")
    return RunConfig


@pytest.mark.parametrize("content, expected", [
    (b"\xff\xfe" + "seed = 1\n".encode("utf-16-le"), "expected UTF-8 text, found UTF-16"),
    (b"seed = 1\n# caf\xe9\n", "expected UTF-8 text, found byte 0xe9 at line 2"),
    (b"seed = " + b"9" * 5000 + b"\n", "invalid TOML"),
    (b"x = " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "invalid TOML"),
    (b"seed = 1\n[memory\n", "invalid TOML"),
    (b"seed = 99999999999999999999\n", "fits in 64 bits"),
    (b"seed = 9223372036854775808\n", "fits in 64 bits"),
])
def test_toml_file_bytes_are_one_input_error(tmp_path, content, expected):
    f = tmp_path / "lifelean.toml"
    f.write_bytes(content)
    with pytest.raises(InputError) as err:
        _load(f)
    assert str(f) in str(err.value) and expected in str(err.value) and "\n" not in str(err.value)


def test_toml_utf8_bom_is_accepted_and_directory_is_refused(tmp_path):
    f = tmp_path / "lifelean.toml"
    f.write_bytes(b"\xef\xbb\xbfseed = 5\n")
    assert _load(f).seed == 5
    d = tmp_path / "dir.toml"
    d.mkdir()
    with pytest.raises(InputError, match="expected a regular file"):
        _load(d)


@pytest.mark.parametrize("data, expected", [
    ([1, 2], "expected a table of keys, got list"),
    ({"seed": 2**64}, "fits in 64 bits"),
    ({"learning": {"lr": float("nan")}}, "expected a finite number"),
    ({"learning": {"lr": float("inf")}}, "expected a finite number"),
    ({"learning": {"lr": 10**400}}, "expected a finite number"),
    ({"memory": {"chroma_url": "http://a\x00b"}}, "NUL"),
    ({"memory": "x" * 10_000}, "expected a table"),
    ({"x" * 10_000: 1}, "unknown key"),
    ({"curriculum": {"strategy": "y" * 10_000}}, "characters)"),
    ({"memory": {"encoder": "e" * 100_000}}, "too long to be real"),
])
def test_config_values_are_one_short_input_error(data, expected):
    from common.config_base import from_dict

    with pytest.raises(InputError) as err:
        from_dict(_run_config(), data)
    message = str(err.value)
    assert expected in message and "\n" not in message and len(message) < 600, message
