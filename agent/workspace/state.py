"""The workspace's progress (`state.json`) as typed values with a schema version.

The stream is a list of :class:`StreamEntry`, one per repository *at a commit*. An entry gets a permanent step
id the first time the loop starts it; ids never change afterwards, whatever happens to the curriculum or to
other entries. Re-adding a repository at a new commit appends a new entry and marks the old one
`superseded_by` (it keeps its step id, checkpoint and matrix rows); forgetting marks an entry `forgotten`.
Everything that is keyed by a step (checkpoints, metric rows, recorded proofs) therefore stays attached to the
repository that produced it (issue "Results you can trust", item 1).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from common.errors import WorkspaceError

SCHEMA_VERSION = 2
PHASES = ("index", "learn", "prove", "bank", "evaluate")


@dataclass
class SourceRecord:
    """A source as the user gave it to `add`/`run`, with the options it was imported with."""

    source: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class IndexRecord:
    """Written only after the premise store and the bank hold the entry's data."""

    encoder: str
    commit: str
    premises: int


@dataclass
class StreamEntry:
    """One repository at one commit: what was imported, and how far the loop got with it."""

    key: str
    name: str
    url: str
    commit: str
    source: str
    theorems: int = 0
    premises: int = 0
    files: int = 0
    sorry: int = 0
    test_theorems: int = 0
    step: int | None = None                       # permanent step id, given when the loop first starts it
    phases: dict[str, str] = field(default_factory=dict)   # phase -> "done"
    superseded_by: str | None = None              # key of the newer commit of the same repository
    forgotten: bool = False
    indexed: IndexRecord | None = None

    @property
    def live(self) -> bool:
        """Still part of the stream's future: neither replaced by a newer commit nor forgotten."""
        return self.superseded_by is None and not self.forgotten

    def done(self, phase: str) -> bool:
        return self.phases.get(phase) == "done"

    @property
    def finished(self) -> bool:
        return all(self.done(p) for p in PHASES)


@dataclass
class RunRecord:
    """The options every step of the stream runs with (fixed once the first step starts) and when it began."""

    options: dict[str, Any]
    started_at: str


@dataclass
class ForgetRecord:
    """A `memory forget`: written as an intent before anything is deleted, then completed."""

    repo: str
    commit: str | None
    at: str
    status: Literal["intent", "done"] = "intent"
    premises_removed: int = 0
    bank_items_removed: int = 0


@dataclass
class WorkspaceState:
    schema_version: int = SCHEMA_VERSION
    sources: list[SourceRecord] = field(default_factory=list)
    entries: list[StreamEntry] = field(default_factory=list)
    curriculum: dict[str, Any] | None = None    # curriculum.ordering.Curriculum.to_json()
    run: RunRecord | None = None
    baseline_done: bool = False
    next_step: int = 0
    forgotten: list[ForgetRecord] = field(default_factory=list)

    # -- queries ------------------------------------------------------------------------------
    def entry(self, key: str) -> StreamEntry | None:
        return next((e for e in self.entries if e.key == key), None)

    def live(self) -> list[StreamEntry]:
        return [e for e in self.entries if e.live]

    def started(self) -> list[StreamEntry]:
        """Entries the loop has started, in processing order (their step ids)."""
        return sorted((e for e in self.entries if e.step is not None), key=lambda e: e.step)  # type: ignore

    def pending(self) -> list[StreamEntry]:
        """Live entries not yet started: curriculum order first, then the order they were added in."""
        waiting = [e for e in self.live() if e.step is None]
        order = list((self.curriculum or {}).get("order") or [])
        rank = {k: i for i, k in enumerate(order)}
        added = {id(e): i for i, e in enumerate(self.entries)}   # not list.index: O(n) per entry, 1000s of them
        return sorted(waiting, key=lambda e: (rank.get(e.key, len(rank)), added[id(e)]))

    def plan(self) -> list[StreamEntry]:
        """What `run` processes, in order: started live entries not yet finished, then the pending ones."""
        return [e for e in self.started() if e.live and not e.finished] + self.pending()

    def start(self, entry: StreamEntry) -> int:
        """Give `entry` its permanent step id (the caller saves the state)."""
        if entry.step is None:
            entry.step = self.next_step
            self.next_step += 1
        return entry.step

    @property
    def stream_started(self) -> bool:
        return any(e.step is not None for e in self.entries) or self.baseline_done

    # -- JSON -----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["repos"] = data.pop("entries")
        return data

    @classmethod
    def from_json(cls, data: Any, path: Path) -> "WorkspaceState":
        if not isinstance(data, dict) or "schema_version" not in data:
            raise WorkspaceError(f"{path}: not a lifelean state file (no schema_version); "
                                 "restore it from a backup or start a new workspace")
        version = data["schema_version"]
        if version == 1:
            data = _migrate_v1(data)
        elif version != SCHEMA_VERSION:
            raise WorkspaceError(f"{path}: schema version {version} is not supported by this lifelean "
                                 f"(expects {SCHEMA_VERSION}); use a matching lifelean version")
        try:
            run = data.get("run")
            return cls(
                sources=[SourceRecord(**s) for s in data.get("sources", [])],
                entries=[_entry(r) for r in data.get("repos", [])],
                curriculum=data.get("curriculum"),
                run=RunRecord(**run) if run else None,
                baseline_done=bool(data.get("baseline_done", False)),
                next_step=int(data.get("next_step", 0)),
                forgotten=[ForgetRecord(**f) for f in data.get("forgotten", [])],
            )
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise WorkspaceError(f"{path}: state file has an unexpected structure ({exc}); "
                                 "restore it from a backup or start a new workspace") from None


def _entry(raw: dict[str, Any]) -> StreamEntry:
    raw = dict(raw)
    indexed = raw.pop("indexed", None)
    entry = StreamEntry(**raw)
    entry.indexed = IndexRecord(**indexed) if indexed else None
    return entry


_V1_ENTRY_KEYS = {f.name for f in dataclasses.fields(StreamEntry)}


def _migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 kept step status per key and numbered steps by stream position: give every entry of the
    frozen stream its position as a permanent id (what schema 1 used), and carry the rest over."""
    stream = list(data.get("stream") or [])
    steps = data.get("steps") or {}
    repos = []
    for r in data.get("repos", []):
        entry = {k: v for k, v in r.items() if k in _V1_ENTRY_KEYS}
        entry["phases"] = dict(steps.get(r["key"], {}))
        entry["step"] = stream.index(r["key"]) if r["key"] in stream else None
        entry["forgotten"] = bool(r.get("forgotten"))
        entry.setdefault("source", "")
        repos.append(entry)
    run = data.get("run") or None
    return {
        "schema_version": SCHEMA_VERSION,
        "sources": data.get("sources", []),
        "repos": repos,
        "curriculum": data.get("curriculum"),
        "run": {"options": run.get("options", {}), "started_at": run.get("started_at") or ""} if run else None,
        "baseline_done": data.get("baseline") == "done",
        "next_step": len(stream),
        "forgotten": [{"repo": f.get("repo", ""), "commit": f.get("commit"), "at": f.get("at", ""), "status": "done",
                       "premises_removed": f.get("premises_removed", 0),
                       "bank_items_removed": f.get("bank_items_removed", 0)} for f in data.get("forgotten", [])],
    }
