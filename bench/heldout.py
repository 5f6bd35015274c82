"""Held-out theorems of the same kind: the issue's check, reproduced on halves of the shared sample.

The retriever's goal is stated on theorems lifelean never saw: `lifelean run --seed 1` on one LeanDojo export,
then `lifelean evaluate OTHER --split all` on another export of the same benchmark (its own theorems, its own
premises). The sample's val/test splits are a weak stand-in for that: they share their repositories, files and
premises with the training theorems. This bench builds the real thing from the sample alone:

* every theorem goes to one of `--folds` folds by the sha1 of its full name (deterministic, unrelated to its
  file, as a random sample of the same benchmark would be), keeping its train/val/test split;
* each fold is written as its own LeanDojo export under a temporary directory: its theorems, and as its corpus
  the premises its annotated tactics name (how the shared sample's corpus was built; see its SOURCE.md);
* for each fold, a real `lifelean run --seed 1 FOLD` (default settings, one subprocess, a fresh workspace),
  then `lifelean evaluate OTHER --split all --json` on every other fold.

Printed: Recall@10 / MRR of the trained retriever, the same encoder without the BM25 rerank (`dense`), the
untrained encoder and BM25 alone on each unseen fold, their mean over the folds, the trained retriever's ratio
to the untrained one with the paired interval of their difference, the `knn` generator's tactic@8, and each
run's wall time and peak resident memory. Nothing here is tuned: it measures the defaults. The two runs took
4 min on 2 cores, the whole bench 5.5 min (docs/design-notes.md, 30).

    .venv/bin/python bench/heldout.py [--data DIR] [--folds 2] [--partition 0] [--seed 1] [--json FILE] [--keep]
    .venv/bin/python bench/heldout.py --partition 1 --write DIR   # only write the folds, for bench/forgetting.py
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test")
ROWS = ("retriever", "dense", "untrained", "bm25")


def fold_of(full_name: str, folds: int, partition: int = 0) -> int:
    """A theorem's fold: a hash of its name, so that folds mix files and repositories like a random sample.
    `partition` > 0 salts the hash: another random partition of the same theorems, for a second estimate."""
    key = f"{partition}:{full_name}" if partition else full_name
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % folds


def named_premises(theorems: list[dict]) -> set[tuple[str, str]]:
    """(file, full name) of every premise the theorems' annotated tactics name."""
    out: set[tuple[str, str]] = set()
    for theorem in theorems:
        for step in theorem.get("traced_tactics") or []:
            for premise in step["annotated_tactic"][1]:
                out.add((premise["def_path"], premise["full_name"]))
    return out


def write_folds(data: Path, folds: int, out: Path, partition: int = 0) -> list[Path]:
    """Write one LeanDojo export per fold under `out` (`fold_of`'s partition); the records are copied verbatim."""
    splits = {split: json.loads((data / "random" / f"{split}.json").read_text()) for split in SPLITS}
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").read_text().splitlines() if line.strip()]
    dirs = []
    for fold in range(folds):
        target = out / f"fold{fold}"
        (target / "random").mkdir(parents=True)
        mine = {split: [t for t in theorems if fold_of(t["full_name"], folds, partition) == fold]
                for split, theorems in splits.items()}
        for split, theorems in mine.items():
            (target / "random" / f"{split}.json").write_text(json.dumps(theorems))
        used = named_premises([t for theorems in mine.values() for t in theorems])
        with (target / "corpus.jsonl").open("w") as handle:
            for entry in corpus:
                premises = [p for p in entry["premises"] if (entry["path"], p["full_name"]) in used]
                if premises:
                    handle.write(json.dumps({**entry, "premises": premises}) + "\n")
        dirs.append(target)
    return dirs


