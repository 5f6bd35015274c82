"""Crash safety of the pieces every writer uses: atomic directories, the JSONL logs, the typed state, the
config guard on checkpoints, and disk errors while a step is being marked (issue "Results you can trust", 7)."""
from __future__ import annotations

import errno
import json
import math
import os

import pytest

from agent.workspace import StreamEntry, Workspace
from agent.workspace.state import SCHEMA_VERSION
from common.atomic import append_jsonl, atomic_directory, clean_stale_directories, iter_jsonl_tolerant
from common.errors import InputError, WorkspaceError


def test_atomic_directory_replaces_without_ever_deleting_the_old_copy_first(tmp_path):
    final = tmp_path / "0003"
    with atomic_directory(final) as tmp:
        (tmp / "weights").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(final) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed while writing")
    assert (final / "weights").read_text() == "old" and not (tmp_path / ".tmp-0003").exists()
    with atomic_directory(final) as tmp:
        (tmp / "weights").write_text("new")
    assert (final / "weights").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["0003"]


def test_a_crash_between_the_two_renames_is_finished_by_the_next_writer(tmp_path):
    # what atomic_directory leaves if killed after moving the old copy aside, before the new one is in place
    (tmp_path / ".old-0004").mkdir()
    (tmp_path / ".old-0004" / "weights").write_text("complete")
    (tmp_path / ".tmp-0005").mkdir()
    clean_stale_directories(tmp_path)
    assert (tmp_path / "0004" / "weights").read_text() == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0004"]


def test_jsonl_tolerates_a_torn_last_line_only_and_the_next_append_cuts_it(tmp_path):
    log = tmp_path / "metrics.jsonl"
    append_jsonl(log, {"a": 1})
    with open(log, "ab") as f:
        f.write(b'{"a": 2, "tor')
    assert iter_jsonl_tolerant(log) == [{"a": 1}]
    append_jsonl(log, {"a": 3})
    assert log.read_text() == '{"a": 1}\n{"a": 3}\n'
    assert iter_jsonl_tolerant(log) == [{"a": 1}, {"a": 3}]
    log.write_text('{"a": 1}\n{"a": 2, "broken\n{"a": 3}\n')
    with pytest.raises(WorkspaceError, match=r"metrics.jsonl:2: corrupted log line"):
        iter_jsonl_tolerant(log)


@pytest.mark.parametrize("middle, why", [(b'{"a": 2} {"a": 9}', "extra data"), (b'{"a": "\xff"}', "decode"),
                                         (b"[1, 2", "Expecting")])
def test_jsonl_reader_names_any_corrupt_line_but_the_last(tmp_path, middle, why):
    """The whole-file fast path reads exactly what a line-by-line json.loads reads: trailing data after a record,
    a bad UTF-8 byte or a cut record in the middle are corruption; spaces around a record and a torn last line
    (even one cut inside a multi-byte character) are not."""
    log = tmp_path / "metrics.jsonl"
    log.write_bytes(b'  {"a": 1}  \n' + middle + b'\n{"a": 3}\n')
    with pytest.raises(WorkspaceError, match=rf"metrics.jsonl:2: corrupted log line \(.*{why}"):
        iter_jsonl_tolerant(log)
    log.write_bytes(b'  {"a": 1}  \n\n{"a": "\xc3\xa9"}\n{"a": "\xc3')
    assert iter_jsonl_tolerant(log) == [{"a": 1}, {"a": "é"}]


def test_jsonl_reader_reads_what_the_standard_parser_reads_where_orjson_refuses(tmp_path):
    """Lines are parsed by orjson, which refuses some of what `json.dumps` writes (NaN, Infinity) and what
    json.loads accepts (lone surrogates, non-JSON whitespace around a record), and reads integers past 64 bits
    as floats: those lines must come back as json.loads reads them, not as corruption or floats."""
    records = [{"recall@10": math.nan}, {"mrr": math.inf, "x": -math.inf}, {"big": 2**70, "neg": -2**63 - 1},
               {"ok": [1, 2.5, None, True, "é"]}]
    log = tmp_path / "metrics.jsonl"
    for r in records:
        append_jsonl(log, r)
    with open(log, "ab") as f:
        f.write(b'{"s": "\\ud800"}\n' + "\u00a0{\"nbsp\": 1}\u00a0\n\u00a0\n".encode())
    expected = [json.loads(line.strip()) for line in log.read_text(encoding="utf-8").split("\n") if line.strip()]
    got = iter_jsonl_tolerant(log)
    assert len(got) == len(expected) == 6 and got[-1] == {"nbsp": 1}
    assert json.dumps(got) == json.dumps(expected)     # NaN == NaN as text
    assert got[2] == {"big": 2**70, "neg": -2**63 - 1} and got[4]["s"] == "\ud800"


def test_keep_checkpoints_below_what_resuming_needs_is_refused(tmp_path):
    from agent.config import load_config

    p = tmp_path / "lifelean.toml"
    p.write_text("[learning]\nkeep_checkpoints = 0\n")
    with pytest.raises(InputError, match="keep_checkpoints must be at least 1"):
        load_config(p)


def test_schema_1_state_is_migrated_with_its_stream_positions_as_step_ids(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    v1 = {"schema_version": 1, "sources": [], "curriculum": None, "run": {"options": {"seed": 1}},
          "repos": [{"key": "A@1", "name": "A", "url": "u", "commit": "1", "source": "s", "theorems": 3},
                    {"key": "B@1", "name": "B", "url": "u", "commit": "1", "source": "s", "theorems": 2}],
          "stream": ["B@1", "A@1"], "steps": {"B@1": {"index": "done", "learn": "done"}}, "baseline": "done",
          "forgotten": []}
    ws.state_path.write_text(json.dumps(v1))
    state = ws.load_state()
    assert [(e.key, e.step) for e in state.started()] == [("B@1", 0), ("A@1", 1)]
    assert state.entry("B@1").phases == {"index": "done", "learn": "done"} and state.baseline_done
    assert state.next_step == 2
    ws.save_state(state)
    assert json.loads(ws.state_path.read_text())["schema_version"] == SCHEMA_VERSION


def test_a_disk_error_while_marking_a_step_is_a_clean_step_failure(tmp_path, monkeypatch):
    """The timing line and the mark are part of the step: ENOSPC there fails the step with exit 1 and
    leaves the phase unmarked (the real full-disk run is tests/test_loop.py)."""
    from agent.loop import driver
    from agent.loop.context import LoopContext, StepFailed

    ws = Workspace.open(tmp_path / "ws", create=True)
    state = ws.load_state()
    entry = StreamEntry(key="A@1", name="A", url="u", commit="1", source="s", step=0)
    state.entries.append(entry)
    ctx = LoopContext(ws, ws.config(), state)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(driver, "append_jsonl", no_space)
    with pytest.raises(StepFailed, match="failed writing to disk.*resume") as info, driver.StepHeap() as heap:
        driver._run_step(ctx, "learn", lambda: {}, 0, "A@1", lambda: ws.mark_phase(state, entry, "learn"), heap)
    assert info.value.exit_code == 1 and not entry.done("learn")
