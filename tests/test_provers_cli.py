"""`lifelean prove` end to end on a workspace made by `lifelean add` from real traced data (Mathlib/Order)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.atomic import iter_jsonl_tolerant

DIR = "Mathlib/Order"


@pytest.fixture(scope="module")
def order_dataset(b4_sample, tmp_path_factory) -> Path:
    """The Mathlib/Order part of the shared sample as a LeanDojo export directory (small enough to embed fast)."""
    root = tmp_path_factory.mktemp("order")
    (root / "random").mkdir()
    files: set[str] = set()
    for split in ("train", "val", "test"):
        recs = [r for r in json.loads((b4_sample / "random" / f"{split}.json").read_text())
                if r["file_path"].startswith(DIR + "/")]
        for r in recs:
            files.update(a["def_path"] for t in r["traced_tactics"] for a in t["annotated_tactic"][1])
        (root / "random" / f"{split}.json").write_text(json.dumps(recs))
    lines = [ln for ln in (b4_sample / "corpus.jsonl").read_text().splitlines() if json.loads(ln)["path"] in files]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def workspace(order_dataset, tmp_path_factory, encoder):
    from click.testing import CliRunner

    from agent.cli import cli

    ws = tmp_path_factory.mktemp("ws") / "w"
    res = CliRunner().invoke(cli, ["-w", str(ws), "add", str(order_dataset), "--split-by-dir", "2", "--json"])
    assert res.exit_code == 0, res.output
    return ws


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def open_workspace(tmp_path_factory, encoder):
    """A workspace whose Demo/B has an open (sorry) theorem that replay can close (tests/trust_data.py)."""
    from click.testing import CliRunner

    from agent.cli import cli
    from tests import trust_data

    data = trust_data.build(tmp_path_factory.mktemp("demo") / "d")
    ws = tmp_path_factory.mktemp("ws") / "w"
    res = CliRunner().invoke(cli, ["-w", str(ws), "add", str(data), "--split-by-dir", "2", "--json"])
    assert res.exit_code == 0, res.output
    return ws


def test_prove_repo_attempts_open_theorems_checked_by_replay(run_cli, open_workspace):
    data = _json(run_cli("prove", "--repo", "Demo/B", "--json", workspace=open_workspace))
    (row,) = data["results"]
    assert row["theorem"] == "B.open" and row["proved"] and row["checked_by"] == "replay"
    assert row["split"] == "train" and "banked" in row["provenance"]
    recs = iter_jsonl_tolerant(open_workspace / "proofs.jsonl")
    for key in ("theorem", "uid", "repo", "file_path", "proved", "checked_by", "proof", "expansions", "env_calls",
                "generator_calls", "seconds", "step", "purpose"):
        assert key in recs[-1]
    assert recs[-1]["purpose"] == "adhoc" and recs[-1]["step"] is None
    items = _json(run_cli("memory", "list", "--repo", "Demo/B", "--json", workspace=open_workspace))
    assert {i["theorem"] for i in items if i["split"] == "found"} == {"B.open"}


def test_prove_with_no_open_theorems_says_so(run_cli, workspace):
    res = run_cli("prove", "--repo", DIR, workspace=workspace)
    assert res.exit_code == 2 and "no open (sorry) theorems" in res.output


def test_prove_refinds_bank_proofs(run_cli, workspace):
    from curriculum.lean_data import load_dataset, to_repositories

    repo = to_repositories(load_dataset(_dataset_of(workspace)), split_by_dir=2)[0]
    names = sorted({t.full_name for t in repo.theorems_in("train") if t.tactics and not t.is_sorry})
    data = _json(run_cli("prove", *names, "--repo", DIR, "--json", workspace=workspace))
    s = data["summary"]
    assert s["attempted"] == len(names) and s["proved"] >= 0.9 * len(names)
    assert s["checked_by"] == ["replay"]
    text = run_cli("prove", names[0], workspace=workspace).output
    assert "checked by replay of the recorded Lean trace" in text and "verified by Lean" not in text


def _dataset_of(workspace: Path) -> Path:
    state = json.loads((workspace / "state.json").read_text())
    return Path(state["sources"][0]["source"])


def test_prove_errors_name_what_is_wrong(run_cli, workspace):
    res = run_cli("prove", "No.such_theorem", "Nor.this", workspace=workspace)
    assert res.exit_code == 2 and "No.such_theorem" in res.output and "Nor.this" in res.output
    res = run_cli("prove", "--repo", "Mathlib/Nope", workspace=workspace)
    assert res.exit_code == 2 and "Mathlib/Order" in res.output


def test_export_refuses_replay_only_proofs(run_cli, open_workspace, tmp_path):
    data = _json(run_cli("prove", "--repo", "Demo/B", "--json", "--export", str(tmp_path / "patches"),
                         workspace=open_workspace))
    assert data["results"][0]["proved"]          # the sorry theorem was proved, by replay only
    assert data["export"][0].startswith("export: 1 sorry proof(s) were only checked by replay")
    assert data["export"][-1] == "export: no Lean-checked proofs of sorry theorems to export"
    assert not (tmp_path / "patches").exists()
