"""A `kill -9` in the middle of indexing leaves state and store consistent, and a re-run repairs it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.test_memory_cli import distinct_premises, make_workspace

NAMES = ("Mathlib/Topology", "Mathlib/Algebra", "Mathlib/Data", "Mathlib/Analysis", "Mathlib/Order")
REPO_ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from agent.workspace import Workspace
    from agent.workspace import memory as memory_ops
    ws = Workspace.open(sys.argv[1])
    state = ws.load_state()
    repos = [ws.load_repository(e.key) for e in state.entries]
    memory_ops.index_repositories(ws, state, repos)
    print("finished", flush=True)
""")


def _indexed(ws_root: Path) -> list[str]:
    try:
        state = json.loads((ws_root / "state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return [e["key"] for e in state["repos"] if e.get("indexed")]


@pytest.mark.slow
def test_kill_during_add_then_repair(tmp_path, b4_sample, encoder) -> None:
    from agent.workspace import memory as memory_ops
    from memory.bank import items_of_repository

    ws, state, repos = make_workspace(tmp_path / "ws", b4_sample, NAMES)
    script = tmp_path / "index.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(ws.root)], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not _indexed(ws.root) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the next repository's embedding
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the indexer finished before it could be killed"

    state = ws.load_state()
    done = [e.key for e in state.entries if e.indexed]
    assert 1 <= len(done) < len(repos)
    store = memory_ops.open_store(ws, encoder=encoder)
    by_key = {r.key: r for r in repos}
    for key in done:  # a repository marked indexed has all its premises in chroma
        assert store.count(by_key[key].name) == distinct_premises(by_key[key])

    report = memory_ops.repair(ws, state)
    state = ws.load_state()
    assert all(e.indexed for e in state.entries)
    assert set(report) == set(by_key) - set(done)
    store = memory_ops.open_store(ws, encoder=encoder)
    bank = memory_ops.open_bank(ws, encoder=encoder)
    stats = bank.stats()
    for r in repos:
        assert store.count(r.name) == distinct_premises(r)
        assert stats[r.name]["items"] == len({it.digest for it in items_of_repository(r)})
    # Every premise is embedded once in total: what the killed run stored is reused, not embedded again.
    assert sum(v["premises_embedded"] for v in report.values()) <= sum(distinct_premises(by_key[k]) for k in report)
    again = memory_ops.index_repositories(ws, state, repos, encoder=encoder)
    assert all(v["premises_embedded"] == 0 and v["bank_items_added"] == 0 for v in again.values())
