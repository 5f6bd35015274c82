"""The first CLI commands in-process: help, bad input (exit 2, one line, nothing written)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import snapshot, theorem_record, write_jsonl_dataset


def test_help_teaches_with_examples(run_cli):
    result = run_cli("--help")
    assert result.exit_code == 0
    for name in ("add", "curriculum", "status", "run", "resume", "report", "memory", "prove"):
        assert name in result.output
    for cmd in ("add", "curriculum", "status"):
        sub = run_cli(cmd, "--help")
        assert sub.exit_code == 0 and "Example" in sub.output


def _bad_sources(tmp_path):
    ok = theorem_record()
    no_name = {k: v for k, v in ok.items() if k != "full_name"}
    no_tactics = {k: v for k, v in ok.items() if k != "traced_tactics"}
    wrong_type = dict(ok, start="one")
    cases = {
        "missing path": tmp_path / "nope",
        "not a directory": tmp_path / "file.txt",
        "no full_name": write_jsonl_dataset(tmp_path / "a", [ok, no_name]),
        "no traced_tactics": write_jsonl_dataset(tmp_path / "b", [no_tactics]),
        "wrong type": write_jsonl_dataset(tmp_path / "c", [wrong_type]),
        "empty dataset": write_jsonl_dataset(tmp_path / "d", []),
        "corpus without path": write_jsonl_dataset(tmp_path / "e", [ok], corpus=[{"premises": []}]),
    }
    (tmp_path / "file.txt").write_text("hello")
    bad_json = write_jsonl_dataset(tmp_path / "f", [ok])
    with (bad_json / "theorems.jsonl").open("a") as f:
        f.write("{oops\n")
    cases["invalid JSON line"] = bad_json
    return cases


@pytest.mark.parametrize("existing_workspace", [False, True])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, run_cli, existing_workspace):
    ws = tmp_path / "ws"
    if existing_workspace:
        from agent.workspace import Workspace

        Workspace.open(ws, create=True)
    for label, source in _bad_sources(tmp_path).items():
        before = snapshot(ws)
        result = run_cli("add", str(source), workspace=ws)
        assert result.exit_code == 2, (label, result.output)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (label, result.stderr)
        assert str(source) in lines[0] or source.name in lines[0], (label, lines[0])
        assert "Traceback" not in result.output
        assert snapshot(ws) == before, label
        assert ws.exists() == existing_workspace


def test_bad_split_by_dir_and_git_url_without_leandojo(tmp_path, run_cli):
    ok = write_jsonl_dataset(tmp_path / "ok", [theorem_record()])
    r = run_cli("add", str(ok), "--split-by-dir", "0")
    assert r.exit_code == 2 and "--split-by-dir" in r.stderr
    r = run_cli("add", "https://github.com/yangky11/lean4-example@7761283")
    assert r.exit_code == 2
    assert "lean-dojo" in r.stderr.lower() or "leandojo" in r.stderr.lower()
    assert not (tmp_path / "ws").exists()


def test_status_without_workspace_is_a_clear_error(tmp_path, run_cli):
    r = run_cli("status")
    assert r.exit_code == 2 and "no lifelean workspace" in r.stderr


def test_console_script_runs_as_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "-w", str(tmp_path / "ws"), "add", str(tmp_path / "x")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no such file or directory" in proc.stderr
