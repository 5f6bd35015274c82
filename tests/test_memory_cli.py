"""`lifelean memory` in-process on a workspace indexed through `agent.memory_ops.index_repositories`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.workspace import Workspace
from curriculum.lean_data import load_dataset, to_repositories
from curriculum.repo_io import save_repository

NAMES = ("Mathlib/Topology", "Mathlib/Order")


def make_workspace(root: Path, b4_sample: Path, names=NAMES):
    """A workspace holding some pseudo-repositories of the shared sample, imported but not indexed."""
    repos = [r for r in to_repositories(load_dataset(b4_sample), split_by_dir=2) if r.name in names]
    ws = Workspace.open(root, create=True)
    state = ws.load_state()
    for r in repos:
        save_repository(r, ws.repo_data_path(r.key))
        state["repos"].append({"key": r.key, "name": r.name, "url": r.url, "commit": r.commit,
                               "data_file": ws.repo_data_path(r.key).name})
    ws.save_state(state)
    return ws, state, repos


@pytest.fixture
def indexed(tmp_path, b4_sample, encoder):
    from agent import memory_ops

    ws, state, repos = make_workspace(tmp_path / "ws", b4_sample)
    report = memory_ops.index_repositories(ws, state, repos, encoder=encoder)
    return ws, repos, report


def distinct_premises(repo) -> int:
    return len({p.full_name for p in repo.premises})


def test_index_reports_and_marks_state(indexed, encoder) -> None:
    from agent import memory_ops

    ws, repos, report = indexed
    for r in repos:
        assert report[r.key]["premises_embedded"] == distinct_premises(r)
        assert report[r.key]["premises_unchanged"] == 0 and report[r.key]["premises_removed"] == 0
        assert report[r.key]["bank_items_added"] > 0
    state = ws.load_state()
    assert all(e["indexed"]["encoder"] == encoder.version for e in state["repos"])
    again = memory_ops.index_repositories(ws, state, repos, encoder=encoder)
    assert all(v["premises_embedded"] == 0 and v["bank_items_added"] == 0 for v in again.values())
    assert memory_ops.unindexed(ws, state, encoder.version) == []


def test_stats_search_show_forget(indexed, run_cli, tmp_path) -> None:
    ws, repos, _ = indexed
    res = run_cli("memory", "stats", "--json", workspace=ws.root)
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    for r in repos:
        row = stats["repos"][r.name]
        assert row["premises"] == distinct_premises(r)
        assert row["bank_items"] > 0 and row["bytes_on_disk"] > 0 and row["compression_ratio"] > 1
        assert row["encoder"] == stats["encoder"]
    assert stats["totals"]["premises"] == sum(distinct_premises(r) for r in repos)

    res = run_cli("memory", "search", "⊢ IsOpen s", "--k", "3", "--repo", "Mathlib/Topology", "--json",
                  workspace=ws.root)
    assert res.exit_code == 0, res.output
    found = json.loads(res.stdout)
    assert len(found["premises"]) == 3 and all(p["repo"] == "Mathlib/Topology" for p in found["premises"])
    assert found["bank"] and all(m["repo"] == "Mathlib/Topology" for m in found["bank"])

    res = run_cli("memory", "show", str(found["bank"][0]["id"]), "--json", workspace=ws.root)
    assert res.exit_code == 0 and json.loads(res.stdout)["theorem"] == found["bank"][0]["theorem"]
    res = run_cli("memory", "show", found["premises"][0]["id"], "--json", workspace=ws.root)
    assert res.exit_code == 0 and json.loads(res.stdout)["full_name"] == found["premises"][0]["full_name"]
    assert run_cli("memory", "show", "99999", workspace=ws.root).exit_code == 2
    assert run_cli("memory", "show", "no@such:premise", workspace=ws.root).exit_code == 2

    res = run_cli("memory", "forget", "Mathlib/Topology", "--json", workspace=ws.root)
    assert res.exit_code == 0, res.output
    gone = json.loads(res.stdout)
    assert gone["premises_removed"] == distinct_premises(repos[[r.name for r in repos].index("Mathlib/Topology")])
    stats = json.loads(run_cli("memory", "stats", "--json", workspace=ws.root).stdout)
    assert "Mathlib/Topology" not in stats["repos"] and "Mathlib/Order" in stats["repos"]
    state = ws.load_state()
    assert state["forgotten"][-1]["repo"] == "Mathlib/Topology"
    assert [e["name"] for e in ws.repo_entries(state)] == ["Mathlib/Order"]

    res = run_cli("memory", "forget", "No/Such", workspace=ws.root)
    assert res.exit_code == 2 and "No/Such" in res.output

    text = run_cli("memory", "stats", workspace=ws.root)
    assert text.exit_code == 0 and "Mathlib/Order" in text.output
