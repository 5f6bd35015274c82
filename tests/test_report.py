"""A workspace's run as numbers (agent/evaluation/matrices.py) and `lifelean report` on a synthetic workspace."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from agent.report.html import checked_label, difficulty_rows
from agent.evaluation.matrices import proofs_per_step, read_matrices, workspace_metrics
from agent.workspace import PHASES, StreamEntry, Workspace
from common.atomic import append_jsonl
from curriculum.repo_io import save_repository
from tests.helpers import repo as make_repo

# Rows = steps, columns = processed repositories in processing order (cl-and-style.md §3.5 vector).
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
            "mrr": r10 / 3, "tactics": 10, "proof_rate": pr, "theorems": theorems, "tactic@1": pr,
            "tactic@8": r10 / 2, "tactic_steps": 10}


def _proof(step, repo, name, proved, checked_by, purpose="prove"):
    return {"theorem": name, "uid": f"F.lean:{name}:1:1", "repo": repo, "key": repo, "file_path": "F.lean",
            "proved": proved,
            "checked_by": checked_by if proved else None, "proof": ["intro x", "simp [x]"] if proved else [],
            "expansions": 7, "env_calls": 9, "generator_calls": 3, "seconds": 0.5, "step": step, "purpose": purpose}


@pytest.fixture
def workspace(tmp_path, sample_repos) -> Workspace:
    """4 repositories; steps 0..2 learned r2, r0, r3 (processing order); r1 not yet. The curriculum has
    been refreshed since to [r1, r3, r0, r2], which must not move any number."""
    ws = Workspace.open(tmp_path / "ws", create=True)
    state = ws.load_state()
    keys = [r.key for r in sample_repos]
    order = [keys[2], keys[0], keys[3], keys[1]]
    for r in sample_repos:
        save_repository(r, ws.repo_data_path(r.key))
        step = order.index(r.key) if r.key in order[:3] else None
        state.entries.append(StreamEntry(key=r.key, name=r.name, url=r.url, commit=r.commit, source="test",
                                         theorems=len(r.theorems), premises=r.num_premises, files=len(r.files),
                                         step=step, phases={p: "done" for p in PHASES} if step is not None else {}))
    state.next_step = 3
    state.curriculum = {"strategy": "leanagent", "order": [keys[1], keys[3], keys[0], keys[2]]}
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


def _processing_order(ws):
    return [e.key for e in ws.load_state().started()]


def test_matrices_follow_processing_order_not_the_curriculum(workspace):
    order = _processing_order(workspace)
    assert order != workspace.load_state().curriculum["order"][:3]
    run = read_matrices(workspace)
    assert run.repos == order
    assert run.matrices["recall@10"].tolist() == RECALL
    assert run.baselines["recall@10"].tolist() == RECALL_BASE
    assert run.matrices["proof_rate"][2, 2] != run.matrices["proof_rate"][2, 2]  # NaN: not evaluated


def test_workspace_metrics_hand_worked(workspace):
    m = workspace_metrics(workspace)
    assert m["steps"] == 3 and m["repos"] == _processing_order(workspace)
    r = m["recall@10"]  # cl-and-style §3.5: ACC .65, BWT -.075, FWT .10, F .075
    assert (r["acc"], r["bwt"], r["fwt"], r["forgetting"], r["plasticity"]) == \
        pytest.approx((0.65, -0.075, 0.10, 0.075, 0.70), abs=1e-9)
    assert m["tactic@8"]["acc"] == pytest.approx(0.65 / 2) and m["tactic@8"]["bwt"] == pytest.approx(-0.075 / 2)
    p = m["proof_rate"]
    assert p["acc"] == pytest.approx((0.5 + 0.25) / 2)               # missing A[2][2] skipped
    assert p["bwt"] == pytest.approx(((0.5 - 0.5) + (0.25 - 0.5)) / 2)
    assert p["fwt"] == pytest.approx(((0.0 - 0.0) + (0.0 - 0.0)) / 2)
    assert p["forgetting"] == pytest.approx((0.0 + (0.5 - 0.25)) / 2)  # j=0: max(.5,.25)-.5; j=1: max(0,.5)-.25
    assert p["plasticity"] == pytest.approx(0.5)                       # mean(.5, .5), third missing


def test_metrics_are_the_same_after_a_curriculum_refresh(run_cli, workspace):
    """Issue "Results you can trust" item 3: `curriculum --save` reorders only what is not yet started."""
    before = json.loads(run_cli("metrics", "--json", workspace=workspace.root).output)
    res = run_cli("curriculum", "--strategy", "dependency", "--save", workspace=workspace.root)
    assert res.exit_code == 0, res.output
    state = workspace.load_state()
    state.curriculum = dict(state.curriculum, order=list(reversed(state.curriculum["order"])))
    workspace.save_state(state)
    after = json.loads(run_cli("metrics", "--json", workspace=workspace.root).output)
    assert after == before and before["recall@10"]["acc"] == pytest.approx(0.65)


def test_metrics_command_without_file_reports_the_run(run_cli, workspace):
    res = run_cli("metrics", "--json", workspace=workspace.root)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out) == {"recall@10", "tactic@8", "proof_rate", "steps", "repos"}
    assert out == workspace_metrics(workspace)
    human = run_cli("metrics", workspace=workspace.root)
    assert human.exit_code == 0 and "-0.0750" in human.output


def test_empty_workspace_has_no_metrics(run_cli, tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    assert workspace_metrics(ws) == {"recall@10": None, "tactic@8": None, "proof_rate": None, "steps": 0,
                                     "repos": []}
    res = run_cli("report", "--json", workspace=ws.root)
    assert res.exit_code == 0, res.output
    assert Path(json.loads(res.output)["report"]).is_file()


def test_proofs_per_step_counts_the_loops_own_records_only(workspace):
    from agent.evaluation.matrices import loop_proof_records

    append_jsonl(workspace.proofs_path, _proof(None, "x", "adhoc.one", True, "replay", purpose="adhoc"))
    append_jsonl(workspace.proofs_path, _proof(0, "not-the-owner", "stray", True, "replay"))
    assert proofs_per_step(loop_proof_records(workspace)) == {
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
    # As `lifelean curriculum` counts: sorry is hard, the one unrated theorem goes to hard (thirds: 0, 0, 1).
    rows = difficulty_rows([a, b])
    pick = [{k: r[k] for k in ("easy", "medium", "hard", "sorry", "unrated", "theorems")} for r in rows]
    assert pick == [{"easy": 2, "medium": 1, "hard": 0, "sorry": 0, "unrated": 0, "theorems": 3},
                    {"easy": 0, "medium": 0, "hard": 4, "sorry": 1, "unrated": 1, "theorems": 4}]
    from curriculum.ordering import order_repositories

    cur = {r["name"]: r for r in order_repositories([a, b]).to_json()["repos"]}
    for r in rows:
        assert {k: r[k] for k in ("easy", "medium", "hard")} == {k: cur[r["name"]][k] for k in ("easy", "medium", "hard")}


def test_report_is_self_contained_and_matches_status(run_cli, workspace):
    res = run_cli("report", "--json", workspace=workspace.root)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    index = Path(out["report"])
    assert index == workspace.reports_dir / "index.html"
    page = index.read_text(encoding="utf-8")
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(uris) == len(out["plots"]) >= 6
    embedded_pngs = {base64.b64decode(u) for u in uris}
    for path in out["plots"]:
        assert Path(path).read_bytes() in embedded_pngs
        assert Path(path).read_bytes().startswith(b"\x89PNG")
        assert Path(path).stat().st_mode & 0o777 == 0o644
    assert index.stat().st_mode & 0o777 == 0o644
    assert not re.search(r"src=['\"](?!data:)", page)  # nothing loaded from outside the page
    embedded = json.loads(re.search(r"id='lifelean-metrics'>(.*?)</script>", page, re.S).group(1))
    status = json.loads(run_cli("status", "--json", workspace=workspace.root).output)
    assert embedded == status["metrics"] == workspace_metrics(workspace)
    assert f"<td class='n'>{json.dumps(embedded['recall@10']['bwt'])}</td>" in page  # the shown number
    assert "checked by Lean" in page and "checked by replay (recorded Lean trace)" in page
    assert "verified" not in page.lower()
    assert "a.one" in page and "a.&lt;three&gt;" not in page  # unproved not listed
    assert "c.eval" not in page  # evaluation results are not the loop's proofs
    assert "Mathlib/Data" in page  # difficulty table names the repositories


def test_status_prints_acc_bwt_and_fwt_with_their_intervals(run_cli, workspace):
    """The one-line metrics of `status` (and `run`) carry the same 95% intervals over repositories as
    `metrics`: a BWT of -0.02 from a handful of held-out tactics is read as noise, not as forgetting."""
    block = json.loads(run_cli("status", "--json", workspace=workspace.root).output)["metrics"]["recall@10"]
    out = " ".join(run_cli("status", workspace=workspace.root).output.split())
    low, high = block["ci95"]["bwt"]
    assert f"BWT {block['bwt']:+.4f} (95% {low:+.3f}..{high:+.3f})" in out
    low, high = block["ci95"]["acc"]
    assert f"acc {block['acc']:.4f} (95% {low:.3f}..{high:.3f})" in out


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


def test_report_answers_a_researchers_questions(run_cli, workspace):
    """Issue 14 item 4: settings and versions, loss, time per phase, baselines, n per column, intervals."""
    state = workspace.load_state()
    from agent.workspace import RunRecord

    state.run = RunRecord(options={"seed": 7, "learning": {"strategy": ["replay", "distill"]},
                                   "memory": {"encoder": "all-MiniLM-L6-v2"}, "prover": {"generator": "knn"}},
                          started_at="2025-01-01T00:00:00")
    workspace.save_state(state)
    key0 = _processing_order(workspace)[0]
    append_jsonl(workspace.metrics_path, {"kind": "learn", "step": 0, "repo": key0, "loss_first": 2.5,
                                          "loss_last": 1.25, "examples": 40, "batches": 3, "seconds": 2.0})
    res = run_cli("report", "--json", workspace=workspace.root)
    assert res.exit_code == 0, res.output
    page = Path(json.loads(res.output)["report"]).read_text(encoding="utf-8")
    for text in ("replay+distill", "all-MiniLM-L6-v2", "knn", "torch version", "transformers version",
                 "lifelean version"):
        assert text in page, text
    assert "<td class='n'>2.500</td><td class='n'>1.250</td>" in page          # the training loss
    assert "Time per phase" in page and "<td class='n'>3.0</td>" in page      # the learn timing record
    assert "BM25" in page and "untrained encoder" in page
    assert "ACC [95% CI]" in page and "resamples" in page
    assert "n=" in page                                                       # items under the columns
    assert "step it was learned" in page or "learned at that step" in page


def test_all_zero_matrix_is_one_line(run_cli, workspace):
    import numpy as np

    lines = workspace.metrics_path.read_bytes().split(b"\n")[:-1]       # drop the torn last line
    records = [json.loads(x) for x in lines if x.strip()]
    workspace.metrics_path.write_text("".join(
        json.dumps(dict(r, proof_rate=0.0) if r.get("kind") == "eval" else r) + "\n" for r in records))
    A = read_matrices(workspace).matrices["proof_rate"]
    assert not A[~np.isnan(A)].any()
    res = run_cli("report", "--json", workspace=workspace.root)
    assert res.exit_code == 0, res.output
    page = Path(json.loads(res.output)["report"]).read_text(encoding="utf-8")
    assert "proof-rate matrix</b>: all 9 evaluated cells are 0" in page
    assert "alt='proof-rate matrix'" not in page and "alt='Recall@10 matrix'" in page
