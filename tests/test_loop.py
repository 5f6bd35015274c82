"""The lifelong loop end to end, as real subprocesses: clean run, kill -9 and resume, lock, corruption,
a full disk. The stream is three real pseudo-repositories of the shared sample with a fast config."""
from __future__ import annotations

import json
import resource

import pytest

from tests import loop_fixtures as lf


@pytest.fixture(scope="module")
def stream(b4_sample, tmp_path_factory):
    return lf.small_stream(b4_sample, tmp_path_factory.mktemp("data") / "stream")


@pytest.fixture(scope="module")
def clean_run(stream, tmp_path_factory):
    ws = tmp_path_factory.mktemp("clean") / "ws"
    lf.prepare_workspace(ws)
    proc = lf.run(ws, "run", str(stream), "--split-by-dir", "2", "--json")
    summary = json.loads(proc.stdout)
    return ws, summary, lf.end_state(ws)


def test_clean_run_covers_every_step_and_reports_metrics(clean_run):
    ws, summary, end = clean_run
    assert summary["repos"] == 3
    assert len(end["stream"]) == 3
    assert all(all(v == "done" for v in steps.values()) and len(steps) == 5 for steps in end["steps"].values())
    rows = {step for step, _ in end["cells"]}
    assert rows == {-1, 0, 1, 2}  # baseline + one row per repository
    assert summary["metrics"]["steps"] == 3
    assert all(c == "replay" for c in summary["checked_by"])
    status = json.loads(lf.run(ws, "status", "--json").stdout)
    assert status["metrics"] == summary["metrics"]  # status and run agree on the same numbers


def test_kill_during_training_then_resume_matches_clean_run(stream, clean_run, tmp_path):
    ws = tmp_path / "ws"
    lf.prepare_workspace(ws)
    proc = lf.start(ws, "run", str(stream), "--split-by-dir", "2", "--json")
    # 'index' of the second repository is done -> its 'learn' is running.
    assert lf.kill_after(proc, ws, n_done=6, delay=1.0), "run finished before it could be killed"
    lf.run(ws, "resume", "--json")
    lf.assert_same_end_state(lf.end_state(ws), clean_run[2])


@pytest.mark.slow
def test_a_run_spread_over_ray_gives_the_clean_runs_cells_and_proofs(stream, clean_run, tmp_path):
    pytest.importorskip("ray")
    ws = tmp_path / "ws"
    lf.prepare_workspace(ws)
    (ws / "lifelean.toml").write_text((ws / "lifelean.toml").read_text().replace("[prover]", "[prover]\nworkers = 2"))
    lf.run(ws, "run", str(stream), "--split-by-dir", "2", "--ray", "local", "--json", timeout=900)
    assert "ray" not in (ws / "lifelean.toml").read_text()          # a per-invocation resource option
    ray_end, clean_end = lf.end_state(ws), clean_run[2]
    assert ray_end["cells"] == clean_end["cells"] and ray_end["proofs"] == clean_end["proofs"]


def test_second_run_on_the_same_workspace_is_refused(stream, tmp_path):
    import time

    ws = tmp_path / "ws"
    lf.prepare_workspace(ws)
    first = lf.start(ws, "run", str(stream), "--split-by-dir", "2", "--json")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            state = (ws / "state.json").read_text() if (ws / "state.json").exists() else ""
            if '"step": 0' in state:  # the loop has started: the first process holds the lock
                break
            time.sleep(0.05)
        assert first.poll() is None
        second = lf.run(ws, "resume", check=False)
        assert second.returncode == 2
        assert "another lifelean process" in second.stderr and second.stderr.count("\n") == 1
        assert "pid" in second.stderr and "lifelean" in second.stderr        # the lock names its holder
        adding = lf.run(ws, "add", str(stream), "--split-by-dir", "2", check=False)
        assert adding.returncode == 2 and "another lifelean process" in adding.stderr
        # readers are not locked out and see a consistent snapshot while the run writes
        for reader in (("status", "--json"), ("memory", "stats", "--json"), ("memory", "list", "--json")):
            proc = lf.run(ws, *reader, check=False)
            assert proc.returncode == 0, proc.stderr
            json.loads(proc.stdout)
    finally:
        first.kill()
        first.wait()


