"""`lifelean evaluate SOURCE` scores the workspace's tactic generator (issue 10, item 5): tactic@1 / tactic@8 of
`knn` (the workspace's memory bank, learned repositories only) and `hf` (the configured model, or the newest
fine-tuned checkpoint), next to the retrieval scores, without writing a byte to the workspace.

The workspace is a real run of the loop on `tests/trust_data.py`'s tiny export, whose held-out steps have states
the traced train steps recorded; a second export keeps those states but records tactics nobody has seen."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests import loop_fixtures as lf
from tests import trust_data

CONFIG = lf.FAST_CONFIG.replace("max_expansions = 6", "max_expansions = 6\nreplay_scope = 'repository'")


def _tree_hash(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def evaluate(ws: Path, source: Path, *args: str, as_json: bool = True) -> dict | str:
    """`lifelean -w WS evaluate SOURCE --split-by-dir 2 ARGS` in this process (the encoder is loaded once)."""
    from click.testing import CliRunner

    from agent.cli import cli

    argv = ["-w", str(ws), "evaluate", str(source), "--split-by-dir", "2", *args] + (["--json"] if as_json else [])
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if as_json else result.stdout


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return trust_data.build(tmp_path_factory.mktemp("tactics") / "demo")


@pytest.fixture(scope="module")
def unknown(tmp_path_factory) -> Path:
    """The same export, but every held-out step records a tactic that no train step uses (same states)."""
    dest = trust_data.build(tmp_path_factory.mktemp("tactics") / "unknown")
    for split in ("val", "test"):
        path = dest / "random" / f"{split}.json"
        records = json.loads(path.read_text())
        for i, rec in enumerate(records):
            for tac in rec["traced_tactics"]:
                tac["tactic"] = f"exact never_seen_{i}"
                tac["annotated_tactic"][0] = f"exact never_seen_{i}"
        path.write_text(json.dumps(records))
    return dest


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    return lf.run_to_end(tmp_path_factory.mktemp("tactics-ws") / "ws", data, CONFIG)


def test_knn_tactic_accuracy_counts_held_out_steps_whose_tactic_the_bank_holds(finished, data):
    before = _tree_hash(finished)
    out = evaluate(finished, data)
    g = out["generator"]
    assert g["generator"] == "knn" and g["available"] and g["bank_repos"] == 2 and out["steps"] == 2
    # B.held_out (GOAL -> TACTIC) and A.held_out (bar0 -> rw [bar0_eq]): train steps of both are in the bank
    assert g["tactic_steps"] == 2
    assert g["tactic@8"] == 1.0 and g["tactic@1"] >= 0.5
    assert out["retriever"]["tactics"] == 2          # the retrieval scores are still there
    everything = evaluate(finished, data, "--split", "all", "--no-tactics")
    for metric in ("recall@10", "mrr"):              # the learned retriever's gain, paired tactic by tactic
        gain = everything["gain_over_untrained"][metric]
        assert gain["value"] == pytest.approx(everything["retriever"][metric] - everything["untrained"][metric])
        assert gain["n"] == everything["retriever"]["tactics"] > 2 and gain["low"] <= gain["value"] <= gain["high"]
    val = evaluate(finished, data, "--split", "val")["generator"]
    assert val["tactic_steps"] == 1 and val["tactic@8"] == 1.0
    assert _tree_hash(finished) == before            # read-only: bank, store, checkpoints, logs untouched


def test_knn_cannot_suggest_a_tactic_the_bank_never_saw(finished, unknown):
    out = evaluate(finished, unknown)
    g = out["generator"]
    assert g["available"] and g["tactic_steps"] == 2
    assert g["tactic@1"] == 0.0 and g["tactic@8"] == 0.0
    assert out["retriever"]["tactics"] == 2


def test_text_output_shows_the_generator_next_to_the_retriever(finished, data):
    text = " ".join(evaluate(finished, data, as_json=False).split())
    assert "retriever 1.000 1.000 1.000" in text
    assert "generator knn (memory bank of 2 learned repositories)" in text
    assert "tactic@8 1.000 on 2 tactic steps" in text


def test_before_anything_is_learned_the_bank_proposes_nothing(data, tmp_path):
    """The bank holds the train steps from `add`, but the generator may use learned repositories only."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "lifelean.toml").write_text(CONFIG)
    lf.run(ws, "add", str(data), "--split-by-dir", "2")
    g = evaluate(ws, data)["generator"]
    assert g["available"] and g["bank_repos"] == 0 and g["tactic_steps"] == 2 and g["tactic@8"] == 0.0


