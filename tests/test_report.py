"""A workspace's run as numbers (agent/run_summary.py) and `lifelean report` on a synthetic workspace."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from agent.report import checked_label, difficulty_rows
from agent.run_summary import proofs_per_step, read_matrices, workspace_metrics
from agent.workspace import Workspace
from common.atomic import append_jsonl
from curriculum.repo_io import save_repository
from tests.helpers import repo as make_repo

# Rows = steps, columns = processed repositories in curriculum order (cl-and-style.md §3.5 vector).
RECALL = [[0.60, 0.30, 0.25],
          [0.50, 0.70, 0.40],
          [0.55, 0.60, 0.80]]
RECALL_BASE = [0.10, 0.20, 0.30]
PROOF = [[0.5, 0.0, 0.0],
         [0.25, 0.5, 0.0],
         [0.5, 0.25, None]]   # last cell: proving not evaluated


@pytest.fixture(scope="module")
def sample_repos(b4_sample):
    from curriculum.lean_data import load_dataset, to_repositories

    return to_repositories(load_dataset(b4_sample), split_by_dir=2)[:4]


def _eval(step, after, repo, r10, pr, theorems=5):
    return {"kind": "eval", "step": step, "after": after, "repo": repo, "recall@1": r10 / 2, "recall@10": r10,
            "mrr": r10 / 3, "tactics": 10, "proof_rate": pr, "theorems": theorems}


def _proof(step, repo, name, proved, checked_by, purpose="prove"):
    return {"theorem": name, "uid": f"F.lean:{name}:1:1", "repo": repo, "file_path": "F.lean", "proved": proved,
            "checked_by": checked_by if proved else None, "proof": ["intro x", "simp [x]"] if proved else [],
            "expansions": 7, "env_calls": 9, "generator_calls": 3, "seconds": 0.5, "step": step, "purpose": purpose}


@pytest.fixture
def workspace(tmp_path, sample_repos) -> Workspace:
    """4 repositories, curriculum order [r2, r0, r3, r1]; steps 0..2 learned r2, r0, r3; r1 not yet."""
    ws = Workspace.open(tmp_path / "ws", create=True)
    state = ws.load_state()
    for r in sample_repos:
        save_repository(r, ws.repo_data_path(r.key))
        state["repos"].append({"key": r.key, "name": r.name, "url": r.url, "commit": r.commit,
                               "theorems": len(r.theorems), "premises": r.num_premises, "files": len(r.files)})
    keys = [r.key for r in sample_repos]
    order = [keys[2], keys[0], keys[3], keys[1]]
    state["curriculum"] = {"strategy": "leanagent", "order": order}
    ws.save_state(state)
    cols = order[:3]
    recs = []
    for j, k in enumerate(cols):
        recs.append(_eval(-1, None, k, RECALL_BASE[j], 0.0))
    recs.append(_eval(-1, None, order[3], 0.9, 0.9))          # unprocessed column: ignored
    for i in (2, 0, 1):                                        # file order is not row order
        for j, k in enumerate(cols):
            recs.append(_eval(i, cols[i], k, RECALL[i][j], PROOF[i][j]))
        recs.append(_eval(i, cols[i], order[3], 0.99, 0.99))  # zero-shot on the unprocessed repo: ignored
    recs.insert(3, _eval(1, cols[1], cols[1], 0.11, 0.11))     # an earlier evaluation, replaced by the later one
    for r in recs:
        append_jsonl(ws.metrics_path, r)
    append_jsonl(ws.metrics_path, {"kind": "timing", "step": 0, "repo": cols[0], "phase": "learn", "seconds": 3})
    for r in [_proof(0, cols[0], "a.one", True, "lean"), _proof(0, cols[0], "a.two", True, "replay"),
              _proof(0, cols[0], "a.<three>", False, None), _proof(1, cols[1], "b.one", True, "replay"),
              _proof(1, cols[1], "b.two", False, None), _proof(2, cols[2], "c.one", False, None),
              _proof(2, cols[2], "c.eval", True, "replay", purpose="eval")]:
        append_jsonl(ws.proofs_path, r)
    with open(ws.metrics_path, "ab") as f:
        f.write(b'{"kind": "eval", "step": 2, "aft')   # a line torn by a crash
    return ws


def test_matrices_follow_curriculum_order(workspace):
    state = workspace.load_state()
    order = state["curriculum"]["order"]
    run = read_matrices(workspace)
    assert run.repos == order[:3]
    assert run.matrices["recall@10"].tolist() == RECALL
    assert run.baselines["recall@10"].tolist() == RECALL_BASE
    assert run.matrices["proof_rate"][2, 2] != run.matrices["proof_rate"][2, 2]  # NaN: not evaluated


def test_workspace_metrics_hand_worked(workspace):
    m = workspace_metrics(workspace)
    assert m["steps"] == 3 and m["repos"] == workspace.load_state()["curriculum"]["order"][:3]
    r = m["recall@10"]  # cl-and-style §3.5: ACC .65, BWT -.075, FWT .10, F .075
    assert (r["acc"], r["bwt"], r["fwt"], r["forgetting"], r["plasticity"]) == \
        pytest.approx((0.65, -0.075, 0.10, 0.075, 0.70), abs=1e-9)
    p = m["proof_rate"]
    assert p["acc"] == pytest.approx((0.5 + 0.25) / 2)               # missing A[2][2] skipped
    assert p["bwt"] == pytest.approx(((0.5 - 0.5) + (0.25 - 0.5)) / 2)
    assert p["fwt"] == pytest.approx(((0.0 - 0.0) + (0.0 - 0.0)) / 2)
    assert p["forgetting"] == pytest.approx((0.0 + (0.5 - 0.25)) / 2)  # j=0: max(.5,.25)-.5; j=1: max(0,.5)-.25
    assert p["plasticity"] == pytest.approx(0.5)                       # mean(.5, .5), third missing


def test_metrics_command_without_file_reports_the_run(run_cli, workspace):
    res = run_cli("metrics", "--json", workspace=workspace.root)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out) == {"recall@10", "proof_rate", "steps", "repos"}
    assert out == workspace_metrics(workspace)
    human = run_cli("metrics", workspace=workspace.root)
    assert human.exit_code == 0 and "-0.0750" in human.output


def test_empty_workspace_has_no_metrics(run_cli, tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    assert workspace_metrics(ws) == {"recall@10": None, "proof_rate": None, "steps": 0, "repos": []}
    res = run_cli("report", "--json", workspace=ws.root)
    assert res.exit_code == 0, res.output
    assert Path(json.loads(res.output)["report"]).is_file()


def test_proofs_per_step_counts_prove_phase_only(workspace):
    from agent.run_summary import proof_records

    assert proofs_per_step(proof_records(workspace)) == {
        0: {"attempted": 3, "proved": 2}, 1: {"attempted": 2, "proved": 1}, 2: {"attempted": 1, "proved": 0}}


def test_checked_labels_never_say_verified():
    assert checked_label("lean") == "checked by Lean"
    assert checked_label("replay") == "checked by replay (recorded Lean trace)"
    assert "verified" not in checked_label(None).lower()


def test_difficulty_rows_hand_worked():
    a = make_repo("A", [1, 2, 3])
    b = make_repo("B", [4, 5, None], sorry=1)
    # finite S = 1..5; p33 of e^S: h = 4*.33 = 1.32 -> log(.68 e^2 + .32 e^3) = log(11.45) = 2.44
    # p67: h = 2.68 -> log(.32 e^3 + .68 e^4) = log(43.55) = 3.77. So 1,2 easy; 3 medium; 4,5 hard.
    rows = difficulty_rows([a, b])
    pick = [{k: r[k] for k in ("easy", "medium", "hard", "sorry", "unrated", "theorems")} for r in rows]
    assert pick == [{"easy": 2, "medium": 1, "hard": 0, "sorry": 0, "unrated": 0, "theorems": 3},
                    {"easy": 0, "medium": 0, "hard": 2, "sorry": 1, "unrated": 1, "theorems": 4}]


def test_report_is_self_contained_and_matches_status(run_cli, workspace):
    res = run_cli("report", "--json", workspace=workspace.root)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    index = Path(out["report"])
    assert index == workspace.reports_dir / "index.html"
    assert len(out["plots"]) == 5
    page = index.read_text(encoding="utf-8")
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(uris) == 5
    for uri, path in zip(uris, out["plots"]):
        assert Path(path).read_bytes() == base64.b64decode(uri)
        assert Path(path).read_bytes().startswith(b"\x89PNG")
    assert not re.search(r"src=['\"](?!data:)", page)  # nothing loaded from outside the page
    embedded = json.loads(re.search(r"id='lifelean-metrics'>(.*?)</script>", page, re.S).group(1))
    status = json.loads(run_cli("status", "--json", workspace=workspace.root).output)
    assert embedded == status["metrics"] == workspace_metrics(workspace)
    assert f"<td class='n'>{json.dumps(embedded['recall@10']['bwt'])}</td>" in page  # the shown number
    assert "checked by Lean" in page and "checked by replay (recorded Lean trace)" in page
    assert "verified" not in page.lower()
    assert "a.one" in page and "c.eval" in page and "a.&lt;three&gt;" not in page  # unproved not listed
    assert "Mathlib/Data" in page  # difficulty table names the repositories


def test_report_open_survives_without_browser(run_cli, workspace, monkeypatch):
    import webbrowser

    calls = []

    def fake_open(url):
        calls.append(url)
        raise webbrowser.Error("no browser")

    monkeypatch.setattr(webbrowser, "open", fake_open)
    res = run_cli("report", "--open", workspace=workspace.root)
    assert res.exit_code == 0, res.output
    assert calls == [(workspace.reports_dir / "index.html").resolve().as_uri()]
    assert "report written to" in res.output
