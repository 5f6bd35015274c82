"""Workspace state, config, atomic writes and the cross-process lock."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from agent.config import RunConfig, load_config
from agent.workspace import SourceRecord, Workspace
from agent.workspace.state import SCHEMA_VERSION
from common.atomic import append_jsonl, atomic_write_bytes, iter_jsonl_tolerant
from common.errors import InputError, WorkspaceBusy, WorkspaceError


def test_create_open_and_state_round_trip(tmp_path):
    with pytest.raises(WorkspaceError, match="no lifelean workspace"):
        Workspace.open(tmp_path / "ws")
    ws = Workspace.open(tmp_path / "ws", create=True)
    state = ws.load_state()
    assert state.schema_version == SCHEMA_VERSION and state.entries == []
    state.sources.append(SourceRecord("x", "traced", {}))
    ws.save_state(state)
    assert Workspace.open(tmp_path / "ws").load_state().sources[0].source == "x"
    assert json.loads(ws.state_path.read_text())["schema_version"] == SCHEMA_VERSION
    assert isinstance(ws.config(), RunConfig)


def test_corrupted_or_foreign_state_is_a_clear_error(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    ws.state_path.write_text('{"schema_version": 1, "repos": [')
    with pytest.raises(WorkspaceError, match=r"state.json: workspace state is corrupted .*restore"):
        ws.load_state()
    ws.state_path.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(WorkspaceError, match="schema version 99"):
        ws.load_state()


def test_config_unknown_key_and_wrong_type(tmp_path):
    p = tmp_path / "lifelean.toml"
    p.write_text("[prover]\nmax_expansion = 3\n")
    with pytest.raises(InputError, match=r"lifelean.toml: config \[prover\] has unknown key 'max_expansion'"):
        load_config(p)
    p.write_text("seed = 'x'\n")
    with pytest.raises(InputError, match="config key 'seed': expected an integer"):
        load_config(p)
    p.write_text("[learning]\nstrategy = ['replay', 'ewc']\n[curriculum]\nstrategy = 'dependency'\n")
    cfg = load_config(p)
    assert cfg.learning.strategy == ["replay", "ewc"] and cfg.curriculum.strategy == "dependency"


def test_atomic_write_keeps_old_file_when_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write_bytes(target, b"old")

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temp file left behind


def test_append_jsonl_survives_a_torn_last_line(tmp_path):
    log = tmp_path / "log.jsonl"
    append_jsonl(log, {"a": 1})
    with log.open("ab") as f:
        f.write(b'{"a": 2, "tor')  # a crash in the middle of a write
    append_jsonl(log, {"a": 3})
    assert iter_jsonl_tolerant(log) == [{"a": 1}, {"a": 3}]


def test_second_process_is_refused_at_once(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from agent.workspace import Workspace
            with Workspace.open({str(ws.root)!r}).lock():
                print("locked", flush=True)
                sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WorkspaceBusy, match="another lifelean process"):
            with ws.lock():
                pass
    finally:
        holder.communicate("done\n", timeout=30)
    with ws.lock():  # free again once the other process is gone
        pass
