"""LeanDojo's export format as frozen dataclasses, and the loaders that read it.

The classes mirror LeanDojo Benchmark 4 one to one (`random/{train,val,test}.json` theorem records and
`corpus.jsonl` premise files), so a traced repository round-trips without loss. Two facts of real
corpora are kept rather than papered over: premise `code` may be empty, and a file's `imports` may be
*unknown* (`None`, key absent) which is not the same as *no imports* (`()`).
"""
from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

from common.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, slots=True, order=True)
class Pos:
    """A 1-based (line, column) position in a Lean file."""

    line: int
    col: int

    def to_json(self) -> list[int]:
        return [self.line, self.col]


@dataclass(frozen=True, slots=True)
class Annotation:
    """A premise occurrence inside a tactic: which declaration, and where it is defined."""

    full_name: str
    def_path: str
    def_pos: Pos
    def_end_pos: Pos

    def to_json(self) -> dict[str, Any]:
        return {
            "full_name": self.full_name,
            "def_path": self.def_path,
            "def_pos": self.def_pos.to_json(),
            "def_end_pos": self.def_end_pos.to_json(),
        }


@dataclass(frozen=True, slots=True)
class TracedTactic:
    """One tactic step as Lean ran it: the goals before and after (`"no goals"` when it closed them)."""

    tactic: str
    annotated_tactic: str
    annotations: tuple[Annotation, ...]
    state_before: str
    state_after: str

    def to_json(self) -> dict[str, Any]:
        return {
            "tactic": self.tactic,
            "annotated_tactic": [self.annotated_tactic, [a.to_json() for a in self.annotations]],
            "state_before": self.state_before,
            "state_after": self.state_after,
        }


@dataclass(frozen=True, slots=True)
class Theorem:
    """A theorem and its traced tactic proof (empty for term-mode proofs, which LeanDojo does not trace)."""

    url: str
    commit: str
    file_path: str
    full_name: str
    start: Pos
    end: Pos
    statement: str | None = None
    tactics: tuple[TracedTactic, ...] = ()
    split: str | None = field(default=None, compare=False)

    @property
    def is_sorry(self) -> bool:
        """LeanAgent's rule: a theorem is open if any of its tactics contains `sorry`."""
        return any("sorry" in t.tactic for t in self.tactics)

    @property
    def is_unrated(self) -> bool:
        return not self.tactics

    @property
    def uid(self) -> str:
        """Stable identity inside a repository: file, name and start position."""
        return f"{self.file_path}:{self.full_name}:{self.start.line}:{self.start.col}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "url": self.url,
            "commit": self.commit,
            "file_path": self.file_path,
            "full_name": self.full_name,
            "start": self.start.to_json(),
            "end": self.end.to_json(),
        }
        if self.statement is not None:
            out["theorem_statement"] = self.statement
        out["traced_tactics"] = [t.to_json() for t in self.tactics]
        if self.split is not None:
            out["split"] = self.split
        return out


@dataclass(frozen=True, slots=True)
class Premise:
    """A declaration that tactics may use. `code` is empty when the source was not available."""

    full_name: str
    code: str
    path: str
    start: Pos
    end: Pos
    kind: str = "unknown"

    def to_json(self) -> dict[str, Any]:
        return {
            "full_name": self.full_name,
            "code": self.code,
            "start": self.start.to_json(),
            "end": self.end.to_json(),
            "kind": self.kind,
        }


@dataclass(frozen=True, slots=True)
class PremiseFile:
    """A Lean file with its premises. `imports is None` means the imports were not recorded."""

    path: str
    imports: tuple[str, ...] | None
    premises: tuple[Premise, ...]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.imports is not None:
            out["imports"] = list(self.imports)
        out["premises"] = [p.to_json() for p in self.premises]
        return out


