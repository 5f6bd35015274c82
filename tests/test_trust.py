"""Issue "Results you can trust", end to end through the real CLI on a tiny stream where proofs are found:
permanent step ids across a new commit and a forget, no held-out leakage into the bank, metrics laid out in
processing order, options fixed under a started stream, ad-hoc results kept out of the run's."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests import loop_fixtures as lf
from tests import trust_data

CONFIG = lf.FAST_CONFIG.replace("max_expansions = 6", "max_expansions = 6\nreplay_scope = 'repository'") \
    .replace("batch_size = 4", "batch_size = 4\nkeep_checkpoints = 4")


def _json(ws: Path, *args: str) -> object:
    return json.loads(lf.run(ws, *args, "--json").stdout)


def _tree_hash(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return trust_data.build(tmp_path_factory.mktemp("trust") / "demo")


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    return lf.run_to_end(tmp_path_factory.mktemp("trust-ws") / "ws", data, CONFIG)


def _copy(ws: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(ws, dest)
    return dest


def test_the_loop_finds_a_proof_banks_it_as_found_and_never_banks_held_out(finished):
    proofs = [json.loads(x) for x in (finished / "proofs.jsonl").read_text().splitlines()]
    assert {p["theorem"] for p in proofs} == {"B.open"}            # the prove step attempts open theorems only
    (found,) = proofs
    assert found["proved"] and found["checked_by"] == "replay" and found["purpose"] == "prove"
    assert found["proof"] == [trust_data.TACTIC]
    items = _json(finished, "memory", "list")
    assert {i["split"] for i in items} == {"train", "found"}
    assert {i["theorem"] for i in items if i["split"] == "found"} == {"B.open"}
    assert not {"B.held_out", "A.held_out", "A.val"} & {i["theorem"] for i in items}
    # The evaluation proves the held-out theorem of Demo/B from what was learned; that is recorded as
    # evaluation only (metrics.jsonl), never as a proof and never banked.
    cells = [json.loads(x) for x in (finished / "metrics.jsonl").read_text().splitlines()]
    state = json.loads((finished / "state.json").read_text())
    b_key = next(r["key"] for r in state["repos"] if r["name"] == "Demo/B")
    b_step = next(r["step"] for r in state["repos"] if r["name"] == "Demo/B")
    own = [c for c in cells if c.get("kind") == "eval" and c["step"] == b_step and c["repo"] == b_key]
    assert own and own[-1]["proof_rate"] == 1.0
    status = _json(finished, "status")
    assert status["counts"]["prove_attempted"] == 1 and status["counts"]["proved"] == 1


def test_a_new_commit_is_a_new_entry_and_earlier_results_do_not_move(finished, tmp_path):
    ws = _copy(finished, tmp_path)
    before_state = json.loads((ws / "state.json").read_text())
    before_metrics = _json(ws, "metrics")
    ckpts_before = {p.name: _tree_hash(p) for p in (ws / "checkpoints").iterdir() if p.name.isdigit()}
    log_before = (ws / "metrics.jsonl").read_text()
    moved = trust_data.build(tmp_path / "demo2", commit="2" * 40, extra_a=2)
    lf.run(ws, "run", str(moved), "--split-by-dir", "2", "--json")
    status = _json(ws, "status")
    entries = {(r["name"], r["commit"]): r for r in status["repos"]}
    old, new = entries[("Demo/A", trust_data.COMMIT)], entries[("Demo/A", "2" * 40)]
    old_before = next(r for r in before_state["repos"] if r["key"] == old["key"])
    assert old["step"] == old_before["step"] and old["superseded_by"] == new["key"]
    new_b = entries[("Demo/B", "2" * 40)]
    assert {new["step"], new_b["step"]} == {2, 3}
    assert entries[("Demo/B", trust_data.COMMIT)]["superseded_by"] == new_b["key"]
    # every earlier checkpoint and every earlier evaluation record is untouched; rows 0 and 1 read the same
    for name, files in ckpts_before.items():
        assert _tree_hash(ws / "checkpoints" / name) == files
    log_after = (ws / "metrics.jsonl").read_text()
    assert log_after.startswith(log_before)
    cells = lambda text: {(r["step"], r["repo"]): r for r in map(json.loads, text.splitlines())  # noqa: E731
                          if r.get("kind") == "eval" and r["step"] in (0, 1)}
    assert cells(log_after) == cells(log_before) and cells(log_before)
    after_matrix = _json(ws, "metrics")
    assert after_matrix["repos"][:2] == before_metrics["repos"] and len(after_matrix["repos"]) == 4
    proofs = [json.loads(x) for x in (ws / "proofs.jsonl").read_text().splitlines()]
    old_b = entries[("Demo/B", trust_data.COMMIT)]
    assert {(p["step"], p["key"]) for p in proofs} == {(old_b["step"], old_b["key"]), (new_b["step"], new_b["key"])}


def test_forget_marks_and_readding_keeps_one_copy(finished, tmp_path, data):
    ws = _copy(finished, tmp_path)
    items = _json(ws, "memory", "list", "--repo", "Demo/A")
    lf.run(ws, "memory", "forget", "Demo/A", "--yes")
    status = _json(ws, "status")
    a = next(r for r in status["repos"] if r["name"] == "Demo/A")
    assert a["forgotten"] and a["step"] is not None                     # marked, not renumbered
    assert _json(ws, "memory", "list", "--repo", "Demo/A") == []
    lf.run(ws, "add", str(data), "--split-by-dir", "2")
    lf.run(ws, "add", str(data), "--split-by-dir", "2")                 # reopen and add again
    again = _json(ws, "memory", "list", "--repo", "Demo/A")
    key = lambda i: (i["kind"], i["theorem"], i["tactic"])             # noqa: E731
    assert sorted(map(key, again)) == sorted(map(key, items))
    assert [r["step"] for r in _json(ws, "status")["repos"] if r["name"] == "Demo/A"] == [a["step"]]


def test_options_cannot_change_under_a_started_stream(finished, tmp_path):
    ws = _copy(finished, tmp_path)
    toml = (ws / "lifelean.toml").read_bytes()
    for option in (("--strategy", "ewc"), ("--seed", "99")):
        proc = lf.run(ws, "run", *option, check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "new workspace" in proc.stderr
        assert (ws / "lifelean.toml").read_bytes() == toml
    status = _json(ws, "status")
    assert status["run"]["options"]["learning"]["strategy"] == ["replay", "distill"]
    summary = _json(ws, "run")
    assert summary["nothing_to_do"] is True
    assert "nothing to do" in lf.run(ws, "resume").stdout


def test_adhoc_prove_results_do_not_mix_into_the_runs(finished, tmp_path):
    ws = _copy(finished, tmp_path)
    before = _json(ws, "status")["counts"]
    out = _json(ws, "prove", "B.held_out")
    assert out["results"][0]["proved"] and out["results"][0]["split"] == "test"
    assert "not banked" in out["results"][0]["provenance"]
    assert "B.held_out" not in {i["theorem"] for i in _json(ws, "memory", "list")}
    after = _json(ws, "status")["counts"]
    assert (after["prove_attempted"], after["proved"]) == (before["prove_attempted"], before["proved"])
    assert _json(ws, "run")["attempted"] == before["prove_attempted"]


def test_commands_that_only_read_leave_the_workspace_byte_identical(finished, tmp_path, data):
    """Issue "Hostile and malformed data", item 3: readers never write, the premise store included."""
    ws = _copy(finished, tmp_path)
    before = _tree_hash(ws)
    item = _json(ws, "memory", "list")[0]["id"]
    for args in (("status", "--json"), ("metrics", "--json"), ("curriculum", "--json"), ("memory", "stats"),
                 ("memory", "list", "--repo", "Demo/B"), ("memory", "search", trust_data.GOAL, "--k", "3"),
                 ("memory", "show", str(item)), ("memory", "show", "B.foo_eq"),
                 ("evaluate", str(data), "--split", "test", "--json")):
        proc = lf.run(ws, *args, check=False)
        assert proc.returncode == 0, (args, proc.stderr)
        assert _tree_hash(ws) == before, args
