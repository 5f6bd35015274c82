"""LeanDojo's export format as frozen dataclasses, and the loaders that read it.

The classes mirror LeanDojo Benchmark 4 one to one (`random/{train,val,test}.json` theorem records and
`corpus.jsonl` premise files), so a traced repository round-trips without loss. Two facts of real
corpora are kept rather than papered over: premise `code` may be empty, and a file's `imports` may be
*unknown* (`None`, key absent) which is not the same as *no imports* (`()`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

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
    def from_json(cls, obj: dict[str, Any], source: str = "<repository>") -> "Repository":
        theorems = tuple(
            parse_theorem(rec, source, i, split=rec.get("split")) for i, rec in enumerate(obj["theorems"], 1)
        )
        files = tuple(parse_premise_file(rec, source, i) for i, rec in enumerate(obj["corpus"], 1))
        return cls(
            url=obj["url"],
            commit=obj["commit"],
            name=obj["name"],
            lean_version=obj.get("lean_version"),
            theorems=theorems,
            premise_files=files,
            dependencies=tuple(obj.get("dependencies", ())),
        )


# ----------------------------------------------------------------------------------------------
# Parsing with errors that name the file, the record and the field.


def _req(rec: dict[str, Any], key: str, tp: type | tuple[type, ...], path: object, n: int, what: str) -> Any:
    if key not in rec:
        raise DataError(path, f"missing (expected {what})", record=n, field=key)
    value = rec[key]
    if not isinstance(value, tp) or isinstance(value, bool) and tp is not bool:
        raise DataError(path, f"expected {what}, got {type(value).__name__}", record=n, field=key)
    return value


def _pos(value: Any, path: object, n: int, key: str) -> Pos:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise DataError(path, f"expected [line, column] integers, got {value!r}", record=n, field=key)
    return Pos(value[0], value[1])


def _parse_annotation(obj: Any, path: object, n: int, key: str) -> Annotation:
    if not isinstance(obj, dict):
        raise DataError(path, "expected an annotation object", record=n, field=key)
    return Annotation(
        full_name=_req(obj, "full_name", str, path, n, "a string"),
        def_path=_req(obj, "def_path", str, path, n, "a string"),
        def_pos=_pos(obj.get("def_pos"), path, n, f"{key}.def_pos"),
        def_end_pos=_pos(obj.get("def_end_pos"), path, n, f"{key}.def_end_pos"),
    )


def _parse_tactic(obj: Any, path: object, n: int, idx: int) -> TracedTactic:
    key = f"traced_tactics[{idx}]"
    if not isinstance(obj, dict):
        raise DataError(path, "expected a tactic object", record=n, field=key)
    tactic = _req(obj, "tactic", str, path, n, "a string")
    state_before = _req(obj, "state_before", str, path, n, "a string")
    state_after = _req(obj, "state_after", str, path, n, "a string")
    annotated, annotations = tactic, ()
    raw = obj.get("annotated_tactic")
    if raw is not None:
        if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str) and isinstance(raw[1], list)):
            raise DataError(path, "expected [text, [annotations]]", record=n, field=f"{key}.annotated_tactic")
        annotated = raw[0]
        annotations = tuple(
            _parse_annotation(a, path, n, f"{key}.annotated_tactic[1][{j}]") for j, a in enumerate(raw[1])
        )
    return TracedTactic(tactic, annotated, annotations, state_before, state_after)


def parse_theorem(rec: Any, path: object, n: int, split: str | None = None) -> Theorem:
    """One theorem record (LeanDojo export format); `n` is its 1-based record number for errors."""
    if not isinstance(rec, dict):
        raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", record=n)
    tactics_raw = _req(rec, "traced_tactics", list, path, n, "a list of tactics")
    statement = rec.get("theorem_statement")
    if statement is not None and not isinstance(statement, str):
        raise DataError(path, "expected a string", record=n, field="theorem_statement")
    return Theorem(
        url=_req(rec, "url", str, path, n, "a string"),
        commit=_req(rec, "commit", str, path, n, "a string"),
        file_path=_req(rec, "file_path", str, path, n, "a string"),
        full_name=_req(rec, "full_name", str, path, n, "a string"),
        start=_pos(_req(rec, "start", list, path, n, "[line, column]"), path, n, "start"),
        end=_pos(_req(rec, "end", list, path, n, "[line, column]"), path, n, "end"),
        statement=statement,
        tactics=tuple(_parse_tactic(t, path, n, i) for i, t in enumerate(tactics_raw)),
        split=split,
    )


def parse_premise_file(rec: Any, path: object, n: int) -> PremiseFile:
    """One `corpus.jsonl` line. A missing `imports` key stays `None` (unknown), never `()`."""
    if not isinstance(rec, dict):
        raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", record=n)
    file_path = _req(rec, "path", str, path, n, "a string")
    imports = rec.get("imports")
    if imports is not None and not (isinstance(imports, list) and all(isinstance(i, str) for i in imports)):
        raise DataError(path, "expected a list of file paths", record=n, field="imports")
    premises_raw = _req(rec, "premises", list, path, n, "a list of premises")
    premises = []
    for j, p in enumerate(premises_raw):
        key = f"premises[{j}]"
        if not isinstance(p, dict):
            raise DataError(path, "expected a premise object", record=n, field=key)
        code = p.get("code", "")
        kind = p.get("kind", "unknown")
        if not isinstance(code, str):
            raise DataError(path, "expected a string", record=n, field=f"{key}.code")
        if not isinstance(kind, str):
            raise DataError(path, "expected a string", record=n, field=f"{key}.kind")
        premises.append(
            Premise(
                full_name=_req(p, "full_name", str, path, n, "a string"),
                code=code,
                path=file_path,
                start=_pos(p.get("start"), path, n, f"{key}.start"),
                end=_pos(p.get("end"), path, n, f"{key}.end"),
                kind=kind,
            )
        )
    return PremiseFile(file_path, tuple(imports) if imports is not None else None, tuple(premises))


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Stream `(line number, parsed JSON)` from a JSONL file; blank lines are skipped."""
    with path.open("r", encoding="utf-8") as handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"invalid JSON ({exc.msg} at column {exc.colno})", record=n) from None