@dataclass(frozen=True, slots=True)
class Repository:
    """A traced repository at one commit, identified by `(url, commit, name)`."""

    url: str
    commit: str
    name: str
    lean_version: str | None
    theorems: tuple[Theorem, ...]
    premise_files: tuple[PremiseFile, ...]
    dependencies: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Human-readable identity used in state, ids and output: `name@commit12`."""
        return f"{self.name}@{self.commit[:12]}"

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.url, self.commit, self.name)

    @property
    def premises(self) -> Iterator[Premise]:
        for pf in self.premise_files:
            yield from pf.premises

    @property
    def num_premises(self) -> int:
        return sum(len(pf.premises) for pf in self.premise_files)

    @property
    def files(self) -> set[str]:
        """Lean files this repository touches: theorem files and premise files."""
        return {t.file_path for t in self.theorems} | {pf.path for pf in self.premise_files}

    def theorems_in(self, *splits: str) -> list[Theorem]:
        return [t for t in self.theorems if t.split in splits]

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "commit": self.commit,
            "name": self.name,
            "lean_version": self.lean_version,
            "dependencies": list(self.dependencies),
            "theorems": [t.to_json() for t in self.theorems],
            "corpus": [pf.to_json() for pf in self.premise_files],
        }

    @classmethod
    def from_json(cls, obj: Any, source: str = "<repository>") -> "Repository":
        """Inverse of :meth:`to_json`, validating like the loaders: anything malformed is a DataError."""
        if not isinstance(obj, dict):
            raise DataError(source, f"expected a JSON object (a repository), got {type(obj).__name__}")
        theorems_raw = _req(obj, "theorems", list, source, None, "a list of theorem records")
        corpus_raw = _req(obj, "corpus", list, source, None, "a list of premise files")
        located = [(parse_theorem(rec, source, i, split=_split_of(rec, source, i)), source, i)
                   for i, rec in enumerate(theorems_raw, 1)]
        files = [(parse_premise_file(rec, source, i), source, i) for i, rec in enumerate(corpus_raw, 1)]
        check_unique(located, files)
        lean_version = obj.get("lean_version")
        if lean_version is not None and not isinstance(lean_version, str):
            raise DataError(source, f"expected a string, got {type(lean_version).__name__}", field="lean_version")
        deps = obj.get("dependencies", [])
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise DataError(source, "expected a list of repository names", field="dependencies")
        return cls(
            url=_name(obj, "url", source, None, "url"),
            commit=_name(obj, "commit", source, None, "commit"),
            name=_name(obj, "name", source, None, "name"),
            lean_version=lean_version,
            theorems=tuple(t for t, _, _ in located),
            premise_files=tuple(pf for pf, _, _ in files),
            dependencies=tuple(deps),
        )


# ----------------------------------------------------------------------------------------------
# Limits: far above anything real, low enough that a hostile file fails with a message instead of
# exhausting memory or overflowing a 64-bit column later (chromadb metadata, SQLite).
# Measured on ../shared/data/leandojo_b4_sample (630 theorems, 823 premises): largest file 580,656 bytes
# (random/train.json), largest record 34,459 bytes, largest corpus line 2,075 bytes, longest proof state
# 1,615 bytes, longest tactic 368 bytes, longest full_name 73 and path 74 characters, largest line number
# 3,564 and column 101. Each limit below is at least 1,000 times the sample's maximum.

MAX_FILE_BYTES = 8 << 30          # one input file (a whole benchmark split or corpus fits)
MAX_RECORD_BYTES = 256 << 20      # one JSONL line
MAX_TEXT_CHARS = 4 << 20          # one proof state, tactic, statement or premise code
MAX_NAME_CHARS = 4096             # a declaration name, url, commit, kind or file path (PATH_MAX)
MAX_POSITION = 10_000_000         # a line or column number


# ----------------------------------------------------------------------------------------------
# Parsing with errors that name the file, the record and the field.


def _req(rec: dict[str, Any], key: str, tp: type | tuple[type, ...], path: object, n: int | None, what: str,
         field: str | None = None) -> Any:
    if key not in rec:
        raise DataError(path, f"missing (expected {what})", record=n, field=field or key)
    value = rec[key]
    if not isinstance(value, tp) or isinstance(value, bool) and tp is not bool:
        raise DataError(path, f"expected {what}, got {type(value).__name__}", record=n, field=field or key)
    return value


def _text(rec: dict[str, Any], key: str, path: object, n: int | None, field: str, optional: bool = False,
          default: str = "") -> str:
    """A free-text field (state, tactic, code): a string of at most MAX_TEXT_CHARS characters."""
    if optional and key not in rec:
        return default
    value = _req(rec, key, str, path, n, "a string", field)
    if len(value) > MAX_TEXT_CHARS:
        raise DataError(path, f"too large to be real: {len(value):,} characters "
                        f"(expected at most {MAX_TEXT_CHARS:,})", record=n, field=field)
    return value


def _name_problem(value: str) -> str | None:
    if not value.strip():
        return "expected a non-empty name"
    if "\x00" in value:
        return "expected a name without NUL characters"
    if len(value) > MAX_NAME_CHARS:
        return f"too long to be real: {len(value):,} characters (expected at most {MAX_NAME_CHARS:,})"
    return None


def _name(rec: dict[str, Any], key: str, path: object, n: int | None, field: str) -> str:
    """A declaration name (or url, commit, kind): non-empty, no NUL, at most MAX_NAME_CHARS."""
    value = _req(rec, key, str, path, n, "a non-empty string", field)
    problem = _name_problem(value)
    if problem:
        raise DataError(path, f"{problem}, got {_short(value)}", record=n, field=field)
    return value


def _short(value: str) -> str:
    return repr(value) if len(value) <= 80 else repr(value[:60]) + f"... ({len(value):,} characters)"


@lru_cache(maxsize=1 << 16)
def path_problem(value: str) -> str | None:
    """Why `value` is not a normalised relative POSIX path that stays inside its repository (None: fine).

    `file_path`/`path`/`def_path` later decide which files accessibility reads and where `prove --export`
    writes, so absolute paths, `..`, Windows drives and separators, NUL bytes and `.`/empty components are
    refused rather than normalised.
    """
    if not value:
        return "it is empty"
    if "\x00" in value:
        return "it contains a NUL byte"
    if len(value) > MAX_NAME_CHARS:
        return f"it is too long ({len(value):,} characters, at most {MAX_NAME_CHARS:,})"
    if "\\" in value:
        return "it contains a backslash (a Windows separator)"
    if value.startswith("/"):
        return "it is absolute"
    if len(value) >= 2 and value[1] == ":" and value[0].isascii() and value[0].isalpha():
        return "it starts with a Windows drive letter"
    parts = value.split("/")
    if ".." in parts:
        return "it leaves the repository ('..')"
    if "" in parts or "." in parts:
        return "it is not normalised (empty or '.' component)"
    return None


def _path(rec: dict[str, Any], key: str, path: object, n: int | None, field: str) -> str:
    value = _req(rec, key, str, path, n, "a relative path inside the repository", field)
    problem = path_problem(value)
    if problem:
        raise DataError(path, f"expected a relative path inside the repository (like Mathlib/Data/Nat/Basic.lean), "
                        f"got {_short(value)}: {problem}", record=n, field=field)
    return value


def _pos(value: Any, path: object, n: int | None, key: str) -> Pos:
    if (
        type(value) is not list
        or len(value) != 2
        or type(value[0]) is not int
        or type(value[1]) is not int
        or not (0 <= value[0] <= MAX_POSITION and 0 <= value[1] <= MAX_POSITION)
    ):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:60] + "..."
        raise DataError(path, f"expected [line, column] of non-negative integers (at most {MAX_POSITION:,}), "
                        f"got {shown}", record=n, field=key)
    return Pos(value[0], value[1])


def _parse_annotation(obj: Any, path: object, n: int | None, key: str) -> Annotation:
    if not isinstance(obj, dict):
        raise DataError(path, f"expected an annotation object, got {type(obj).__name__}", record=n, field=key)
    return Annotation(
        full_name=_name(obj, "full_name", path, n, f"{key}.full_name"),
        def_path=_path(obj, "def_path", path, n, f"{key}.def_path"),
        def_pos=_pos(obj.get("def_pos"), path, n, f"{key}.def_pos"),
        def_end_pos=_pos(obj.get("def_end_pos"), path, n, f"{key}.def_end_pos"),
    )


def _parse_tactic(obj: Any, path: object, n: int | None, idx: int) -> TracedTactic:
    key = f"traced_tactics[{idx}]"
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a tactic object, got {type(obj).__name__}", record=n, field=key)
    tactic = _text(obj, "tactic", path, n, f"{key}.tactic")
    state_before = _text(obj, "state_before", path, n, f"{key}.state_before")
    state_after = _text(obj, "state_after", path, n, f"{key}.state_after")
    annotated, annotations = tactic, ()
    raw = obj.get("annotated_tactic")
    if raw is not None:
        if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str) and isinstance(raw[1], list)):
            raise DataError(path, "expected [text, [annotations]]", record=n, field=f"{key}.annotated_tactic")
        annotated = raw[0]
        if len(annotated) > MAX_TEXT_CHARS:
            raise DataError(path, f"too large to be real: {len(annotated):,} characters (expected at most "
                            f"{MAX_TEXT_CHARS:,})", record=n, field=f"{key}.annotated_tactic")
        annotations = tuple(
            _parse_annotation(a, path, n, f"{key}.annotated_tactic[1][{j}]") for j, a in enumerate(raw[1])
        )
    return TracedTactic(tactic, annotated, annotations, state_before, state_after)


def parse_theorem(rec: Any, path: object, n: int | None, split: str | None = None) -> Theorem:
    """One theorem record (LeanDojo export format); `n` is its 1-based record number for errors."""
    if not isinstance(rec, dict):
        raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", record=n)
    tactics_raw = _req(rec, "traced_tactics", list, path, n, "a list of tactics")
    statement = rec.get("theorem_statement")
    if statement is not None:
        statement = _text(rec, "theorem_statement", path, n, "theorem_statement")
    return Theorem(
        url=_name(rec, "url", path, n, "url"),
        commit=_name(rec, "commit", path, n, "commit"),
        file_path=_path(rec, "file_path", path, n, "file_path"),
        full_name=_name(rec, "full_name", path, n, "full_name"),
        start=_pos(_req(rec, "start", list, path, n, "[line, column]"), path, n, "start"),
        end=_pos(_req(rec, "end", list, path, n, "[line, column]"), path, n, "end"),
        statement=statement,
        tactics=tuple(_parse_tactic(t, path, n, i) for i, t in enumerate(tactics_raw)),
        split=split,
    )


def _split_of(rec: Any, path: object, n: int) -> str | None:
    """The optional `split` key of a `theorems.jsonl` (or workspace) record."""
    split = rec.get("split") if isinstance(rec, dict) else None
    if split is not None and split not in SPLITS:
        shown = repr(split) if len(repr(split)) <= 80 else type(split).__name__
        raise DataError(path, f"expected one of {', '.join(SPLITS)}, got {shown}", record=n, field="split")
    return split


def parse_premise_file(rec: Any, path: object, n: int) -> PremiseFile:
    """One `corpus.jsonl` line. A missing `imports` key stays `None` (unknown), never `()`."""
    if not isinstance(rec, dict):
        raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", record=n)
    file_path = _path(rec, "path", path, n, "path")
    imports = rec.get("imports")
    if imports is not None:
        if not isinstance(imports, list):
            raise DataError(path, f"expected a list of file paths, got {type(imports).__name__}", record=n,
                            field="imports")
        for j, imp in enumerate(imports):
            if not isinstance(imp, str) or path_problem(imp):
                problem = path_problem(imp) if isinstance(imp, str) else f"got {type(imp).__name__}"
                raise DataError(path, f"expected a relative path inside the repository: {problem}", record=n,
                                field=f"imports[{j}]")
    premises_raw = _req(rec, "premises", list, path, n, "a list of premises")
    premises = []
    names: set[str] = set()
    for j, p in enumerate(premises_raw):
        key = f"premises[{j}]"
        if not isinstance(p, dict):
            raise DataError(path, f"expected a premise object, got {type(p).__name__}", record=n, field=key)
        full_name = _name(p, "full_name", path, n, f"{key}.full_name")
        if full_name in names:
            raise DataError(path, f"duplicate premise {_short(full_name)} in file {file_path}", record=n,
                            field=f"{key}.full_name")
        names.add(full_name)
        kind = _name(p, "kind", path, n, f"{key}.kind") if "kind" in p else "unknown"
        premises.append(
            Premise(
                full_name=full_name,
                code=_text(p, "code", path, n, f"{key}.code", optional=True),
                path=file_path,
                start=_pos(p.get("start"), path, n, f"{key}.start"),
                end=_pos(p.get("end"), path, n, f"{key}.end"),
                kind=kind,
            )
        )
    return PremiseFile(file_path, tuple(imports) if imports is not None else None, tuple(premises))


def check_unique(theorems: Iterable[tuple[Theorem, object, int]], premise_files: Iterable[tuple[PremiseFile, object, int]] = ()) -> None:
    """Refuse a theorem name seen twice, and a corpus file listed twice.

    Lean gives each declaration of an environment one name, and lifelean identifies theorems by it
    (`prove --theorem NAME`, the memory bank, proofs.jsonl), so two records with one `full_name` are a
    duplicated record (same split) or, across splits, a held-out theorem that is also training data
    (leakage, which would inflate every score): both are refused, naming both records.
    Premise names repeated across *different* files are allowed (two files that are never imported
    together may declare the same name; the premise store keeps one per name).
    """
    seen: dict[str, tuple[str | None, object, int]] = {}
    for t, path, n in theorems:
        other = seen.get(t.full_name)
        if other is None:
            seen[t.full_name] = (t.split, path, n)
            continue
        o_split, o_path, o_n = other
        where = f"record {o_n}" + (f" of {o_path}" if o_path != path else "")
        if o_split != t.split:
            raise DataError(path, f"theorem {_short(t.full_name)} of split '{t.split}' is also in split "
                            f"'{o_split}' ({where}): a held-out theorem must not be training data (leakage)",
                            record=n, field="full_name")
        raise DataError(path, f"duplicate theorem {_short(t.full_name)} (also {where}); each theorem must appear once",
                        record=n, field="full_name")
    files: dict[str, tuple[object, int]] = {}
    for pf, path, n in premise_files:
        if pf.path in files:
            o_path, o_n = files[pf.path]
            raise DataError(path, f"duplicate file {_short(pf.path)} (also record {o_n}); each file must appear once",
                            record=n, field="path")
        files[pf.path] = (path, n)


# ----------------------------------------------------------------------------------------------
# Reading files: sizes, encodings and JSON, each failure one DataError line.

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_NEWLINE = b"\n"


def _decode(data: bytes, path: object, n: int | None, line_of_offset: bool = False) -> str:
    """UTF-8 text of `data` (a UTF-8 byte-order mark at the start of a file is tolerated)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise DataError(path, "expected UTF-8 text, found UTF-16 (byte-order mark); save the file as UTF-8",
                            record=n) from None
        where = f" at line {data.count(_NEWLINE, 0, exc.start) + 1}" if line_of_offset else ""
        raise DataError(path, f"expected UTF-8 text, found byte 0x{data[exc.start]:02x}{where} "
                        f"(byte {exc.start}); save the file as UTF-8", record=n) from None


