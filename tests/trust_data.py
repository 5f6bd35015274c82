"""A tiny LeanDojo export where the loop really finds a proof: two repositories (`Demo/A`, `Demo/B`), each with
train theorems whose traced steps name premises, held-out val/test theorems, and in `Demo/B` an open (sorry)
theorem whose goal is a state the trace recorded, so the knn generator (from the bank) proposes the recorded
tactic and replay accepts it."""
from __future__ import annotations

import json
from pathlib import Path

URL = "https://example.org/demo"
COMMIT = "1" * 40
GOAL = "x : Nat\n⊢ foo x = x"
TACTIC = "simp [foo_eq]"


def _tactic(state: str, tactic: str, premises: list[str], after: str = "no goals") -> dict:
    annotated = tactic
    for p in premises:
        annotated = annotated.replace(p.rsplit(".", 1)[-1], f"<a>{p.rsplit('.', 1)[-1]}</a>", 1)
    return {"tactic": tactic, "annotated_tactic": [annotated, [
        {"full_name": p, "def_path": "Demo/Basic.lean", "def_pos": [1, 1], "def_end_pos": [1, 5]} for p in premises]],
        "state_before": state, "state_after": after}


def _theorem(path: str, name: str, line: int, tactics: list[dict], commit: str) -> dict:
    return {"url": URL, "commit": commit, "file_path": path, "full_name": name, "start": [line, 1],
            "end": [line + 2, 10], "traced_tactics": tactics}


def build(dest: Path, commit: str = COMMIT, extra_a: int = 0) -> Path:
    """Write the export under `dest`; `extra_a` adds that many train theorems to Demo/A (a changed commit)."""
    a, b = "Demo/A/Basic.lean", "Demo/B/Basic.lean"
    train, val, test = [], [], []
    for i in range(4):
        train.append(_theorem(a, f"A.t{i}", 10 * i + 1, [_tactic(f"n : Nat\n⊢ bar{i} n = n", f"rw [bar{i}_eq]",
                                                               [f"A.bar{i}_eq"])], commit))
        train.append(_theorem(b, f"B.t{i}", 10 * i + 1, [_tactic(f"m : Nat\n⊢ baz{i} m = m", f"rw [baz{i}_eq]",
                                                               [f"B.baz{i}_eq"])], commit))
    for i in range(extra_a):
        train.append(_theorem(a, f"A.extra{i}", 500 + 10 * i, [_tactic(f"k : Nat\n⊢ qux{i} k = k",
                                                                       f"rw [bar0_eq]", ["A.bar0_eq"])], commit))
    train.append(_theorem(b, "B.same_goal", 100, [_tactic(GOAL, TACTIC, ["B.foo_eq"])], commit))
    train.append(_theorem(a, "A.same_goal", 100, [_tactic(GOAL, TACTIC, ["B.foo_eq"])], commit))
    test.append(_theorem(b, "B.held_out", 200, [_tactic(GOAL, TACTIC, ["B.foo_eq"])], commit))
    test.append(_theorem(a, "A.held_out", 200, [_tactic("n : Nat\n⊢ bar0 n = n", "rw [bar0_eq]", ["A.bar0_eq"])],
                         commit))
    val.append(_theorem(a, "A.val", 300, [_tactic("n : Nat\n⊢ bar1 n = n", "rw [bar1_eq]", ["A.bar1_eq"])], commit))
    train.append(_theorem(b, "B.open", 400, [_tactic(GOAL, "sorry", [])], commit))
    (dest / "random").mkdir(parents=True, exist_ok=True)
    for split, recs in (("train", train), ("val", val), ("test", test)):
        (dest / "random" / f"{split}.json").write_text(json.dumps(recs), encoding="utf-8")
    premises = {a: [f"A.bar{i}_eq" for i in range(4)], b: [f"B.baz{i}_eq" for i in range(4)] + ["B.foo_eq"]}
    with open(dest / "corpus.jsonl", "w", encoding="utf-8") as f:
        for path, names in premises.items():
            f.write(json.dumps({"path": path, "imports": [], "premises": [
                {"full_name": n, "code": f"theorem {n} : True", "start": [k + 1, 1], "end": [k + 1, 9],
                 "kind": "commands"} for k, n in enumerate(names)]}) + "\n")
    return dest
