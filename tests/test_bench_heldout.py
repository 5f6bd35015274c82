"""bench/heldout.py's folds: disjoint samples of the same benchmark that the real loaders read, each with the
premises its own tactics name, as the held-out set the retriever's goal is checked on was built."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.evaluation.retrieval import eval_tactics
from agent.learn.retriever import Corpus
from bench.heldout import SPLITS, named_premises, write_folds
from curriculum.lean_data import load_dataset, to_repositories


def _records(root: Path) -> dict[str, list[dict]]:
    return {split: json.loads((root / "random" / f"{split}.json").read_text()) for split in SPLITS}


def test_folds_partition_the_sample_and_keep_each_record_and_its_split(b4_sample: Path, tmp_path: Path):
    folds = write_folds(b4_sample, 2, tmp_path)
    sample = _records(b4_sample)
    for split in SPLITS:
        parts = [_records(fold)[split] for fold in folds]
        names = [{t["full_name"] for t in part} for part in parts]
        assert not names[0] & names[1]
        assert sorted(t["full_name"] for part in parts for t in part) == sorted(t["full_name"] for t in sample[split])
        # records are the sample's, unedited
        assert {json.dumps(t, sort_keys=True) for part in parts for t in part} == \
            {json.dumps(t, sort_keys=True) for t in sample[split]}
    sizes = [sum(len(v) for v in _records(fold).values()) for fold in folds]
    assert min(sizes) > 0.4 * sum(sizes)   # a hash split, not everything in one fold


def test_another_partition_is_another_split_of_the_same_theorems(b4_sample: Path, tmp_path: Path):
    """`--partition 1` salts the hash: a different random halving, still a partition of the sample."""
    first = [{t["full_name"] for t in _records(f)["train"]} for f in write_folds(b4_sample, 2, tmp_path / "p0")]
    second = [{t["full_name"] for t in _records(f)["train"]}
              for f in write_folds(b4_sample, 2, tmp_path / "p1", partition=1)]
    assert first[0] | first[1] == second[0] | second[1]
    assert not second[0] & second[1]
    overlap = len(first[0] & second[0]) / len(first[0])
    assert 0.3 < overlap < 0.7    # about half of one fold lands in each fold of the other partition


def test_each_fold_has_exactly_the_premises_its_tactics_name_and_loads(b4_sample: Path, tmp_path: Path):
    sample_premises = {(json.loads(line)["path"], p["full_name"])
                       for line in (b4_sample / "corpus.jsonl").read_text().splitlines()
                       for p in json.loads(line)["premises"]}
    for fold in write_folds(b4_sample, 2, tmp_path):
        records = [t for part in _records(fold).values() for t in part]
        corpus = {(json.loads(line)["path"], p["full_name"])
                  for line in (fold / "corpus.jsonl").read_text().splitlines() for p in json.loads(line)["premises"]}
        assert corpus == named_premises(records) & sample_premises
        repos = to_repositories(load_dataset(fold))
        theorems = [t for r in repos for t in r.theorems]
        assert len(theorems) == len(records)
        assert eval_tactics(theorems, set(Corpus.from_repositories(repos).names))   # steps to score


@pytest.mark.slow
def test_the_forgetting_bench_scores_an_unseen_export_as_evaluate_does(b4_sample: Path, tmp_path: Path, run_cli):
    """`bench/forgetting.py --unseen FOLD`'s figure for an encoder is `lifelean evaluate FOLD --split all`'s:
    the same tactics, the same corpus, the same rerank."""
    from bench.forgetting import Unseen, unseen_corpus
    from memory.embedder import Encoder

    fold = write_folds(b4_sample, 4, tmp_path / "folds")[0]
    result = run_cli("evaluate", str(fold), "--split", "all", "--no-tactics", "--json", workspace=tmp_path / "none")
    assert result.exit_code == 0, result.output
    untrained = json.loads(result.output)["untrained"]
    encoder = Encoder.load(max_length=256)
    bench = Unseen(str(fold), unseen_corpus(fold, encoder), "theorem", "bm25").scores(encoder)
    assert bench["tactics"] == untrained["tactics"] > 50
    for metric in ("recall@1", "recall@10", "mrr"):
        assert bench[metric] == pytest.approx(untrained[metric], abs=1e-6)
