"""Scale-out: the process pool and Ray give the same results as one process; Ctrl-C keeps finished results."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from curriculum.lean_data import load_dataset, to_repositories
from provers.config import ProverConfig
from provers.factory import GeneratorSpec
from provers.pool import ProverWorker, WorkerSpec, auto_workers, prove_many, theorem_seed

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_repo(b4_sample):
    repos = to_repositories(load_dataset(b4_sample), split_by_dir=2)
    return next(r for r in repos if r.name == "Mathlib/Order")


@pytest.fixture(scope="module")
def knn_setup(data_repo, encoder, tmp_path_factory):
    from memory.bank import MemoryBank

    bank_dir = tmp_path_factory.mktemp("bank")
    MemoryBank(bank_dir, encoder).add_repository(data_repo)
    cfg = ProverConfig(generator="knn", max_expansions=8, num_tactics=4, num_premises=0)
    spec = WorkerSpec(GeneratorSpec(cfg, bank_path=bank_dir), {data_repo.name: data_repo}, seed=1)
    train = [t for t in data_repo.theorems_in("train") if t.tactics and not t.is_sorry][:6]
    tests = [t for t in data_repo.theorems_in("test") if t.tactics]
    return spec, [(data_repo.name, t) for t in train + tests]


def _with_open_bank(spec: WorkerSpec, encoder) -> WorkerSpec:
    import dataclasses

    from memory.bank import MemoryBank

    bank = MemoryBank(spec.generator.bank_path, encoder)
    return dataclasses.replace(spec, generator=dataclasses.replace(spec.generator, base_encoder=encoder,
                                                                   open_bank=bank))


def _key(r):
    return (r.uid, r.proved, tuple(r.proof), r.expansions, r.env_calls, r.generator_calls, r.checked_by)


def test_theorem_seed_is_stable():
    assert theorem_seed(1, "a") == theorem_seed(1, "a") != theorem_seed(2, "a")
    assert auto_workers(1) == 1 and auto_workers(1000) >= 1


def test_pool_equals_single_process(knn_setup, encoder):
    spec, tasks = knn_setup
    local = ProverWorker(spec, generator=None)
    single = sorted(_key(r) for r in prove_many(tasks, spec, workers=1, worker=local))
    pooled = sorted(_key(r) for r in prove_many(tasks, spec, workers=2))
    assert single == pooled
    proved = [k for k in single if k[1]]
    assert len(proved) >= 5 and all(k[6] == "replay" for k in single)   # the train theorems are in the bank
    # The loop hands its open bank to the spec: used here, left behind (not pickled) when the pool ships the spec.
    opened = _with_open_bank(spec, encoder)
    assert sorted(_key(r) for r in prove_many(tasks, opened, workers=1)) == single
    assert sorted(_key(r) for r in prove_many(tasks, opened, workers=2)) == single


@pytest.mark.slow
def test_ray_local_equals_single_process(knn_setup, encoder):
    pytest.importorskip("ray")
    spec, tasks = knn_setup
    single = sorted(_key(r) for r in prove_many(tasks, spec, workers=1))
    with_ray = sorted(_key(r) for r in prove_many(tasks, _with_open_bank(spec, encoder), workers=2,
                                                  ray_address="local"))
    assert single == with_ray


_CTRL_C_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {root!r})
    from common.atomic import append_jsonl
    from curriculum.lean_data import load_dataset, to_repositories
    from provers.config import ProverConfig
    from provers.factory import GeneratorSpec
    from provers.pool import WorkerSpec, prove_many
    def main():
        repo = next(r for r in to_repositories(load_dataset({data!r}), split_by_dir=2) if r.name == "Mathlib/Data")
        thms = [t for t in repo.theorems if t.tactics][:40]
        cfg = ProverConfig(generator="knn", max_expansions=64, num_tactics=8, num_premises=0)
        spec = WorkerSpec(GeneratorSpec(cfg, bank_path={bank!r}), {{repo.name: repo}})
        try:
            for r in prove_many([(repo.name, t) for t in thms], spec, workers=2):
                append_jsonl({out!r}, {{"uid": r.uid, "pid": os.getpid()}})
                time.sleep(0.3)   # 40 results take >= 12 s, so the Ctrl-C always lands mid-run, even on a fast machine
        except KeyboardInterrupt:
            import multiprocessing
            def exists(pid):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return False
                return True
            print("CHILDREN", sum(exists(p.pid) for p in multiprocessing.active_children()), flush=True)
            sys.exit(130)

    if __name__ == "__main__":   # spawn re-imports this file in each worker
        main()
""")


@pytest.mark.slow
def test_ctrl_c_stops_workers_and_keeps_finished_results(b4_sample, tmp_path, encoder):
    from memory.bank import MemoryBank

    repo = next(r for r in to_repositories(load_dataset(b4_sample), split_by_dir=2) if r.name == "Mathlib/Data")
    bank = tmp_path / "bank"
    MemoryBank(bank, encoder).add_repository(repo)
    out = tmp_path / "results.jsonl"
    script = tmp_path / "run.py"
    script.write_text(_CTRL_C_SCRIPT.format(root=str(REPO_ROOT), data=str(b4_sample), bank=str(bank), out=str(out)))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # A job started with `&` by a non-interactive shell inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the child a terminal's default disposition, whatever started the tests.
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline and not (out.exists() and out.read_text().count("\n") >= 1):
        time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()
    os.killpg(proc.pid, signal.SIGINT)          # like Ctrl-C in a terminal: the whole process group
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "CHILDREN 0" in stdout
    lines = out.read_text().splitlines()
    assert 1 <= len(lines) < 40
    assert all(json.loads(line)["uid"] for line in lines)       # every kept line is whole
