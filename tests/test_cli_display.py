"""Issue 14: output that fits 80 columns, one progress system, `status` that says what is going on,
"did you mean", and help with examples. Fast: synthetic workspaces, no model."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import pytest

from agent.workspace import PHASES, StreamEntry, Workspace
from common.atomic import append_jsonl, atomic_write_json
from curriculum.repo_io import save_repository
from tests.helpers import repo as make_repo

LONG = ["Organisation/AVeryLongRepositoryName01", "Organisation/AVeryLongRepositoryName02",
        "Organisation/AnotherLongRepository-003"]


@pytest.fixture
def long_ws(tmp_path) -> Workspace:
    """Three repositories with long names: step 0 done, step 1 interrupted after 'learn', one pending."""
    ws = Workspace.open(tmp_path / "ws", create=True)
    state = ws.load_state()
    repos = [make_repo(n, [1, 2, 3, 4, None][: 3 + i]) for i, n in enumerate(LONG)]
    for i, r in enumerate(repos):
        save_repository(r, ws.repo_data_path(r.key))
        phases = ({p: "done" for p in PHASES} if i == 0 else {"index": "done", "learn": "done"} if i == 1 else {})
        state.entries.append(StreamEntry(key=r.key, name=r.name, url=r.url, commit=r.commit, source="test",
                                         theorems=len(r.theorems), step=i if i < 2 else None, phases=phases))
    state.next_step = 2
    state.baseline_done = True
    from agent.workspace import RunRecord

    state.run = RunRecord(options={"seed": 1, "learning": {"strategy": ["replay", "distill"]}},
                          started_at="2025-01-01T00:00:00")
    state.curriculum = {"strategy": "leanagent", "order": [r.key for r in repos]}
    ws.save_state(state)
    for step, vals in ((-1, 0.1), (0, 0.5)):
        for r in repos[:2]:
            append_jsonl(ws.metrics_path, {"kind": "eval", "step": step, "after": None if step < 0 else repos[0].key,
                                           "repo": r.key, "recall@10": vals, "tactic@8": vals / 2,
                                           "proof_rate": 0.0, "theorems": 3, "tactics": 4, "tactic_steps": 4})
    return ws


def _fits(output: str, width: int = 80) -> None:
    # a suggested command stays whole on its own line (to be pasted), even under a long tmp path
    long_lines = [line for line in output.splitlines() if len(line) > width and not line.startswith("  lifelean ")]
    assert not long_lines, long_lines


@pytest.mark.parametrize("command", [("status",), ("curriculum",), ("metrics",)])
def test_tables_fit_80_columns_and_keep_names_whole(cli_runner, long_ws, command, monkeypatch):
    from agent.cli import cli

    monkeypatch.setenv("COLUMNS", "80")
    res = cli_runner.invoke(cli, ["-w", str(long_ws.root), *command])
    assert res.exit_code == 0, res.output
    _fits(res.output)
    shown = LONG if command[0] != "metrics" else [make_repo(n, []).key for n in LONG[:2]]
    for name in shown:
        if command[0] == "metrics" and len(name) > 74:
            continue
        assert any(name in line for line in res.output.splitlines()), (name, res.output)
    if command[0] == "metrics":
        assert len(res.output.splitlines()[0]) <= 80


def test_status_says_interrupted_and_suggests_resume(run_cli, long_ws):
    res = run_cli("status", workspace=long_ws.root)
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "interrupted" in flat and "before 'prove'" in flat
    assert f"lifelean -w {long_ws.root} resume" in res.output     # on one line, ready to paste
    data = json.loads(run_cli("status", "--json", workspace=long_ws.root).output)
    assert data["activity"]["state"] == "interrupted"


def test_status_counts_one_repository_in_the_singular(run_cli, tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    state = ws.load_state()
    r = make_repo("Solo", [1, 2])
    save_repository(r, ws.repo_data_path(r.key))
    state.entries.append(StreamEntry(key=r.key, name=r.name, url=r.url, commit=r.commit, source="test",
                                     theorems=len(r.theorems)))
    ws.save_state(state)
    flat = " ".join(run_cli("status", workspace=ws.root).output.split())
    assert "1 repository, 2 theorems" in flat and "not started: 1 repository to learn" in flat, flat


def test_status_names_a_running_holder(run_cli, long_ws):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        atomic_write_json(long_ws.holder_path, {"pid": proc.pid, "command": "lifelean run", "since": "2025-01-01T01:02:03"})
        data = json.loads(run_cli("status", "--json", workspace=long_ws.root).output)
        assert data["activity"]["state"] == "running" and data["activity"]["holder"]["pid"] == proc.pid
        assert "since 2025-01-01T01:02:03" in run_cli("status", workspace=long_ws.root).output
    finally:
        proc.kill()
        proc.wait()
    data = json.loads(run_cli("status", "--json", workspace=long_ws.root).output)
    assert data["activity"]["state"] == "interrupted"     # the holder is gone: the plan is unfinished


def test_status_writes_nothing(run_cli, long_ws):
    from tests.helpers import snapshot

    before = snapshot(long_ws.root)
    assert run_cli("status", workspace=long_ws.root).exit_code == 0
    assert snapshot(long_ws.root) == before and not (long_ws.root / "logs").exists()


def test_did_you_mean_for_commands_and_theorems(run_cli):
    res = run_cli("stauts")
    assert res.exit_code == 2 and "Did you mean 'status'" in res.output
    from agent.commands.prove import select_targets
    from common.errors import InputError

    r = make_repo("Demo", [1, 2])
    with pytest.raises(InputError, match=r"did you mean Demo\.t1"):
        select_targets([r], ("Demo.t_1",), None)
    with pytest.raises(InputError, match=r"t0: did you mean Demo\.t0"):
        select_targets([r], ("t0",), None)


def test_every_command_has_an_example(run_cli):
    for cmd in (["add"], ["curriculum"], ["status"], ["memory"], ["memory", "stats"], ["memory", "search"],
                ["memory", "show"], ["memory", "list"], ["memory", "forget"], ["prove"], ["evaluate"], ["metrics"],
                ["run"], ["resume"], ["report"]):
        res = run_cli(*cmd, "--help")
        assert res.exit_code == 0 and "Example" in res.output, cmd
    res = run_cli("memory", "--help")
    assert "..." not in res.output.split("Commands:")[1]   # no short help cut off mid-sentence


def test_quiet_and_verbose_flags(run_cli):
    assert run_cli("-q", "-v", "status").exit_code == 2
    assert "--quiet" in run_cli("--help").output and "_LIFELEAN_COMPLETE" in run_cli("--help").output


# -- the progress system -------------------------------------------------------------------------------------

def test_plain_progress_is_timestamped_and_logged(tmp_path):
    from agent.commands.progress import Progress

    out = io.StringIO()
    with Progress(enabled=True, verbosity=1, stream=out, live=False) as p:
        p.attach_log(tmp_path / "logs", "run")
        p.outer(2, "x")
        p.outer_update("[1/2] A · learn")
        p.inner("training batches", 10)
        for _ in range(10):
            p.inner_advance(info="loss 1.0")
        p.detail("only in the log")
        p.line("✓ [1/2] A: R@10 0.500")
    lines = out.getvalue().splitlines()
    assert lines and all(len(line) > 20 and line[4] == "-" and line[13] == ":" for line in lines)
    assert any("[1/2] A · learn" in line for line in lines) and not any("only in the log" in x for x in lines)
    assert len(lines) <= 4                                   # inner progress is throttled in plain mode
    log = next((tmp_path / "logs").glob("run-*.log")).read_text()
    assert "only in the log" in log and "✓ [1/2] A: R@10 0.500" in log


def test_quiet_progress_prints_nothing_but_logs(tmp_path):
    from agent.commands.progress import Progress

    out = io.StringIO()
    with Progress(enabled=True, verbosity=0, stream=out, live=False) as p:
        p.attach_log(tmp_path / "logs", "add")
        p.line("summary")
    assert out.getvalue() == ""
    assert "summary" in next((tmp_path / "logs").glob("add-*.log")).read_text()


def test_live_display_summarises_each_repository(long_ws, tmp_path):
    """Driver events -> "[k/N]" steps, an ETA, and one lasting line per repository read from metrics.jsonl."""
    from agent.commands.progress import Progress
    from agent.commands.run import LiveDisplay

    out = io.StringIO()
    display = LiveDisplay(True, long_ws, progress=Progress(enabled=True, verbosity=1, stream=out, live=False))
    key = long_ws.load_state().entries[0].key
    with display:
        display("start", {"total": 5, "done": 0, "repos": 1})
        for phase in PHASES:
            display("step", {"repo": LONG[0], "step": phase, "index": 0, "position": 0, "of": 1})
            if phase == "learn":
                display("batch", {"done": 3, "total": 3, "loss": 0.5})
                display("advance", {"repo": LONG[0], "step": phase, "loss_first": 2.0, "loss_last": 0.5})
            elif phase == "prove":
                display("prove-start", {"repo": LONG[0], "theorems": 2, "already": 0})
                display("proof", {"repo": LONG[0], "theorem": "a", "proved": True})
                display("proof", {"repo": LONG[0], "theorem": "b", "proved": False})
                display("advance", {"repo": LONG[0], "step": phase, "attempted": 2, "proved": 1})
            else:
                display("advance", {"repo": LONG[0], "step": phase})
        display("entry-done", {"repo": LONG[0], "step": 0})
    text = out.getvalue()
    assert "[1/1] " + LONG[0] + " · learn" in text
    summary = next(line for line in text.splitlines() if "✓" in line)
    assert "R@10 0.500" in summary and "tactic@8 0.250" in summary and "proved 1/2" in summary
    assert "loss 2.000→0.500" in summary and key
    logs = list((long_ws.root / "logs").glob("run-*.log"))
    assert len(logs) == 1 and summary.split(" ", 2)[2] in logs[0].read_text()


def test_a_command_refused_early_leaves_no_log(tmp_path):
    """A failed command leaves the workspace byte-identical: the log waits in memory until work starts."""
    from agent.commands.progress import Progress

    with pytest.raises(ValueError):
        with Progress(enabled=True, verbosity=1, stream=io.StringIO(), live=False) as p:
            p.attach_log(tmp_path / "logs", "add")
            p.line("read 3 repositories")
            raise ValueError("refused")
    assert not (tmp_path / "logs").exists()
    with pytest.raises(KeyboardInterrupt):
        with Progress(enabled=True, verbosity=1, stream=io.StringIO(), live=False) as p:
            p.attach_log(tmp_path / "logs", "run")
            p.line("first")
            p.outer(2)
            p.outer_update("[1/2] A · learn")
            raise KeyboardInterrupt
    log = next((tmp_path / "logs").glob("run-*.log")).read_text()
    assert "first" in log and "[1/2] A · learn" in log


def test_run_summary_counts_one_stream_entry_in_the_singular(capsys):
    from agent.commands.run import _render

    _render({"processed": 1, "seconds": 3.2, "attempted": 0, "proved": 0, "checked_by": [], "workspace": "/ws",
             "repos": 1, "metrics": {}})
    assert "done: 1 stream entry in 3 s" in " ".join(capsys.readouterr().out.split())
