"""`lifelean memory` in-process on a workspace indexed through `agent.workspace.memory.index_repositories`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.workspace import StreamEntry, Workspace
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
        state.entries.append(StreamEntry(key=r.key, name=r.name, url=r.url, commit=r.commit, source="test"))
    ws.save_state(state)
    return ws, state, repos


@pytest.fixture
def indexed(tmp_path, b4_sample, encoder):
    from agent.workspace import memory as memory_ops

    ws, state, repos = make_workspace(tmp_path / "ws", b4_sample)
    report = memory_ops.index_repositories(ws, state, repos, encoder=encoder)
    return ws, repos, report


def distinct_premises(repo) -> int:
    return len({p.full_name for p in repo.premises})


def test_index_reports_and_marks_state(indexed, encoder) -> None:
    from agent.workspace import memory as memory_ops

    ws, repos, report = indexed
    for r in repos:
        assert report[r.key]["premises_embedded"] == distinct_premises(r)
        assert report[r.key]["premises_unchanged"] == 0 and report[r.key]["premises_removed"] == 0
        assert report[r.key]["bank_items_added"] > 0
    state = ws.load_state()
    assert all(e.indexed is not None and e.indexed.encoder == encoder.version for e in state.entries)
    again = memory_ops.index_repositories(ws, state, repos, encoder=encoder)
    assert all(v["premises_embedded"] == 0 and v["bank_items_added"] == 0 for v in again.values())
    assert memory_ops.unindexed(state, encoder.version) == []


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

    res = run_cli("memory", "forget", "Mathlib/Topology", "--yes", "--json", workspace=ws.root)
    assert res.exit_code == 0, res.output
    gone = json.loads(res.stdout)
    assert gone["premises_removed"] == distinct_premises(repos[[r.name for r in repos].index("Mathlib/Topology")])
    stats = json.loads(run_cli("memory", "stats", "--json", workspace=ws.root).stdout)
    assert "Mathlib/Topology" not in stats["repos"] and "Mathlib/Order" in stats["repos"]
    state = ws.load_state()
    assert state.forgotten[-1].repo == "Mathlib/Topology" and state.forgotten[-1].status == "done"
    assert [e.name for e in state.live()] == ["Mathlib/Order"]

    res = run_cli("memory", "forget", "No/Such", "--yes", workspace=ws.root)
    assert res.exit_code == 2 and "No/Such" in res.output

    text = run_cli("memory", "stats", workspace=ws.root)
    assert text.exit_code == 0 and "Mathlib/Order" in text.output


def test_memory_accepts_the_ids_it_prints_and_loads_no_model(indexed, run_cli, monkeypatch) -> None:
    """Issue 14 item 3: `#593`, short commits, bare premise names; no encoder load for show/list/stats."""
    ws, repos, _ = indexed
    found = json.loads(run_cli("memory", "search", "⊢ IsOpen s", "--k", "5", "--json", workspace=ws.root).stdout)
    text = run_cli("memory", "search", "⊢ IsOpen s", "--k", "5", workspace=ws.root).output
    first = found["premises"][0]
    repo_name, rest = first["id"].split("@", 1)
    commit, name = rest.split(":", 1)
    assert f"{repo_name}@{commit[:8]}:{name}" in text                 # search prints premise ids
    assert f"#{found['bank'][0]['id']}" in text
    keys = [(m["repo"], m["theorem"], m["tactic"]) for m in found["bank"]]
    assert len(keys) == len(set(keys))                                # a step and its one-tactic proof: once

    from agent.workspace import memory as memory_ops

    def no_model(*args, **kwargs):
        raise AssertionError("the encoder was loaded")

    monkeypatch.setattr(memory_ops, "base_encoder", no_model)
    monkeypatch.setattr(memory_ops, "_load_encoder", no_model)
    item = found["bank"][0]["id"]
    for ident in (f"#{item}", str(item)):
        res = run_cli("memory", "show", ident, "--json", workspace=ws.root)
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["id"] == item
    for ident in (first["id"], f"{repo_name}@{commit[:8]}:{name}"):
        res = run_cli("memory", "show", ident, "--json", workspace=ws.root)
        assert res.exit_code == 0, (ident, res.output)
        assert json.loads(res.stdout)["id"] == first["id"]
    premises = [p for r in repos for p in r.premises]
    unique = [n for n in {p.full_name for p in premises} if sum(p.full_name == n for p in premises) == 1]
    res = run_cli("memory", "show", unique[0], "--json", workspace=ws.root)
    assert res.exit_code == 0 and json.loads(res.stdout)["full_name"] == unique[0]
    human = run_cli("memory", "show", unique[0], workspace=ws.root).output
    assert "code:" in human and ("no premise code" in human or json.loads(res.stdout)["code"])
    assert run_cli("memory", "list", "--kind", "proof", workspace=ws.root).exit_code == 0
    stats = run_cli("memory", "stats", workspace=ws.root)
    assert stats.exit_code == 0 and " KB" in stats.output


def test_stats_lists_repositories_with_nothing_stored(tmp_path, b4_sample, encoder, run_cli) -> None:
    from agent.workspace import memory as memory_ops

    ws, state, repos = make_workspace(tmp_path / "ws", b4_sample)
    memory_ops.index_repositories(ws, state, repos[:1], encoder=encoder)
    data = json.loads(run_cli("memory", "stats", "--json", workspace=ws.root).stdout)
    assert set(data["repos"]) == {r.name for r in repos}
    empty = data["repos"][repos[1].name]
    assert empty["premises"] == 0 and empty["bank_items"] == 0
