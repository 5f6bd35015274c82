"""curriculum/tracing.py against the real lean_dojo 4.20.0 classes: a real `TracedTactic` over a real `LeanFile`
and real AST nodes, the real `Theorem`; fakes only where LeanDojo would clone, call GitHub or start Lean
(`LeanGitRepo`, `get_latest_commit`, `trace`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import types

import pytest

from common.lean_dojo_import import lean_dojo_cache_dir

os.environ.setdefault("CACHE_DIR", os.path.join(tempfile.gettempdir(), "lifelean-test-lean-dojo-cache"))
lean_dojo_cache_dir().mkdir(parents=True, exist_ok=True)  # two xdist workers importing LeanDojo race otherwise
ld = pytest.importorskip("lean_dojo")

from pathlib import Path  # noqa: E402

import networkx as nx  # noqa: E402
from lean_dojo.data_extraction.ast import IdentNode, OtherNode  # noqa: E402
from lean_dojo.data_extraction.lean import LeanFile, Pos  # noqa: E402
from lean_dojo.data_extraction.traced_data import TracedTactic  # noqa: E402

from common.errors import InputError  # noqa: E402
from curriculum import tracing  # noqa: E402
from curriculum.sources import parse_source  # noqa: E402

URL = "https://github.com/u/demo"
SHA = "d" * 40
LEAN = "theorem t1 (a b : Nat) : a + b = b + a := by\n  rw [Nat.add_comm]\n"


class FakeRepo:
    """`LeanGitRepo` without its GitHub/git calls: url, commit, name, lean_version."""

    made: list = []

    def __init__(self, url, commit):
        self.url, self.commit, self.lean_version = url, commit, "v4.9.0"
        self.is_lean4 = False
        FakeRepo.made.append((url, commit))

    @property
    def name(self):
        return os.path.basename(self.url)

    @classmethod
    def from_path(cls, path):
        return cls(str(path), SHA)


def _traced_tactic(root: Path, traced_theorem) -> TracedTactic:
    lean_file = LeanFile(root, Path("Demo.lean"))
    ident = IdentNode(lean_file, Pos(2, 7), Pos(2, 19), [], "", "", "Nat.add_comm", "Nat.add_comm",
                      full_name="Nat.add_comm", mod_name="Init.Core", def_path="Init/Core.lean",
                      def_start=Pos(10, 1), def_end=Pos(10, 20))
    node = OtherNode(lean_file, Pos(2, 3), Pos(2, 20), [ident], "rw", state_before="a b : ℕ\n⊢ a + b = b + a",
                     state_after="no goals", tactic="rw [Nat.add_comm]")
    traced_theorem.traced_file = types.SimpleNamespace(lean_file=lean_file)
    return TracedTactic(node, traced_theorem)


def _traced_repo(root: Path, names: list[str]):
    """What `lean_dojo.trace` returns, shaped like 4.20.0: its `.repo` comes from the *cache path*."""
    cache_repo = FakeRepo(str(root / "cache" / f"u-demo-{SHA}" / "demo"), SHA)
    theorems = []
    for name in names:
        thm = types.SimpleNamespace(repo=cache_repo, theorem=ld.Theorem(cache_repo, Path("Demo.lean"), name),
                                    start=Pos(1, 1), end=Pos(2, 20))
        tac = _traced_tactic(root, thm)
        thm.get_traced_tactics = lambda tac=tac: [tac]
        theorems.append(thm)
    graph = nx.DiGraph()
    graph.add_node("Demo.lean", traced_file=types.SimpleNamespace(path=Path("Demo.lean"),
                                                                 get_premise_definitions=lambda: []))
    return types.SimpleNamespace(repo=cache_repo, dependencies={}, traced_files_graph=graph,
                                 get_traced_theorems=lambda: theorems)


@pytest.fixture
def fake_leandojo(monkeypatch, tmp_path):
    (tmp_path / "Demo.lean").write_text(LEAN)
    FakeRepo.made = []
    latest = []
    monkeypatch.setattr(ld, "LeanGitRepo", FakeRepo)
    monkeypatch.setattr(ld, "get_latest_commit", lambda url: latest.append(url) or SHA)
    monkeypatch.setattr(tracing, "missing_lean_tools", lambda: None)
    state = {"names": ["Demo.t1"], "latest": latest}
    monkeypatch.setattr(ld, "trace", lambda repo: _traced_repo(tmp_path, state["names"]))
    return state


def test_annotated_tactic_tuple_of_real_traced_tactic_is_exported(fake_leandojo):
    repo = tracing.trace_repository(URL, SHA, None)
    (thm,) = repo.theorems
    (tac,) = thm.tactics
    assert tac.annotated_tactic == "rw [<a>Nat.add_comm</a>]"
    assert [a.full_name for a in tac.annotations] == ["Nat.add_comm"] and tac.annotations[0].def_path == "Init/Core.lean"


def test_records_the_url_and_commit_that_were_traced_not_the_cache_path(fake_leandojo):
    repo = tracing.trace_repository(URL + ".git/", SHA, None)
    assert repo.url == URL and repo.commit == SHA and repo.name == "demo" and repo.lean_version == "v4.9.0"
    assert all(t.url == URL and t.commit == SHA for t in repo.theorems)


def test_default_ref_is_resolved_like_leandojo(fake_leandojo):
    tracing.trace_repository(URL, None, None)
    assert fake_leandojo["latest"] == [URL] and FakeRepo.made[0] == (URL, SHA)   # never a hard-coded "main"


def test_tiny_repositories_still_get_held_out_theorems(fake_leandojo):
    fake_leandojo["names"] = [f"Demo.t{i}" for i in range(5)]
    splits = [t.split for t in tracing.trace_repository(URL, SHA, None).theorems]
    assert splits.count("test") >= 1 and splits.count("val") >= 1 and splits.count("train") >= 3
    assert tracing.assign_splits([("a", True)]) == {"a": "train"}
    assert tracing.assign_splits([("a", True), ("b", False)]) == {"a": "train", "b": "train"}


def test_leandojo_failures_are_one_line_with_a_remedy(fake_leandojo, monkeypatch):
    def fail(repo):
        raise subprocess.CalledProcessError(1, "lake build", stderr="error: unknown package 'Mathlib'\n")

    monkeypatch.setattr(ld, "trace", fail)
    with pytest.raises(InputError) as err:
        tracing.trace_repository(URL, SHA, None)
    assert "lake build" in str(err.value) and "\n" not in str(err.value)
    disk = OSError(28, "No space left on device")
    assert "CACHE_DIR" in tracing.explain_lean_failure(disk)


def test_ssh_and_git_urls_are_refused_clearly():
    for url in ("ssh://git@github.com/u/demo", "git://github.com/u/demo"):
        with pytest.raises(InputError, match="not supported by LeanDojo"):
            parse_source(url)
    assert parse_source("https://github.com/u/demo.git@abc").location == URL


@pytest.mark.skipif(shutil.which("elan") is not None, reason="this machine has Lean")
def test_add_of_a_lean_checkout_without_lean_is_one_line(run_cli, tmp_path):
    src = tmp_path / "demo"
    src.mkdir()
    (src / "lakefile.lean").write_text('import Lake\nopen Lake DSL\npackage demo\nlean_lib Demo\n')
    (src / "lean-toolchain").write_text("leanprover/lean4:v4.9.0\n")
    (src / "Demo.lean").write_text(LEAN)
    subprocess.run(["git", "init", "-q"], cwd=src, check=True)
    ws = tmp_path / "ws"
    result = run_cli("add", str(src), workspace=ws)
    assert result.exit_code == 2
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "Lean" in lines[0] and ("elan" in lines[0] or "lean-dojo" in lines[0])
    assert not (ws / "state.json").exists()