def test_without_a_workspace_tactic_scores_are_unavailable(data, tmp_path):
    ws = tmp_path / "none"
    out = evaluate(ws, data)
    g = out["generator"]
    assert g["available"] is False and "no workspace" in g["reason"]
    assert g["tactic@1"] is None and g["tactic@8"] is None and g["tactic_steps"] == 0
    assert out["retriever"]["tactics"] == 2 and out["steps"] == 0
    assert "tactic accuracy unavailable" in " ".join(evaluate(ws, data, as_json=False).split())
    assert not ws.exists()


def test_no_tactics_skips_the_generator(finished, data):
    g = evaluate(finished, data, "--no-tactics")["generator"]
    assert g["available"] is False and g["tactic@8"] is None and "--no-tactics" in g["reason"]


@pytest.fixture(scope="module")
def tiny_models(data, tmp_path_factory) -> tuple[Path, Path]:
    """(an untrained tiny byte-level LLaMA, the same model fitted on the export's train steps, state -> tactic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curriculum.lean_data import load_dataset, to_repositories
    from provers.generators.tiny import build_tiny_model, fit

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny")
    base = build_tiny_model(root / "base", kind="llama", d_model=64, layers=2, heads=4, seed=0)
    model, tok = AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    repos = to_repositories(load_dataset(data), split_by_dir=2)
    pairs = [(t.state_before, t.tactic) for r in repos for th in r.theorems_in("train") if not th.is_sorry
             for t in th.tactics]
    fit(model, tok, pairs, seq2seq=False, epochs=60, lr=3e-3, batch_size=16, seed=0)
    trained = root / "trained"
    model.save_pretrained(trained)
    tok.save_pretrained(trained)
    return base, trained


def test_hf_scores_the_newest_fine_tuned_generator(finished, data, unknown, tiny_models, tmp_path):
    base, trained = tiny_models
    ws = tmp_path / "ws"
    shutil.copytree(finished, ws)
    (ws / "lifelean.toml").write_text(
        CONFIG.replace("[prover]\n", f"[prover]\ngenerator = 'hf'\nmodel = '{base}'\nprompt = 'state'\n")
        .replace("[learning]\n", "[learning]\ntrain_generator = true\n"))
    first = evaluate(ws, data)["generator"]          # no generator checkpoint yet: the configured model
    assert first["available"] and first["model"] == str(base) and first["fine_tuned"] is False
    assert first["tactic_steps"] == 2 and first["tactic@8"] == 0.0
    ckpt = ws / "checkpoints" / "generator" / "0001"
    ckpt.mkdir(parents=True)
    (ckpt / "meta.json").write_text(json.dumps({"step": 1}))
    shutil.copytree(trained, ckpt / "prover")
    before = _tree_hash(ws)
    tuned = evaluate(ws, data)["generator"]
    assert tuned["model"] == str(ckpt / "prover") and tuned["fine_tuned"] is True
    assert tuned["tactic@8"] == 1.0 and tuned["tactic@1"] >= 0.5
    assert evaluate(ws, unknown)["generator"]["tactic@8"] == 0.0
    assert _tree_hash(ws) == before


def test_hf_without_a_model_is_unavailable(finished, data, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(finished, ws)
    (ws / "lifelean.toml").write_text(CONFIG.replace("[prover]\n", "[prover]\ngenerator = 'hf'\n"))
    g = evaluate(ws, data)["generator"]
    assert g["generator"] == "hf" and g["available"] is False and "model" in g["reason"]