def _loads(text: str, path: object, n: int | None) -> Any:
    """Parse JSON text; every way it can fail (syntax, nesting, absurd numbers, lone surrogates) is a DataError."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "; expected UTF-8 text, found NUL bytes (UTF-16 without a byte-order mark?)" if "\x00" in text else ""
        where = f"line {exc.lineno}, column {exc.colno}" if n is None else f"column {exc.colno}"
        raise DataError(path, f"invalid JSON ({exc.msg} at {where}){hint}", record=n) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise DataError(path, f"invalid JSON value ({str(exc).splitlines()[0][:120]})", record=n) from None
    except RecursionError:
        raise DataError(path, "invalid JSON: nested too deeply to be a real record", record=n) from None
    if _SURROGATE_ESCAPE.search(text):
        _check_encodable(obj, path, n)
    return obj


def _check_encodable(obj: Any, path: object, n: int | None) -> None:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(path, "expected Unicode text, found a lone UTF-16 surrogate (a \\ud800-\\udfff escape)",
                        record=n) from None
    except RecursionError:
        raise DataError(path, "invalid JSON: nested too deeply to be a real record", record=n) from None


def check_input_file(path: Path, root: Path | None = None, limit: int | None = None) -> int:
    """A regular file (after symlinks) inside `root` (when given) of at most `limit` bytes; returns its size."""
    limit = MAX_FILE_BYTES if limit is None else limit
    if root is not None:
        real, real_root = path.resolve(), root.resolve()
        if real != real_root and real_root not in real.parents:
            raise DataError(path, f"is a symbolic link to {real}, outside the dataset directory {root}; "
                            "expected a file inside it")
    try:
        st = path.stat()
    except OSError as exc:
        raise DataError(path, f"expected a regular file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(path, "expected a regular file")
    if st.st_size > limit:
        raise DataError(path, f"too large to be real: {st.st_size:,} bytes (expected at most {limit:,})")
    return st.st_size


def iter_jsonl(path: Path, root: Path | None = None) -> Iterator[tuple[int, Any]]:
    """Stream `(line number, parsed JSON)` from a JSONL file; blank lines are skipped."""
    path = Path(path)
    check_input_file(path, root)
    limit = MAX_RECORD_BYTES
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror or exc})") from None
    with handle:
        n = 0
        while True:
            raw = handle.readline(limit + 1)
            if not raw:
                return
            n += 1
            if len(raw) > limit:
                raise DataError(path, f"too large to be real: a line of more than {limit:,} bytes", record=n)
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            text = _decode(raw, path, n)
            if not text.strip():
                continue
            yield n, _loads(text, path, n)


def _read_json(path: Path, root: Path | None) -> tuple[Any, bool]:
    """A whole UTF-8 JSON file, and whether its text has a surrogate escape (a lone one is checked later)."""
    path = Path(path)
    check_input_file(path, root)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror or exc})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = _decode(data, path, None, line_of_offset=True)
    del data
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "; expected UTF-8 text, found NUL bytes (UTF-16 without a byte-order mark?)" if "\x00" in text else ""
        raise DataError(path, f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}){hint}") from None
    except ValueError as exc:
        raise DataError(path, f"invalid JSON value ({str(exc).splitlines()[0][:120]})") from None
    except RecursionError:
        raise DataError(path, "invalid JSON: nested too deeply to be a real file") from None
    return obj, _SURROGATE_ESCAPE.search(text) is not None


def read_json_file(path: Path, root: Path | None = None) -> Any:
    """A whole (UTF-8) JSON file, with the checks of :func:`check_input_file`; every failure is a DataError."""
    obj, suspicious = _read_json(path, root)
    if suspicious:
        _check_encodable(obj, path, None)
    return obj


def _iter_json_array(path: Path, root: Path | None = None) -> Iterator[tuple[int, Any]]:
    """Records of a JSON array file, released one by one so the raw list and the dataclasses never coexist."""
    raw, suspicious = _read_json(path, root)
    if not isinstance(raw, list):
        raise DataError(path, f"expected a JSON array of theorem records, got {type(raw).__name__}")
    for i in range(len(raw)):
        rec, raw[i] = raw[i], None
        if suspicious:  # lone surrogates can only come from \u escapes: only then is each record checked
            _check_encodable(rec, path, i + 1)
        yield i + 1, rec
    raw.clear()


# ----------------------------------------------------------------------------------------------
# Dataset directories.


@dataclass(frozen=True, slots=True)
class Dataset:
    """What a traced-data directory holds, before it is cut into repositories."""

    root: Path
    theorems: tuple[Theorem, ...]
    premise_files: tuple[PremiseFile, ...]
    metadata: dict[str, Any]


def _present(path: Path) -> bool:
    """The path exists, or is a (possibly dangling) symlink: either way the loader must look at it."""
    return path.is_symlink() or path.exists()


def detect_layout(root: Path) -> str:
    """`leandojo` (random/ or novel_premises/ splits) or `jsonl` (theorems.jsonl); else a DataError."""
    if not root.exists():
        raise DataError(root, "no such file or directory")
    if not root.is_dir():
        raise DataError(root, "expected a directory (a LeanDojo export or a folder with theorems.jsonl)")
    if any(_present(root / s / f"{sp}.json") for s in ("random", "novel_premises") for sp in SPLITS):
        return "leandojo"
    if _present(root / "theorems.jsonl"):
        return "jsonl"
    raise DataError(
        root,
        "not a traced dataset: expected random/{train,val,test}.json (LeanDojo export) or theorems.jsonl",
    )


def load_corpus(path: Path, root: Path | None = None) -> tuple[PremiseFile, ...]:
    """Premise files of a `corpus.jsonl` (none if it is absent), each file listed once."""
    if not _present(path):
        return ()
    located = [(parse_premise_file(rec, path, n), path, n) for n, rec in iter_jsonl(path, root)]
    check_unique((), located)
    return tuple(pf for pf, _, _ in located)


def load_dataset(root: str | Path, split_strategy: str = "random") -> Dataset:
    """Read a LeanDojo export directory or a `theorems.jsonl` directory, validating every record.

    Every file read must lie inside `root` after symlinks are followed; nothing is written.
    """
    root = Path(root)
    layout = detect_layout(root)
    located: list[tuple[Theorem, Path, int]] = []
    if layout == "leandojo":
        split_dir = root / split_strategy
        if not split_dir.is_dir():
            split_dir = root / ("novel_premises" if split_strategy == "random" else "random")
        for split in SPLITS:
            f = split_dir / f"{split}.json"
            if _present(f):
                located.extend((parse_theorem(rec, f, n, split=split), f, n) for n, rec in _iter_json_array(f, root))
    else:
        f = root / "theorems.jsonl"
        for n, rec in iter_jsonl(f, root):
            located.append((parse_theorem(rec, f, n, split=_split_of(rec, f, n)), f, n))
    if not located:
        raise DataError(root, "empty dataset: no theorem records")
    check_unique(located)
    theorems = tuple(t for t, _, _ in located)
    del located
    metadata: dict[str, Any] = {}
    meta_path = root / "metadata.json"
    if _present(meta_path):
        metadata = read_json_file(meta_path, root)
        if not isinstance(metadata, dict):
            raise DataError(meta_path, f"expected a JSON object, got {type(metadata).__name__}")
    return Dataset(root, theorems, load_corpus(root / "corpus.jsonl", root), metadata)


def dir_prefix(path: str, depth: int) -> str:
    """The first `depth` components of a file path: how `--split-by-dir` names pseudo-repositories."""
    parts = Path(path).parts
    return "/".join(parts[:depth]) if len(parts) > depth else "/".join(parts[:-1]) or parts[0]


def to_repositories(ds: Dataset, name: str | None = None, split_by_dir: int | None = None) -> list[Repository]:
    """Turn a dataset into one repository, or (with `split_by_dir`) one per leading directory.

    URL and commit come from the theorem records; all records must agree on them.
    """
    urls = {(t.url, t.commit) for t in ds.theorems}
    if len(urls) > 1:
        first, second = sorted(urls)[:2]
        raise DataError(ds.root, f"records come from several repositories ({first[0]}@{first[1][:12]}, "
                        f"{second[0]}@{second[1][:12]}, ...); split the dataset per repository")
    url, commit = next(iter(urls))
    lean_version = ds.metadata.get("lean_version") if isinstance(ds.metadata.get("lean_version"), str) else None
    deps = ds.metadata.get("dependencies")
    dependencies = tuple(deps) if isinstance(deps, list) and all(isinstance(d, str) for d in deps) else ()
    base_name = name or url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or ds.root.name
    if not split_by_dir:
        return [Repository(url, commit, base_name, lean_version, ds.theorems, ds.premise_files, dependencies)]
    if split_by_dir < 1:
        raise DataError(ds.root, f"--split-by-dir must be at least 1, got {split_by_dir}")
    groups: dict[str, tuple[list[Theorem], list[PremiseFile]]] = {}
    for t in ds.theorems:
        groups.setdefault(dir_prefix(t.file_path, split_by_dir), ([], []))[0].append(t)
    for pf in ds.premise_files:
        groups.setdefault(dir_prefix(pf.path, split_by_dir), ([], []))[1].append(pf)
    prefix = f"{name}:" if name else ""
    return [
        Repository(url, commit, prefix + group, lean_version, tuple(ths), tuple(pfs))
        for group, (ths, pfs) in groups.items()
    ]
