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
    checked = []
    patches = export_patches([(_thm("one", 3, 3), ["exact ⟨hp, hq⟩"]), (_thm("two", 5, 6), ["simp"])], src,
                             tmp_path / "out", check=lambda t, p: checked.append((t.full_name, list(p))))
    assert checked == [("one", ["exact ⟨hp, hq⟩"]), ("two", ["simp"])]     # every proof re-checked first
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
        export_patches([(_thm("one", 3, 3), ["simp"])], tmp_path / "nowhere", tmp_path / "out2", check=_accept)


def _accept(thm, proof):
    return None


def _at(thm: Theorem, file_path: str) -> Theorem:
    return Theorem(thm.url, thm.commit, file_path, thm.full_name, thm.start, thm.end, None, thm.tactics, None)


def test_export_refuses_a_proof_that_fails_the_recheck(tmp_path):
    src = tmp_path / "src"
    (src / "Demo").mkdir(parents=True)
    (src / "Demo" / "A.lean").write_text(SOURCE)
    with pytest.raises(InputError, match="re-check by Lean failed"):
        export_patches([(_thm("one", 3, 3), ["simp"])], src, tmp_path / "out", check=lambda t, p: "type mismatch")
    assert not (tmp_path / "out").exists()


def test_export_without_lean_is_one_line(tmp_path):
    src = tmp_path / "src"
    (src / "Demo").mkdir(parents=True)
    (src / "Demo" / "A.lean").write_text(SOURCE)
    with pytest.raises(InputError) as err:
        export_patches([(_thm("one", 3, 3), ["simp"])], src, tmp_path / "out")   # default: Lean re-checks
    assert "re-check" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("bad", ["/etc/passwd.lean", "../outside/A.lean", "Demo/../../x.lean"])
def test_export_stays_inside_the_checkout(tmp_path, bad):
    src = tmp_path / "src"
    (src / "Demo").mkdir(parents=True)
    with pytest.raises(InputError, match="outside the checkout"):
        export_patches([(_at(_thm("one", 3, 3), bad), ["simp"])], src, tmp_path / "out", check=_accept)


def test_export_refuses_symlinks_leaving_the_checkout(tmp_path):
    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    src.mkdir()
    (elsewhere / "Demo").mkdir(parents=True)
    (elsewhere / "Demo" / "A.lean").write_text(SOURCE)
    (src / "Demo").symlink_to(elsewhere / "Demo")
    with pytest.raises(InputError, match="outside the checkout"):
        export_patches([(_thm("one", 3, 3), ["simp"])], src, tmp_path / "out", check=_accept)