def test_corrupted_state_is_a_clear_error_not_a_restart(clean_run, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(clean_run[0], ws)
    (ws / "state.json").write_text('{"schema_version": 1, "repos": [')
    proc = lf.run(ws, "resume", check=False)
    assert proc.returncode == 2
    assert "state.json" in proc.stderr and "corrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert (ws / "state.json").read_text() == '{"schema_version": 1, "repos": ['  # nothing overwritten


def test_corrupted_bank_segment_names_the_file(clean_run, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(clean_run[0], ws)
    segments = sorted(p for p in (ws / "bank").iterdir() if p.is_file() and "seg" in p.name)
    assert segments
    data = bytearray(segments[0].read_bytes())
    data[40:60] = b"\xff" * 20
    segments[0].write_bytes(bytes(data))
    proc = lf.run(ws, "memory", "stats", check=False)
    assert proc.returncode == 2, proc.stderr
    assert segments[0].name in proc.stderr and "Traceback" not in proc.stderr


def _limit_file_size():
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # turn "file too large" into a write error, like ENOSPC
    resource.setrlimit(resource.RLIMIT_FSIZE, (20 * 1024 * 1024, 20 * 1024 * 1024))


def test_full_disk_fails_the_step_cleanly_and_resume_recovers(stream, clean_run, tmp_path):
    ws = tmp_path / "ws"
    lf.prepare_workspace(ws)
    lf.run(ws, "add", str(stream), "--split-by-dir", "2")
    # Checkpoints (90 MB of weights) cannot be written under a 20 MB file-size limit.
    proc = lf.start(ws, "run", "--json", preexec_fn=_limit_file_size)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err
    assert "failed writing to disk" in err and "resume" in err and "Traceback" not in err
    state = json.loads((ws / "state.json").read_text())  # still valid JSON
    assert lf.entry(state, 0)["phases"].get("learn") != "done"
    assert not any(p.name.isdigit() for p in (ws / "checkpoints").iterdir()) if (ws / "checkpoints").exists() else True
    lf.run(ws, "resume", "--json")
    lf.assert_same_end_state(lf.end_state(ws), clean_run[2])


@pytest.mark.slow
@pytest.mark.parametrize("n_done, delay", [(1, 0.3), (7, 0.2), (8, 0.1), (10, 0.5)])
def test_kill_at_several_points_then_resume(stream, clean_run, tmp_path, n_done, delay):
    """index (after baseline), prove, bank/evaluate, evaluate of later repositories."""
    ws = tmp_path / "ws"
    lf.prepare_workspace(ws)
    proc = lf.start(ws, "run", str(stream), "--split-by-dir", "2", "--json")
    lf.kill_after(proc, ws, n_done=n_done, delay=delay)
    lf.run(ws, "resume", "--json")
    lf.assert_same_end_state(lf.end_state(ws), clean_run[2])


@pytest.mark.slow
def test_new_repository_after_a_finished_run_is_the_only_new_work(b4_sample, stream, clean_run, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(clean_run[0], ws)
    extra = lf.small_stream(b4_sample, tmp_path / "extra", prefixes=("Mathlib/NumberTheory",))
    before = json.loads((ws / "state.json").read_text())
    lf.run(ws, "run", str(extra), "--split-by-dir", "2", "--json")
    after = json.loads((ws / "state.json").read_text())
    stream = lf.stream_keys(after)
    assert stream[:3] == lf.stream_keys(before) and len(stream) == 4
    assert [r for r in after["repos"] if r["key"] != stream[3]] == before["repos"]
    timings = [json.loads(x) for x in (ws / "metrics.jsonl").read_text().splitlines()]
    new_work = [t for t in timings[len((clean_run[0] / "metrics.jsonl").read_text().splitlines()):]
                if t.get("kind") == "timing"]
    assert {t["repo"] for t in new_work} == {stream[3]}


@pytest.mark.slow
def test_generator_is_fine_tuned_and_used_when_configured(stream, tmp_path):
    from provers.generators.tiny import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "tiny-t5", kind="t5")
    ws = tmp_path / "ws"
    lf.prepare_workspace(ws)
    config = (ws / "lifelean.toml").read_text()
    config = config.replace("[learning]\n", "[learning]\ntrain_generator = true\ngenerator_max_examples = 8\n")
    config = config.replace("[prover]\n", f"[prover]\ngenerator = 'hf'\nmodel = '{model_dir}'\n")
    (ws / "lifelean.toml").write_text(config)
    lf.run(ws, "run", str(stream), "--split-by-dir", "2", "--json")
    gen = sorted(p.name for p in (ws / "checkpoints" / "generator").iterdir() if p.name.isdigit())
    assert gen == ["0001", "0002"]  # one per repository, the two newest kept
    newest = ws / "checkpoints" / "generator" / "0002"
    assert (newest / "prover" / "config.json").is_file()          # the merged copy the prover loads
    meta = json.loads((newest / "meta.json").read_text())
    assert meta["from"] == "0001" and meta["strategies"] == ["replay", "distill"]  # chained, with the strategies
