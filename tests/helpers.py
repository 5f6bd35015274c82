"""Builders of small hand-made Lean data for tests."""
from __future__ import annotations

import json
from pathlib import Path

from curriculum.lean_data import Pos, Premise, PremiseFile, Repository, Theorem, TracedTactic

URL = "https://example.org/lean/demo"
COMMIT = "a" * 40


def tactic(text: str, before: str = "⊢ p", after: str = "no goals") -> TracedTactic:
    return TracedTactic(text, text, (), before, after)


def theorem(name: str, steps: int | None, sorry: bool = False, file: str = "Demo/A.lean", split: str = "train") -> Theorem:
    tactics = tuple(tactic(f"step{i}") for i in range(steps or 0))
    if sorry:
        tactics = tactics + (tactic("sorry"),)
    return Theorem(URL, COMMIT, file, name, Pos(1, 1), Pos(2, 1), None, tactics, split)


def repo(name: str, step_counts: list[int | None], sorry: int = 0, deps: tuple[str, ...] = (),
         files: tuple[PremiseFile, ...] = ()) -> Repository:
    ths = [theorem(f"{name}.t{i}", s) for i, s in enumerate(step_counts)]
    ths += [theorem(f"{name}.s{i}", 1, sorry=True) for i in range(sorry)]
    return Repository(URL + "/" + name, COMMIT, name, None, tuple(ths), files, deps)


def premise_file(path: str, names: list[str], imports: list[str] | None) -> PremiseFile:
    return PremiseFile(path, tuple(imports) if imports is not None else None,
                       tuple(Premise(n, "", path, Pos(i + 1, 1), Pos(i + 1, 9)) for i, n in enumerate(names)))


def theorem_record(name: str = "Demo.t", steps: int = 1, file: str = "Demo/A.lean") -> dict:
    return {
        "url": URL, "commit": COMMIT, "file_path": file, "full_name": name, "start": [1, 1], "end": [3, 1],
        "traced_tactics": [
            {"tactic": f"simp [{name}_{i}]", "annotated_tactic": [f"simp [{name}_{i}]", []],
             "state_before": "⊢ True", "state_after": "no goals"} for i in range(steps)
        ],
    }


def write_jsonl_dataset(root: Path, records: list, corpus: list | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "theorems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    if corpus is not None:
        (root / "corpus.jsonl").write_text("".join(json.dumps(c) + "\n" for c in corpus), encoding="utf-8")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes: for byte-identical checks."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
