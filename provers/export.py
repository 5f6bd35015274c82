"""Patches that put found proofs in place of `sorry` (LeanAgent opened pull requests with such proofs).

Only proofs checked by Lean are exported: a replay-checked proof was never run by Lean on the sorry theorem, and
every proof is checked again, whole, by Lean before its patch is written (`check`, by default
:func:`provers.env.check_whole_proof`). Replacements are applied bottom-up within a file so earlier positions
stay valid; one unified diff per file. A theorem's `file_path` comes from data, so it is only ever resolved
inside the checkout it belongs to: absolute paths, `..` and symlinks that leave the checkout are refused.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from common.atomic import atomic_write_text
from common.errors import InputError
from curriculum.lean_data import Theorem

_SORRY = re.compile(r"\bsorry\b")


@dataclass(frozen=True)
class Patch:
    file_path: str
    theorems: tuple[str, ...]
    diff: str
    path: Path


def _offset(lines: list[str], line: int, col: int) -> int:
    """Character offset of a 1-based (line, column) position."""
    return sum(len(x) for x in lines[: line - 1]) + col - 1


def replace_sorry(source: str, theorem: Theorem, proof: Sequence[str]) -> str:
    """`source` with the first `sorry` inside `theorem`'s span replaced by the tactic block `proof`."""
    lines = source.splitlines(keepends=True)
    if theorem.end.line > len(lines):
        raise InputError(f"{theorem.file_path}: {theorem.full_name} ends at line {theorem.end.line}, "
                         f"beyond the file's {len(lines)} lines; is the source at the traced commit?")
    begin = _offset(lines, theorem.start.line, theorem.start.col)
    end = _offset(lines, theorem.end.line, theorem.end.col)
    match = _SORRY.search(source, begin, max(end, begin + 1) + len("sorry"))
    if match is None:
        raise InputError(f"{theorem.file_path}: no `sorry` inside {theorem.full_name} "
                         f"(lines {theorem.start.line}-{theorem.end.line})")
    line_start = source.rfind("\n", 0, match.start()) + 1
    prefix = source[line_start:match.start()]
    if prefix.strip():                              # `... := by sorry`: open a block one level deeper
        indent = " " * (len(prefix) - len(prefix.lstrip()) + 2)
        lead = "\n" + indent
    else:                                           # `sorry` alone on its line: keep its indentation
        indent, lead = prefix, ""
    body = ("\n" + indent).join(t.replace("\n", "\n" + indent) for t in proof)
    head = source[:match.start()].rstrip(" \t") if lead else source[:match.start()]
    return head + lead + body + source[match.end():]


ProofCheck = Callable[[Theorem, Sequence[str]], "str | None"]   # None = Lean accepted the whole proof


def inside_checkout(source_root: Path, file_path: str) -> Path:
    """`source_root / file_path`, refusing anything that is not a relative path inside the checkout."""
    rel = Path(file_path)
    if not file_path or rel.is_absolute() or ".." in rel.parts:
        raise InputError(f"{file_path!r}: refusing to export outside the checkout (absolute or '..' path)")
    root = Path(source_root).resolve()
    target = (root / rel).resolve()
    if not target.is_relative_to(root):
        raise InputError(f"{file_path!r}: refusing to export: it resolves to {target}, outside the checkout {root} "
                         "(a symlink?)")
    return target


def _lean_check(backend: str, source_root: Path) -> ProofCheck:
    from provers.env import check_whole_proof

    return lambda thm, proof: check_whole_proof(thm, proof, backend=backend, repo_path=str(source_root))


def export_patches(proofs: Sequence[tuple[Theorem, Sequence[str]]], source_root: Path, out_dir: Path,
                   check: ProofCheck | None = None, backend: str = "auto") -> list[Patch]:
    """Write `out_dir/<file>.patch` per Lean file; `proofs` = (sorry theorem, Lean-checked tactics).

    Every proof is re-checked first (`check`, default: Lean through `backend`); one that fails stops the
    export with a one-line error naming it, before anything is written.
    """
    check = check or _lean_check(backend, Path(source_root))
    by_file: dict[str, list[tuple[Theorem, Sequence[str]]]] = {}
    for thm, proof in proofs:
        inside_checkout(Path(source_root), thm.file_path)
        by_file.setdefault(thm.file_path, []).append((thm, proof))
    for thm, proof in proofs:
        reason = check(thm, proof)
        if reason is not None:
            raise InputError(f"{thm.full_name}: not exported: the re-check by Lean failed ({reason})")
    patches = []
    for file_path, items in sorted(by_file.items()):
        src_path = inside_checkout(Path(source_root), file_path)
        if not src_path.is_file():
            raise InputError(f"{src_path}: Lean source not found; give --source, a checkout at the traced commit")
        original = src_path.read_text(encoding="utf-8")
        patched = original
        for thm, proof in sorted(items, key=lambda tp: (tp[0].start.line, tp[0].start.col), reverse=True):
            patched = replace_sorry(patched, thm, proof)
        diff = "".join(difflib.unified_diff(original.splitlines(keepends=True), patched.splitlines(keepends=True),
                                            fromfile=f"a/{file_path}", tofile=f"b/{file_path}"))
        out = Path(out_dir) / (Path(file_path).as_posix().replace("/", "__") + ".patch")
        atomic_write_text(out, diff)
        patches.append(Patch(file_path, tuple(t.full_name for t, _ in items), diff, out))
    return patches
