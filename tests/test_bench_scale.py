"""bench/synthetic.py writes a stream the real loaders read, shaped like the real sample; bench/scale.py's status
workspace is one `status` reads. No timings here (bench/scale.py measures them)."""
from __future__ import annotations

import hashlib
import re
import statistics
from pathlib import Path

import pytest

from bench.synthetic import PROBE_DIR, generate, load_sample
from curriculum.lean_data import load_dataset, to_repositories
from curriculum.ordering import order_repositories

_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_']*")


@pytest.fixture(scope="module")
def sample(b4_sample: Path):
    return load_sample(b4_sample)


@pytest.fixture(scope="module")
def one_x(sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("syn1")
    summary = generate(out, scale=1, repos=24, seed=0, sample=sample)
    return out, summary, load_dataset(out)


def _tactics(ds):
    return [t for th in ds.theorems if not th.is_sorry for t in th.tactics]


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_the_real_loaders_read_it_and_split_it_into_the_stream(one_x):
    out, summary, ds = one_x
    repos = to_repositories(ds, split_by_dir=2)
    assert sorted(r.name for r in repos) == sorted(summary["repos"])
    assert len(repos) == 24 >= 20
    assert sum(r.num_premises for r in repos) == summary["premises"] == 1000
    assert all(r.theorems for r in repos)
    # every annotated premise is in the corpus; every premise file belongs to a repository with theorems
    names = {p.full_name for pf in ds.premise_files for p in pf.premises}
    assert all(a.full_name in names for th in ds.theorems for t in th.tactics for a in t.annotations)
    assert len(names) == summary["premises"]  # premise names are unique over the whole corpus
    # the easy-first curriculum puts the fixed-size probe last
    assert order_repositories(repos).repos[-1].name == PROBE_DIR


def test_shapes_follow_the_sample(one_x, b4_sample):
    _, summary, ds = one_x
    real = load_dataset(b4_sample)
    syn_t, real_t = _tactics(ds), _tactics(real)
    ppt = [len(t.annotations) for t in syn_t]
    real_ppt = [len(t.annotations) for t in real_t]
    assert abs(statistics.mean(ppt) - statistics.mean(real_ppt)) < 0.2
    assert abs(ppt.count(0) / len(ppt) - real_ppt.count(0) / len(real_ppt)) < 0.08
    assert max(ppt) <= max(real_ppt)
    state = statistics.median(len(t.state_before) for t in syn_t)
    assert 0.8 < state / statistics.median(len(t.state_before) for t in real_t) < 1.25
    steps = statistics.mean(len(th.tactics) for th in ds.theorems)
    assert 0.75 < steps / statistics.mean(len(th.tactics) for th in real.theorems) < 1.35
    ratio = len(ds.theorems) / summary["premises"]
    assert 0.6 < ratio / (len(real.theorems) / sum(len(pf.premises) for pf in real.premise_files)) < 1.2
    per_file = statistics.mean(len(pf.premises) for pf in ds.premise_files)
    assert 0.8 < per_file / statistics.mean(len(pf.premises) for pf in real.premise_files) < 1.25
    # texts are perturbed copies, not duplicates
    assert len({t.state_before for t in syn_t}) > 0.9 * len(syn_t)
    assert len({th.full_name for th in ds.theorems}) == len(ds.theorems)
    # held-out theorems exist (the sample's split rule)
    assert sum(th.split == "test" for th in ds.theorems) >= 20 and any(th.split == "val" for th in ds.theorems)


def test_states_mention_their_premises_and_proof_chains_survive(one_x, b4_sample):
    _, _, ds = one_x
    hits = total = 0
    for t in _tactics(ds):
        tokens = set(_TOKEN.findall(t.state_before))
        for a in t.annotations:
            total += 1
            hits += a.full_name.rsplit(".", 1)[-1].rsplit("_", 1)[-1].rstrip("'?!") in tokens
    assert hits / total > 0.7  # the word that tells a premise from its template's other variants is in the goal

    def chained(d):
        pairs = [(a, b) for th in d.theorems for a, b in zip(th.tactics, th.tactics[1:])]
        return sum(a.state_after == b.state_before for a, b in pairs) / len(pairs)
    assert chained(ds) >= chained(load_dataset(b4_sample)) - 0.05  # one substitution per theorem keeps chains


def test_deterministic_for_a_seed(sample, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, scale=0.5, repos=21, seed=7, sample=sample)
    generate(b, scale=0.5, repos=21, seed=7, sample=sample)
    generate(c, scale=0.5, repos=21, seed=8, sample=sample)
    assert _files(a) == _files(b)
    assert _files(a) != _files(c)


def test_the_probe_is_identical_at_every_scale_and_its_open_theorems_are_what_they_say(sample, tmp_path):
    from provers.env import ReplayEnv, ReplayTable

    probes, digests = [], set()
    for scale in (0.5, 3):
        out = tmp_path / f"s{scale}"
        digests.add(generate(out, scale=scale, repos=22, seed=0, sample=sample)["probe_digest"])
        repos = to_repositories(load_dataset(out), split_by_dir=2)
        assert order_repositories(repos).repos[-1].name == PROBE_DIR
        probes.append(next(r for r in repos if r.name == PROBE_DIR))
    assert len(digests) == 1
    small, large = probes
    assert small.to_json() == large.to_json()
    assert [t.split for t in small.theorems] == [t.split for t in large.theorems]
    assert small.key == large.key  # same commit: the same stream entry key at every scale

    probe = small
    opened = [t for t in probe.theorems if t.is_sorry]
    assert len(opened) == 4 and all(t.split == "train" for t in opened)
    table = ReplayTable.from_theorems(probe.theorems)
    firsts = {t.tactics[0].state_before: t for t in probe.theorems_in("train") if not t.is_sorry}
    closable = 0
    for t in opened:
        source = firsts.get(t.tactics[0].state_before)
        if source is None:
            continue
        with ReplayEnv(t, shared=table) as env:
            assert env.check_proof([s.tactic for s in source.tactics]) is None
        closable += 1
    assert closable == 3  # three restate a train theorem's goal; the fourth goal is closed by nothing recorded
    # the probe's premises are its own, so what it learns from does not depend on the scale
    own = {p.full_name for p in probe.premises}
    assert all(a.full_name in own for t in probe.theorems for s in t.tactics for a in s.annotations)


def test_the_status_workspace_of_the_bench_is_read_by_status(tmp_path):
    from agent.commands.status import workspace_status
    from agent.workspace import Workspace
    from bench.scale import build_status_workspace

    registered = workspace_status(Workspace(build_status_workspace(tmp_path / "a", n=12)))
    assert registered["counts"]["repos"] == 12 and registered["activity"]["state"] == "not started"
    finished = workspace_status(Workspace(build_status_workspace(tmp_path / "b", n=12, finished=True)))
    assert finished["activity"]["state"] == "done"
    assert finished["metrics"]["steps"] == 12 and finished["metrics"]["recall@10"]["acc"] == pytest.approx(0.5)


@pytest.mark.slow
def test_the_instrumented_child_runs_the_real_loop_and_records_each_phase(b4_sample, tmp_path):
    """bench/scale.py's `--child-cli` wraps the loop's own step runner: a real run through it finishes and
    records the peak memory of every phase and the memory after every step (it broke silently once when the
    runner's signature changed)."""
    import json
    import subprocess
    import sys

    from tests import loop_fixtures as lf

    data = lf.small_stream(b4_sample, tmp_path / "data", ("Mathlib/SetTheory", "Mathlib/FieldTheory"))
    ws = tmp_path / "ws"
    lf.prepare_workspace(ws)
    out = tmp_path / "stats.json"
    bench = Path(__file__).resolve().parents[1] / "bench" / "scale.py"
    proc = subprocess.run([sys.executable, str(bench), "--child-cli", str(out), "--", "-w", str(ws), "run",
                           str(data), "--split-by-dir", "2"], cwd=bench.parents[1], env=lf.env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads(out.read_text())
    assert {"baseline", "learn", "evaluate"} <= set(stats["peak_rss_by_phase_mb"])
    assert [name for _, name, _ in stats["rss_after_step_mb"]].count("learn") == 2
