"""`--export`: a patch per Lean file that replaces `sorry` by the proof, bottom-up, both `by sorry` layouts."""
from __future__ import annotations

import subprocess

import pytest

from common.errors import InputError
from curriculum.lean_data import Pos, Theorem, TracedTactic
from provers.export import export_patches, replace_sorry

SOURCE = """import Mathlib

theorem one (p q : Prop) (hp : p) (hq : q) : p ∧ q := by sorry

theorem two (n : Nat) : n + 0 = n := by
  sorry

theorem three : True := trivial
"""


def _thm(name: str, start: int, end: int) -> Theorem:
    end_col = len(SOURCE.splitlines()[end - 1]) + 1
    return Theorem("/src", "c" * 40, "Demo/A.lean", name, Pos(start, 1), Pos(end, end_col),
                   None, (TracedTactic("sorry", "sorry", (), "⊢ p", "no goals"),), None)


def test_replace_sorry_in_both_layouts():
    out = replace_sorry(SOURCE, _thm("two", 5, 6), ["simp"])
    assert "n + 0 = n := by\n  simp\n" in out and out.count("sorry") == 1
    out = replace_sorry(out, _thm("one", 3, 3), ["constructor", "· exact hp\n· exact hq"])
    assert "p ∧ q := by\n  constructor\n  · exact hp\n  · exact hq\n" in out and "sorry" not in out
    with pytest.raises(InputError, match="no `sorry`"):
        replace_sorry(SOURCE, _thm("three", 8, 8), ["trivial"])


def test_export_writes_an_applicable_patch(tmp_path):
    src = tmp_path / "src"
    (src / "Demo").mkdir(parents=True)
    (src / "Demo" / "A.lean").write_text(SOURCE)
    patches = export_patches([(_thm("one", 3, 3), ["exact ⟨hp, hq⟩"]), (_thm("two", 5, 6), ["simp"])], src,
                             tmp_path / "out")
    assert len(patches) == 1 and patches[0].path.name == "Demo__A.lean.patch"
    diff = patches[0].path.read_text()
    assert diff.startswith("--- a/Demo/A.lean\n+++ b/Demo/A.lean")
    work = tmp_path / "apply"
    (work / "Demo").mkdir(parents=True)
    (work / "Demo" / "A.lean").write_text(SOURCE)
    subprocess.run(["git", "apply", str(patches[0].path)], cwd=work, check=True)
    patched = (work / "Demo" / "A.lean").read_text()
    assert "sorry" not in patched and "exact ⟨hp, hq⟩" in patched and "  simp\n" in patched
    with pytest.raises(InputError, match="Lean source not found"):
        export_patches([(_thm("one", 3, 3), ["simp"])], tmp_path / "nowhere", tmp_path / "out2")