def lifelean(ws: Path, *args: str) -> tuple[dict, float, float]:
    """Run one lifelean command as a subprocess; return its JSON, wall seconds and peak RSS in GiB."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "-w", str(ws), *args, "--json"], cwd=ROOT,
                                env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"lifelean {' '.join(args)} failed:\n{err.read()[-3000:]}")
        return json.loads(out.read()), wall, usage.ru_maxrss / 2**20


def counts(fold: Path) -> tuple[int, int, int]:
    """Theorems, premise-naming tactic steps and premises of one fold."""
    theorems = [t for split in SPLITS for t in json.loads((fold / "random" / f"{split}.json").read_text())]
    naming = sum(1 for t in theorems for s in t.get("traced_tactics") or [] if s["annotated_tactic"][1])
    premises = sum(len(json.loads(line)["premises"]) for line in (fold / "corpus.jsonl").read_text().splitlines())
    return len(theorems), naming, premises


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "leandojo_b4_sample"))
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partition", type=int, default=0, help="which random partition into folds (0: the one "
                        "design note 30 reports; 1, 2, ...: others, each as random, for more estimates)")
    parser.add_argument("--write", metavar="DIR", help="only write the folds under DIR (for bench/forgetting.py "
                        "--data FOLD --unseen OTHER) and stop")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the folds and workspaces and print where")
    args = parser.parse_args()
    if args.folds < 2:
        sys.exit(f"--folds {args.folds}: expected at least 2 (one to learn, one to evaluate)")
    if args.partition < 0:
        sys.exit(f"--partition {args.partition}: expected 0 or more")
    if args.write:
        if Path(args.write).exists() and any(Path(args.write).iterdir()):
            sys.exit(f"--write {args.write}: expected a new or empty directory")
        for fold in write_folds(Path(args.data), args.folds, Path(args.write), args.partition):
            theorems, naming, premises = counts(fold)
            print(f"{fold}: {theorems} theorems, {naming} premise-naming steps, {premises} premises")
        return
    tmp = Path(tempfile.mkdtemp(prefix="lifelean-heldout-"))
    try:
        folds = write_folds(Path(args.data), args.folds, tmp, args.partition)
        for i, fold in enumerate(folds):
            theorems, naming, premises = counts(fold)
            print(f"fold {i}: {theorems} theorems, {naming} premise-naming steps, {premises} premises")
        results = []
        for i, fold in enumerate(folds):
            ws = tmp / f"ws{i}"
            _, wall, peak = lifelean(ws, "run", str(fold), "--seed", str(args.seed))
            print(f"run on fold {i}: {wall:.0f} s, peak RSS {peak:.2f} GiB")
            for j, other in enumerate(folds):
                if j != i:
                    scores, _, _ = lifelean(ws, "evaluate", str(other), "--split", "all")
                    results.append({"learned": i, "unseen": j, "run_s": wall, "run_peak_gib": peak, **scores})
        print_table(results)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(results, indent=1))
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def print_table(results: list[dict]) -> None:
    print(f"\n{'learned -> unseen':<18}" + "".join(f"{row + ' R@10 / MRR':>24}" for row in ROWS)
          + f"{'knn tactic@8':>14}")
    for r in results:
        cells = "".join(f"{r[row]['recall@10']:>15.3f} / {r[row]['mrr']:.3f}" for row in ROWS)
        print(f"{r['learned']} -> {r['unseen']:<13}{cells}{r['generator']['tactic@8']:>14.3f}")
    mean = {row: {m: statistics.mean(r[row][m] for r in results) for m in ("recall@10", "mrr")} for row in ROWS}
    cells = "".join(f"{mean[row]['recall@10']:>15.3f} / {mean[row]['mrr']:.3f}" for row in ROWS)
    tactic = statistics.mean(r["generator"]["tactic@8"] for r in results)
    print(f"{'mean':<18}{cells}{tactic:>14.3f}")
    print(f"\ntrained / untrained: Recall@10 {mean['retriever']['recall@10'] / mean['untrained']['recall@10']:.3f}x, "
          f"MRR {mean['retriever']['mrr'] / mean['untrained']['mrr']:.3f}x")
    print("retriever - untrained, paired over each unseen fold's tactics (95% bootstrap interval):")
    for r in results:
        gain = r["gain_over_untrained"]
        print(f"  {r['learned']} -> {r['unseen']}: " + ", ".join(
            f"{label} {gain[m]['value']:+.3f} ({gain[m]['low']:+.3f}..{gain[m]['high']:+.3f})"
            for label, m in (("Recall@10", "recall@10"), ("MRR", "mrr"))))


if __name__ == "__main__":
    main()