def _iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """Records of a JSON array file, released one by one so the raw list and the dataclasses never coexist."""
    try:
        with path.open("r", encoding="utf-8") as handle:
            raw = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text") from None
    if not isinstance(raw, list):
        raise DataError(path, f"expected a JSON array of theorem records, got {type(raw).__name__}")
    for i in range(len(raw)):
        rec, raw[i] = raw[i], None
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
    traced_files: tuple[str, ...] = ()


def detect_layout(root: Path) -> str:
    """`leandojo` (random/ or novel_premises/ splits) or `jsonl` (theorems.jsonl); else a DataError."""
    if not root.exists():
        raise DataError(root, "no such file or directory")
    if not root.is_dir():
        raise DataError(root, "expected a directory (a LeanDojo export or a folder with theorems.jsonl)")
    if any((root / s / f"{sp}.json").is_file() for s in ("random", "novel_premises") for sp in SPLITS):
        return "leandojo"
    if (root / "theorems.jsonl").is_file():
        return "jsonl"
    raise DataError(
        root,
        "not a traced dataset: expected random/{train,val,test}.json (LeanDojo export) or theorems.jsonl",
    )


def load_corpus(path: Path) -> tuple[PremiseFile, ...]:
    if not path.exists():
        return ()
    return tuple(parse_premise_file(rec, path, n) for n, rec in iter_jsonl(path))


def load_dataset(root: str | Path, split_strategy: str = "random") -> Dataset:
    """Read a LeanDojo export directory or a `theorems.jsonl` directory, validating every record."""
    root = Path(root)
    layout = detect_layout(root)
    theorems: list[Theorem] = []
    if layout == "leandojo":
        split_dir = root / split_strategy
        if not split_dir.is_dir():
            split_dir = root / ("novel_premises" if split_strategy == "random" else "random")
        for split in SPLITS:
            f = split_dir / f"{split}.json"
            if f.is_file():
                theorems.extend(parse_theorem(rec, f, n, split=split) for n, rec in _iter_json_array(f))
    else:
        f = root / "theorems.jsonl"
        for n, rec in iter_jsonl(f):
            split = rec.get("split") if isinstance(rec, dict) else None
            if split is not None and split not in SPLITS:
                raise DataError(f, f"expected one of {', '.join(SPLITS)}, got {split!r}", record=n, field="split")
            theorems.append(parse_theorem(rec, f, n, split=split))
    if not theorems:
        raise DataError(root, "empty dataset: no theorem records")
    metadata: dict[str, Any] = {}
    meta_path = root / "metadata.json"
    if meta_path.is_file():
        try:
            metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(meta_path, f"invalid JSON ({exc.msg})") from None
        if not isinstance(metadata, dict):
            raise DataError(meta_path, "expected a JSON object")
    traced: list[str] = []
    tf_path = root / "traced_files.jsonl"
    if tf_path.is_file():
        for n, rec in iter_jsonl(tf_path):
            if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
                raise DataError(tf_path, "missing (expected a string)", record=n, field="path")
            traced.append(rec["path"])
    return Dataset(root, tuple(theorems), load_corpus(root / "corpus.jsonl"), metadata, tuple(traced))


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
